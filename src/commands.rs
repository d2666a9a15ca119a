//! What each CLI verb does. Parsing lives in [`crate::cli`]; the work in the
//! library modules; this file only connects the two and prints.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use http::Method;
use serde_json::{json, Value};

use crate::admin::cli::{
    fields_to_object, print_json, query_string, AdminClient, AuditCommand, CallerCommand,
    TrustCommand,
};
use crate::assemble::policy_source;
use crate::cli::{Command, PolicyCommand, PolicySourceArgs};
use crate::decide::tools;
use crate::record::{self, AuditRecord};

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            crate::server::serve(args.into_config()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(cmd) => policy(cmd),
        Command::Trust(cmd) => trust(cmd).await,
        Command::Caller(cmd) => caller(cmd).await,
        Command::Audit(cmd) => audit(cmd).await,
        Command::Container(cmd) => crate::agent::cli::run(cmd).await,
        Command::Health(server) => health(&server).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = crate::cli::Cli::command();
            clap_complete::generate(shell, &mut cmd, "portcullis", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { serve, format } => {
            let checks =
                crate::doctor::run(serve.into_config().map_err(|e| format!("{e:#}"))).await;
            let healthy = checks.iter().all(|c| c.ok);
            if format == "json" {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"healthy": healthy, "checks": checks}))?
                );
            } else {
                for c in &checks {
                    let status = if c.ok { "ok  " } else { "FAIL" };
                    match &c.fix {
                        Some(fix) => println!("{status} {}: {} (fix: {fix})", c.name, c.detail),
                        None => println!("{status} {}: {}", c.name, c.detail),
                    }
                }
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Init {
            dir,
            template,
            force,
        } => {
            for path in crate::init::write(&dir, &template, force)? {
                println!("wrote {}", path.display());
            }
            println!(
                "next: edit them, then `portcullis serve --config {}/portcullis.toml`",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(crate::cli::Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `/_ping` through the server: identified, decided and recorded like any
/// request, so a healthy answer means every stage and the daemon work.
async fn health(server: &crate::admin::cli::ServerArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(server);
    let body = client.call_raw(Method::GET, "/_ping", None).await?;
    if body.as_ref() == b"OK" {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "/_ping answered {:?}, not OK",
            String::from_utf8_lossy(&body)
        )
    }
}

/// The callers and relationships of a data directory's trust store, in the
/// trust file's shape (`{callers, relationships}`).
fn trust_of_store(dir: &std::path::Path) -> anyhow::Result<Value> {
    let db = record::open_sled(dir)
        .with_context(|| format!("opening {} (is a server running on it?)", dir.display()))?;
    let store = crate::trust::store::TrustStore::open(&db).context("opening the trust store")?;
    let callers: Vec<Value> = store
        .list_callers()?
        .into_iter()
        .map(|c| json!({"name": c.name, "uids": c.uids}))
        .collect();
    let relationships = store
        .list()?
        .into_iter()
        .map(|r| serde_json::to_value(&r.spec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"callers": callers, "relationships": relationships}))
}

fn source(args: &PolicySourceArgs) -> anyhow::Result<crate::decide::engine::PolicySource> {
    policy_source(args.policies.as_deref(), &args.template)
}

fn policy(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Bundle {
            policies,
            trust_from_store,
            trust,
            revision,
            signing_key,
            output,
        } => {
            let files = crate::decide::engine::read_dir(&policies, false).map_err(|errors| {
                anyhow::anyhow!(
                    "{}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            tools::policy_check(&crate::decide::engine::PolicySource::Dir(policies.clone()))
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "the policies do not compile: {}",
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })?;
            let trust = match (trust_from_store, trust) {
                (Some(dir), _) => Some(trust_of_store(&dir)?),
                (None, Some(path)) => {
                    let file = crate::config_file::TrustFile::load(&path)?;
                    Some(json!({
                        "callers": file.callers.iter()
                            .map(|c| json!({"name": c.name, "uids": c.uids}))
                            .collect::<Vec<_>>(),
                        "relationships": file.relationships,
                    }))
                }
                (None, None) => None,
            };
            let key = signing_key
                .as_deref()
                .map(crate::decide::bundle::read_key)
                .transpose()?;
            let bytes = crate::decide::bundle::build(
                &files,
                trust.as_ref(),
                revision.as_deref(),
                key.as_ref(),
            )?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            // Read back: an HMAC signature verifies with the same key.
            let check = key
                .as_ref()
                .filter(|k| matches!(k, crate::decide::bundle::Key::Hmac(_)));
            let bundle = crate::decide::bundle::read(&output, check)?;
            println!(
                "wrote {}: revision {}, {} policies{}{}",
                output.display(),
                bundle.revision,
                bundle.policies.len(),
                if bundle.trust.is_some() {
                    ", trust"
                } else {
                    ""
                },
                if bundle.verified {
                    ", signed (HS256)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check(args) => match tools::policy_check(&source(&args)?) {
            Ok(report) => {
                println!(
                    "ok: {} files compile (evaluator: {:?})",
                    report.files.len(),
                    report.evaluator
                );
                for f in &report.files {
                    println!("  {f}");
                }
                if let Some(why) = report.rvm_rejection {
                    println!("note: the compiled VM rejected the policy ({why}); the interpreter runs it");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
        PolicyCommand::Test {
            dir,
            source: mut args,
            verbose,
            format,
            coverage,
        } => {
            if dir.is_some() {
                args.policies = dir;
            }
            let report = tools::policy_test(&source(&args)?, coverage);
            if format == "json" {
                print!("{}", report.render_json());
            } else {
                print!("{}", report.render(verbose));
            }
            Ok(ExitCode::from(report.exit_code() as u8))
        }
        PolicyCommand::Eval {
            source: args,
            input,
            trust,
            explain,
            full,
            format,
        } => {
            let input = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let trust = match trust {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?,
                ),
                None => None,
            };
            let json = match format.as_str() {
                "text" => false,
                "json" => true,
                other => anyhow::bail!("--format {other:?}: expected text or json"),
            };
            let source = source(&args)?;
            let decision = if explain {
                let e = tools::policy_explain(&source, &input, trust.as_deref(), full)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&e)?);
                } else {
                    print!("{}", tools::render_explanation(&e));
                }
                e.decision
            } else {
                let d = tools::policy_eval(&source, &input, trust.as_deref())?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&d)?);
                } else {
                    print!("{}", tools::render_decision(&d));
                }
                d
            };
            Ok(if decision.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

async fn trust(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    let (client, method, path, body) = match cmd {
        TrustCommand::List(s) => (
            AdminClient::new(&s),
            Method::GET,
            "/api/v1/trust".to_string(),
            None,
        ),
        TrustCommand::Get { id, server } => (
            AdminClient::new(&server),
            Method::GET,
            format!("/api/v1/trust/{id}"),
            None,
        ),
        TrustCommand::Create(fields) => {
            let body = fields_to_object(&fields)?;
            (
                AdminClient::new(&fields.server),
                Method::POST,
                "/api/v1/trust".into(),
                Some(body),
            )
        }
        TrustCommand::Update { id, fields } => {
            let body = fields_to_object(&fields)?;
            (
                AdminClient::new(&fields.server),
                Method::PATCH,
                format!("/api/v1/trust/{id}"),
                Some(body),
            )
        }
        TrustCommand::Delete { id, server } => (
            AdminClient::new(&server),
            Method::DELETE,
            format!("/api/v1/trust/{id}"),
            None,
        ),
        TrustCommand::Check {
            caller,
            target,
            action,
            resource_path,
            server,
        } => {
            let body = json!({ "caller": caller, "target": target, "action": action, "resourcePath": resource_path });
            let answer = AdminClient::new(&server)
                .call(Method::POST, "/api/v1/trust/check", Some(body))
                .await?;
            print_json(&answer);
            let allowed = answer
                .get("allowed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            return Ok(if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
    };
    print_json(&client.call(method, &path, body).await?);
    Ok(ExitCode::SUCCESS)
}

async fn caller(cmd: CallerCommand) -> anyhow::Result<ExitCode> {
    let answer = match cmd {
        CallerCommand::List(s) => {
            AdminClient::new(&s)
                .call(Method::GET, "/api/v1/callers", None)
                .await?
        }
        CallerCommand::Add { name, uids, server } => {
            let body = json!({ "name": name, "uids": uids });
            AdminClient::new(&server)
                .call(Method::POST, "/api/v1/callers", Some(body))
                .await?
        }
        CallerCommand::Token { name, server } => {
            let path = format!("/api/v1/callers/{name}/tokens");
            let answer = AdminClient::new(&server)
                .call(Method::POST, &path, None)
                .await?;
            eprintln!("the token is shown once; portcullis keeps only its hash");
            answer
        }
        CallerCommand::Remove { name, server } => {
            AdminClient::new(&server)
                .call(Method::DELETE, &format!("/api/v1/callers/{name}"), None)
                .await?
        }
    };
    print_json(&answer);
    Ok(ExitCode::SUCCESS)
}

fn records_of(page: &Value) -> anyhow::Result<(Vec<AuditRecord>, Option<u64>)> {
    let records: Vec<AuditRecord> =
        serde_json::from_value(page.get("records").cloned().unwrap_or(Value::Array(vec![])))
            .context("the server's audit page is not a list of records")?;
    let next = page.get("next_cursor").and_then(Value::as_u64);
    Ok((records, next))
}

fn print_records(records: &[AuditRecord], format: &str) -> anyhow::Result<()> {
    match format {
        "table" => print!("{}", record::format_table(records)),
        "json" => println!("{}", record::format_json(records)),
        "jsonl" => print!("{}", record::format_jsonl(records)),
        other => anyhow::bail!("unknown format {other:?} (table, json, jsonl)"),
    }
    Ok(())
}

async fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Query(q) => {
            let qs = query_string(&[
                ("caller", q.caller),
                ("target", q.target),
                ("action", q.action),
                ("decision", q.decision),
                ("since", q.since),
                ("until", q.until),
                ("request_id", q.request_id),
                ("limit", q.limit.map(|l| l.to_string())),
                ("cursor", q.cursor),
            ]);
            let page = AdminClient::new(&q.server)
                .call(Method::GET, &format!("/api/v1/trust/audit{qs}"), None)
                .await?;
            let (records, next) = records_of(&page)?;
            let format = q.format.unwrap_or_else(|| {
                if std::io::stdout().is_terminal() {
                    "table".into()
                } else {
                    "jsonl".into()
                }
            });
            print_records(&records, &format)?;
            if let Some(next) = next {
                eprintln!("more: --cursor {next}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            follow,
            lines,
            server,
        } => {
            // One request, decided and recorded once, however long it follows.
            let path = format!(
                "/api/v1/audit/stream?last={}&follow={follow}",
                lines.clamp(1, 1000)
            );
            stream_lines(&AdminClient::new(&server), &path, |line| {
                println!("{line}");
                Ok(())
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            from,
            format,
            server,
        } => {
            let opa = match format.as_str() {
                "jsonl" => false,
                "opa" => true,
                other => anyhow::bail!("unknown export format {other:?} (jsonl, opa)"),
            };
            let path = format!("/api/v1/audit/stream?from={}", from.max(1));
            stream_lines(&AdminClient::new(&server), &path, |line| {
                if opa {
                    let rec: record::ChainedRecord = serde_json::from_str(line)
                        .context("the server's export line is not a record")?;
                    println!("{}", record::opa_event(&rec));
                } else {
                    println!("{line}");
                }
                Ok(())
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            data_dir,
            file: Some(file),
            ..
        } if data_dir.is_none() => verify_export_file(&file),
        AuditCommand::Verify {
            data_dir, server, ..
        } => {
            let report = match data_dir {
                Some(dir) => serde_json::to_value(record::verify_offline(&dir)?)?,
                None => {
                    AdminClient::new(&server)
                        .call(Method::GET, "/api/v1/audit/verify", None)
                        .await?
                }
            };
            print_json(&report);
            let broken = report.get("broken").map(|b| !b.is_null()).unwrap_or(true);
            if broken {
                eprintln!("audit chain is BROKEN");
                Ok(ExitCode::FAILURE)
            } else {
                eprintln!("audit chain verifies");
                Ok(ExitCode::SUCCESS)
            }
        }
        AuditCommand::Repair { data_dir } => {
            let report = record::repair_offline(&data_dir)?;
            print_json(&serde_json::to_value(&report)?);
            match (&report.cut, &report.kept_in) {
                (Some(b), Some(kept)) => eprintln!(
                    "cut the audit WAL at {b}; the removed segments are kept, whole, in {}",
                    kept.display()
                ),
                _ => eprintln!("the audit WAL continues the chain: nothing cut"),
            }
            if let Some(b) = &report.verify.broken {
                eprintln!("the store itself is still BROKEN ({b}): repair only cuts the WAL");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `audit verify --file`: an export checked offline, without the server.
fn verify_export_file(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = if file.as_os_str() == "-" {
        record::verify_export(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        record::verify_export(std::io::BufReader::new(f))
    }
    .with_context(|| format!("reading {}", file.display()))?;
    print_json(&serde_json::to_value(&report)?);
    eprintln!("the export {}", report.start);
    match &report.broken {
        Some(b) => {
            eprintln!("the export is BROKEN: {b}");
            Ok(ExitCode::FAILURE)
        }
        None if report.checked == 0 => {
            eprintln!("the export holds no records: nothing verifies");
            Ok(ExitCode::FAILURE)
        }
        None => {
            eprintln!(
                "the export verifies: {} records, seq {} to {}, ending at hash {} (compare with the server's head)",
                report.checked,
                report.from_seq.unwrap_or(0),
                report.last_good_seq.unwrap_or(0),
                report.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Read a streamed JSON Lines answer, handing each line to `each` as it
/// arrives. An `{"error": …}` line (the server failed mid-stream) is an error.
async fn stream_lines(
    client: &AdminClient,
    path: &str,
    mut each: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    use std::io::Write;
    let resp = client.open(Method::GET, path, None).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        anyhow::bail!("{} ({status})", crate::admin::cli::server_message(&bytes));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the server's stream")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = std::str::from_utf8(&line[..end]).context("the stream is not UTF-8")?;
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with("{\"error\"") {
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                let msg = v["error"].as_str().unwrap_or(line);
                anyhow::bail!("{}", msg.strip_prefix("portcullis: ").unwrap_or(msg));
            }
            each(line)?;
        }
        std::io::stdout().flush().context("writing to stdout")?;
    }
    if !pending.is_empty() {
        anyhow::bail!("the server's stream ended inside a line");
    }
    Ok(())
}
