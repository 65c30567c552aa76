//! The drain: how long the server keeps accepting and serving once a
//! shutdown has begun, so that load balancers and kube-proxy stop sending
//! it new connections before its listener closes.
//!
//! Two ways, which combine:
//!
//! - a fixed `drain_delay`: the drain lasts exactly that long;
//! - the adaptive drain (`drain_quiet` more than zero): the drain lasts
//!   until no new connection and no new request has arrived for
//!   `drain_quiet` (counted from the drain's start when nothing arrived),
//!   but at least `drain_min` and at least `drain_delay`, and at most
//!   `drain_max`. Arrivals on the admin listener (the kubelet's drain
//!   request and probes) do not count.
//!
//! [`Arrivals`] is written by the threads that see a new connection (the
//! acceptor) or a new request (the workers), only while shutting down;
//! [`DrainPolicy::wait`] reads it on the coordinator. The end of the drain
//! is published here too, for the drain endpoint that answers then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sync;

/// Why the drain ended, as the shutdown report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DrainEnd {
    /// No drain: none configured, or a hot restart's successor serves the
    /// same sockets.
    None,
    /// The fixed `drain_delay` passed.
    Delay,
    /// Nothing new arrived for `drain_quiet` (and `drain_min` had passed).
    Quiet,
    /// Traffic went on until `drain_max`.
    Max,
}

impl DrainEnd {
    /// `none`, `delay`, `quiet` or `max`: its name in the report and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Delay => "delay",
            Self::Quiet => "quiet",
            Self::Max => "max",
        }
    }
}

/// The drain, as the shutdown report gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DrainSummary {
    /// Why it ended.
    pub reason: DrainEnd,
    /// From the shutdown trigger until the listener started to close, in
    /// milliseconds.
    pub length_ms: u64,
    /// When the last new connection was accepted, in milliseconds after the
    /// trigger; `None` when none was during the drain.
    pub last_connection_ms: Option<u64>,
    /// Connections accepted during the drain.
    pub new_connections: u64,
    /// Requests begun during the drain.
    pub new_requests: u64,
}

/// The drain's settings (see the module docs for how they combine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DrainPolicy {
    pub(crate) delay: Duration,
    pub(crate) quiet: Duration,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl DrainPolicy {
    /// No drain: the listener closes at once.
    pub(crate) const NONE: Self = Self {
        delay: Duration::ZERO,
        quiet: Duration::ZERO,
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The policy in words, for the log line that starts the drain.
    pub(crate) fn describe(&self) -> String {
        let ms = |duration: Duration| duration.as_millis();
        if self.adaptive() {
            format!(
                "accepting until nothing new arrives for {} ms (at least {} ms, at most {} ms)",
                ms(self.quiet),
                ms(self.delay.max(self.min)),
                ms(self.max)
            )
        } else if self.delay.is_zero() {
            "no drain: closing the listener".to_owned()
        } else {
            format!("accepting for {} ms (drain delay)", ms(self.delay))
        }
    }

    fn adaptive(&self) -> bool {
        !self.quiet.is_zero()
    }

    /// The longest the drain can last: what the shutdown budget counts.
    pub(crate) fn longest(&self) -> Duration {
        if self.adaptive() {
            self.max
        } else {
            self.delay
        }
    }

    /// Waits, from `started`, for the drain to end as the policy says and
    /// returns how it went. Bounded by [`longest`](Self::longest).
    pub(crate) fn wait(&self, arrivals: &Arrivals, started: Instant) -> DrainSummary {
        let floor = started + self.delay.max(self.min);
        let reason = if self.adaptive() {
            let cap = started + self.max;
            loop {
                let now = Instant::now();
                let last = arrivals
                    .last_arrival()
                    .map_or(started, |last| last.max(started));
                let quiet_at = (last + self.quiet).max(floor);
                if now >= quiet_at {
                    break DrainEnd::Quiet;
                }
                if now >= cap {
                    break DrainEnd::Max;
                }
                // Woken early by nothing: an arrival only moves the end
                // later, and the loop looks again at the end it computed.
                std::thread::sleep(quiet_at.min(cap) - now);
            }
        } else if self.delay.is_zero() {
            DrainEnd::None
        } else {
            std::thread::sleep(floor.saturating_duration_since(Instant::now()));
            DrainEnd::Delay
        };
        arrivals.summary(reason, started)
    }
}

/// Arrivals during the drain, and its end once known.
#[derive(Debug)]
pub(crate) struct Arrivals {
    /// The origin of the times below.
    origin: Instant,
    /// The last new connection and the last new request, in nanoseconds
    /// after `origin` plus one (0: none yet). Written (`fetch_max`,
    /// `Relaxed`) by the acceptor and the workers; read by the coordinator,
    /// which needs only the value: a time read a little stale delays the
    /// drain's end by one more look.
    last_connection: AtomicU64,
    last_request: AtomicU64,
    /// How many of each, written and read alike.
    connections: AtomicU64,
    requests: AtomicU64,
    /// Set once by the coordinator when the drain ends; waited on by the
    /// drain endpoint.
    ended: Mutex<Option<DrainSummary>>,
    ended_changed: Condvar,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_connection: AtomicU64::new(0),
            last_request: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            ended: Mutex::new(None),
            ended_changed: Condvar::new(),
        }
    }
}

