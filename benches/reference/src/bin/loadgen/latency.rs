//! `loadgen latency-probe`: a health checker's view of a server. RATE
//! requests a second for a fixed time, each on a fresh connection (connect,
//! `GET PATH`, read the response), started on a fixed schedule whether or
//! not the earlier ones have been answered, each bounded by a timeout.
//! Reports latency quantiles of the 200 responses and counts the failures
//! by kind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Failure};
use crate::json::JsonObject;
use crate::stats::{micros_to_ms, quantile};

/// Stack for each request thread; they hold little.
const REQUEST_STACK: usize = 64 * 1024;

/// What `latency-probe` measures.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    /// Requests started per second.
    pub(crate) rate: u32,
    pub(crate) duration: Duration,
    /// Bound on one request, connect to last byte.
    pub(crate) timeout: Duration,
}

/// Why one probe request failed.
enum ProbeError {
    /// No connection within the timeout (a full accept queue drops SYNs).
    ConnectTimeout,
    /// Connect refused or failed otherwise.
    Connect(String),
    /// Connected, but no complete response within the timeout.
    TimedOut,
    /// Closed or reset before a complete response.
    Closed(String),
    /// A complete response with a status other than 200.
    Status(u16),
    /// Anything else (write error, protocol error).
    Other(String),
}

impl ProbeError {
    fn describe(&self) -> String {
        match self {
            ProbeError::ConnectTimeout => String::from("connect: timed out"),
            ProbeError::Connect(err) => format!("connect: {err}"),
            ProbeError::TimedOut => String::from("read: timed_out"),
            ProbeError::Closed(label) => format!("read: {label}"),
            ProbeError::Status(status) => format!("status {status}"),
            ProbeError::Other(err) => err.clone(),
        }
    }
}

/// Runs the probe and returns the report line and whether every request
/// got a 200 in time.
pub(crate) fn run(opts: &Options) -> (String, bool) {
    let request = Arc::new(client::get_request(opts.addr, &opts.path));
    let rate = opts.rate.max(1);
    let total = (u128::from(rate) * opts.duration.as_millis() / 1000) as usize;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total);
    let mut spawn_errors = 0u64;
    for i in 0..total {
        let at = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let request = Arc::clone(&request);
        let (addr, timeout) = (opts.addr, opts.timeout);
        match thread::Builder::new()
            .stack_size(REQUEST_STACK)
            .spawn(move || one(addr, &request, timeout))
        {
            Ok(handle) => handles.push(handle),
            Err(_) => spawn_errors += 1,
        }
    }

    let mut ok_us = Vec::with_capacity(total);
    let (mut connect_timeouts, mut connect_errors, mut timed_out) = (0u64, 0u64, 0u64);
    let (mut closed, mut bad_status, mut other) = (0u64, 0u64, spawn_errors);
    let mut first_error: Option<String> = None;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for handle in handles {
        let outcome = handle
            .join()
            .unwrap_or_else(|_| Err(ProbeError::Other(String::from("probe thread panicked"))));
        match outcome {
            Ok(micros) => ok_us.push(micros),
            Err(err) => {
                first_error.get_or_insert_with(|| err.describe());
                match err {
                    ProbeError::ConnectTimeout => connect_timeouts += 1,
                    ProbeError::Connect(_) => connect_errors += 1,
                    ProbeError::TimedOut => timed_out += 1,
                    ProbeError::Closed(_) => closed += 1,
                    ProbeError::Status(status) => {
                        bad_status += 1;
                        *statuses.entry(status).or_default() += 1;
                    }
                    ProbeError::Other(_) => other += 1,
                }
            }
        }
    }
    let errors = connect_timeouts + connect_errors + timed_out + closed + bad_status + other;
    let report = JsonObject::new()
        .field("mode", "latency-probe")
        .field("path", opts.path.as_str())
        .field("rate", u64::from(rate))
        .field("timeout_ms", opts.timeout.as_secs_f64() * 1000.0)
        .field("requested", total)
        .field("ok", ok_us.len())
        .field("errors", errors)
        .field("connect_timeouts", connect_timeouts)
        .field("connect_errors", connect_errors)
        .field("timed_out", timed_out)
        .field("closed", closed)
        .field("bad_status", bad_status)
        .field(
            "bad_statuses",
            statuses
                .iter()
                .map(|(status, n)| format!("{status}x{n}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .field("other_errors", other)
        .field("p50_ms", quantile(&mut ok_us, 0.5).map(micros_to_ms))
        .field("p99_ms", quantile(&mut ok_us, 0.99).map(micros_to_ms))
        .field("max_ms", quantile(&mut ok_us, 1.0).map(micros_to_ms))
        .field("elapsed_secs", started.elapsed().as_secs_f64())
        .field("first_error", first_error)
        .finish();
    (report, errors == 0)
}

/// One request on a fresh connection: connect to last byte, microseconds.
fn one(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<u64, ProbeError> {
    let started = Instant::now();
    let mut conn = client::connect(addr, timeout).map_err(|err| {
        if matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            ProbeError::ConnectTimeout
        } else {
            ProbeError::Connect(err.to_string())
        }
    })?;
    conn.send(request)
        .map_err(|err| ProbeError::Other(format!("write: {err}")))?;
    let response = conn
        .read_response(started + timeout)
        .map_err(|failure| match failure {
            Failure::TimedOut => ProbeError::TimedOut,
            Failure::ClosedBeforeResponse | Failure::ClosedMidResponse | Failure::Reset => {
                ProbeError::Closed(failure.label().to_owned())
            }
            other => ProbeError::Other(format!("read: {other}")),
        })?;
    if response.status != 200 {
        return Err(ProbeError::Status(response.status));
    }
    Ok(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
}
