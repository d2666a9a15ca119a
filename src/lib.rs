//! # portcullis: an authorization proxy for the Docker Engine API
//!
//! Whoever reaches `/var/run/docker.sock` is root on the host. portcullis holds
//! that socket alone and serves a drop-in `DOCKER_HOST`: every request passes the
//! same stages, each a module with one narrow type in and out.
//!
//! | stage | module | out |
//! |---|---|---|
//! | listen | [`listen`] | a connection and its peer |
//! | identify | [`identify`] | [`identify::Caller`] |
//! | classify | [`classify`] | [`classify::Classified`] (an [`classify::Action`] + resource, and the route's handler) |
//! | inspect | [`inspect`] | [`inspect::Inspected`] (exact bytes + canonical body) |
//! | resolve target | [`resolve`] | [`resolve::Target`] (and the file a file action touches) |
//! | decide | [`decide`] | [`decide::Decision`] |
//! | record | [`record`] | a [`record::Permit`], only for a durably recorded, servable decision |
//! | forward / serve | [`forward`], [`admin`], [`services`], [`agent`] (or [`refuse`]) | the daemon's response (or an upgraded stream) |
//! | filter | [`filter`] | what the caller may see of the response |
//!
//! [`pipeline`] tells a request's life from top to bottom; it alone sees the
//! whole [`gateway::Gateway`] and hands each stage only what it needs. The
//! admin API ([`admin`]) and the file API ([`services`], [`files`]) are routed
//! by the same table that classifies them and served behind the same decide
//! and record stages: each handler takes a `Permit`, so there is no second
//! path. No module imports from a module above it (`cargo test --lib layers`).

pub mod admin;
pub mod agent;
pub mod assemble;
pub mod classify;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod decide;
pub mod dlogs;
pub mod doctor;
pub mod execs;
pub mod files;
pub mod filter;
pub mod forward;
pub mod gateway;
pub mod identify;
pub mod init;
pub mod inspect;
#[cfg(test)]
mod layers;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod pipeline;
#[cfg(any(test, fuzzing))]
pub mod properties;
pub mod ratelimit;
pub mod record;
pub mod refuse;
pub mod reply;
pub mod resolve;
pub mod server;
pub mod services;
pub mod trust;
pub mod volumes;

/// The whole command line: parse, dispatch, and map failures to an exit code.
pub fn run() -> std::process::ExitCode {
    let cli = match config_file::parse_cli(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // A worker stuck past a clean stop must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
pub mod commands;

/// Log lines go to stderr, filtered by `PORTCULLIS_LOG` (default `info`):
/// text with colour only on a terminal (a log file or journald gets plain
/// text), or one JSON object a line for log collectors.
fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Repeated warnings and errors: one line per interval (see `ratelimit`).
    match format {
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .event_format(ratelimit::RateLimitedFormat::new(ratelimit::INTERVAL))
            .init(),
        cli::LogFormat::Json => {
            let json = tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false);
            builder
                .with_ansi(false)
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(ratelimit::RateLimitedFormat::wrapping(
                    json,
                    true,
                    ratelimit::INTERVAL,
                ))
                .init()
        }
    }
}
