//! What each worker is running, for the log of requests abandoned at the
//! shutdown deadline.

use std::sync::Mutex;
use std::time::Instant;

use crate::lifecycle::AbandonedRequest;
use crate::sync;

/// The request a worker is running, for the abandoned-request log.
#[derive(Debug, Default)]
pub(crate) struct Running {
    current: Option<(Instant, String, String)>,
}

/// One per worker; written by that worker, read at the deadline.
pub(crate) type RunningSlot = Mutex<Running>;

pub(crate) fn running_requests(slots: &[RunningSlot]) -> Vec<AbandonedRequest> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(worker, slot)| {
            let running = sync::lock(slot);
            running
                .current
                .as_ref()
                .map(|(started, method, path)| AbandonedRequest {
                    method: method.clone(),
                    path: path.clone(),
                    age_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    worker,
                })
        })
        .collect()
}

pub(crate) fn set_running(slot: &RunningSlot, request: Option<(&str, &str)>) {
    let mut running = sync::lock(slot);
    match request {
        Some((method, path)) => match &mut running.current {
            Some((started, current_method, current_path)) => {
                *started = Instant::now();
                current_method.clear();
                current_method.push_str(method);
                current_path.clear();
                current_path.push_str(path);
            }
            None => running.current = Some((Instant::now(), method.to_owned(), path.to_owned())),
        },
        None => running.current = None,
    }
}
