//! The pollers: one registry per poller thread, each holding its share of
//! the connections, and the way from a connection to its own.
//!
//! One poller thread does all the socket reads (and the writes the workers
//! could not finish) of its connections; on a machine with many cores one
//! thread is the limit, so connections are spread over `pollers` of them,
//! round-robin as they are accepted. They share the memory budget and the
//! worker queue; a connection stays with its poller for its whole life.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;

use super::budget::Budget;
use super::conn::{Conn, Job, Next};
use super::registry::{self, Registry};
use crate::http::Connection;
use crate::lifecycle::{InFlightGuard, Lifecycle};

/// Every poller's registry.
#[derive(Debug)]
pub(crate) struct Pollers {
    registries: Vec<Registry>,
    /// The poller the next accepted connection goes to. Written by the
    /// acceptor only; `Relaxed`: it orders nothing.
    next: AtomicUsize,
    pub(crate) budget: Arc<Budget>,
}

impl Pollers {
    /// `count` registries (at least one) and the poll instance of each,
    /// whose threads drive them; one budget of `max_buffered_bytes` whose
    /// freed room wakes every poller.
    pub(crate) fn new(
        count: usize,
        timeouts: registry::Timeouts,
        max_buffered_bytes: u64,
        queue: &Sender<Job>,
        lifecycle: &Arc<Lifecycle>,
    ) -> std::io::Result<(Self, Vec<mio::Poll>)> {
        let mut polls = Vec::with_capacity(count);
        let mut wakers = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let poll = mio::Poll::new()?;
            wakers.push(Arc::new(mio::Waker::new(poll.registry(), registry::WAKER)?));
            polls.push(poll);
        }
        let budget = {
            let wakers = wakers.clone();
            Budget::new(max_buffered_bytes, move || {
                for waker in &wakers {
                    let _ = waker.wake();
                }
            })
        };
        let registries = polls
            .iter()
            .zip(wakers)
            .enumerate()
            .map(|(index, (poll, waker))| {
                Registry::new(
                    index,
                    poll,
                    waker,
                    timeouts,
                    Arc::clone(&budget),
                    queue.clone(),
                    Arc::clone(lifecycle),
                )
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let pollers = Self {
            registries,
            next: AtomicUsize::new(0),
            budget,
        };
        Ok((pollers, polls))
    }

    /// Poller `index`'s registry.
    pub(crate) fn registry(&self, index: usize) -> &Registry {
        &self.registries[index]
    }

    /// How many pollers there are.
    pub(crate) fn count(&self) -> usize {
        self.registries.len()
    }

    fn all(&self) -> &[Registry] {
        &self.registries
    }

    /// Registers a newly accepted connection with the next poller in turn
    /// and sends it `next`.
    pub(crate) fn insert(
        &self,
        http: Connection,
        open: InFlightGuard,
        admin: bool,
        next: Next,
    ) -> std::io::Result<()> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.registries.len();
        self.registries[turn].insert(http, open, admin, next)
    }

    /// Moves a connection where `next` says, in its own poller's registry
    /// (see [`Registry::transition`]).
    pub(crate) fn transition(&self, conn: Box<Conn>, next: Next) -> Option<Box<Conn>> {
        self.registries[conn.poller].transition(conn, next)
    }

    /// Notes that a worker took a queued connection.
    pub(crate) fn handling(&self, conn: &Conn) {
        self.registries[conn.poller].handling(conn);
    }

    /// Connections registered with every poller.
    pub(crate) fn registered(&self) -> usize {
        self.all().iter().map(Registry::registered).sum()
    }

    /// When requests wait for room: resets the slow readers of every
    /// poller (see [`Registry::shed_slow_writers`]), since the memory they
    /// hold is shared: a poller whose request waits must not depend on
    /// another, asleep until its own timers, to free it before the wait
    /// for room ends. Returns how many it reset.
    pub(crate) fn shed_slow_writers(&self) -> usize {
        self.all().iter().map(Registry::shed_slow_writers).sum()
    }

    /// Closes the longest-idle keep-alive connection of all pollers;
    /// whether one was.
    pub(crate) fn close_longest_idle(&self) -> bool {
        let mut oldest_first: Vec<(Instant, &Registry)> = self
            .all()
            .iter()
            .filter_map(|registry| Some((registry.longest_idle_until()?, registry)))
            .collect();
        oldest_first.sort_by_key(|(until, _)| *until);
        // One may have gone busy since it was looked at: the next then.
        oldest_first
            .into_iter()
            .any(|(_, registry)| registry.close_longest_idle())
    }

    /// The last call, on every poller (see [`Registry::begin_last_call`]).
    pub(crate) fn begin_last_call(&self, until: Instant) {
        for registry in self.all() {
            registry.begin_last_call(until);
        }
    }

    /// Queues nothing more, from any poller, then one exit job for each of
    /// the `workers`, behind every request: they stop once those are
    /// served. Each job wakes one worker; closing the queue instead would
    /// wake all at once, to queue up on the channel's lock. As many go as
    /// there is room for: the rest of the workers see the queue closed.
    pub(crate) fn close_queue(&self, workers: usize) {
        let ends: Vec<Sender<Job>> = self
            .all()
            .iter()
            .filter_map(Registry::close_queue)
            .collect();
        if let Some(end) = ends.first() {
            for _ in 0..workers {
                if end.try_send(Job::Stop).is_err() {
                    break;
                }
            }
        }
    }

    /// For the watchdog: whether every poller answered the last heartbeat;
    /// asks each for the next.
    pub(crate) fn answered_then_ask(&self) -> bool {
        // Every one is asked, whatever the others said.
        let answered: Vec<bool> = self
            .all()
            .iter()
            .map(Registry::poller_answered_then_ask)
            .collect();
        answered.iter().all(|answered| *answered)
    }

    /// Asks every poller thread to stop.
    pub(crate) fn request_stop(&self) {
        for registry in self.all() {
            registry.request_stop();
        }
    }

    /// Closes what every poller left parked once it stopped.
    pub(crate) fn close_all_parked(&self) {
        for registry in self.all() {
            registry.close_all_parked();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn closing_the_queue_closes_every_pollers_end_then_queues_one_exit_per_worker() {
        let lifecycle = Lifecycle::new();
        let timeout = Duration::from_secs(5);
        let timeouts = registry::Timeouts {
            idle: timeout,
            header: timeout,
            rates: super::super::conn::Rates {
                min_body_rate: 0,
                min_write_rate: 0,
                grace: timeout,
                body_timeout: timeout,
                write_timeout: timeout,
            },
        };
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(8);
        let (pollers, _polls) =
            Pollers::new(3, timeouts, 1 << 20, &queue, &lifecycle).expect("three pollers");
        drop(queue);
        pollers.close_queue(4);
        let queued: Vec<Job> = jobs.try_iter().collect();
        assert_eq!(queued.len(), 4, "one exit job per worker: {queued:?}");
        assert!(queued.iter().all(|job| matches!(job, Job::Stop)));
        assert_eq!(
            jobs.try_recv().map(|_| ()),
            Err(crossbeam_channel::TryRecvError::Disconnected),
            "no poller can queue anything behind the exit jobs"
        );
    }
}
