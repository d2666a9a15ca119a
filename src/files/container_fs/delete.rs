//! Delete, the one operation the archive API lacks: the container's own
//! `rm -f -- PATH` run as root through exec (argv, no shell), checked before
//! (it must be a file) and after (it must be gone).

use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;

use super::{check_container_ref, map_docker_error, ContainerFs};
use crate::files::path::normalize_path;
use crate::files::FileError;

/// Output kept from the delete exec, for error messages.
const MAX_EXEC_OUTPUT: usize = 4096;

impl ContainerFs {
    /// Delete one file (or symlink) with the container's own `rm -f -- PATH`, run
    /// as root through exec (no shell). 404 when the path does not exist, 409 for
    /// a directory, a container that is not running, or one without `rm`.
    pub async fn delete(&self, container: &str, file: &str) -> Result<(), FileError> {
        check_container_ref(container)?;
        let file = normalize_path(file)?;
        match self.stat(container, &file).await? {
            None => return Err(FileError::NotFound(file)),
            Some(stat) if stat.is_dir() => {
                return Err(FileError::Conflict(format!(
                    "{file} is a directory; only files can be deleted"
                )))
            }
            Some(_) => {}
        }
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| map_docker_error(e, container, &file))?;
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) || state.paused == Some(true) {
            return Err(FileError::Conflict(
                "container is not running; delete needs the container's own rm".to_string(),
            ));
        }
        let exec = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    cmd: Some(vec![
                        "rm".to_string(),
                        "-f".to_string(),
                        "--".to_string(),
                        file.clone(),
                    ]),
                    user: Some("0".to_string()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(false),
                    tty: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError {
                    status_code: 409, ..
                } => FileError::Conflict(
                    "container is not running; delete needs the container's own rm".to_string(),
                ),
                other => map_docker_error(other, container, &file),
            })?;
        let mut output = Vec::new();
        match self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
            .map_err(|e| map_docker_error(e, container, &file))?
        {
            StartExecResults::Attached {
                output: mut stream, ..
            } => {
                while let Some(item) = stream.next().await {
                    let item = item.map_err(|e| FileError::Docker(format!("exec output: {e}")))?;
                    let bytes = item.into_bytes();
                    let room = MAX_EXEC_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            StartExecResults::Detached => {}
        }
        let exit_code = self.exec_exit_code(&exec.id).await?;
        let output = String::from_utf8_lossy(&output).trim().to_string();
        match exit_code {
            0 => {}
            126 | 127 => {
                return Err(FileError::Conflict(format!(
                    "the container has no usable rm (exit {exit_code}); delete needs the container's own rm: {output}"
                )))
            }
            code => {
                return Err(FileError::Docker(format!(
                    "rm -f -- {file} exited with {code}: {output}"
                )))
            }
        }
        // rm -f exits 0 in more cases than "removed"; make sure it is gone.
        if self.stat(container, &file).await?.is_some() {
            return Err(FileError::Docker(format!(
                "{file} still exists after rm: {output}"
            )));
        }
        Ok(())
    }

    /// Wait (briefly) for the exec to be reported finished and return its code.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<i64, FileError> {
        for _ in 0..50 {
            let inspect = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| FileError::Docker(format!("exec inspect: {e}")))?;
            if inspect.running != Some(true) {
                return inspect.exit_code.ok_or_else(|| {
                    FileError::Docker("exec finished without an exit code".to_string())
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(FileError::Docker(
            "rm did not finish within 5 seconds".to_string(),
        ))
    }
}
