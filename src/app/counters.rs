//! Request counters: counted in memory by the handler, added to Redis by a
//! periodic flush and by the `flush_metrics` cleanup hook at exit, so no
//! count is lost when the process stops.
//!
//! A failed flush puts its counts back for the next one. That includes a
//! flush whose reply was lost (Redis applied it, but the reply timed out or
//! the connection broke first): its counts are written again, so they are
//! counted twice. Counts are never lost, but may be doubled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::cache::Cache;
use crate::sync;

/// The field that counts every request.
pub(crate) const TOTAL_FIELD: &str = "total";

/// What one request is counted under: method, route template, status.
type Key = (&'static str, &'static str, u16);

/// Counts not yet written to Redis. Keys are static, so counting costs a
/// lock and a hash, no allocation; field names (`GET /healthz 200`, and
/// `total`) are made at flush time.
#[derive(Debug, Default)]
pub(crate) struct RequestCounters {
    pending: Mutex<HashMap<Key, u64>>,
}

impl RequestCounters {
    /// Counts one request.
    pub(crate) fn record(&self, route: &'static str, method: &'static str, status: u16) {
        *self.lock().entry((method, route, status)).or_default() += 1;
    }

    /// Writes what is pending to Redis; on failure the counts are put back,
    /// to be written by the next flush (twice, if Redis applied the failed
    /// flush and only its reply was lost).
    pub(crate) fn flush(&self, cache: &Cache) -> Result<(), String> {
        let taken = std::mem::take(&mut *self.lock());
        let total: u64 = taken.values().sum();
        let mut fields: Vec<(String, u64)> = taken
            .iter()
            .map(|((method, route, status), count)| (format!("{method} {route} {status}"), *count))
            .collect();
        if total > 0 {
            fields.push((TOTAL_FIELD.to_owned(), total));
        }
        cache.add_counts(&fields).inspect_err(|_| {
            let mut pending = self.lock();
            for (key, count) in taken {
                *pending.entry(key).or_default() += count;
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, u64>> {
        sync::lock(&self.pending)
    }
}

/// The thread that flushes the counters every interval until stopped.
#[derive(Debug)]
pub(crate) struct PeriodicFlush {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl PeriodicFlush {
    /// Starts flushing `counters` to `cache` every `interval`.
    pub(crate) fn start(
        counters: Arc<RequestCounters>,
        cache: Arc<Cache>,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new().name("counter-flush".into()).spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                if let Err(error) = counters.flush(&cache) {
                    log::warn!("flushing request counters to Redis failed ({error}); kept for the next flush");
                }
            }
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread (after any flush in progress, itself bounded by
    /// the Redis timeout) and joins it.
    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
