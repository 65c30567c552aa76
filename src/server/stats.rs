//! The server's numbers for embedders and `/metrics`: a cheap handle that
//! reads the counts, the gauges and the phase into one plain snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::budget::Budget;
use super::conn::Job;
use crate::lifecycle::{Lifecycle, Phase};

/// Reads the server's numbers; from [`Server::stats`]. Cheap to clone; it
/// holds what it reads from the server's construction on, and goes on
/// working (with the last values) after the server has stopped.
///
/// [`Server::stats`]: super::Server::stats
#[derive(Debug, Clone)]
pub struct Stats {
    lifecycle: Arc<Lifecycle>,
    /// A receiver of the worker queue, only ever asked its length.
    queue: Receiver<Job>,
    budget: Arc<Budget>,
}

/// The server's numbers at one moment, from [`Stats::snapshot`].
///
/// Counts (`u64`) only grow, from the server's start; gauges say how much
/// there is now. Each value is read on its own, so two of them may be a
/// few events apart (a request received but its head not yet counted as
/// in flight, say); each is exact for the moment it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// The lifecycle phase.
    pub phase: Phase,
    /// Gauge: requests from their whole head until the last byte of their
    /// response is written.
    pub in_flight_requests: usize,
    /// Gauge: client connections accepted and not yet closed.
    pub open_connections: usize,
    /// Gauge: connections with a complete request waiting for a worker.
    pub queue_depth: usize,
    /// Gauge: bytes of request bodies and unwritten responses held now,
    /// reserved from `max_buffered_bytes`.
    pub buffered_bytes: u64,
    /// Request heads fully received.
    pub requests_received: u64,
    /// Responses to them written to their last byte.
    pub responses_written: u64,
    /// Requests answered after the shutdown trigger.
    pub requests_drained: u64,
    /// Requests answered 503 `DRYAD-SYS-5003` after the shutdown deadline.
    pub refused_shutting_down: u64,
    /// Requests answered 503 `DRYAD-SYS-5001` because the worker queue was
    /// full.
    pub refused_overloaded: u64,
    /// Connections answered 503 `DRYAD-SYS-5002` beyond `max_connections`.
    pub refused_over_capacity: u64,
    /// Idle keep-alive connections closed to admit a new one at
    /// `max_connections`.
    pub reclaimed_idle: u64,
    /// Idle keep-alive connections closed at the shutdown's last call.
    pub closed_idle_at_last_call: u64,
    /// Accept calls that failed for lack of resources (EMFILE and the
    /// like).
    pub accept_errors: u64,
}

impl Stats {
    pub(super) fn new(
        lifecycle: Arc<Lifecycle>,
        queue: Receiver<Job>,
        budget: Arc<Budget>,
    ) -> Self {
        Self {
            lifecycle,
            queue,
            budget,
        }
    }

    /// The numbers now: a handful of atomic loads, no lock.
    pub fn snapshot(&self) -> StatsSnapshot {
        let counts = &self.lifecycle.counts;
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            phase: self.lifecycle.phase(),
            in_flight_requests: self.lifecycle.requests.count(),
            open_connections: self.lifecycle.connections.count(),
            queue_depth: self.queue.len(),
            buffered_bytes: self.budget.used(),
            requests_received: count(&counts.requests_received),
            responses_written: count(&counts.responses_written),
            requests_drained: count(&counts.drained),
            refused_shutting_down: count(&counts.refused_shutting_down),
            refused_overloaded: count(&counts.refused_overloaded),
            refused_over_capacity: count(&counts.refused_over_capacity),
            reclaimed_idle: count(&counts.reclaimed_idle),
            closed_idle_at_last_call: count(&counts.closed_idle),
            accept_errors: count(&counts.accept_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Server, ServerConfig};

    #[test]
    fn a_snapshot_reads_each_count_and_gauge_into_its_own_field() {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..ServerConfig::default()
        };
        let server = Server::bind(config).expect("bind");
        let stats = server.stats();
        let counts = &server.lifecycle.counts;
        let each = [
            &counts.requests_received,
            &counts.responses_written,
            &counts.drained,
            &counts.refused_shutting_down,
            &counts.refused_overloaded,
            &counts.refused_over_capacity,
            &counts.reclaimed_idle,
            &counts.closed_idle,
            &counts.accept_errors,
        ];
        for (value, counter) in (1..).zip(each) {
            counter.store(value, Ordering::Relaxed);
        }
        let _request = server.lifecycle.requests.enter();
        let _connections = [
            server.lifecycle.connections.enter(),
            server.lifecycle.connections.enter(),
        ];
        assert_eq!(
            stats.snapshot(),
            StatsSnapshot {
                phase: Phase::Running,
                in_flight_requests: 1,
                open_connections: 2,
                queue_depth: 0,
                buffered_bytes: 0,
                requests_received: 1,
                responses_written: 2,
                requests_drained: 3,
                refused_shutting_down: 4,
                refused_overloaded: 5,
                refused_over_capacity: 6,
                reclaimed_idle: 7,
                closed_idle_at_last_call: 8,
                accept_errors: 9,
            }
        );
    }
}
