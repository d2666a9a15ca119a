//! The checkpoint: where the retained chain starts after pruning, with its
//! self-checking encoding.
//!
//! Why apart: the checkpoint is the one piece of metadata the chain's proof
//! leans on (it holds the hash the remaining records continue from).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::record::codec::{self, GENESIS_HASH};

const CHECKPOINT_VERSION: u8 = 1;

/// Where the retained chain starts after pruning.
///
/// Encoding: version byte, first_seq (u64 BE), prev_hash (32), pruned_total (u64 BE),
/// time (u32 BE length + UTF-8), then SHA-256 of everything before it, so a damaged
/// checkpoint is detected rather than silently trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The first retained sequence number; it chains from `prev_hash`.
    pub first_seq: u64,
    /// Chain hash of record `first_seq - 1` (zeros before any pruning).
    #[serde(serialize_with = "hex_hash")]
    pub prev_hash: [u8; 32],
    /// Records removed by pruning, in total.
    pub pruned_total: u64,
    /// When the checkpoint was written (RFC 3339), empty for the initial one.
    pub time: String,
}

fn hex_hash<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

impl Checkpoint {
    pub fn initial() -> Self {
        Checkpoint {
            first_seq: 1,
            prev_hash: GENESIS_HASH,
            pruned_total: 0,
            time: String::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(96);
        v.push(CHECKPOINT_VERSION);
        v.extend_from_slice(&self.first_seq.to_be_bytes());
        v.extend_from_slice(&self.prev_hash);
        v.extend_from_slice(&self.pruned_total.to_be_bytes());
        v.extend_from_slice(&(self.time.len() as u32).to_be_bytes());
        v.extend_from_slice(self.time.as_bytes());
        let digest: [u8; 32] = Sha256::digest(&v).into();
        v.extend_from_slice(&digest);
        v
    }

    pub fn decode(v: &[u8]) -> Result<Self, String> {
        let fixed = 1 + 8 + 32 + 8 + 4;
        if v.len() < fixed + 32 {
            return Err(format!("audit checkpoint is only {} bytes", v.len()));
        }
        let (body, digest) = v.split_at(v.len() - 32);
        let expect: [u8; 32] = Sha256::digest(body).into();
        if digest != expect {
            return Err("audit checkpoint checksum mismatch".into());
        }
        if body[0] != CHECKPOINT_VERSION {
            return Err(format!("unknown audit checkpoint version {}", body[0]));
        }
        let first_seq = codec::parse_seq(&body[1..9]).unwrap_or(0);
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&body[9..41]);
        let pruned_total = codec::parse_seq(&body[41..49]).unwrap_or(0);
        let tlen = u32::from_be_bytes([body[49], body[50], body[51], body[52]]) as usize;
        if body.len() != fixed + tlen {
            return Err("audit checkpoint length mismatch".into());
        }
        let time = String::from_utf8(body[fixed..].to_vec())
            .map_err(|_| "audit checkpoint time is not UTF-8".to_string())?;
        Ok(Checkpoint {
            first_seq,
            prev_hash,
            pruned_total,
            time,
        })
    }
}
