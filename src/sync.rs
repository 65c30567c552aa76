//! Taking locks whether or not they are poisoned: the one place that says
//! why the crate does so, and the only way its code takes a lock or waits
//! on a condition variable.
//!
//! A `Mutex` is poisoned when a thread panics while holding it. Here that
//! is no reason to refuse the value behind it:
//!
//! - Every value guarded by a lock in this crate is consistent at each
//!   unlock: a critical section either makes its whole change or none a
//!   later holder could see half done. A new lock must keep this rule to
//!   use these functions.
//! - A panic with a lock held is a handler's (caught by its worker, which
//!   answers 500 and lives on) or a bug in one thread. Propagating the
//!   poison would turn it into a panic in every thread that takes the lock
//!   next, the shutdown coordinator among them: one failed request would
//!   wedge the shutdown it must still run to the end.
//!
//! So each function gives the guard back either way.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, WaitTimeoutResult};
use std::time::Duration;

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` with `guard`, as [`Condvar::wait`], and takes the
/// lock back poisoned or not.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` with `guard` for at most `timeout`, as
/// [`Condvar::wait_timeout`], and takes the lock back poisoned or not.
#[cfg_attr(gremlins_loom, allow(dead_code, reason = "the tracker uses `model`"))]
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(PoisonError::into_inner)
}

/// The same, for loom's locks, which the in-flight tracker uses when it
/// is model-checked (`--cfg gremlins_loom`).
#[cfg(gremlins_loom)]
pub(crate) mod model {
    use loom::sync::{Condvar, Mutex, MutexGuard, WaitTimeoutResult};
    use std::sync::PoisonError;
    use std::time::Duration;

    /// Locks `mutex`, poisoned or not.
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on `condvar` with `guard` for at most `timeout`, and takes the
    /// lock back poisoned or not.
    pub(crate) fn wait_timeout<'a, T>(
        condvar: &Condvar,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        condvar
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(all(test, not(gremlins_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_value() {
        let mutex = Arc::new(Mutex::new(1));
        let holder = Arc::clone(&mutex);
        let panicked = std::thread::spawn(move || {
            let mut value = lock(&holder);
            *value = 2;
            panic!("a handler failed with the lock held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 2);
    }

    #[test]
    fn a_wait_on_a_poisoned_lock_returns_its_guard() {
        let mutex = Arc::new(Mutex::new(()));
        let holder = Arc::clone(&mutex);
        let _ = std::thread::spawn(move || {
            let _guard = lock(&holder);
            panic!("poisons the lock");
        })
        .join();
        let condvar = Condvar::new();
        let (_guard, timed_out) = wait_timeout(&condvar, lock(&mutex), Duration::ZERO);
        assert!(timed_out.timed_out());
    }
}
