//! The recreate itself: image, create, stop, start, ready, remove, rename;
//! on any failure, roll back.
//!
//! Why this order: the old container keeps its name and its data until the
//! new one is proven (running, and healthy when it has a healthcheck); only
//! then is the old one removed and the new one renamed. Until that point a
//! rollback is always possible: remove the new container, start the old one.
//! Each step is recorded before it is taken, under the decision that allowed
//! the update; a step whose record cannot be written is not taken (the update
//! rolls back). Rollback steps are recorded too, but are taken even when
//! their record fails: restoring the old container comes first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, RemoveContainerOptions, RenameContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use http::StatusCode;

use super::carry::{self, Carry, EnvChange};
use crate::record::{AuditRecord, Record};

/// Without a healthcheck, "ready" is running and still running this long
/// after start (or the whole timeout, if shorter): a process that fails at
/// once is caught.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What is being recreated, and how.
pub struct Job {
    pub old: ContainerInspectResponse,
    /// The image reference the new container is created from.
    pub image: String,
    pub carry: Carry,
    pub env: Option<EnvChange>,
    /// `update` or `env update`, in step records.
    pub what: &'static str,
}

/// Where the work is done and recorded.
pub struct Ctx {
    pub docker: Docker,
    pub recorder: Arc<dyn Record>,
    /// The base of every step record (the request's record, action
    /// `container.update_step`).
    pub base: AuditRecord,
    pub decision_id: u64,
    pub ready_timeout: Duration,
}

/// How it ended.
#[derive(Debug)]
pub enum Outcome {
    /// The new container runs (or, for an old one that was not running, is
    /// created) under the old name.
    Done {
        new_id: String,
        status: &'static str,
    },
    /// Nothing was created or stopped (the image could not be had, or the
    /// first step could not be recorded).
    NothingChanged { status: StatusCode, message: String },
    /// The update failed and the old container is as it was.
    RolledBack {
        new_id: Option<String>,
        error: String,
    },
    /// The update failed and so did the rollback (or the rename after the
    /// old container was removed): the error says what is where.
    Failed {
        new_id: Option<String>,
        error: String,
    },
}

/// The step records of one update.
struct Steps<'a> {
    ctx: &'a Ctx,
    what: &'static str,
    n: u32,
}

impl Steps<'_> {
    async fn record(&mut self, target: (Option<&str>, &str), doing: &str) -> Result<(), String> {
        self.n += 1;
        let mut record = self.ctx.base.clone();
        record.reasons = vec![format!(
            "step {} of {} decided in record {}: {doing}",
            self.n, self.what, self.ctx.decision_id
        )];
        record.target_id = target.0.map(str::to_string);
        record.target_name = Some(target.1.to_string());
        self.ctx
            .recorder
            .append(record)
            .await
            .map(|_| ())
            .map_err(|e| format!("the step \"{doing}\" could not be recorded: {e}"))
    }
}

