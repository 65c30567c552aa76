//! The global memory budget: request bodies being read and responses not
//! yet written, together, bounded by `max_buffered_bytes`.
//!
//! A body's room is reserved before its bytes are read (a
//! `Content-Length` body all at once, when its head arrives; a chunked one
//! in steps), so the budget is never exceeded by bodies: when it is full,
//! the poller stops reading them and the clients are held back by TCP. A
//! response is already made when it is found not to fit the socket, so
//! its rest is counted even when that goes over the budget; bodies then
//! wait until it is written, and no new request goes to a worker while the
//! budget is used up (its response would add to it): it waits for room
//! like a body. Every reservation is a [`Reservation`] that gives its bytes
//! back when dropped, on every path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The budget, shared by the poller and the workers.
pub(crate) struct Budget {
    /// Bytes reserved now. Written by whoever reserves or releases (the
    /// poller, workers); read by them and by `/metrics`. A check and its
    /// reservation are one compare-exchange; SeqCst for `waiting`'s sake.
    used: AtomicU64,
    max: u64,
    /// Connections waiting for room; kept by the registry, read here so a
    /// release wakes the poller only when someone waits. SeqCst, with the
    /// loads of `used` around it: a releaser stores `used` then loads
    /// `waiting`, a waiter stores `waiting` then loads `used`, so at least
    /// one of them sees the other (no lost wake-up).
    pub(crate) waiting: AtomicUsize,
    /// Wakes the poller when room is given back while someone waits.
    wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("used", &self.used())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Budget {
    pub(crate) fn new(max: u64, wake: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            max,
            waiting: AtomicUsize::new(0),
            wake: Box::new(wake),
        })
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Whether a reservation of `bytes` would fit now.
    pub(crate) fn has_room(&self, bytes: u64) -> bool {
        self.used().saturating_add(bytes) <= self.max
    }

    fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn force_reserve(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }

    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let before = self.used.fetch_sub(bytes, Ordering::SeqCst);
        debug_assert!(before >= bytes, "BUG: budget released more than reserved");
        if self.waiting.load(Ordering::SeqCst) > 0 {
            (self.wake)();
        }
    }
}

/// What one connection holds of the budget: room for the body being read
/// and the output not written yet. Dropping it gives both back.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    body: u64,
    output: u64,
}

impl Reservation {
    pub(crate) fn new(budget: &Arc<Budget>) -> Self {
        Self {
            budget: Arc::clone(budget),
            body: 0,
            output: 0,
        }
    }

    /// Reserves `bytes` more for the body, if they fit.
    pub(crate) fn try_grow_body(&mut self, bytes: u64) -> bool {
        let granted = self.budget.try_reserve(bytes);
        if granted {
            self.body += bytes;
        }
        granted
    }

    /// Whether the budget has room left besides this connection's body
    /// (which its response replaces): a request is handed to a worker only
    /// then, since its response may take memory too.
    pub(crate) fn room_for_response(&self) -> bool {
        self.budget.used().saturating_sub(self.body) < self.budget.max
    }

    /// Gives back the body's room (its request was answered).
    pub(crate) fn release_body(&mut self) {
        self.budget.release(std::mem::take(&mut self.body));
    }

    /// Holds exactly `bytes` for unwritten output (the memory its buffer
    /// takes), reserving even past the budget (the response exists
    /// already).
    pub(crate) fn set_output(&mut self, bytes: u64) {
        if bytes > self.output {
            self.budget.force_reserve(bytes - self.output);
        } else {
            self.budget.release(self.output - bytes);
        }
        self.output = bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.body + self.output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_come_back_when_dropped() {
        let budget = Budget::new(100, || {});
        let mut first = Reservation::new(&budget);
        let mut second = Reservation::new(&budget);
        assert!(first.try_grow_body(60));
        assert!(!second.try_grow_body(60), "over the budget");
        assert!(second.try_grow_body(40));
        second.set_output(30);
        assert_eq!(budget.used(), 130, "output is counted even past the budget");
        second.release_body();
        assert_eq!(budget.used(), 90);
        drop(first);
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_release_wakes_the_poller_only_when_someone_waits() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&wakes);
        let budget = Budget::new(10, move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let mut reservation = Reservation::new(&budget);
        assert!(reservation.try_grow_body(10));
        reservation.release_body();
        assert_eq!(wakes.load(Ordering::Relaxed), 0);
        budget.waiting.store(1, Ordering::Relaxed);
        assert!(reservation.try_grow_body(10));
        reservation.release_body();
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
    }
}
