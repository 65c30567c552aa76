//! Logs a warning that can repeat many times a second (a connection flood)
//! at most once per interval, with the count of those left out.

use std::time::{Duration, Instant};

/// The longest a repeated warning stays silent.
const INTERVAL: Duration = Duration::from_secs(1);

/// One kind of repeated warning, owned by the one thread that raises it.
#[derive(Debug, Default)]
pub(crate) struct RateLimitedWarning {
    last_logged: Option<Instant>,
    left_out: u64,
}

impl RateLimitedWarning {
    /// Logs `message` unless one was logged less than a second ago.
    pub(crate) fn warn(&mut self, message: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < INTERVAL)
        {
            self.left_out += 1;
            return;
        }
        let left_out = std::mem::take(&mut self.left_out);
        self.last_logged = Some(now);
        if left_out == 0 {
            log::warn!("{}", message());
        } else {
            log::warn!(
                "{} ({left_out} more like it in the last second not logged)",
                message()
            );
        }
    }
}
