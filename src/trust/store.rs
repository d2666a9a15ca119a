//! The trust store: relationships, callers and their credentials in sled.
//!
//! Why sled transactions everywhere: a relationship lives in two trees (by id,
//! and the (caller, target) pair that must stay unique) and every write bumps
//! the trust revision; a crash between those writes must not leave a pair
//! without its relationship or a change without a new revision.
//!
//! Tokens are shown once: only their SHA-256 is stored, and verification
//! compares hashes in constant time.

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{now_rfc3339, TrustError, TrustRelationship, TrustSpec};

const REVISION_KEY: &[u8] = b"revision";
const TOKEN_PREFIX: &str = "pcl_";

/// A named caller and the unix uids that identify it on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerRecord {
    pub name: String,
    pub uids: Vec<u32>,
    pub created_at: String,
    /// Token ids (never secrets).
    #[serde(default)]
    pub tokens: Vec<String>,
}

/// A stored token: who it belongs to and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub caller: String,
    /// Hex SHA-256 of the full secret.
    pub sha256: String,
    pub created_at: String,
}

/// Every relationship at one revision (what the engine compiles).
#[derive(Debug, Clone, Default)]
pub struct TrustSnapshot {
    pub revision: u64,
    pub relationships: Vec<TrustRelationship>,
}

/// Handle on the trust trees (cheap to clone: sled trees are shared).
#[derive(Clone)]
pub struct TrustStore {
    relationships: sled::Tree,
    pairs: sled::Tree,
    meta: sled::Tree,
    callers: sled::Tree,
    uids: sled::Tree,
    tokens: sled::Tree,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn pair_key(caller: &str, target: &str) -> Vec<u8> {
    let mut key = caller.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(target.as_bytes());
    key
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compare without an early exit, so timing says nothing about the prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, TrustError> {
    serde_json::from_slice(bytes).map_err(|e| TrustError::Corrupt(format!("{what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn unwrap_tx(e: TransactionError<TrustError>) -> TrustError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => TrustError::Storage(e),
    }
}

fn abort(e: TrustError) -> ConflictableTransactionError<TrustError> {
    ConflictableTransactionError::Abort(e)
}

fn next_revision(
    meta: &sled::transaction::TransactionalTree,
) -> Result<u64, ConflictableTransactionError<TrustError>> {
    let current = meta
        .get(REVISION_KEY)?
        .map(|v| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&v[..8.min(v.len())]);
            u64::from_be_bytes(bytes)
        })
        .unwrap_or(0);
    let next = current + 1;
    meta.insert(REVISION_KEY, &next.to_be_bytes())?;
    Ok(next)
}

impl TrustStore {
    /// Open (or create) the `trust_*` trees in `db`.
    pub fn open(db: &sled::Db) -> Result<TrustStore, TrustError> {
        Ok(TrustStore {
            relationships: db.open_tree("trust_relationships")?,
            pairs: db.open_tree("trust_pairs")?,
            meta: db.open_tree("trust_meta")?,
            callers: db.open_tree("trust_callers")?,
            uids: db.open_tree("trust_uids")?,
            tokens: db.open_tree("trust_tokens")?,
        })
    }

    /// The trust revision: increases with every relationship write.
    pub fn revision(&self) -> Result<u64, TrustError> {
        Ok(self
            .meta
            .get(REVISION_KEY)?
            .map(|v| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&v[..8.min(v.len())]);
                u64::from_be_bytes(bytes)
            })
            .unwrap_or(0))
    }

    pub fn list(&self) -> Result<Vec<TrustRelationship>, TrustError> {
        self.relationships
            .iter()
            .map(|entry| {
                let (_, value) = entry?;
                decode("relationship", &value)
            })
            .collect()
    }

    /// Every relationship with the revision it was read at, consistently.
    pub fn snapshot(&self) -> Result<TrustSnapshot, TrustError> {
        // Read the revision before and after: retry if a write slipped in.
        loop {
            let before = self.revision()?;
            let relationships = self.list()?;
            if self.revision()? == before {
                return Ok(TrustSnapshot {
                    revision: before,
                    relationships,
                });
            }
        }
    }

    pub fn get(&self, id: &str) -> Result<TrustRelationship, TrustError> {
        match self.relationships.get(id.as_bytes())? {
            Some(v) => decode("relationship", &v),
            None => Err(TrustError::NotFound(id.to_string())),
        }
    }

    /// Create from a client's JSON body (validated; nothing stored on error).
    pub fn create_json(&self, body: &Value) -> Result<TrustRelationship, TrustError> {
        self.create(TrustSpec::from_json(body)?)
    }

