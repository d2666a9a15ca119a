//! Health and stats. (Being written.)

use http::{Response, StatusCode};

use super::{Agents, Stages};
use crate::record::Decided;
use crate::reply::{self, ProxyBody};

pub async fn summary(_agents: &Agents, _stages: &Stages, _req: Decided<'_>) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: health is not built yet",
    )
}

pub async fn one(_agents: &Agents, _stages: &Stages, _req: Decided<'_>) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: health is not built yet",
    )
}

pub async fn stats(_agents: &Agents, _stages: &Stages, _req: Decided<'_>) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: stats is not built yet",
    )
}
