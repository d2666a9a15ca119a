//! The client side of the admin API: `portcullis trust|caller|audit …` talk to
//! a running server over its socket, so every change is authorized and
//! recorded by the same pipeline as any other request.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use crate::config::UpstreamAddr;
use crate::forward::{ForwardError, Upstream};
use crate::reply;

/// Where the server is and who we are to it.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// The portcullis server: unix:///path or tcp://host:port. Default: the default socket.
    #[arg(long, env = "PORTCULLIS_HOST")]
    pub host: Option<UpstreamAddr>,
    /// A bearer token (otherwise the socket's peer credentials identify you).
    #[arg(long, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// List trust relationships.
    List(ServerArgs),
    /// Show one trust relationship.
    Get {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create a trust relationship: --set field=value … or --json '{…}'.
    Create(Fields),
    /// Change a trust relationship: portcullis trust update ID --set can_exec=true
    Update {
        id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Revoke a trust relationship.
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask whether an action would be allowed (recorded like any decision).
    Check {
        #[arg(long)]
        caller: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        action: String,
        #[arg(long = "path")]
        resource_path: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Fields of a trust relationship or caller, as `--set k=v` or `--json`.
#[derive(Debug, Args)]
pub struct Fields {
    /// field=value; the value is read as JSON when it parses (true, 3, ["/a/*"]), else as a string.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// A whole JSON object (merged under --set).
    #[arg(long)]
    pub json: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum CallerCommand {
    /// List callers.
    List(ServerArgs),
    /// Add a caller, optionally mapped from unix uids.
    Add {
        name: String,
        #[arg(long = "uid")]
        uids: Vec<u32>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Issue a bearer token for a caller (shown once, stored hashed).
    Token {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a caller and its tokens.
    Remove {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

// Parsed once per process: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Query the decision log.
    Query(AuditQuery),
    /// Print the newest records; --follow keeps printing new ones, streamed by
    /// the server (one request, recorded once).
    Tail {
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, default_value_t = 20)]
        lines: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Export records as JSONL, oldest first, resumable from a sequence id. Each
    /// line carries the record's `hash` and `prev_hash`, so `audit verify --file`
    /// checks it without the server.
    Export {
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// jsonl (records with their chain hashes) or opa (OPA's decision-log events)
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Walk the hash chain and report the first break.
    Verify {
        /// Verify offline, opening the data directory directly (server stopped).
        #[arg(long, conflicts_with = "file")]
        data_dir: Option<PathBuf>,
        /// Verify an export (`audit export` output, `-` for stdin) offline: every
        /// record's hash and every link, from the chain's start or as a range.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cut the audit WAL of a stopped server where it stops continuing the chain,
    /// keeping a copy of what is removed (named in the output).
    Repair {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct AuditQuery {
    #[arg(long)]
    pub caller: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    /// allow or deny
    #[arg(long)]
    pub decision: Option<String>,
    /// RFC 3339
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub request_id: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub cursor: Option<String>,
    /// table (default on a terminal), json or jsonl
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A small client for the admin API.
pub struct AdminClient {
    upstream: Upstream,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(server: &ServerArgs) -> Self {
        let addr = server
            .host
            .clone()
            .unwrap_or_else(|| UpstreamAddr::Unix(crate::config::default_socket()));
        AdminClient {
            upstream: Upstream::new(addr),
            token: server.token.clone(),
        }
    }

    /// Send one request; a non-2xx answer becomes an error carrying the server's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let bytes = self.call_raw(method, path, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")
    }

    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.call_any(method, path, body).await?;
        if !status.is_success() {
            bail!("{} ({status})", server_message(&bytes));
        }
        Ok(bytes)
    }

    /// Send one request and read the whole answer, whatever its status.
    pub async fn call_any(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let resp = self.open(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Send one request; the answer's head, its body still to be read (a stream).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                reply::full(serde_json::to_vec(&v)?)
            }
            None => reply::empty(),
        };
        let (parts, body) = req.body(body)?.into_parts();
        self.upstream.send(parts, path, body).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the portcullis server at {}: {}; is `portcullis serve` running, \
                 and does --host (PORTCULLIS_HOST) name its socket?",
                self.upstream.addr(),
                root_cause(&e)
            )
        })
    }
}

/// The `message` of an error answer in Docker's format, without the
/// "portcullis: " prefix (this CLI prints it once itself).
pub fn server_message(bytes: &[u8]) -> String {
    let msg = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    msg.strip_prefix("portcullis: ").unwrap_or(&msg).to_string()
}

/// The innermost cause of a failed connection ("No such file or directory"),
/// without the layers of the HTTP client wrapped around it.
fn root_cause(e: &ForwardError) -> String {
    match e {
        ForwardError::Unreachable { source, .. } => {
            let mut cause: &(dyn std::error::Error + 'static) = source.as_ref();
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        }
        other => other.to_string(),
    }
}

/// `--set k=v` and `--json` into one object.
pub fn fields_to_object(fields: &Fields) -> anyhow::Result<Value> {
    let mut obj = match &fields.json {
        Some(j) => match serde_json::from_str::<Value>(j).context("--json is not valid JSON")? {
            Value::Object(m) => m,
            _ => bail!("--json must be a JSON object"),
        },
        None => Map::new(),
    };
    for kv in &fields.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected FIELD=VALUE"))?;
        let value =
            serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()));
        obj.insert(k.to_string(), value);
    }
    Ok(Value::Object(obj))
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    let q = ser.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_json_when_they_parse() {
        let f = Fields {
            set: vec![
                "can_exec=true".into(),
                "file_read_paths=[\"/a/*\"]".into(),
                "description=web team".into(),
            ],
            json: Some(r#"{"caller_service":"ci"}"#.into()),
            server: ServerArgs {
                host: None,
                token: None,
            },
        };
        let v = fields_to_object(&f).unwrap();
        assert_eq!(v["can_exec"], true);
        assert_eq!(v["file_read_paths"][0], "/a/*");
        assert_eq!(v["description"], "web team");
        assert_eq!(v["caller_service"], "ci");
        let bad = Fields {
            set: vec!["novalue".into()],
            json: None,
            server: ServerArgs {
                host: None,
                token: None,
            },
        };
        assert!(fields_to_object(&bad).is_err());
    }

    #[test]
    fn query_strings_skip_missing_values() {
        assert_eq!(
            query_string(&[("a", Some("x y".into())), ("b", None)]),
            "?a=x+y"
        );
        assert_eq!(query_string(&[("b", None)]), "");
    }
}
