//! Filter: what a caller may see of an allowed response.
//!
//! Why: a caller trusted only with `web-*` must not learn from `docker ps` or
//! `docker events` that `db-1` exists, and a caller that may inspect a
//! container does not thereby get its secrets. Each filter takes a visibility
//! predicate from the decide stage; none decides by itself.

mod download;
mod response;

pub use crate::resolve::own_name;
pub use response::{respond, Context};

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use crate::reply::{BoxError, ProxyBody};
use crate::resolve::Target;

/// A container as a list entry or an event describes it.
pub fn target_of_summary(entry: &Value) -> Target {
    let name = own_name(
        entry
            .get("Names")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    Target {
        reference: name.clone(),
        id: entry.get("Id").and_then(Value::as_str).map(str::to_string),
        name,
        labels: string_map(entry.get("Labels")),
        image: entry
            .get("Image")
            .and_then(Value::as_str)
            .map(str::to_string),
        exists: true,
        kind: Some(crate::classify::ResourceKind::Container),
        mounts: Vec::new(),
        from_cache: false,
        referenced: Vec::new(),
        volumes: Vec::new(),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /containers/json`: keep only the containers the caller may inspect.
/// An unparsable list is an error, never passed through unfiltered.
pub fn container_list(body: &[u8], visible: &dyn Fn(&Target) -> bool) -> Result<Vec<u8>, String> {
    let list: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| format!("container list: {e}"))?;
    let kept: Vec<Value> = list
        .into_iter()
        .filter(|c| visible(&target_of_summary(c)))
        .collect();
    serde_json::to_vec(&kept).map_err(|e| e.to_string())
}

/// The container an event is about, if it is about one.
pub fn target_of_event(event: &Value) -> Option<Target> {
    let actor = event.get("Actor")?;
    let attrs = actor.get("Attributes").and_then(Value::as_object);
    let attr = |k: &str| {
        attrs
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let kind = event.get("Type").and_then(Value::as_str).unwrap_or("");
    let (id, name) = match kind {
        "container" => (
            actor.get("ID").and_then(Value::as_str).map(str::to_string),
            attr("name"),
        ),
        // Network connect/disconnect name the container in an attribute.
        "network" => (attr("container"), None),
        _ => return None,
    };
    id.as_ref()?;
    // Container events carry the container's labels as plain attributes.
    let labels = if kind == "container" {
        attrs
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "name" | "image" | "exitCode" | "signal")
                    })
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    Some(Target {
        reference: id.clone(),
        id,
        name,
        labels,
        image: attr("image"),
        exists: true,
        kind: Some(crate::classify::ResourceKind::Container),
        mounts: Vec::new(),
        from_cache: false,
        referenced: Vec::new(),
        volumes: Vec::new(),
    })
}

/// `GET /events`: drop the events about containers the caller may not see,
/// without buffering the stream (events are newline-delimited JSON).
pub fn event_stream(
    body: Incoming,
    visible: impl Fn(&Target) -> bool + Send + Sync + 'static,
    resolve_unknown: impl Fn(&str) -> Option<Target> + Send + Sync + 'static,
) -> ProxyBody {
    let mut pending = BytesMut::new();
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| Box::new(e) as BoxError)?;
        pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(pos + 1);
            let keep = match serde_json::from_slice::<Value>(&line) {
                Ok(event) => match target_of_event(&event) {
                    None => true,
                    Some(mut t) => {
                        // Network events name only the id: complete from the cache.
                        if t.name.is_none() {
                            if let Some(known) = t.id.as_deref().and_then(&resolve_unknown) {
                                t = known;
                            }
                        }
                        visible(&t)
                    }
                },
                // Fail closed on what we cannot read.
                Err(_) => false,
            };
            if keep {
                out.extend_from_slice(&line);
            }
        }
        Ok::<_, BoxError>(Frame::data(out.freeze()))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// Environment variable names whose values are secrets: the one rule for
/// `docker inspect` ([`redact_inspect`]) and the agent controls' env read.
/// It errs towards redacting (`MONKEY` contains `KEY`).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "SECRET",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
        "AUTH",
    ]
    .iter()
    .any(|s| upper.contains(s))
        // `DB_PASS`, `SMTP_PASS`, `PASS_FILE`: not every name containing
        // `PASS` (`PASSENGER_…`), but a `PASS` word.
        || upper.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "PASS")
}

/// What a secret value is replaced with.
pub const REDACTED: &str = "<redacted by portcullis>";

/// `GET /containers/{id}/json`: replace secret-looking environment values.
pub fn redact_inspect(body: &[u8]) -> Result<Bytes, String> {
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| format!("container inspect: {e}"))?;
    if let Some(env) = v.pointer_mut("/Config/Env").and_then(Value::as_array_mut) {
        for item in env.iter_mut() {
            if let Some(s) = item.as_str() {
                if let Some((k, _)) = s.split_once('=') {
                    if looks_secret(k) {
                        *item = Value::String(format!("{k}={REDACTED}"));
                    }
                }
            }
        }
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_keeps_only_visible_containers() {
        let body = json!([
            {"Id": "a", "Names": ["/web-1"], "Labels": {"tier": "web"}, "Image": "img"},
            {"Id": "b", "Names": ["/db-1"], "Labels": {}, "Image": "img"}
        ])
        .to_string();
        let out = container_list(body.as_bytes(), &|t| {
            t.name.as_deref().unwrap().starts_with("web-")
        })
        .unwrap();
        let v: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["Id"], "a");
        assert!(container_list(b"not json", &|_| true).is_err());
    }

    #[test]
    fn alias_names_never_stand_for_a_container() {
        let list = json!([
            {"Id": "a", "Names": ["/web-1/db", "/secret-db"], "Labels": {}, "Image": "img"},
            {"Id": "b", "Names": ["/web-1"], "Labels": {}, "Image": "img"}
        ]);
        let out = container_list(list.to_string().as_bytes(), &|t| {
            t.name.as_deref().unwrap().starts_with("web-")
        })
        .unwrap();
        let kept: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["Id"], "b");
        assert_eq!(
            target_of_summary(&list[0]).name.as_deref(),
            Some("secret-db")
        );
    }

    #[test]
    fn events_name_their_container() {
        let e = json!({"Type": "container", "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "web-1", "image": "busybox", "tier": "web"}}});
        let t = target_of_event(&e).unwrap();
        assert_eq!(t.name.as_deref(), Some("web-1"));
        assert_eq!(t.labels.get("tier").map(String::as_str), Some("web"));
        let n = json!({"Type": "network", "Action": "connect",
            "Actor": {"ID": "net", "Attributes": {"container": "abc", "name": "bridge"}}});
        assert_eq!(target_of_event(&n).unwrap().id.as_deref(), Some("abc"));
        assert!(target_of_event(&json!({"Type": "image", "Actor": {"ID": "x"}})).is_none());
    }

    #[test]
    fn secrets_are_redacted() {
        let body = json!({"Config": {"Env": ["PATH=/bin", "DB_PASSWORD=hunter2", "API_TOKEN=x"]}})
            .to_string();
        let out: Value = serde_json::from_slice(&redact_inspect(body.as_bytes()).unwrap()).unwrap();
        let env = out["Config"]["Env"].as_array().unwrap();
        assert_eq!(env[0], "PATH=/bin");
        assert!(!env[1].as_str().unwrap().contains("hunter2"));
        assert!(!env[2].as_str().unwrap().contains("=x"));
        for name in [
            "DB_PASS",
            "SMTP_PASS",
            "GH_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "X_PRIVATE_PEM",
            "GOOGLE_CREDENTIALS",
            "root_password",
            "PASS",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["PATH", "HOME", "PASSENGER_MODE", "COMPASS_URL", "LANG"] {
            assert!(!looks_secret(name), "{name}");
        }
    }
}