    pub fn create(&self, spec: TrustSpec) -> Result<TrustRelationship, TrustError> {
        spec.validate()?;
        let now = now_rfc3339();
        let relationship = TrustRelationship {
            id: random_hex(16),
            spec: spec.normalized(),
            created_at: now.clone(),
            updated_at: now,
        };
        let key = pair_key(
            &relationship.spec.caller_service,
            &relationship.spec.target_container,
        );
        (&self.relationships, &self.pairs, &self.meta)
            .transaction(|(rels, pairs, meta)| {
                if let Some(existing) = pairs.get(&key)? {
                    return Err(abort(TrustError::Duplicate {
                        caller: relationship.spec.caller_service.clone(),
                        target: relationship.spec.target_container.clone(),
                        existing_id: String::from_utf8_lossy(&existing).into_owned(),
                    }));
                }
                pairs.insert(key.as_slice(), relationship.id.as_bytes())?;
                rels.insert(relationship.id.as_bytes(), encode(&relationship))?;
                next_revision(meta)?;
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.relationships.flush()?;
        Ok(relationship)
    }

    /// Apply a partial update; the merged relationship is validated as a whole.
    pub fn patch(&self, id: &str, patch: &Value) -> Result<TrustRelationship, TrustError> {
        let current = self.get(id)?;
        let spec = current.spec.patched(patch)?.normalized();
        let updated = TrustRelationship {
            id: current.id.clone(),
            spec,
            created_at: current.created_at.clone(),
            updated_at: now_rfc3339(),
        };
        let old_key = pair_key(&current.spec.caller_service, &current.spec.target_container);
        let new_key = pair_key(&updated.spec.caller_service, &updated.spec.target_container);
        (&self.relationships, &self.pairs, &self.meta)
            .transaction(|(rels, pairs, meta)| {
                let stored = rels
                    .get(id.as_bytes())?
                    .ok_or_else(|| abort(TrustError::NotFound(id.to_string())))?;
                if stored.as_ref() != encode(&current).as_slice() {
                    // Changed under us: refuse rather than overwrite blindly.
                    return Err(abort(TrustError::InvalidValue {
                        field: "id".into(),
                        message: "the relationship changed concurrently; retry".into(),
                    }));
                }
                if new_key != old_key {
                    if let Some(existing) = pairs.get(&new_key)? {
                        return Err(abort(TrustError::Duplicate {
                            caller: updated.spec.caller_service.clone(),
                            target: updated.spec.target_container.clone(),
                            existing_id: String::from_utf8_lossy(&existing).into_owned(),
                        }));
                    }
                    pairs.remove(old_key.as_slice())?;
                    pairs.insert(new_key.as_slice(), id.as_bytes())?;
                }
                rels.insert(id.as_bytes(), encode(&updated))?;
                next_revision(meta)?;
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.relationships.flush()?;
        Ok(updated)
    }

    /// Revoke a relationship.
    pub fn delete(&self, id: &str) -> Result<TrustRelationship, TrustError> {
        let current = self.get(id)?;
        let key = pair_key(&current.spec.caller_service, &current.spec.target_container);
        (&self.relationships, &self.pairs, &self.meta)
            .transaction(|(rels, pairs, meta)| {
                if rels.remove(id.as_bytes())?.is_none() {
                    return Err(abort(TrustError::NotFound(id.to_string())));
                }
                pairs.remove(key.as_slice())?;
                next_revision(meta)?;
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.relationships.flush()?;
        Ok(current)
    }

    // --- callers and credentials -------------------------------------------

    pub fn create_caller(&self, name: &str, uids: Vec<u32>) -> Result<CallerRecord, TrustError> {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            return Err(TrustError::InvalidValue {
                field: "name".into(),
                message: format!("{name:?} is not a caller name (non-empty, no spaces)"),
            });
        }
        let record = CallerRecord {
            name: name.to_string(),
            uids,
            created_at: now_rfc3339(),
            tokens: Vec::new(),
        };
        (&self.callers, &self.uids)
            .transaction(|(callers, uid_tree)| {
                if callers.get(name.as_bytes())?.is_some() {
                    return Err(abort(TrustError::CallerExists(name.to_string())));
                }
                for uid in &record.uids {
                    if let Some(owner) = uid_tree.get(uid.to_be_bytes())? {
                        return Err(abort(TrustError::UidTaken {
                            uid: *uid,
                            caller: String::from_utf8_lossy(&owner).into_owned(),
                        }));
                    }
                    uid_tree.insert(&uid.to_be_bytes(), name.as_bytes())?;
                }
                callers.insert(name.as_bytes(), encode(&record))?;
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.callers.flush()?;
        Ok(record)
    }

    pub fn get_caller(&self, name: &str) -> Result<CallerRecord, TrustError> {
        match self.callers.get(name.as_bytes())? {
            Some(v) => decode("caller", &v),
            None => Err(TrustError::UnknownCaller(name.to_string())),
        }
    }

    pub fn list_callers(&self) -> Result<Vec<CallerRecord>, TrustError> {
        self.callers
            .iter()
            .map(|entry| decode("caller", &entry?.1))
            .collect()
    }

    /// Remove a caller, its uids and its tokens.
    pub fn delete_caller(&self, name: &str) -> Result<(), TrustError> {
        let record = self.get_caller(name)?;
        (&self.callers, &self.uids, &self.tokens)
            .transaction(|(callers, uid_tree, tokens)| {
                callers.remove(name.as_bytes())?;
                for uid in &record.uids {
                    uid_tree.remove(&uid.to_be_bytes())?;
                }
                for token in &record.tokens {
                    tokens.remove(token.as_bytes())?;
                }
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.callers.flush()?;
        Ok(())
    }

    /// The caller a unix uid belongs to.
    pub fn caller_for_uid(&self, uid: u32) -> Result<Option<String>, TrustError> {
        Ok(self
            .uids
            .get(uid.to_be_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Issue a bearer token: returns `(token_id, secret)`. The secret is not
    /// stored and cannot be shown again.
    pub fn issue_token(&self, caller: &str) -> Result<(String, String), TrustError> {
        let token_id = random_hex(8);
        let secret = format!("{TOKEN_PREFIX}{token_id}_{}", random_hex(32));
        let token = TokenRecord {
            id: token_id.clone(),
            caller: caller.to_string(),
            sha256: sha256_hex(&secret),
            created_at: now_rfc3339(),
        };
        (&self.callers, &self.tokens)
            .transaction(|(callers, tokens)| {
                let mut record: CallerRecord = match callers.get(caller.as_bytes())? {
                    Some(v) => decode("caller", &v).map_err(abort)?,
                    None => return Err(abort(TrustError::UnknownCaller(caller.to_string()))),
                };
                record.tokens.push(token_id.clone());
                callers.insert(caller.as_bytes(), encode(&record))?;
                tokens.insert(token_id.as_bytes(), encode(&token))?;
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.tokens.flush()?;
        Ok((token_id, secret))
    }

    /// `(caller, token_id)` for a valid secret; `None` for anything else.
    pub fn verify_token(&self, secret: &str) -> Option<(String, String)> {
        let rest = secret.strip_prefix(TOKEN_PREFIX)?;
        let (token_id, _) = rest.split_once('_')?;
        let stored = self.tokens.get(token_id.as_bytes()).ok()??;
        let record: TokenRecord = decode("token", &stored).ok()?;
        let presented = sha256_hex(secret);
        constant_time_eq(presented.as_bytes(), record.sha256.as_bytes())
            .then_some((record.caller, record.id))
    }

    /// Revoke one token of a caller.
    pub fn revoke_token(&self, caller: &str, token_id: &str) -> Result<(), TrustError> {
        (&self.callers, &self.tokens)
            .transaction(|(callers, tokens)| {
                let stored = tokens
                    .get(token_id.as_bytes())?
                    .ok_or_else(|| abort(TrustError::UnknownToken(token_id.to_string())))?;
                let token: TokenRecord = decode("token", &stored).map_err(abort)?;
                if token.caller != caller {
                    return Err(abort(TrustError::UnknownToken(token_id.to_string())));
                }
                tokens.remove(token_id.as_bytes())?;
                if let Some(v) = callers.get(caller.as_bytes())? {
                    let mut record: CallerRecord = decode("caller", &v).map_err(abort)?;
                    record.tokens.retain(|t| t != token_id);
                    callers.insert(caller.as_bytes(), encode(&record))?;
                }
                Ok(())
            })
            .map_err(unwrap_tx)?;
        self.tokens.flush()?;
        Ok(())
    }

    /// Stored token records (hashes only), for audits and tests.
    pub fn token_records(&self) -> Result<BTreeMap<String, TokenRecord>, TrustError> {
        self.tokens
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("token", &v)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> TrustStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        TrustStore::open(&db).unwrap()
    }

    #[test]
    fn crud_and_revision() {
        let s = store();
        assert_eq!(s.revision().unwrap(), 0);
        let r = s
            .create_json(
                &json!({"caller_service": "ci", "target_container": "web-*", "can_start": true}),
            )
            .unwrap();
        assert_eq!(r.id.len(), 32);
        assert!(r.id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(s.revision().unwrap(), 1);
        assert_eq!(s.get(&r.id).unwrap(), r);
        let p = s.patch(&r.id, &json!({"can_exec": true})).unwrap();
        assert!(p.spec.can_exec && p.spec.can_start);
        assert_eq!(p.created_at, r.created_at);
        assert_eq!(s.revision().unwrap(), 2);
        assert_eq!(s.list().unwrap().len(), 1);
        s.delete(&r.id).unwrap();
        assert!(matches!(s.get(&r.id), Err(TrustError::NotFound(_))));
        assert_eq!(s.revision().unwrap(), 3);
        // The pair is free again.
        s.create_json(&json!({"caller_service": "ci", "target_container": "web-*"}))
            .unwrap();
    }

    #[test]
    fn invalid_writes_change_nothing() {
        let s = store();
        let r = s
            .create_json(&json!({"caller_service": "ci", "target_container": "web"}))
            .unwrap();
        let before = (s.revision().unwrap(), s.list().unwrap());
        let dup = s
            .create_json(&json!({"caller_service": "ci", "target_container": "web"}))
            .unwrap_err();
        assert!(
            matches!(dup, TrustError::Duplicate { ref existing_id, .. } if *existing_id == r.id)
        );
        assert_eq!(dup.http_status(), 400);
        for bad in [
            json!({"bogus": 1}),
            json!({"file_write_paths": ["/a/[b"]}),
            json!({"expires_at": "2024-13-01"}),
        ] {
            let err = s.patch(&r.id, &bad).unwrap_err();
            assert_eq!(err.http_status(), 400, "{err}");
        }
        // Patching into an existing pair is a duplicate too.
        let other = s
            .create_json(&json!({"caller_service": "ci", "target_container": "db"}))
            .unwrap();
        let before_dup = s.revision().unwrap();
        assert!(matches!(
            s.patch(&other.id, &json!({"target_container": "web"})),
            Err(TrustError::Duplicate { .. })
        ));
        assert_eq!(s.revision().unwrap(), before_dup);
        assert_eq!(s.get(&r.id).unwrap(), before.1[0]);
        assert!(matches!(
            s.patch("nope", &json!({})),
            Err(TrustError::NotFound(_))
        ));
    }

    #[test]
    fn json_shape_is_flat_snake_case() {
        let s = store();
        let r = s
            .create_json(&json!({"caller_service": "ci", "target_container": "web", "expires_at": "2030-01-01T00:00:00Z"}))
            .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        for field in [
            "id",
            "caller_service",
            "target_container",
            "can_inspect",
            "file_read_paths",
            "created_at",
            "updated_at",
            "expires_at",
            "resources",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
        let back: TrustRelationship = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn tokens_are_hashed_and_verified() {
        let s = store();
        assert!(s.issue_token("ghost").is_err());
        s.create_caller("ci", vec![1001, 1002]).unwrap();
        assert!(matches!(
            s.create_caller("ci", vec![]),
            Err(TrustError::CallerExists(_))
        ));
        assert!(matches!(
            s.create_caller("other", vec![1001]),
            Err(TrustError::UidTaken { uid: 1001, .. })
        ));
        assert_eq!(s.caller_for_uid(1002).unwrap().as_deref(), Some("ci"));
        assert_eq!(s.caller_for_uid(7).unwrap(), None);
        let (id, secret) = s.issue_token("ci").unwrap();
        assert_eq!(
            s.verify_token(&secret),
            Some(("ci".to_string(), id.clone()))
        );
        // Only the hash is stored.
        let records = s.token_records().unwrap();
        let stored = serde_json::to_string(&records).unwrap();
        assert!(!stored.contains(&secret[TOKEN_PREFIX.len() + id.len() + 1..]));
        assert_eq!(records[&id].sha256, sha256_hex(&secret));
        // A tampered secret with the right id does not verify.
        let mut tampered = secret.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(s.verify_token(&tampered), None);
        assert_eq!(s.verify_token("garbage"), None);
        s.revoke_token("ci", &id).unwrap();
        assert_eq!(s.verify_token(&secret), None);
        assert!(s.get_caller("ci").unwrap().tokens.is_empty());
        let (_, second) = s.issue_token("ci").unwrap();
        s.delete_caller("ci").unwrap();
        assert_eq!(s.verify_token(&second), None);
        assert_eq!(s.caller_for_uid(1001).unwrap(), None);
    }
}
