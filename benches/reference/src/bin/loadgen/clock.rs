//! Wall-clock time, to line up the reports of separate processes
//! (`restart-count`'s failures, `notify-listen`'s messages, `subreaper`'s
//! exits) on one time line.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
