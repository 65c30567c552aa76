//! Redis: a read-through cache of events, and the home of the request
//! counters. Optional; a Redis that is down or slow never fails a request
//! that does not need it, and every call is bounded by `redis_timeout`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use redis::{Commands, RedisResult};

use super::clients::{self, Owned};
use super::redact::redact_url;
use super::store::Event;

/// After a Redis error, workers leave Redis alone this long, so a dead
/// Redis costs one timeout per second rather than one per request.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// The hash the request counters are added to.
pub(crate) const COUNTERS_KEY: &str = "gremlins:requests";

fn event_key(id: i64) -> String {
    format!("gremlins:event:{id}")
}

thread_local! {
    /// This worker's Redis connection.
    static WORKER_CONNECTION: RefCell<Option<Owned<redis::Connection>>> = const {
        RefCell::new(None)
    };
}

/// Closes this worker's Redis connection.
pub(crate) fn close_worker_connection() {
    WORKER_CONNECTION.with_borrow_mut(|connection| *connection = None);
}

/// The Redis side of the service.
#[derive(Debug)]
pub(crate) struct Cache {
    owner: u64,
    client: Option<redis::Client>,
    timeout: Duration,
    ttl_seconds: u64,
    /// Milliseconds since `epoch` before which Redis is skipped. Written by
    /// any worker after an error, read by all; Relaxed: a stale read only
    /// means one more try or one more skip.
    skip_until_ms: AtomicU64,
    epoch: Instant,
    /// Redis errors seen: added to where each happens (any worker, the
    /// flusher thread), read by `/metrics`, which registers a handle to
    /// this same counter.
    errors: Counter,
}

impl Cache {
    /// A cache for `url`, or a disabled one when `url` is `None`.
    pub(crate) fn new(url: Option<&str>, timeout: Duration, ttl: Duration) -> Self {
        let client = url.and_then(|url| match redis::Client::open(url) {
            Ok(client) => {
                log::info!("cache: Redis at {}", redact_url(url));
                Some(client)
            }
            Err(error) => {
                log::error!("cache disabled: invalid REDIS_URL: {error}");
                None
            }
        });
        if client.is_none() && url.is_none() {
            log::info!("cache: no REDIS_URL configured: no cache; request counters stay in memory");
        }
        Self {
            owner: clients::next_owner_id(),
            client,
            timeout,
            ttl_seconds: ttl.as_secs().max(1),
            skip_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            errors: Counter::default(),
        }
    }

    /// A handle to the Redis error counter, for `/metrics` to register.
    pub(crate) fn errors(&self) -> Counter {
        self.errors.clone()
    }

    /// Whether Redis is configured.
    pub(crate) fn is_enabled(&self) -> bool {
        self.client.is_some()
    }

    /// A cached event, if Redis has it (and answers in time).
    pub(crate) fn get_event(&self, id: i64) -> Option<Event> {
        let cached: Option<String> =
            self.with_worker_connection(|connection| connection.get(event_key(id)))?;
        serde_json::from_str(&cached?).ok()
    }

    /// Caches an event for the TTL.
    pub(crate) fn put_event(&self, event: &Event) {
        let Ok(json) = serde_json::to_string(event) else {
            return;
        };
        let _: Option<()> = self.with_worker_connection(|connection| {
            connection.set_ex(event_key(event.id), json, self.ttl_seconds)
        });
    }

    /// Adds `counts` to the counters hash in one round trip, on a
    /// connection of its own (for the flusher thread and the exit hook).
    pub(crate) fn add_counts(&self, counts: &[(String, u64)]) -> Result<(), String> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        if counts.is_empty() {
            return Ok(());
        }
        let mut connection = self.connect(client).map_err(|error| error.to_string())?;
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for (field, count) in counts {
            pipeline.hincr(COUNTERS_KEY, field, *count).ignore();
        }
        pipeline.query::<()>(&mut connection).map_err(|error| {
            self.errors.inc();
            error.to_string()
        })
    }

    fn connect(&self, client: &redis::Client) -> RedisResult<redis::Connection> {
        let connection = client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Runs `command` on this worker's connection (opened if needed). On an
    /// error: logs it, counts it, drops the connection, backs off, and
    /// returns `None`.
    fn with_worker_connection<T>(
        &self,
        command: impl FnOnce(&mut redis::Connection) -> RedisResult<T>,
    ) -> Option<T> {
        let client = self.client.as_ref()?;
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        WORKER_CONNECTION.with_borrow_mut(|worker| {
            if worker
                .as_ref()
                .is_some_and(|owned| owned.owner != self.owner)
            {
                *worker = None;
            }
            let result = match &mut *worker {
                Some(owned) => command(&mut owned.connection),
                None => self.connect(client).and_then(|mut connection| {
                    let result = command(&mut connection);
                    *worker = Some(Owned {
                        owner: self.owner,
                        connection,
                    });
                    result
                }),
            };
            result
                .map_err(|error| {
                    log::warn!(
                        "Redis call failed ({error}); skipping Redis for {} ms",
                        RETRY_BACKOFF.as_millis()
                    );
                    self.errors.inc();
                    *worker = None;
                    let retry_ms = now_ms
                        .saturating_add(u64::try_from(RETRY_BACKOFF.as_millis()).unwrap_or(0));
                    self.skip_until_ms.store(retry_ms, Ordering::Relaxed);
                })
                .ok()
        })
    }
}
