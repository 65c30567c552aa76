//! Counts work in progress and lets one thread wait until there is none.
//!
//! The count is an `AtomicUsize`, so entering and leaving cost one atomic
//! operation each. Waiters sleep on a `Condvar`; the only time a leaving
//! thread touches the mutex is when it brings the count to zero, and it
//! notifies while holding it, which closes the window between a waiter
//! reading a non-zero count and going to sleep (see `leave`).

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, atomic::AtomicUsize};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, atomic::AtomicUsize};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A count of things in progress (requests, connections).
#[derive(Debug)]
pub struct InFlight {
    /// Written by `enter` (+1) and `leave` (-1) from any thread; read by
    /// waiters under `idle_lock`. AcqRel/Acquire so a waiter that sees zero
    /// also sees everything the last leaver did before leaving.
    count: AtomicUsize,
    /// Held by a waiter between reading the count and sleeping, and by the
    /// leaver that brings the count to zero while it notifies.
    idle_lock: Mutex<()>,
    idle: Condvar,
}

/// One unit of work in progress; dropping it (also while unwinding from a
/// panic) ends it.
#[derive(Debug)]
#[must_use = "the work ends when the guard is dropped"]
pub struct InFlightGuard {
    tracker: Arc<InFlight>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.tracker.leave();
    }
}

impl InFlight {
    /// A tracker with nothing in progress.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        })
    }

    /// Starts one unit of work.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            tracker: Arc::clone(self),
        }
    }

    /// How many units are in progress now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn leave(&self) {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "BUG: in-flight count went below zero");
        if before == 1 {
            // A waiter may have read the old count and be about to sleep.
            // Taking the lock waits until it sleeps (releasing the lock) or
            // until it has not read the count yet (it will read zero).
            let _lock = self
                .idle_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.idle.notify_all();
        }
    }

    /// Waits until nothing is in progress or `deadline` passes. Returns
    /// whether the count reached zero. (Under loom, which has no clock, the
    /// timed wait never times out, so a lost wake-up shows as a deadlock.)
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut lock = self
            .idle_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if self.count() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lock = self
                .idle
                .wait_timeout(lock, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn idle_tracker_is_idle_at_once() {
        assert!(InFlight::new().wait_idle(Instant::now()));
    }

    #[test]
    fn wait_returns_when_the_last_guard_drops() {
        let tracker = InFlight::new();
        let guard = tracker.enter();
        let second = tracker.enter();
        assert_eq!(tracker.count(), 2);
        drop(second);
        let waiter = {
            let tracker = Arc::clone(&tracker);
            std::thread::spawn(move || tracker.wait_idle(Instant::now() + Duration::from_secs(10)))
        };
        drop(guard);
        assert!(
            waiter.join().expect("waiter thread"),
            "wait_idle gave up though the count reached zero"
        );
    }

    #[test]
    fn wait_gives_up_at_the_deadline() {
        let tracker = InFlight::new();
        let _guard = tracker.enter();
        let started = Instant::now();
        assert!(!tracker.wait_idle(started + Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_panic_still_ends_the_work() {
        let tracker = InFlight::new();
        let inner = Arc::clone(&tracker);
        let result = std::thread::spawn(move || {
            let _guard = inner.enter();
            panic!("handler failed");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(tracker.count(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;

    /// Two workers finish while a waiter waits: the waiter always wakes
    /// (a lost wake-up would deadlock, which loom reports) and the count
    /// never goes below zero (the assert in `leave`).
    #[test]
    fn no_lost_wakeup_and_no_underflow() {
        loom::model(|| {
            let tracker = InFlight::new();
            let first = tracker.enter();
            let second = tracker.enter();
            let workers: Vec<_> = [first, second]
                .into_iter()
                .map(|guard| loom::thread::spawn(move || drop(guard)))
                .collect();
            assert!(tracker.wait_idle(Instant::now() + std::time::Duration::from_secs(3600)));
            assert_eq!(tracker.count(), 0);
            for worker in workers {
                worker.join().expect("worker");
            }
        });
    }
}