fn status_of(e: &bollard::errors::Error) -> StatusCode {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
            StatusCode::from_u16(*status_code).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `name` alone would make the daemon pull every tag: pull `name:latest`,
/// the image a create of `name` runs.
pub fn pull_reference(image: &str) -> String {
    if super::body::has_tag_or_digest(image) {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Make sure `image` is present: pulled only when it is not. Its id.
async fn ensure_image(
    ctx: &Ctx,
    steps: &mut Steps<'_>,
    job: &Job,
    old: (Option<&str>, &str),
) -> Result<String, (StatusCode, String)> {
    let docker = &ctx.docker;
    let unrecorded = |e: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("portcullis: nothing was changed: {e}"),
        )
    };
    match docker.inspect_image(&job.image).await {
        Ok(img) => {
            let id = img.id.unwrap_or_default();
            steps
                .record(
                    old,
                    &format!("use image {} ({id}), present locally", job.image),
                )
                .await
                .map_err(unrecorded)?;
            return Ok(id);
        }
        Err(e) if status_of(&e) == StatusCode::NOT_FOUND => {}
        Err(e) => {
            return Err((
                status_of(&e),
                format!("portcullis: cannot inspect the image {}: {e}", job.image),
            ))
        }
    }
    let reference = pull_reference(&job.image);
    steps
        .record(old, &format!("pull image {reference}"))
        .await
        .map_err(unrecorded)?;
    let failed = |e: bollard::errors::Error| {
        (
            status_of(&e),
            format!(
                "portcullis: the image {} is not present and could not be pulled, so nothing was changed: {e}",
                job.image
            ),
        )
    };
    let options = CreateImageOptions {
        from_image: Some(reference),
        ..Default::default()
    };
    let mut pull = docker.create_image(Some(options), None, None);
    while let Some(progress) = pull.next().await {
        progress.map_err(failed)?;
    }
    let img = docker.inspect_image(&job.image).await.map_err(failed)?;
    Ok(img.id.unwrap_or_default())
}

/// Run the job; every outcome leaves the old container either replaced or as
/// it was (or says exactly what is where).
pub async fn run(ctx: &Ctx, job: Job) -> Outcome {
    let mut steps = Steps {
        ctx,
        what: job.what,
        n: 0,
    };
    let docker = &ctx.docker;
    let old_id = job.old.id.clone().unwrap_or_default();
    let name = super::container_name(&job.old);
    let old = (Some(old_id.as_str()), name.as_str());
    if let Err((status, message)) = ensure_image(ctx, &mut steps, &job, old).await {
        return Outcome::NothingChanged { status, message };
    }
    let old_image = match job.old.image.as_deref() {
        Some(image) => docker
            .inspect_image(image)
            .await
            .ok()
            .and_then(|i| i.config),
        None => None,
    };
    let plan = carry::plan(
        &job.old,
        old_image.as_ref(),
        &job.image,
        job.carry,
        job.env.as_ref(),
    );
    let was_running = job
        .old
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    let temp = format!("{name}-update-{:08x}", rand::random::<u32>());

    let mut new_id: Option<String> = None;
    let mut stopped = false;
    let forward: Result<&'static str, String> = async {
        steps
            .record(
                (None, &temp),
                &format!("create new container {temp} from image {}", job.image),
            )
            .await?;
        let options = CreateContainerOptions {
            name: Some(temp.clone()),
            ..Default::default()
        };
        let created = docker
            .create_container(Some(options), plan.body.clone())
            .await
            .map_err(|e| format!("creating the new container failed: {e}"))?;
        let id = created.id;
        new_id = Some(id.clone());
        let new = (Some(id.as_str()), temp.as_str());
        for (network, endpoint) in &plan.more_networks {
            steps
                .record(
                    new,
                    &format!("connect new container {id} to network {network}"),
                )
                .await?;
            let request = bollard::models::NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(endpoint.clone()),
            };
            docker
                .connect_network(network, request)
                .await
                .map_err(|e| format!("connecting the new container to {network} failed: {e}"))?;
        }
        if !was_running {
            return Ok("created");
        }
        steps
            .record(old, &format!("stop old container {old_id}"))
            .await?;
        stopped = true;
        docker
            .stop_container(&old_id, None)
            .await
            .map_err(|e| format!("stopping the old container failed: {e}"))?;
        steps
            .record(new, &format!("start new container {id}"))
            .await?;
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| format!("starting the new container failed: {e}"))?;
        steps
            .record(new, &format!("wait until new container {id} is ready"))
            .await?;
        wait_ready(docker, &id, ctx.ready_timeout).await?;
        Ok("running")
    }
    .await;
    let status = match forward {
        Ok(status) => status,
        Err(error) => {
            return roll_back(
                ctx,
                &mut steps,
                &job,
                (new_id, &temp),
                stopped && was_running,
                error,
            )
            .await
        }
    };
    let id = new_id.clone().unwrap_or_default();
    // Both last steps are recorded before either is taken: once the old
    // container is removed there is no rollback.
    let records = async {
        steps
            .record(old, &format!("remove old container {old_id}"))
            .await?;
        steps
            .record(
                (Some(&id), &temp),
                &format!("rename new container {id} to {name}"),
            )
            .await
    }
    .await;
    if let Err(error) = records {
        return roll_back(ctx, &mut steps, &job, (new_id, &temp), was_running, error).await;
    }
    let remove = RemoveContainerOptions {
        v: false,
        force: false,
        link: false,
    };
    if let Err(e) = docker.remove_container(&old_id, Some(remove)).await {
        let error = format!("removing the old container failed: {e}");
        return roll_back(ctx, &mut steps, &job, (new_id, &temp), was_running, error).await;
    }
    let rename = RenameContainerOptions { name: name.clone() };
    if let Err(e) = docker.rename_container(&id, rename).await {
        return Outcome::Failed {
            new_id,
            error: format!(
                "the old container was removed, but renaming the new one ({id}, named {temp}) to {name} failed: {e}"
            ),
        };
    }
    Outcome::Done { new_id: id, status }
}

