//! Logs and events as Server-Sent Events. (Being written.)

use http::{Response, StatusCode};

use super::{Agents, Stages};
use crate::record::Decided;
use crate::reply::{self, ProxyBody};

pub async fn logs(_agents: &Agents, _stages: &Stages, _req: Decided<'_>) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: logs are not built yet",
    )
}

pub async fn events(_agents: &Agents, _stages: &Stages, _req: Decided<'_>) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: events are not built yet",
    )
}
