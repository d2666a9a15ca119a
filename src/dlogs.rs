//! Shipping decision logs: every recorded decision POSTed, in OPA's
//! decision-log format, to a collector shared by a fleet of proxies.
//!
//! Why the log is the queue: a record is shipped only once it is durable, so
//! the shipper reads what it sends from the audit log itself
//! ([`AuditLog::export_chained`] → [`crate::record::opa_event`], the shape
//! `audit export --format opa` writes). The layer over [`Record`] (like
//! [`crate::notify::Notifying`]) only wakes the shipper with each new seq
//! through a bounded channel; a full channel drops the wake-up (counted), never
//! the record, and never slows a request. The same read serves the catch-up
//! after a restart: the last acknowledged seq is kept in a small file in the
//! data directory, written after each acknowledged batch, and shipping resumes
//! after it.
//!
//! Delivery is at-least-once: a crash between the collector's acknowledgement
//! and the write of the seq file sends that batch again. Each event's
//! `decision_id` is the record's seq, so a collector can drop duplicates.
//! Records removed by retention before they were shipped are counted as lost.
//!
//! Wire format, as OPA's decision log plugin sends to its service: `POST` with
//! `Content-Type: application/json`, `Content-Encoding: gzip`, the body a
//! gzipped JSON array of events. Any answer but a 2xx, or no answer, is
//! retried with exponential backoff (capped at 30 s) until it is acknowledged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use crate::record::{AuditLog, AuditRecord, Record};

/// The file (in the data directory) that holds the last acknowledged seq.
pub const STATE_FILE: &str = "decision-logs.seq";
/// How long the first new record waits for others to join its batch.
const BATCH_WINDOW: Duration = Duration::from_secs(1);
/// The first retry's delay; doubled after each failure up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// `serve --decision-logs URL` and its bounds.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: http::Uri,
    /// Wake-ups queued at most (`--decision-logs-queue`).
    pub queue: usize,
    /// Events per POST at most (`--decision-logs-batch`).
    pub batch: usize,
}

/// An http:// or https:// URL with a host.
pub fn parse_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("--decision-logs {url:?}: not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
        return Err(format!(
            "--decision-logs {url:?}: an http:// or https:// URL is needed"
        ));
    }
    Ok(uri)
}

/// What the shipper has done, for operators and `/metrics`.
#[derive(Debug, Default)]
pub struct DecisionLogCounters {
    /// Events acknowledged by the collector.
    pub shipped: AtomicU64,
    /// POSTs that failed (no answer or not a 2xx) and were retried.
    pub failed_posts: AtomicU64,
    /// Wake-ups dropped because the queue was full. The records are not lost:
    /// they are read from the log at the next batch.
    pub dropped_queue_full: AtomicU64,
    /// Records removed from the log (retention) before they were shipped.
    pub lost: AtomicU64,
    /// The last seq the collector acknowledged.
    pub last_shipped_seq: AtomicU64,
}

/// The record stage with shipping on top: appends through `inner`, then wakes
/// the shipper with the durable record's seq.
pub struct Shipping {
    inner: Arc<dyn Record>,
    wake: mpsc::Sender<u64>,
    pub counters: Arc<DecisionLogCounters>,
}

impl Shipping {
    /// Start the shipper (on the current tokio runtime); it first catches up
    /// from the seq in `data_dir`/[`STATE_FILE`].
    pub fn start(
        inner: Arc<dyn Record>,
        log: AuditLog,
        settings: Settings,
        data_dir: &Path,
    ) -> Result<Shipping, String> {
        let state = data_dir.join(STATE_FILE);
        let last = read_state(&state)?;
        let counters = Arc::new(DecisionLogCounters::default());
        counters.last_shipped_seq.store(last, Ordering::Relaxed);
        let (wake, rx) = mpsc::channel(settings.queue.max(1));
        tokio::spawn(ship(
            log,
            settings.url,
            settings.batch.max(1),
            state,
            last,
            rx,
            counters.clone(),
        ));
        Ok(Shipping {
            inner,
            wake,
            counters,
        })
    }
}

