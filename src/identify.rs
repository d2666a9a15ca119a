//! Identify: who is calling. Every request resolves to a [`Caller`].
//!
//! Why several sources: a unix socket gives the peer's uid for free, a TCP
//! client has only a token or a client certificate, and an operator may
//! dedicate a socket to one service (every connection on it *is* "traefik").
//! Precedence, strongest first: a pinned listener; a bearer token; a client
//! certificate's CN; the unix peer's uid. A token that does not verify is a
//! refusal, never a fall-back to a weaker source. The credential header is
//! removed before forwarding, and no other header can name a caller.

use serde::Serialize;

/// How a caller was established, for the policy and the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Identification {
    /// The listener is pinned to one caller.
    Listener { listener: String },
    /// The unix peer's credentials (SO_PEERCRED).
    PeerCredentials {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    /// A bearer token; `token_id` names the token, never its secret.
    Token { token_id: String },
    /// A verified TLS client certificate.
    Certificate { common_name: String },
    /// Nothing identified the caller.
    Unidentified,
}

/// The narrow type that leaves this stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The service name the trust data speaks of, e.g. `traefik`.
    pub name: String,
    /// The built-in administrator: the process owner or root on the unix socket.
    pub admin: bool,
    /// Whether anything identified the caller at all.
    pub identified: bool,
    pub via: Identification,
}

impl Caller {
    pub fn unidentified(hint: &str) -> Self {
        Caller {
            name: format!("unidentified({hint})"),
            admin: false,
            identified: false,
            via: Identification::Unidentified,
        }
    }
}
