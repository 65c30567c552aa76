//! `loadgen idle`: opens N keep-alive connections, each answered once (so the
//! server has accepted it) and then left idle; while they are held, measures
//! how fast a fresh client is served, then checks that a sample of the idle
//! connections is still served.
//!
//! Prints `holding N connections` on stderr once they are all open, so the
//! script can read the server's thread count and memory from `/proc` then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Conn};
use crate::json::JsonObject;
use crate::stats::{micros_to_ms, quantile};

/// Bound on establishing one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on one response, for the opening request and the reuse check.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one fresh client's connect-to-response time.
const FRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Fresh-client failures in a row after which the rest are not tried.
const FRESH_GIVE_UP_AFTER: u64 = 3;

/// Threads that open the idle connections in parallel.
const OPENERS: usize = 16;

/// Fresh clients whose latency is measured while the idle ones are held.
const FRESH_CLIENTS: usize = 20;

/// Every how many held connections one is reused at the end.
const REUSE_SAMPLE_EVERY: usize = 100;

/// What `idle` measures.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) hold: Duration,
}

/// Outcome of opening one batch of idle connections.
#[derive(Default)]
struct Opened {
    held: Vec<Conn>,
    connect_errors: u64,
    failed_first_request: u64,
    non_200: u64,
    closed_by_server: u64,
    first_error: Option<String>,
}

/// Runs the measurement and returns the report line and whether every step
/// succeeded.
pub(crate) fn run(opts: &Options) -> (String, bool) {
    let request = Arc::new(client::get_request(opts.addr, "/"));
    let open_started = Instant::now();
    let per_thread = opts.connections.div_ceil(OPENERS);
    let handles: Vec<_> = (0..OPENERS)
        .map(|i| {
            let count = per_thread.min(opts.connections.saturating_sub(i * per_thread));
            let request = Arc::clone(&request);
            let addr = opts.addr;
            thread::spawn(move || open_batch(addr, &request, count))
        })
        .collect();
    let mut opened = Opened::default();
    for handle in handles {
        let Ok(batch) = handle.join() else { continue };
        opened.held.extend(batch.held);
        opened.connect_errors += batch.connect_errors;
        opened.failed_first_request += batch.failed_first_request;
        opened.non_200 += batch.non_200;
        opened.closed_by_server += batch.closed_by_server;
        if opened.first_error.is_none() {
            opened.first_error = batch.first_error;
        }
    }
    let open_secs = open_started.elapsed().as_secs_f64();
    eprintln!("holding {} connections", opened.held.len());

    let hold_until = Instant::now() + opts.hold;
    let mut fresh_us = Vec::with_capacity(FRESH_CLIENTS);
    let mut fresh_failures = 0u64;
    for _ in 0..FRESH_CLIENTS {
        if fresh_failures >= FRESH_GIVE_UP_AFTER && fresh_us.is_empty() {
            break;
        }
        match fresh_get(opts.addr, &request) {
            Ok(micros) => fresh_us.push(micros),
            Err(err) => {
                fresh_failures += 1;
                opened
                    .first_error
                    .get_or_insert(format!("fresh client: {err}"));
            }
        }
    }
    if let Some(left) = hold_until.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }

    // Are the idle connections still served after the hold?
    let mut reuse_checked = 0u64;
    let mut reuse_ok = 0u64;
    for conn in opened.held.iter_mut().step_by(REUSE_SAMPLE_EVERY) {
        reuse_checked += 1;
        if conn.send(&request).is_ok()
            && conn
                .read_response(Instant::now() + RESPONSE_TIMEOUT)
                .is_ok_and(|r| r.status == 200)
        {
            reuse_ok += 1;
        }
    }
    let held = opened.held.len();
    drop(opened.held);

    let all_ok = held == opts.connections
        && fresh_failures == 0
        && reuse_ok == reuse_checked
        && opened.non_200 == 0;
    let report = JsonObject::new()
        .field("mode", "idle")
        .field("requested", opts.connections)
        .field("held", held)
        .field("open_secs", open_secs)
        .field("connect_errors", opened.connect_errors)
        .field("failed_first_request", opened.failed_first_request)
        .field("non_200", opened.non_200)
        .field("closed_by_server", opened.closed_by_server)
        .field("fresh_clients", FRESH_CLIENTS)
        .field("fresh_tried", fresh_us.len() as u64 + fresh_failures)
        .field("fresh_failures", fresh_failures)
        .field(
            "fresh_median_ms",
            quantile(&mut fresh_us, 0.5).map(micros_to_ms),
        )
        .field(
            "fresh_max_ms",
            quantile(&mut fresh_us, 1.0).map(micros_to_ms),
        )
        .field("reuse_checked", reuse_checked)
        .field("reuse_ok", reuse_ok)
        .field("first_error", opened.first_error)
        .finish();
    (report, all_ok)
}

/// Opens `count` connections, one request each, keeping those left open.
fn open_batch(addr: SocketAddr, request: &[u8], count: usize) -> Opened {
    let mut out = Opened::default();
    for _ in 0..count {
        let mut conn = match client::connect(addr, CONNECT_TIMEOUT) {
            Ok(conn) => conn,
            Err(err) => {
                out.connect_errors += 1;
                out.first_error.get_or_insert(format!("connect: {err}"));
                continue;
            }
        };
        let answered = conn
            .send(request)
            .map_err(|err| format!("write: {err}"))
            .and_then(|()| {
                conn.read_response(Instant::now() + RESPONSE_TIMEOUT)
                    .map_err(|f| format!("read: {f}"))
            });
        match answered {
            Ok(response) => {
                if response.status != 200 {
                    out.non_200 += 1;
                    out.first_error
                        .get_or_insert(format!("status {}", response.status));
                }
                if response.close {
                    out.closed_by_server += 1;
                } else {
                    out.held.push(conn);
                }
            }
            Err(err) => {
                out.failed_first_request += 1;
                out.first_error.get_or_insert(err);
            }
        }
    }
    out
}

/// One fresh connection's `GET /`, connect to last byte, in microseconds.
fn fresh_get(addr: SocketAddr, request: &[u8]) -> Result<u64, String> {
    let started = Instant::now();
    let mut conn = client::connect(addr, FRESH_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    conn.send(request).map_err(|e| format!("write: {e}"))?;
    let response = conn
        .read_response(started + FRESH_TIMEOUT)
        .map_err(|f| format!("read: {f}"))?;
    if response.status != 200 {
        return Err(format!("status {}", response.status));
    }
    Ok(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
}