impl Arrivals {
    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1)
            + 1
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        (stamp != 0).then(|| self.origin + Duration::from_nanos(stamp - 1))
    }

    /// A connection was accepted during the drain.
    pub(crate) fn connection(&self) {
        let now = self.stamp(Instant::now());
        self.last_connection.fetch_max(now, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A request began during the drain.
    pub(crate) fn request(&self) {
        let now = self.stamp(Instant::now());
        self.last_request.fetch_max(now, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn last_arrival(&self) -> Option<Instant> {
        let last = self
            .last_connection
            .load(Ordering::Relaxed)
            .max(self.last_request.load(Ordering::Relaxed));
        self.instant(last)
    }

    fn summary(&self, reason: DrainEnd, started: Instant) -> DrainSummary {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        DrainSummary {
            reason,
            length_ms: millis(started.elapsed()),
            last_connection_ms: self
                .instant(self.last_connection.load(Ordering::Relaxed))
                .map(|last| millis(last.saturating_duration_since(started))),
            new_connections: self.connections.load(Ordering::Relaxed),
            new_requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Publishes the drain's end to those waiting for it.
    pub(crate) fn end(&self, summary: DrainSummary) {
        *sync::lock(&self.ended) = Some(summary);
        self.ended_changed.notify_all();
    }

    /// Waits until the drain has ended, at most until `deadline`; `None`
    /// when it had not by then.
    pub(crate) fn wait_for_end(&self, deadline: Instant) -> Option<DrainSummary> {
        let mut ended = sync::lock(&self.ended);
        loop {
            if let Some(summary) = *ended {
                return Some(summary);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            ended = sync::wait_timeout(&self.ended_changed, ended, left).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(quiet: u64, min: u64, max: u64) -> DrainPolicy {
        DrainPolicy {
            delay: Duration::ZERO,
            quiet: Duration::from_millis(quiet),
            min: Duration::from_millis(min),
            max: Duration::from_millis(max),
        }
    }

    #[test]
    fn with_nothing_arriving_the_drain_ends_at_its_minimum() {
        let started = Instant::now();
        let summary = policy(50, 200, 5000).wait(&Arrivals::default(), started);
        assert_eq!(summary.reason, DrainEnd::Quiet);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(summary.length_ms < 2000, "{summary:?}");
        assert_eq!(summary.last_connection_ms, None);
    }

    #[test]
    fn arrivals_that_never_stop_end_the_drain_at_its_maximum() {
        let arrivals = std::sync::Arc::new(Arrivals::default());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = {
            let arrivals = std::sync::Arc::clone(&arrivals);
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                // Bounded: the drain under test ends at 300 ms.
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    arrivals.connection();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let started = Instant::now();
        let summary = policy(100, 0, 300).wait(&arrivals, started);
        stop.store(true, Ordering::Relaxed);
        source.join().expect("source");
        assert_eq!(summary.reason, DrainEnd::Max);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(summary.new_connections > 0);
    }

    #[test]
    fn the_fixed_delay_is_a_floor_of_the_adaptive_drain() {
        let mut policy = policy(20, 0, 5000);
        policy.delay = Duration::from_millis(150);
        let started = Instant::now();
        let summary = policy.wait(&Arrivals::default(), started);
        assert_eq!(summary.reason, DrainEnd::Quiet);
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(policy.longest(), Duration::from_millis(5000));
    }

    #[test]
    fn the_end_reaches_whoever_waits_for_it() {
        let arrivals = Arrivals::default();
        assert_eq!(
            arrivals.wait_for_end(Instant::now() + Duration::from_millis(10)),
            None
        );
        let summary = policy(0, 0, 0).wait(&arrivals, Instant::now());
        assert_eq!(summary.reason, DrainEnd::None);
        arrivals.end(summary);
        assert_eq!(
            arrivals.wait_for_end(Instant::now() + Duration::from_secs(5)),
            Some(summary)
        );
    }
}
