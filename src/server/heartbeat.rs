//! Proof that a thread that waits on readiness (the acceptor, the poller)
//! still runs: the watchdog asks, wakes the thread, and the thread answers
//! when its wait returns. A thread stuck anywhere leaves the question
//! unanswered, and the watchdog stops telling the service manager that
//! the server is alive.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One thread's heartbeat.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    /// Questions asked, by the watchdog.
    asked: AtomicU64,
    /// The last question answered, by the thread.
    answered: AtomicU64,
    /// Set when the thread ended as asked (the acceptor after the drain
    /// closed the listener): it is not stuck, it is done.
    retired: AtomicBool,
}

impl Heartbeat {
    /// For the thread, each time its wait returns.
    pub(crate) fn answer(&self) {
        self.answered
            .store(self.asked.load(Ordering::Acquire), Ordering::Release);
    }

    /// For the thread, when it ends as asked.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// For the watchdog: whether the last question was answered (or the
    /// thread is done); then asks the next one. The caller wakes the
    /// thread after.
    pub(crate) fn answered_then_ask(&self) -> bool {
        if self.retired.load(Ordering::Acquire) {
            return true;
        }
        let asked = self.asked.load(Ordering::Acquire);
        let answered = self.answered.load(Ordering::Acquire) == asked;
        if answered {
            self.asked.store(asked + 1, Ordering::Release);
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_question_means_stuck_until_the_thread_answers() {
        let heartbeat = Heartbeat::default();
        assert!(heartbeat.answered_then_ask(), "nothing asked yet");
        assert!(!heartbeat.answered_then_ask(), "asked, not answered");
        heartbeat.answer();
        assert!(heartbeat.answered_then_ask());
        heartbeat.retire();
        assert!(
            heartbeat.answered_then_ask(),
            "a retired thread is not stuck"
        );
    }
}
