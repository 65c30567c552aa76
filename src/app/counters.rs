//! Request counters: counted in memory by the handler, added to Redis by a
//! periodic flush and by the `flush_metrics` cleanup hook at exit, so no
//! count is lost when the process stops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::cache::Cache;

/// The field that counts every request.
pub const TOTAL_FIELD: &str = "total";

/// Counts not yet written to Redis, by field (`total`, `GET /healthz 200`).
#[derive(Debug, Default)]
pub struct RequestCounters {
    pending: Mutex<BTreeMap<String, u64>>,
}

impl RequestCounters {
    /// Counts one request.
    pub fn record(&self, route: &str, method: &str, status: u16) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *pending.entry(TOTAL_FIELD.to_owned()).or_default() += 1;
        *pending
            .entry(format!("{method} {route} {status}"))
            .or_default() += 1;
    }

    /// Writes what is pending to Redis; on failure the counts are put back,
    /// to be written by the next flush.
    pub fn flush(&self, cache: &Cache) -> Result<(), String> {
        let taken: Vec<(String, u64)> = std::mem::take(&mut *self.lock()).into_iter().collect();
        cache.add_counts(&taken).inspect_err(|_| {
            let mut pending = self.lock();
            for (field, count) in taken {
                *pending.entry(field).or_default() += count;
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The thread that flushes the counters every interval until stopped.
#[derive(Debug)]
pub struct PeriodicFlush {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl PeriodicFlush {
    /// Starts flushing `counters` to `cache` every `interval`.
    pub fn start(
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
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
