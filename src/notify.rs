//! Deny notifications: recorded decisions POSTed to webhooks, in signed
//! batches, off the request path.
//!
//! Why a layer over the record stage: a notification is about a decision that
//! is already durable, so it wraps [`Record`] and sees each record only after
//! its append succeeded; the request never waits for a webhook. Each webhook
//! has a bounded queue: when a receiver is slow or down, records beyond the
//! bound are dropped and counted, never buffered without limit, and never
//! allowed to slow a request.
//!
//! The signature (`X-Portcullis-Signature: t=<unix seconds>,v1=<hex>`) is
//! HMAC-SHA256 over `"<t>.<body>"` with the shared secret, so a receiver can
//! check both the sender and the age of a batch ([`verify`]) and refuse
//! replays of an old one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::record::{AuditRecord, Record};

/// The header that carries the timestamp and the signature.
pub const SIGNATURE_HEADER: &str = "x-portcullis-signature";
/// Records sent in one POST at most.
const BATCH_MAX: usize = 100;
/// How long a first record waits for others to join its batch.
const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// Attempts per batch before it is dropped (and counted).
const ATTEMPTS: u32 = 5;

/// One `--notify-webhook URL[#decision=deny&caller=a,b&action=container.*]`.
/// The filters ride in the URL's fragment, which is never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub url: http::Uri,
    /// `deny` (the default), `allow` or `any`.
    pub decision: DecisionFilter,
    /// Callers to notify about; empty = every caller.
    pub callers: Vec<String>,
    /// Actions (`container.exec`, or a family prefix `container.*`); empty = all.
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionFilter {
    Deny,
    Allow,
    Any,
}

impl std::str::FromStr for WebhookSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (url, filters) = spec.split_once('#').unwrap_or((spec, ""));
        let url: http::Uri = url
            .parse()
            .map_err(|e| format!("webhook {url:?}: not a URL: {e}"))?;
        if !matches!(url.scheme_str(), Some("http") | Some("https")) || url.host().is_none() {
            return Err(format!(
                "webhook {url}: an http:// or https:// URL is needed"
            ));
        }
        let mut out = WebhookSpec {
            url,
            decision: DecisionFilter::Deny,
            callers: Vec::new(),
            actions: Vec::new(),
        };
        for (key, value) in form_urlencoded::parse(filters.as_bytes()) {
            let list = || value.split(',').map(str::to_string).collect::<Vec<_>>();
            match &*key {
                "decision" => {
                    out.decision = match &*value {
                        "deny" => DecisionFilter::Deny,
                        "allow" => DecisionFilter::Allow,
                        "any" => DecisionFilter::Any,
                        other => {
                            return Err(format!(
                                "webhook filter decision={other}: deny, allow or any"
                            ))
                        }
                    }
                }
                "caller" => out.callers = list(),
                "action" => out.actions = list(),
                other => {
                    return Err(format!(
                        "webhook filter {other:?}: decision, caller or action"
                    ))
                }
            }
        }
        Ok(out)
    }
}

impl WebhookSpec {
    /// Whether this webhook wants to hear about `record`.
    pub fn wants(&self, record: &AuditRecord) -> bool {
        let decision = match self.decision {
            DecisionFilter::Deny => !record.allowed,
            DecisionFilter::Allow => record.allowed,
            DecisionFilter::Any => true,
        };
        let caller = self.callers.is_empty() || self.callers.contains(&record.caller);
        let action = self.actions.is_empty()
            || self.actions.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => record.action.starts_with(prefix),
                None => *a == record.action,
            });
        decision && caller && action
    }
}

/// What the notifier has done, for operators (and, later, `/metrics`).
#[derive(Debug, Default)]
pub struct NotifyCounters {
    /// Records delivered (acknowledged with a 2xx).
    pub delivered: AtomicU64,
    /// Records dropped because a webhook's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Records dropped after every attempt to deliver their batch failed.
    pub dropped_undeliverable: AtomicU64,
}

/// The record stage with notifications on top: appends through `inner`, then
/// offers each durable record to every webhook that wants it.
pub struct Notifying {
    inner: Arc<dyn Record>,
    hooks: Vec<(WebhookSpec, mpsc::Sender<AuditRecord>)>,
    pub counters: Arc<NotifyCounters>,
}

impl Notifying {
    /// Start one delivery task per webhook (on the current tokio runtime).
    pub fn start(
        inner: Arc<dyn Record>,
        specs: Vec<WebhookSpec>,
        secret: Vec<u8>,
        queue: usize,
    ) -> Notifying {
        let counters = Arc::new(NotifyCounters::default());
        let secret = Arc::new(secret);
        let hooks = specs
            .into_iter()
            .map(|spec| {
                let (tx, rx) = mpsc::channel(queue.max(1));
                tokio::spawn(deliver(
                    spec.url.clone(),
                    rx,
                    secret.clone(),
                    counters.clone(),
                ));
                (spec, tx)
            })
            .collect();
        Notifying {
            inner,
            hooks,
            counters,
        }
    }
}