/// Remove the new container; start the old one again if it was running and
/// was stopped.
async fn roll_back(
    ctx: &Ctx,
    steps: &mut Steps<'_>,
    job: &Job,
    (new_id, temp): (Option<String>, &str),
    restart_old: bool,
    error: String,
) -> Outcome {
    let docker = &ctx.docker;
    let old_id = job.old.id.clone().unwrap_or_default();
    let name = super::container_name(&job.old);
    let mut problems = Vec::new();
    let note = |r: Result<(), String>| {
        if let Err(e) = r {
            tracing::error!(error = %e, container = %name, "a rollback step could not be recorded; it is taken anyway");
        }
    };
    if let Some(id) = &new_id {
        let r = steps
            .record(
                (Some(id), temp),
                &format!("roll back ({error}): remove new container {id}"),
            )
            .await;
        note(r);
        // `v`: the volumes the new container made for itself go with it; the
        // old container's, which it mounted by name, are in use and stay.
        let remove = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        if let Err(e) = docker.remove_container(id, Some(remove)).await {
            problems.push(format!("removing the new container {id} failed: {e}"));
        }
    }
    let running = match docker.inspect_container(&old_id, None).await {
        Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
        Err(_) => false,
    };
    if restart_old && !running {
        let r = steps
            .record(
                (Some(&old_id), &name),
                &format!("roll back ({error}): start old container {old_id}"),
            )
            .await;
        note(r);
        if let Err(e) = docker.start_container(&old_id, None).await {
            problems.push(format!(
                "starting the old container {old_id} again failed: {e}"
            ));
        }
    }
    if problems.is_empty() {
        Outcome::RolledBack { new_id, error }
    } else {
        Outcome::Failed {
            new_id,
            error: format!("{error}; the rollback failed too: {}", problems.join("; ")),
        }
    }
}

/// Running, and healthy when the container has a healthcheck (else still
/// running after [`SETTLE`]), within `timeout`; else why not.
pub async fn wait_ready(docker: &Docker, id: &str, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    let settle = SETTLE.min(timeout);
    loop {
        let c = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| format!("inspecting the new container failed: {e}"))?;
        let restarts = c.restart_count.unwrap_or(0);
        let state = c.state.unwrap_or_default();
        let code = state.exit_code.unwrap_or(0);
        let exited = matches!(
            state.status,
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
        );
        if exited || (restarts > 0 || state.restarting == Some(true)) {
            let how = if exited { "exited" } else { "restarted" };
            return Err(format!(
                "the new container {how} with code {code} before it was ready"
            ));
        }
        let running = state.status == Some(ContainerStateStatusEnum::RUNNING);
        let health = state.health.as_ref().and_then(|h| h.status);
        match health {
            Some(HealthStatusEnum::HEALTHY) if running => return Ok(()),
            Some(HealthStatusEnum::UNHEALTHY) => {
                let output = state
                    .health
                    .as_ref()
                    .and_then(|h| h.log.as_ref())
                    .and_then(|l| l.last())
                    .and_then(|r| r.output.clone())
                    .unwrap_or_default();
                return Err(format!(
                    "the new container is unhealthy (its healthcheck failed: {:?})",
                    output.trim()
                ));
            }
            Some(HealthStatusEnum::STARTING) => {}
            _ if running && start.elapsed() >= settle => return Ok(()),
            _ => {}
        }
        if start.elapsed() >= timeout {
            let what = match health {
                Some(HealthStatusEnum::STARTING) => "healthy",
                _ => "running",
            };
            return Err(format!(
                "the new container was not {what} within {:.1} s",
                timeout.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
