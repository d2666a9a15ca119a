//! `portcullis container update-image|env|health|stats|logs|events`: the
//! agent controls for operators and scripts.
//!
//! Why through a running server, like `trust` and `audit`: each command is a
//! request to the agent routes, identified, decided and recorded like any
//! other; the CLI holds no power of its own. Output is JSON (one object, or
//! one per line for streams), except `logs`, which prints each line to stdout
//! or stderr as `docker logs` does.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use crate::admin::cli::{print_json, server_message, AdminClient, ServerArgs};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Recreate a container on a new image; rolled back if it does not come up.
    UpdateImage {
        /// The container (name or id).
        container: String,
        /// The image, e.g. `registry/app` or `registry/app:2.1`.
        #[arg(long)]
        image: String,
        /// The tag, when --image has none.
        #[arg(long)]
        tag: Option<String>,
        /// Do not carry the volumes over.
        #[arg(long)]
        no_preserve_volumes: bool,
        /// Do not carry the networks over.
        #[arg(long)]
        no_preserve_networks: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a container's environment; with --set or --unset, change it
    /// (the container is recreated, rolled back if it does not come up).
    Env {
        container: String,
        /// NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// NAME (repeatable).
        #[arg(long = "unset", value_name = "NAME")]
        unset: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Health of every container you may see, or of one.
    Health {
        container: Option<String>,
        /// Only containers with this label (key or key=value; repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One stats snapshot of a container.
    Stats {
        container: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A container's log, as `docker logs` prints it.
    Logs(LogsArgs),
    /// portcullis's events and the containers' lifecycle events, one JSON
    /// object a line, until interrupted.
    Events(ServerArgs),
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    container: String,
    /// Keep printing new lines.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<String>,
    /// Only lines since a time (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Print each line's timestamp.
    #[arg(short, long)]
    timestamps: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Run one `container` command.
pub async fn run(cmd: ContainerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCommand::UpdateImage {
            container,
            image,
            tag,
            no_preserve_volumes,
            no_preserve_networks,
            server,
        } => {
            let mut body = json!({
                "image": image,
                "preserveVolumes": !no_preserve_volumes,
                "preserveNetworks": !no_preserve_networks,
            });
            if let Some(tag) = tag {
                body["tag"] = Value::from(tag);
            }
            let path = format!("/api/v1/containers/{}/update-image", escape(&container));
            outcome(&AdminClient::new(&server), Method::POST, &path, Some(body)).await
        }
        ContainerCommand::Env {
            container,
            set,
            unset,
            server,
        } => {
            let path = format!("/api/v1/containers/{}/env", escape(&container));
            let client = AdminClient::new(&server);
            if set.is_empty() && unset.is_empty() {
                print_json(&client.call(Method::GET, &path, None).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let body = env_patch(&set, &unset)?;
            outcome(&client, Method::PATCH, &path, Some(body)).await
        }
        ContainerCommand::Health {
            container,
            labels,
            server,
        } => {
            let path = match container {
                Some(c) => format!("/api/v1/containers/{}/health", escape(&c)),
                None => {
                    let mut q = form_urlencoded::Serializer::new(String::new());
                    for l in &labels {
                        q.append_pair("label", l);
                    }
                    let q = q.finish();
                    let sep = if q.is_empty() { "" } else { "?" };
                    format!("/api/v1/containers/health{sep}{q}")
                }
            };
            print_json(
                &AdminClient::new(&server)
                    .call(Method::GET, &path, None)
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Stats { container, server } => {
            let path = format!("/api/v1/containers/{}/stats", escape(&container));
            print_json(
                &AdminClient::new(&server)
                    .call(Method::GET, &path, None)
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Logs(args) => logs(args).await,
        ContainerCommand::Events(server) => {
            let client = AdminClient::new(&server);
            stream(&client, "/api/v1/events", |event| {
                let data: Value =
                    serde_json::from_str(&event.data).unwrap_or(Value::String(event.data));
                let line = json!({ "event": event.name, "data": data });
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()
            })
            .await
        }
    }
}

/// Percent-escape a container reference for the path (names are plain, but
/// a typo with `/` or `?` must not become another route).
fn escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `--set NAME=VALUE` and `--unset NAME` as the PATCH body.
fn env_patch(set: &[String], unset: &[String]) -> anyhow::Result<Value> {
    let mut values = Map::new();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected NAME=VALUE"))?;
        values.insert(k.to_string(), Value::from(v));
    }
    Ok(json!({ "set": values, "unset": unset }))
}

/// An update's answer: printed whole, success or not (a rolled-back update
/// says what failed); the exit code says which.
async fn outcome(
    client: &AdminClient,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<ExitCode> {
    let (status, bytes) = client.call_any(method, path, body).await?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.get("success").is_some() => {
            print_json(&v);
            Ok(if status.is_success() && v["success"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        _ if status.is_success() => bail!("the server's answer is not JSON"),
        _ => bail!("{} ({status})", server_message(&bytes)),
    }
}

async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if args.follow {
        q.append_pair("follow", "true");
    }
    if let Some(t) = &args.tail {
        q.append_pair("tail", t);
    }
    if let Some(s) = &args.since {
        q.append_pair("since", s);
    }
    let path = format!(
        "/api/v1/containers/{}/logs?{}",
        escape(&args.container),
        q.finish()
    );
    let timestamps = args.timestamps;
    stream(&AdminClient::new(&args.server), &path, |event| {
        if event.name != "log" {
            return Ok(());
        }
        let Ok(line) = serde_json::from_str::<Value>(&event.data) else {
            return Ok(());
        };
        let message = line["message"].as_str().unwrap_or_default();
        let text = match (timestamps, line["timestamp"].as_str()) {
            (true, Some(ts)) => format!("{ts} {message}"),
            _ => message.to_string(),
        };
        if line["stream"] == "stderr" {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{text}")
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        }
    })
    .await
}

/// Read a Server-Sent Events answer to its end, handing each event to `each`.
async fn stream(
    client: &AdminClient,
    path: &str,
    mut each: impl FnMut(SseEvent) -> std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    let resp = client.open(Method::GET, path, None).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        bail!("{} ({status})", server_message(&bytes));
    }
    let mut parser = SseParser::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the stream")?;
        if let Some(data) = frame.data_ref() {
            for event in parser.push(data) {
                if let Err(e) = each(event) {
                    // A closed pipe (`| head`) ends the command quietly.
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(ExitCode::SUCCESS);
                    }
                    return Err(e.into());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (default `message`).
    pub name: String,
    /// `data:` lines, joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

/// Server-Sent Events from bytes as they arrive: events end at a blank line;
/// comments (`: heartbeat`) are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = find_blank_line(&self.pending) {
            let block: Vec<u8> = self.pending.drain(..end.0).collect();
            self.pending.drain(..end.1 - end.0);
            if let Some(e) = parse_block(&String::from_utf8_lossy(&block)) {
                events.push(e);
            }
        }
        events
    }
}

/// (end of the block, end of the blank line after it).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let text = buf;
    (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else {
            None
        }
    })
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut name = None;
    let mut data: Vec<&str> = Vec::new();
    let mut id = None;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_string()),
            "data" => data.push(value),
            "id" => id = Some(value.to_string()),
            _ => {}
        }
    }
    if name.is_none() && data.is_empty() {
        return None;
    }
    Some(SseEvent {
        name: name.unwrap_or_else(|| "message".into()),
        data: data.join("\n"),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_across_chunks_and_comments_skipped() {
        let mut p = SseParser::default();
        assert!(p.push(b": heartbeat\n\nevent: log\nid: 7\nda").is_empty());
        let got = p.push(b"ta: {\"message\":\"hi\"}\n\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n");
        assert_eq!(
            got,
            vec![
                SseEvent {
                    name: "log".into(),
                    data: "{\"message\":\"hi\"}".into(),
                    id: Some("7".into())
                },
                SseEvent {
                    name: "x".into(),
                    data: "a\nb".into(),
                    id: None
                },
            ]
        );
    }

    #[test]
    fn env_patches_need_name_equals_value() {
        let v = env_patch(&["A=1".into(), "B=x=y".into()], &["C".into()]).unwrap();
        assert_eq!(v, json!({"set": {"A": "1", "B": "x=y"}, "unset": ["C"]}));
        assert!(env_patch(&["A".into()], &[]).is_err());
    }

    #[test]
    fn container_references_cannot_escape_their_path_segment() {
        assert_eq!(escape("web-1"), "web-1");
        assert_eq!(escape("../trust?x"), "..%2Ftrust%3Fx");
    }
}
