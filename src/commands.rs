//! What each CLI verb does.

use std::process::ExitCode;

use crate::cli::Command;

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            crate::server::serve(args.into_config()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        _ => anyhow::bail!("not yet available"),
    }
}
