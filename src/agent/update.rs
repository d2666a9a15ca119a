//! Recreate a container on a new image or a changed environment, with
//! rollback: the old container is never lost. (Being written.)

use std::collections::HashSet;
use std::sync::Mutex;

use http::{Response, StatusCode};

use super::{Agents, Stages};
use crate::record::{Decided, Permit};
use crate::reply::{self, ProxyBody};

/// Containers (by id) with an update in progress.
#[derive(Debug, Default)]
pub struct InProgress(#[allow(dead_code)] Mutex<HashSet<String>>);

pub async fn update_image(
    _agents: &Agents,
    _permit: Permit,
    _stages: &Stages,
    _req: Decided<'_>,
) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: update-image is not built yet",
    )
}

pub async fn patch_env(
    _agents: &Agents,
    _permit: Permit,
    _stages: &Stages,
    _req: Decided<'_>,
) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: env patch is not built yet",
    )
}
