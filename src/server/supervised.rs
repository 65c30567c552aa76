//! Supervision of the threads the server cannot run without: one that
//! unwinds takes the server into shutdown, and the report names it.

use crate::lifecycle::Lifecycle;

/// Marks a thread the server cannot run without: if it unwinds, the
/// server shuts down, and the report names it.
pub(super) struct Supervised<'a> {
    name: &'static str,
    lifecycle: &'a Lifecycle,
}

impl<'a> Supervised<'a> {
    pub(super) fn new(name: &'static str, lifecycle: &'a Lifecycle) -> Self {
        Self { name, lifecycle }
    }
}

impl Drop for Supervised<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            log::error!("the {} thread died; shutting down", self.name);
            self.lifecycle.thread_died(self.name);
        }
    }
}
