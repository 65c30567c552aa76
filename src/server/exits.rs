//! Which worker threads have ended, and the shutdown's wait for those it
//! needs: one wake-up for the whole pool, not one per worker.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::sync;

#[derive(Debug)]
struct State {
    exited: Vec<bool>,
    /// The workers the waiter needs, by id; empty while nobody waits.
    awaited: Vec<usize>,
}

impl State {
    fn all_awaited_exited(&self) -> bool {
        self.awaited.iter().all(|&id| self.exited[id])
    }
}

/// The exits of a pool of `workers` threads.
#[derive(Debug)]
pub(super) struct WorkerExits {
    state: Mutex<State>,
    changed: Condvar,
}

impl WorkerExits {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            state: Mutex::new(State {
                exited: vec![false; workers],
                awaited: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Worker `id` has ended (also when it unwinds). Wakes the waiter only
    /// when this exit completes what it waits for.
    pub(super) fn exited(&self, id: usize) {
        let mut state = sync::lock(&self.state);
        state.exited[id] = true;
        if !state.awaited.is_empty() && state.all_awaited_exited() {
            self.changed.notify_all();
        }
    }

    /// Waits until every worker but the `abandoned` ones has ended, or
    /// `deadline`; returns which ones have ended.
    pub(super) fn wait_all_but(&self, abandoned: &[usize], deadline: Instant) -> Vec<bool> {
        let mut state = sync::lock(&self.state);
        state.awaited = (0..state.exited.len())
            .filter(|id| !abandoned.contains(id))
            .collect();
        while !state.all_awaited_exited() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = sync::wait_timeout(&self.changed, state, left).0;
        }
        state.awaited.clear();
        state.exited.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_wait_ends_when_the_last_awaited_worker_exits() {
        let exits = Arc::new(WorkerExits::new(3));
        exits.exited(1);
        let exiting = {
            let exits = Arc::clone(&exits);
            std::thread::spawn(move || {
                // The exits come once the waiter waits, so that its wake-up,
                // not its first look, is what is tested.
                let asked = Instant::now() + Duration::from_secs(5);
                while sync::lock(&exits.state).awaited.is_empty() {
                    assert!(Instant::now() < asked, "the waiter never started waiting");
                    std::thread::yield_now();
                }
                exits.exited(0);
                exits.exited(2);
            })
        };
        let started = Instant::now();
        let exited = exits.wait_all_but(&[], started + Duration::from_secs(10));
        exiting.join().expect("the exiting thread");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the last exit did not wake the waiter: it waited {:?}",
            started.elapsed()
        );
        assert_eq!(exited, [true, true, true]);
    }

    #[test]
    fn an_abandoned_worker_is_not_waited_for() {
        let exits = WorkerExits::new(2);
        exits.exited(0);
        let started = Instant::now();
        let exited = exits.wait_all_but(&[1], started + Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for worker 1"
        );
        assert_eq!(exited, [true, false]);
    }

    #[test]
    fn the_wait_gives_up_at_the_deadline() {
        let exits = WorkerExits::new(2);
        exits.exited(0);
        let started = Instant::now();
        let exited = exits.wait_all_but(&[], started + Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(exited, [true, false]);
    }
}
