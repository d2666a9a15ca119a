//! The route table: every route the Docker daemon registers, plus portcullis's
//! own admin and file API, each with its canonical action.
//!
//! (Skeleton: the classify helper fills in the table and the matcher.)

use super::{path, Action, Classified, ClassifyError, Resource, ResourceKind, VersionRange};

/// Who serves a classified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Forwarded to the Docker daemon.
    Docker,
    /// portcullis's admin API (`/api/v1/trust`, callers, audit, policy).
    Admin,
    /// portcullis's file API (`/api/v1/containers/{id}/files…`).
    Files,
}

/// How the request body is treated before forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// The route takes no body the daemon reads; any body is forwarded as is.
    Ignored,
    /// The body grants power: read it whole (bounded), decode it as the daemon
    /// does, show it to the policy, forward exactly those bytes.
    Json,
    /// `application/x-www-form-urlencoded` may carry parameters that override the
    /// query string (e.g. `images/create`): read and merge it, else like `Ignored`.
    Form,
    /// A tar stream (`PUT /containers/{id}/archive`): its entries are checked.
    Tar,
    /// A large payload the policy does not read (build context, image load):
    /// streamed without buffering.
    Stream,
}

/// One row of the table.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    /// The daemon's pattern, e.g. `/containers/{name:.*}/start`.
    pub pattern: &'static str,
    pub action: &'static str,
    pub kind: ResourceKind,
    pub body: BodyRule,
    /// The daemon takes the connection over (attach, exec start).
    pub hijack: bool,
    /// An opaque tunnel (`/session`, `/grpc`, `attach/ws`): refused unless the
    /// policy explicitly allows the action.
    pub tunnel: bool,
    pub service: Service,
}

pub static ROUTES: &[Route] = &[];

pub(super) fn classify(
    method: &str,
    path_and_query: &str,
    versions: &VersionRange,
) -> Result<Classified, ClassifyError> {
    let _ = (versions, path::form_get(&[], ""));
    let _ = (
        Action("x"),
        Resource {
            kind: ResourceKind::System,
            name: None,
        },
    );
    Err(ClassifyError::UnknownRoute {
        method: method.to_string(),
        path: path_and_query.to_string(),
    })
}
