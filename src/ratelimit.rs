//! Rate-limited logging: a repeated warning or error is written once per
//! interval, with a count of the repeats left out.
//!
//! Why: a failure that every request meets (a full disk under the decision
//! log) wrote two ERROR lines per refused request, 77 MB of stderr in one test,
//! onto the disk that was already full. One line per interval says the same.
//!
//! [`RateLimiter`] is the reusable part, keyed by any error kind.
//! [`RateLimitedFormat`] applies it to every WARN and ERROR event, keyed by the
//! place in the code that logs it (its callsite), so no call site needs to opt in.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// What to do with one occurrence of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `suppressed` repeats were left out since the last one written.
    Emit { suppressed: u64 },
    /// Leave it out (it is counted).
    Suppress,
}

/// At most one occurrence per kind per interval.
#[derive(Debug)]
pub struct RateLimiter<K> {
    interval: Duration,
    kinds: Mutex<HashMap<K, Window>>,
}

#[derive(Debug)]
struct Window {
    last_emitted: Instant,
    suppressed: u64,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(interval: Duration) -> Self {
        RateLimiter {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this occurrence of `kind`, at `now`, is written.
    pub fn check(&self, kind: K, now: Instant) -> Verdict {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        match kinds.get_mut(&kind) {
            Some(w) if now.saturating_duration_since(w.last_emitted) < self.interval => {
                w.suppressed += 1;
                Verdict::Suppress
            }
            Some(w) => {
                let suppressed = std::mem::take(&mut w.suppressed);
                w.last_emitted = now;
                Verdict::Emit { suppressed }
            }
            None => {
                kinds.insert(
                    kind,
                    Window {
                        last_emitted: now,
                        suppressed: 0,
                    },
                );
                Verdict::Emit { suppressed: 0 }
            }
        }
    }
}

/// A log format (text by default, or JSON), with WARN and ERROR events
/// rate-limited per callsite.
pub struct RateLimitedFormat<F = Format> {
    inner: F,
    /// The inner format writes one JSON object a line: the count of left-out
    /// repeats then goes on a JSON line of its own.
    json: bool,
    limiter: RateLimiter<tracing::callsite::Identifier>,
}

/// The interval used by `portcullis`: long enough to cut a flood to a few
/// lines a minute, short enough that a fixed problem's last line is recent.
pub const INTERVAL: Duration = Duration::from_secs(10);

impl RateLimitedFormat {
    pub const INTERVAL: Duration = INTERVAL;

    pub fn new(interval: Duration) -> Self {
        RateLimitedFormat {
            inner: Format::default(),
            json: false,
            limiter: RateLimiter::new(interval),
        }
    }
}

impl<F> RateLimitedFormat<F> {
    /// Rate-limit `inner`, a JSON format when `json`.
    pub fn wrapping(inner: F, json: bool, interval: Duration) -> Self {
        RateLimitedFormat {
            inner,
            json,
            limiter: RateLimiter::new(interval),
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for RateLimitedFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if *meta.level() > Level::WARN {
            return self.inner.format_event(ctx, writer, event);
        }
        match self.limiter.check(meta.callsite(), Instant::now()) {
            Verdict::Suppress => Ok(()),
            Verdict::Emit { suppressed: 0 } => self.inner.format_event(ctx, writer, event),
            Verdict::Emit { suppressed } => {
                let mut line = String::new();
                self.inner
                    .format_event(ctx, Writer::new(&mut line), event)?;
                let line = line.trim_end_matches('\n');
                let secs = self.limiter.interval.as_secs();
                if self.json {
                    writeln!(
                        writer,
                        "{line}\n{{\"level\":\"{}\",\"message\":\"{suppressed} more like the previous line since it were not logged; at most one every {secs}s is\",\"suppressed\":{suppressed}}}",
                        meta.level()
                    )
                } else {
                    writeln!(
                        writer,
                        "{line} ({suppressed} more like this since the last one were not logged; at most one every {secs}s is)"
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_interval_are_counted_not_emitted() {
        let limiter = RateLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.check("disk", t0), Verdict::Emit { suppressed: 0 });
        for i in 1..=5 {
            assert_eq!(
                limiter.check("disk", t0 + Duration::from_secs(i)),
                Verdict::Suppress
            );
        }
        // Another kind is not held back by the first.
        assert_eq!(
            limiter.check("other", t0 + Duration::from_secs(1)),
            Verdict::Emit { suppressed: 0 }
        );
        assert_eq!(
            limiter.check("disk", t0 + Duration::from_secs(10)),
            Verdict::Emit { suppressed: 5 }
        );
        assert_eq!(
            limiter.check("disk", t0 + Duration::from_secs(11)),
            Verdict::Suppress
        );
        assert_eq!(
            limiter.check("disk", t0 + Duration::from_secs(25)),
            Verdict::Emit { suppressed: 1 }
        );
    }
}
