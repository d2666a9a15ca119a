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

use crate::listen::{Connection, Peer};

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
    /// portcullis itself, acting on its own (the watchdog): no connection.
    BuiltIn { component: String },
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

/// Where caller names come from besides the listener: the operator's uid map
/// and issued tokens. Implemented by the trust store.
pub trait Credentials: Send + Sync {
    /// The caller a unix uid is mapped to.
    fn caller_for_uid(&self, uid: u32) -> Option<String>;
    /// Verify a bearer token's secret: the caller and the token's id.
    fn verify_token(&self, secret: &str) -> Option<(String, String)>;
}

/// Why a request is refused before it is even classified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifyError {
    #[error("the Authorization header is not a valid portcullis bearer token")]
    BadToken,
}

/// Resolve the caller of one request and remove the credential header so it
/// never reaches the daemon.
pub fn identify(
    conn: &Connection,
    headers: &mut http::HeaderMap,
    admin_uids: &[u32],
    credentials: &dyn Credentials,
) -> Result<Caller, IdentifyError> {
    let authorization = headers.remove(http::header::AUTHORIZATION);
    if let Some(name) = &conn.pinned_caller {
        return Ok(Caller {
            name: name.clone(),
            admin: false,
            identified: true,
            via: Identification::Listener {
                listener: conn.listener.clone(),
            },
        });
    }
    if let Some(value) = authorization {
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(IdentifyError::BadToken)?;
        let (name, token_id) = credentials
            .verify_token(secret)
            .ok_or(IdentifyError::BadToken)?;
        return Ok(Caller {
            name,
            admin: false,
            identified: true,
            via: Identification::Token { token_id },
        });
    }
    match &conn.peer {
        Peer::Tls {
            common_name: Some(cn),
            ..
        } => Ok(Caller {
            name: cn.clone(),
            admin: false,
            identified: true,
            via: Identification::Certificate {
                common_name: cn.clone(),
            },
        }),
        Peer::Unix { uid, gid, pid } => {
            let via = Identification::PeerCredentials {
                uid: *uid,
                gid: *gid,
                pid: *pid,
            };
            if admin_uids.contains(uid) {
                return Ok(Caller {
                    name: "admin".into(),
                    admin: true,
                    identified: true,
                    via,
                });
            }
            match credentials.caller_for_uid(*uid) {
                Some(name) => Ok(Caller {
                    name,
                    admin: false,
                    identified: true,
                    via,
                }),
                None => Ok(Caller {
                    via,
                    ..Caller::unidentified(&format!("uid {uid}"))
                }),
            }
        }
        Peer::Tls { addr, .. } | Peer::Tcp { addr } => Ok(Caller::unidentified(&addr.to_string())),
    }
}

impl Identification {
    /// The one-line form kept in audit records: never a secret.
    pub fn summary(&self) -> String {
        match self {
            Identification::Listener { listener } => format!("listener {listener}"),
            Identification::PeerCredentials { uid, gid, pid } => match pid {
                Some(pid) => format!("uid {uid} gid {gid} pid {pid}"),
                None => format!("uid {uid} gid {gid}"),
            },
            Identification::Token { token_id } => format!("token {token_id}"),
            Identification::Certificate { common_name } => format!("cert CN={common_name}"),
            Identification::Unidentified => "unidentified".into(),
            Identification::BuiltIn { component } => format!("built-in {component}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Credentials for Fixed {
        fn caller_for_uid(&self, uid: u32) -> Option<String> {
            (uid == 1000).then(|| "ci".to_string())
        }
        fn verify_token(&self, secret: &str) -> Option<(String, String)> {
            (secret == "s3cret").then(|| ("dash".to_string(), "tok1".to_string()))
        }
    }

    fn unix(uid: u32, pinned: Option<&str>) -> Connection {
        Connection {
            id: 1,
            listener: "unix:///t.sock".into(),
            pinned_caller: pinned.map(str::to_string),
            peer: Peer::Unix {
                uid,
                gid: uid,
                pid: Some(7),
            },
        }
    }

    #[test]
    fn sources_in_precedence_order_and_header_removed() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        let c = identify(&unix(1000, Some("traefik")), &mut h, &[0], &Fixed).unwrap();
        assert_eq!(c.name, "traefik");
        assert!(
            h.get("authorization").is_none(),
            "credential header must never be forwarded"
        );

        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        let c = identify(&unix(0, None), &mut h, &[0], &Fixed).unwrap();
        assert_eq!((c.name.as_str(), c.admin), ("dash", false));

        let c = identify(&unix(0, None), &mut http::HeaderMap::new(), &[0], &Fixed).unwrap();
        assert!(c.admin && c.identified);
        let c = identify(&unix(1000, None), &mut http::HeaderMap::new(), &[0], &Fixed).unwrap();
        assert_eq!(
            (c.name.as_str(), c.admin, c.identified),
            ("ci", false, true)
        );
        let c = identify(&unix(4242, None), &mut http::HeaderMap::new(), &[0], &Fixed).unwrap();
        assert!(!c.identified && !c.admin);
    }

    #[test]
    fn a_bad_token_is_refused_not_ignored() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(
            identify(&unix(0, None), &mut h, &[0], &Fixed),
            Err(IdentifyError::BadToken)
        );
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Basic eDp5".parse().unwrap());
        assert_eq!(
            identify(&unix(0, None), &mut h, &[0], &Fixed),
            Err(IdentifyError::BadToken)
        );
    }

    #[test]
    fn no_header_names_a_caller() {
        let mut h = http::HeaderMap::new();
        h.insert("x-portcullis-caller", "admin".parse().unwrap());
        h.insert("x-forwarded-user", "admin".parse().unwrap());
        let c = identify(&unix(4242, None), &mut h, &[0], &Fixed).unwrap();
        assert!(!c.identified && !c.admin);
    }
}
