//! `GET /api/v1/containers/{id}/env`. (Being written.)

use http::{Response, StatusCode};

use super::{Agents, Stages};
use crate::record::Decided;
use crate::reply::{self, ProxyBody};

pub async fn get(_agents: &Agents, _stages: &Stages, _req: Decided<'_>) -> Response<ProxyBody> {
    reply::error(
        StatusCode::NOT_IMPLEMENTED,
        "portcullis: env is not built yet",
    )
}
