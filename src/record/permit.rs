//! The [`Permit`]: proof that a request was decided and durably recorded.
//!
//! Why a type: forwarding to the daemon, the admin API, the file API and every
//! service to come each take a `Permit`, and only [`record_decision`] makes
//! one, after the record is durable. So a handler that has not been decided
//! and recorded cannot be written: it would not compile.

use super::stage::Record;
use super::AuditRecord;

/// A decided request that may be served: allowed and durably recorded (or, in
/// audit-only mode, recorded as a would-be denial and served anyway).
///
/// Only the record stage makes one:
///
/// ```compile_fail,E0451
/// // Outside the record stage a Permit cannot be made …
/// let permit = portcullis::record::Permit { decision_id: 1 };
/// ```
///
/// ```compile_fail,E0599
/// // … nor copied into a second use.
/// fn twice(p: portcullis::record::Permit) -> (portcullis::record::Permit, portcullis::record::Permit) {
///     (p.clone(), p)
/// }
/// ```
///
/// The pipeline gets one by recording the decision:
///
/// ```
/// use futures_util::future::BoxFuture;
/// use portcullis::record::{record_decision, AuditRecord, Record, Recorded};
///
/// struct Log;
/// impl Record for Log {
///     fn append(&self, _: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
///         Box::pin(async { Ok(42) })
///     }
/// }
///
/// let allowed = AuditRecord { allowed: true, enforced: true, ..AuditRecord::default() };
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// match runtime.block_on(record_decision(&Log, allowed)) {
///     Ok(Recorded::Permit(permit)) => assert_eq!(permit.decision_id(), 42),
///     _ => unreachable!("an allowed, recorded decision is permitted"),
/// }
/// ```
#[derive(Debug)]
pub struct Permit {
    decision_id: u64,
}

impl Permit {
    /// The sequence id of the record that permits the request.
    pub fn decision_id(&self) -> u64 {
        self.decision_id
    }
}

/// What recording a decision gives: a [`Permit`] to serve it, or the id of
/// the refusal's record.
#[derive(Debug)]
pub enum Recorded {
    Permit(Permit),
    Refused { decision_id: u64 },
}

/// Append the record of a decided request, durably; a request is served only
/// if its record says so (allowed, or not enforced) and the record is durable.
/// `Err`: the log cannot be written, and the request must be refused.
pub async fn record_decision(
    recorder: &dyn Record,
    record: AuditRecord,
) -> Result<Recorded, String> {
    let served = record.allowed || !record.enforced;
    let decision_id = recorder.append(record).await?;
    Ok(if served {
        Recorded::Permit(Permit { decision_id })
    } else {
        Recorded::Refused { decision_id }
    })
}
