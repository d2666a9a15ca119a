//! The bodies of update-image and the env patch, read from the canonical
//! body the policy judged.
//!
//! Why from the canonical body: the reference the update runs must be the one
//! the policy judged (`decide::facts::update_image_reference`), so both read
//! the same value, decoded once by the inspect stage.

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::carry::{Carry, EnvChange};
use crate::decide::facts::update_image_reference;

/// The update-image body, as the policy saw it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateImageBody {
    image: Option<String>,
    tag: Option<String>,
    preserve_volumes: Option<bool>,
    preserve_networks: Option<bool>,
}

/// The env patch body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvPatchBody {
    set: Option<BTreeMap<String, String>>,
    unset: Option<Vec<String>>,
}

type Refusal = (StatusCode, String);

fn bad(message: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, message.into())
}

/// Whether a reference already names a tag (`:t` in its last path part) or
/// a digest (`@…`).
pub fn has_tag_or_digest(image: &str) -> bool {
    image.contains('@')
        || image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
}

/// The image reference to run, computed as the policy computed it, and
/// what to keep.
pub fn parse_update_image(canonical: &Value) -> Result<(String, Carry), Refusal> {
    if canonical.is_null() {
        return Err(bad(
            "portcullis: update-image needs a body {image, tag, preserveVolumes, preserveNetworks}",
        ));
    }
    let body: UpdateImageBody = serde_json::from_value(canonical.clone())
        .map_err(|e| bad(format!("portcullis: bad update-image body: {e}")))?;
    let image = body.image.unwrap_or_default();
    if image.is_empty() {
        return Err(bad("portcullis: update-image needs an image"));
    }
    let tag = body.tag.unwrap_or_default();
    if !tag.is_empty() && has_tag_or_digest(&image) {
        return Err(bad(format!(
            "portcullis: the image {image} already names a tag or digest; give no tag with it (tag {tag:?})"
        )));
    }
    let reference = update_image_reference(canonical)
        .ok_or_else(|| bad("portcullis: update-image needs an image"))?;
    let carry = Carry {
        volumes: body.preserve_volumes.unwrap_or(true),
        networks: body.preserve_networks.unwrap_or(true),
    };
    Ok((reference, carry))
}

/// The env patch: valid names, none both set and unset, something to do.
pub fn parse_env_patch(canonical: &Value) -> Result<EnvChange, Refusal> {
    if canonical.is_null() {
        return Err(bad(
            "portcullis: an env patch needs a body {set: {NAME: value}, unset: [NAME]}",
        ));
    }
    let body: EnvPatchBody = serde_json::from_value(canonical.clone())
        .map_err(|e| bad(format!("portcullis: bad env patch body: {e}")))?;
    let change = EnvChange {
        set: body.set.unwrap_or_default(),
        unset: body
            .unset
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeSet<_>>(),
    };
    for name in change.set.keys().chain(change.unset.iter()) {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(bad(format!(
                "portcullis: {name:?} is not an environment variable name (empty, or with '=')"
            )));
        }
        if change.set.contains_key(name) && change.unset.contains(name) {
            return Err(bad(format!("portcullis: {name} is both set and unset")));
        }
    }
    if change.set.is_empty() && change.unset.is_empty() {
        return Err(bad("portcullis: the env patch sets and unsets nothing"));
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Action;
    use crate::inspect::{decode, schema_for};
    use serde_json::json;

    #[test]
    fn the_reference_run_is_the_one_the_policy_judged() {
        let body = json!({"image": "app", "tag": "2"});
        let (reference, carry) = parse_update_image(&body).unwrap();
        assert_eq!(reference, "app:2");
        assert_eq!(Some(reference), update_image_reference(&body));
        assert!(carry.volumes && carry.networks);
        let (r, carry) =
            parse_update_image(&json!({"image": "reg:5000/app", "preserveNetworks": false}))
                .unwrap();
        assert_eq!(r, "reg:5000/app");
        assert!(carry.volumes && !carry.networks);
        assert_eq!(
            super::super::recreate::pull_reference(&r),
            "reg:5000/app:latest"
        );
        assert_eq!(
            super::super::recreate::pull_reference("app@sha256:ab"),
            "app@sha256:ab"
        );
    }

    #[test]
    fn bad_update_bodies_are_refused() {
        for body in [
            Value::Null,
            json!({}),
            json!({"image": ""}),
            json!({"image": "app:1", "tag": "2"}),
            json!({"image": "app@sha256:ab", "tag": "2"}),
            json!({"image": "app", "tag": "2", "force": true}),
            json!({"image": 7}),
        ] {
            let e = parse_update_image(&body).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.1.starts_with("portcullis: "), "{}", e.1);
        }
        // A tag given empty is no tag.
        assert_eq!(
            parse_update_image(&json!({"image": "app:1", "tag": ""}))
                .unwrap()
                .0,
            "app:1"
        );
    }

    #[test]
    fn env_patches_are_validated() {
        let c = parse_env_patch(&json!({"set": {"A": "1"}, "unset": ["B", "B"]})).unwrap();
        assert_eq!(c.set.len(), 1);
        assert_eq!(c.unset.len(), 1);
        for body in [
            Value::Null,
            json!({}),
            json!({"set": {"": "x"}}),
            json!({"set": {"A=B": "x"}}),
            json!({"set": {"A": "1"}, "unset": ["A"]}),
            json!({"set": {"A": 1}}),
            json!({"set": {"A": "1"}, "other": 1}),
        ] {
            assert_eq!(
                parse_env_patch(&body).unwrap_err().0,
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
    }

    /// The policy and the handler read the same canonical body, under the
    /// names the API documents (Go-style, a key matches case-insensitively).
    #[test]
    fn the_canonical_body_keeps_the_documented_names() {
        let schema = schema_for(Action::CONTAINER_UPDATE_IMAGE);
        let bytes = br#"{"Image":"app","tag":"v2","preservevolumes":false}"#;
        let canonical = decode(bytes, schema).unwrap();
        assert_eq!(
            update_image_reference(&canonical).as_deref(),
            Some("app:v2")
        );
        let (reference, carry) = parse_update_image(&canonical).unwrap();
        assert_eq!(reference, "app:v2");
        assert!(!carry.volumes && carry.networks);
        let unknown = decode(br#"{"image":"app","force":true}"#, schema).unwrap();
        assert!(parse_update_image(&unknown).is_err(), "{unknown}");
        let schema = schema_for(Action::CONTAINER_ENV_UPDATE);
        let canonical = decode(br#"{"Set":{"A":"1"},"unset":["B"]}"#, schema).unwrap();
        let change = parse_env_patch(&canonical).unwrap();
        assert_eq!(change.set["A"], "1");
        assert!(change.unset.contains("B"));
    }
}
