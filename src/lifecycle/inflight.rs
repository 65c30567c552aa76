//! Counts work in progress and lets one thread wait until there is none.
//!
//! The count is an `AtomicUsize`, so entering and leaving cost one atomic
//! operation each. Waiters sleep on a `Condvar`. The top bit of the same
//! word says that someone waits: a leaving thread touches the mutex only
//! when its decrement brings the count to zero with that bit set, and it
//! notifies while holding the mutex, which closes the window between a
//! waiter reading a non-zero count and going to sleep (see `leave`).
//! Because the flag and the count share one atomic, every decrement and the
//! waiter's registration are ordered by that word's modification order: no
//! `SeqCst` reasoning across two locations is needed, and loom can check it.

#[cfg(gremlins_loom)]
use crate::sync::model::{lock, wait_timeout};
#[cfg(not(gremlins_loom))]
use crate::sync::{lock, wait_timeout};
#[cfg(gremlins_loom)]
use loom::sync::{Condvar, Mutex, atomic::AtomicUsize};
#[cfg(not(gremlins_loom))]
use std::sync::{Condvar, Mutex, atomic::AtomicUsize};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The bit of `InFlight::state` that says a thread is in `wait_idle`.
const WAITING: usize = 1 << (usize::BITS - 1);

/// A count of things in progress (requests, connections).
#[derive(Debug)]
// Public (not only to the crate) for its benchmark, which the
// `internals` feature re-exports it to; not part of the API.
#[allow(unreachable_pub)]
pub struct InFlight {
    /// The count (low bits) and the `WAITING` flag (top bit). The count is
    /// written by `enter` (+1) and `leave` (-1) from any thread; the flag
    /// is set and cleared by waiters under `waiters`. AcqRel/Acquire, so a
    /// waiter that sees zero also sees what the last leaver did before it
    /// left.
    state: AtomicUsize,
    /// The number of threads in `wait_idle`; held by a waiter from setting
    /// the flag until it sleeps, and by the leaver that brings the count to
    /// zero while it notifies.
    waiters: Mutex<usize>,
    idle: Condvar,
}

/// One unit of work in progress; dropping it (also while unwinding from a
/// panic) ends it.
#[derive(Debug)]
#[must_use = "the work ends when the guard is dropped"]
#[allow(unreachable_pub)]
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
    #[allow(unreachable_pub)]
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: AtomicUsize::new(0),
            waiters: Mutex::new(0),
            idle: Condvar::new(),
        })
    }

    /// Starts one unit of work.
    #[allow(unreachable_pub)]
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        assert!(
            before & !WAITING < WAITING - 1,
            "BUG: in-flight count overflow"
        );
        InFlightGuard {
            tracker: Arc::clone(self),
        }
    }

    /// How many units are in progress now.
    pub(crate) fn count(&self) -> usize {
        self.state.load(Ordering::Acquire) & !WAITING
    }

    fn leave(&self) {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        assert!(
            before & !WAITING > 0,
            "BUG: in-flight count went below zero"
        );
        // Without a waiter there is no one to wake: no lock, no syscall.
        if before == WAITING | 1 {
            // The waiter may have read the old count and be about to sleep.
            // Taking the lock waits until it sleeps (releasing the lock).
            let _waiters = lock(&self.waiters);
            self.idle.notify_all();
        }
    }

    /// Waits until nothing is in progress or `deadline` passes. Returns
    /// whether the count reached zero. (Under loom, which has no clock, the
    /// timed wait never times out, so a lost wake-up shows as a deadlock.)
    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let mut waiters = lock(&self.waiters);
        *waiters += 1;
        // Set before the count is read: a leave ordered after this sees it.
        let mut state = self.state.fetch_or(WAITING, Ordering::AcqRel);
        let idle = loop {
            if state & !WAITING == 0 {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            waiters = wait_timeout(&self.idle, waiters, left).0;
            state = self.state.load(Ordering::Acquire);
        };
        *waiters -= 1;
        if *waiters == 0 {
            self.state.fetch_and(!WAITING, Ordering::AcqRel);
        }
        idle
    }
}

#[cfg(all(test, not(gremlins_loom)))]
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

#[cfg(all(test, gremlins_loom))]
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
