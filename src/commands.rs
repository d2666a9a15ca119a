//! What each CLI verb does. Parsing lives in [`crate::cli`]; the work in the
//! library modules; this file only connects the two and prints.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

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

fn source(args: &PolicySourceArgs) -> anyhow::Result<crate::decide::engine::PolicySource> {
    policy_source(args.policies.as_deref(), &args.template)
}

fn policy(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
            let client = AdminClient::new(&server);
            let page = client
                .call(
                    Method::GET,
                    &format!("/api/v1/trust/audit?limit={}", lines.clamp(1, 1000)),
                    None,
                )
                .await?;
            let (mut records, _) = records_of(&page)?;
            records.reverse();
            print!("{}", record::format_jsonl(&records));
            let mut last = records.last().map(|r| r.seq).unwrap_or(0);
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let path = format!("/api/v1/trust/audit?order=oldest&cursor={last}&limit=1000");
                let (records, _) = records_of(&client.call(Method::GET, &path, None).await?)?;
                if let Some(r) = records.last() {
                    last = r.seq;
                }
                print!("{}", record::format_jsonl(&records));
            }
        }
        AuditCommand::Export { from, server } => {
            let client = AdminClient::new(&server);
            let mut cursor = from.saturating_sub(1);
            loop {
                let path = format!("/api/v1/trust/audit?order=oldest&cursor={cursor}&limit=1000");
                let (records, next) = records_of(&client.call(Method::GET, &path, None).await?)?;
                print!("{}", record::format_jsonl(&records));
                match (next, records.last()) {
                    (Some(_), Some(r)) => cursor = r.seq,
                    _ => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { data_dir, server } => {
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
