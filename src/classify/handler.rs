//! Which handler serves a route: the Docker daemon, or one of portcullis's
//! own admin and file API handlers.
//!
//! Why in the route table: the table that classifies a request also routes
//! it, so no second router (by string patterns, with catch-alls) can disagree
//! with the one the decision was made on.

/// Which handler serves a route: the daemon, or one of portcullis's own. The
/// admin and file APIs are routed by this, so the table that classifies a
/// request is also the one that routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Forwarded to the Docker daemon.
    Daemon,
    Admin(AdminOp),
    Files(FileOp),
    Agent(AgentOp),
}

/// The admin API's handlers, one per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    TrustList,
    TrustCreate,
    AuditQuery,
    TrustCheck,
    TrustGet,
    TrustPatch,
    TrustDelete,
    AuditVerify,
    /// `GET /api/v1/audit/stream`: records as JSON Lines, optionally followed.
    AuditStream,
    CallerList,
    CallerCreate,
    CallerGet,
    CallerDelete,
    TokenIssue,
    TokenRevoke,
    PolicyStatus,
}

/// The file API's handlers, one per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    List,
    Read,
    Write,
    Delete,
}

/// The agent controls' handlers (`/api/v1/containers/…` and `/api/v1/events`),
/// one per route: what an agent platform uses to run its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOp {
    /// `POST /api/v1/containers/{id}/update-image`: recreate on a new image.
    UpdateImage,
    /// `GET /api/v1/containers/{id}/env`.
    EnvGet,
    /// `PATCH /api/v1/containers/{id}/env`: recreate with a changed environment.
    EnvPatch,
    /// `GET /api/v1/containers/health`: every visible container.
    HealthSummary,
    /// `GET /api/v1/containers/{id}/health`.
    Health,
    /// `GET /api/v1/containers/{id}/stats`: one snapshot.
    Stats,
    /// `GET /api/v1/containers/{id}/logs`: Server-Sent Events.
    Logs,
    /// `GET /api/v1/events`: Server-Sent Events.
    Events,
}
