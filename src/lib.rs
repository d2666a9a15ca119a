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
//! | classify | [`classify`] | [`classify::Classified`] (action + resource) |
//! | inspect | [`inspect`] | [`inspect::Inspected`] (exact bytes + canonical body) |
//! | resolve target | [`resolve`] | [`resolve::Target`] |
//! | decide | [`decide`] | [`decide::Decision`] |
//! | record | [`record`] | [`record::AuditRecord`], durable before forwarding |
//! | forward | [`forward`] | the daemon's response (or an upgraded stream) |
//! | filter | [`filter`] | what the caller may see of the response |
//!
//! [`pipeline`] tells a request's life from top to bottom. The admin API
//! ([`admin`]) and the file API ([`files`]) are served behind the same decide and
//! record stages: there is no second path.

pub mod admin;
pub mod assemble;
pub mod classify;
pub mod cli;
pub mod config;
pub mod decide;
pub mod execs;
pub mod files;
pub mod filter;
#[doc(hidden)]
pub mod fixture;
pub mod forward;
pub mod identify;
pub mod inspect;
pub mod listen;
pub mod pipeline;
pub mod record;
pub mod reply;
pub mod resolve;
pub mod server;
pub mod services;
pub mod stages;
pub mod trust;

use clap::Parser;

/// The whole command line: parse, dispatch, and map failures to an exit code.
pub fn run() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
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
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
pub mod commands;
