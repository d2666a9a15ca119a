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

#[cfg(test)]
mod tests {
    use futures_util::future::BoxFuture;

    use super::{record_decision, Recorded};
    use crate::record::{AuditRecord, Record};

    /// A log that answers with `answer` to every append.
    struct Log(Result<u64, String>);

    impl Record for Log {
        fn append(&self, _: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
            let answer = self.0.clone();
            Box::pin(async move { answer })
        }
    }

    fn decided(allowed: bool, enforced: bool) -> AuditRecord {
        AuditRecord {
            allowed,
            enforced,
            ..AuditRecord::default()
        }
    }

    #[tokio::test]
    async fn only_a_durable_servable_decision_is_permitted() {
        let log = Log(Ok(7));
        match record_decision(&log, decided(true, true)).await {
            Ok(Recorded::Permit(p)) => assert_eq!(p.decision_id(), 7),
            other => panic!("an allowed decision: {other:?}"),
        }
        // Audit-only mode: a would-be denial is recorded, then served.
        match record_decision(&log, decided(false, false)).await {
            Ok(Recorded::Permit(p)) => assert_eq!(p.decision_id(), 7),
            other => panic!("an audit-only denial: {other:?}"),
        }
        match record_decision(&log, decided(false, true)).await {
            Ok(Recorded::Refused { decision_id: 7 }) => {}
            other => panic!("an enforced denial: {other:?}"),
        }
        let broken = Log(Err("disk full".into()));
        assert!(matches!(
            record_decision(&broken, decided(true, true)).await,
            Err(e) if e == "disk full"
        ));
    }
}