impl Record for Shipping {
    fn append(&self, record: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
        async move {
            let seq = self.inner.append(record).await?;
            if self.wake.try_send(seq).is_err() {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(seq)
        }
        .boxed()
    }
}

/// The last acknowledged seq; 0 (ship everything) when the file is absent.
fn read_state(path: &Path) -> Result<u64, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            format!(
                "{}: not a seq ({e}); remove it to ship the whole log again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Replace the state file whole (write then rename), so a crash leaves the
/// old seq or the new one, never a torn file.
fn write_state(path: &Path, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("seq.tmp");
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Up to `max` records after `last`, oldest first: (seq, OPA event).
fn read_batch(
    log: &AuditLog,
    last: u64,
    max: usize,
) -> Result<Vec<(u64, serde_json::Value)>, String> {
    log.export_chained(last + 1)
        .take(max)
        .map(|r| {
            r.map(|c| (c.record.seq, crate::record::opa_event(&c)))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// A JSON array of `events`, gzipped.
pub fn gzip_events(events: &[serde_json::Value]) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(events)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json)?;
    gz.finish()
}

// The same HTTP(S) client as the webhooks'.
use crate::notify::{client, Client};

async fn post(client: &Client, url: &http::Uri, body: bytes::Bytes) -> Result<(), String> {
    let request = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_ENCODING, "gzip")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = client.request(request).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The shipping loop: catch up from the log, then wait for wake-ups (or a
/// 1 s tick, for records whose wake-up was dropped or that bypassed the
/// layer), gather a batch, POST it until acknowledged, and persist its last seq.
async fn ship(
    log: AuditLog,
    url: http::Uri,
    batch_max: usize,
    state: PathBuf,
    mut last: u64,
    mut rx: mpsc::Receiver<u64>,
    counters: Arc<DecisionLogCounters>,
) {
    let client = client();
    // Records already in the log are shipped first, without waiting.
    let mut more = true;
    loop {
        if !more {
            match tokio::time::timeout(BATCH_WINDOW, rx.recv()).await {
                Ok(None) => return,
                Ok(Some(_)) => {
                    // Let a batch fill, for at most the window.
                    let window = tokio::time::sleep(BATCH_WINDOW);
                    tokio::pin!(window);
                    let mut n = 1;
                    while n < batch_max {
                        tokio::select! {
                            next = rx.recv() => match next {
                                Some(_) => n += 1,
                                None => break,
                            },
                            _ = &mut window => break,
                        }
                    }
                }
                Err(_) => {}
            }
        }
        let reader = log.clone();
        let batch =
            match tokio::task::spawn_blocking(move || read_batch(&reader, last, batch_max)).await {
                Ok(Ok(b)) => b,
                Ok(Err(why)) => {
                    tracing::warn!(%why, "decision logs: reading the audit log failed; retrying");
                    more = false;
                    continue;
                }
                Err(_) => return,
            };
        let (Some(&(first, _)), Some(&(end, _))) = (batch.first(), batch.last()) else {
            more = false;
            continue;
        };
        if first > last + 1 {
            counters.lost.fetch_add(first - last - 1, Ordering::Relaxed);
            tracing::warn!(
                from = last + 1,
                to = first - 1,
                "decision logs: records left the log before they were shipped"
            );
        }
        let events: Vec<_> = batch.iter().map(|(_, e)| e.clone()).collect();
        let body = match gzip_events(&events) {
            Ok(b) => bytes::Bytes::from(b),
            Err(why) => {
                tracing::error!(%why, "decision logs: encoding a batch failed");
                more = false;
                continue;
            }
        };
        let mut delay = BACKOFF_START;
        while let Err(why) = post(&client, &url, body.clone()).await {
            counters.failed_posts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%url, %why, retry_in = ?delay, "decision logs: POST failed");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_CAP);
        }
        last = end;
        counters
            .shipped
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters.last_shipped_seq.store(last, Ordering::Relaxed);
        if let Err(why) = write_state(&state, last) {
            tracing::warn!(path = %state.display(), %why, "decision logs: saving the last shipped seq failed (batches may be sent again after a restart)");
        }
        more = batch.len() == batch_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A fake record stage that numbers appends.
    struct Numbering(AtomicU64);

    impl Record for Numbering {
        fn append(&self, _: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
            let seq = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            async move { Ok(seq) }.boxed()
        }
    }

    /// A collector that never answers does not slow appends: past the
    /// queue's bound, wake-ups are dropped and counted.
    #[tokio::test]
    async fn a_dead_collector_never_slows_a_request() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let log = AuditLog::open(&db, Default::default()).unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/logs", dead.local_addr().unwrap());
        let settings = Settings {
            url: parse_url(&url).unwrap(),
            queue: 2,
            batch: 500,
        };
        let s = Shipping::start(
            Arc::new(Numbering(AtomicU64::new(0))),
            log,
            settings,
            dir.path(),
        )
        .unwrap();
        let start = std::time::Instant::now();
        for i in 1..=200u64 {
            assert_eq!(s.append(AuditRecord::default()).await, Ok(i));
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let dropped = s.counters.dropped_queue_full.load(Ordering::Relaxed);
        assert!(dropped >= 190, "dropped {dropped}");
    }

    #[test]
    fn urls_and_state() {
        assert!(parse_url("http://127.0.0.1:9/logs").is_ok());
        assert!(parse_url("https://logs.example/v1").is_ok());
        for bad in ["ftp://h/x", "/logs", "nothing here"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert_eq!(read_state(&path), Ok(0));
        write_state(&path, 42).unwrap();
        assert_eq!(read_state(&path), Ok(42));
        std::fs::write(&path, "x").unwrap();
        assert!(read_state(&path).unwrap_err().contains("not a seq"));
    }

    #[test]
    fn batches_are_gzipped_json_arrays() {
        let events = vec![serde_json::json!({"decision_id": "1"})];
        let gz = gzip_events(&events).unwrap();
        let mut json = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut json)
            .unwrap();
        assert_eq!(json, r#"[{"decision_id":"1"}]"#);
    }
}