impl Record for Notifying {
    fn append(&self, mut record: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
        async move {
            let wanted: Vec<_> = self
                .hooks
                .iter()
                .filter(|(spec, _)| spec.wants(&record))
                .map(|(_, tx)| tx)
                .collect();
            if wanted.is_empty() {
                return self.inner.append(record).await;
            }
            let seq = self.inner.append(record.clone()).await?;
            record.seq = seq;
            for tx in wanted {
                if tx.try_send(record.clone()).is_err() {
                    self.counters
                        .dropped_queue_full
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(seq)
        }
        .boxed()
    }
}

/// The signature header's value for `body` at unix time `t`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

fn mac(secret: &[u8], t: u64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Why a receiver refuses a batch.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("the batch is {age_secs} s old (a replay?); at most {max_secs} s are accepted")]
    TooOld { age_secs: u64, max_secs: u64 },
}

/// Check a batch as a receiver should: the signature over its timestamp and
/// body, and its age against `max_age` (a replayed old batch is refused).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: SystemTime,
    max_age: Duration,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => return Err(VerifyError::Malformed),
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(VerifyError::Malformed);
    };
    let mut check = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any size");
    check.update(t.to_string().as_bytes());
    check.update(b".");
    check.update(body);
    check
        .verify_slice(&v1)
        .map_err(|_| VerifyError::BadSignature)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let age = now.saturating_sub(t);
    if age > max_age.as_secs() {
        return Err(VerifyError::TooOld {
            age_secs: age,
            max_secs: max_age.as_secs(),
        });
    }
    Ok(())
}

/// The HTTP(S) client that POSTs to webhooks and decision-log collectors.
pub(crate) type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

pub(crate) fn client() -> Client {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

/// One webhook's delivery loop: gather a batch, POST it signed, retry with
/// backoff, drop (and count) what cannot be delivered.
async fn deliver(
    url: http::Uri,
    mut rx: mpsc::Receiver<AuditRecord>,
    secret: Arc<Vec<u8>>,
    counters: Arc<NotifyCounters>,
) {
    let client = client();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while batch.len() < BATCH_MAX {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(r) => batch.push(r),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        let body = match serde_json::to_vec(&serde_json::json!({ "records": batch })) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => continue,
        };
        let mut delay = Duration::from_millis(500);
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let request = http::Request::post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sign(&secret, t, &body))
                .body(Full::new(body.clone()));
            let outcome = match request {
                Ok(req) => match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        if status.is_success() {
                            Ok(())
                        } else {
                            Err(format!("answered {status}"))
                        }
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(why) if attempt < ATTEMPTS => {
                    tracing::debug!(%url, attempt, %why, "webhook delivery failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.mul_f32(2.0).min(Duration::from_secs(30));
                }
                Err(why) => {
                    tracing::warn!(%url, records = batch.len(), %why, "webhook batch dropped after {ATTEMPTS} attempts");
                }
            }
        }
        let n = batch.len() as u64;
        if delivered {
            counters.delivered.fetch_add(n, Ordering::Relaxed);
        } else {
            counters
                .dropped_undeliverable
                .fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(allowed: bool, caller: &str, action: &str) -> AuditRecord {
        AuditRecord {
            allowed,
            caller: caller.into(),
            action: action.into(),
            ..Default::default()
        }
    }

    /// A fake record stage that numbers appends.
    struct Numbering(AtomicU64);

    impl Record for Numbering {
        fn append(&self, _: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
            let seq = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            async move { Ok(seq) }.boxed()
        }
    }

    /// A receiver that never answers does not slow appends: past the queue's
    /// bound, records are dropped and counted.
    #[tokio::test]
    async fn a_dead_receiver_never_slows_a_request() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", dead.local_addr().unwrap());
        let n = Notifying::start(
            Arc::new(Numbering(AtomicU64::new(0))),
            vec![url.parse().unwrap()],
            b"k".to_vec(),
            2,
        );
        let start = std::time::Instant::now();
        for i in 1..=200u64 {
            assert_eq!(n.append(rec(false, "ci", "container.exec")).await, Ok(i));
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let dropped = n.counters.dropped_queue_full.load(Ordering::Relaxed);
        assert!(dropped >= 190, "dropped {dropped}");
        // Allowed decisions are not offered at all (deny by default).
        assert_eq!(n.append(rec(true, "ci", "container.exec")).await, Ok(201));
        assert_eq!(
            n.counters.dropped_queue_full.load(Ordering::Relaxed),
            dropped
        );
    }

    #[test]
    fn specs_and_filters() {
        let all: WebhookSpec = "http://h:1/x".parse().unwrap();
        assert!(all.wants(&rec(false, "ci", "container.exec")));
        assert!(
            !all.wants(&rec(true, "ci", "container.exec")),
            "deny by default"
        );
        let some: WebhookSpec = "https://h/x?q=1#decision=any&caller=ci,web&action=container.*"
            .parse()
            .unwrap();
        assert_eq!(some.url.to_string(), "https://h/x?q=1");
        assert!(some.wants(&rec(true, "web", "container.start")));
        assert!(!some.wants(&rec(true, "db", "container.start")));
        assert!(!some.wants(&rec(true, "ci", "image.pull")));
        for bad in [
            "ftp://h/x",
            "/x",
            "http://h/x#decision=maybe",
            "http://h/x#who=1",
        ] {
            assert!(bad.parse::<WebhookSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_verify_and_refuse_tampering_and_replays() {
        let now = SystemTime::now();
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = sign(b"s3cret", t, b"{\"records\":[]}");
        let max = Duration::from_secs(300);
        assert_eq!(
            verify(b"s3cret", &header, b"{\"records\":[]}", now, max),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{\"records\":[1]}", now, max),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"records\":[]}", now, max),
            Err(VerifyError::BadSignature)
        );
        let later = now + Duration::from_secs(3600);
        assert!(matches!(
            verify(b"s3cret", &header, b"{\"records\":[]}", later, max),
            Err(VerifyError::TooOld { .. })
        ));
        assert_eq!(
            verify(b"s3cret", "garbage", b"", now, max),
            Err(VerifyError::Malformed)
        );
    }
}
