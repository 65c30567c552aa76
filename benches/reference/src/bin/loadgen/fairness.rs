//! `loadgen fairness`: N keep-alive connections, one thread each, sending the
//! same GET back to back for a fixed time; reports how evenly the server
//! served them. wrk reports 0 errors even when some connections are never
//! served, which is what this catches.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Failure};
use crate::json::JsonObject;
use crate::stats::{micros_to_ms, quantile};

/// Bound on establishing one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Stack for each client thread; they hold little.
const CLIENT_STACK: usize = 64 * 1024;

/// What `fairness` measures.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) path: String,
}

/// One connection's tally.
#[derive(Default)]
struct ConnStats {
    /// Complete responses received before the end.
    responses: u64,
    /// Responses with a status other than 2xx.
    non_2xx: u64,
    /// Connects that failed (the first one or a reconnect).
    connect_errors: u64,
    /// Requests that got no complete response (EOF, reset, protocol error).
    failures: u64,
    /// Reconnects after the server closed the connection or it failed.
    reconnects: u64,
    /// Latency of each response, microseconds.
    latencies_us: Vec<u64>,
    /// First failure seen, for the report.
    first_error: Option<String>,
}

/// Runs the load and returns the report line and whether every connection
/// got at least one response.
pub(crate) fn run(opts: &Options) -> (String, bool) {
    let request = Arc::new(client::get_request(opts.addr, &opts.path));
    // Every thread connects first, then all start together.
    let start_line = Arc::new(Barrier::new(opts.connections + 1));
    let mut handles = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        let request = Arc::clone(&request);
        let start_line = Arc::clone(&start_line);
        let (addr, duration) = (opts.addr, opts.duration);
        let spawned = thread::Builder::new()
            .stack_size(CLIENT_STACK)
            .spawn(move || one_connection(addr, &request, duration, &start_line));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                eprintln!("loadgen: cannot spawn client thread: {err}");
                std::process::exit(2);
            }
        }
    }
    start_line.wait();
    let started = Instant::now();
    let per_conn: Vec<ConnStats> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    let elapsed = started
        .elapsed()
        .as_secs_f64()
        .max(opts.duration.as_secs_f64());

    let mut counts: Vec<u64> = per_conn.iter().map(|c| c.responses).collect();
    let total: u64 = counts.iter().sum();
    let zero = counts.iter().filter(|&&c| c == 0).count();
    let mut latencies: Vec<u64> = per_conn
        .iter()
        .flat_map(|c| c.latencies_us.iter().copied())
        .collect();
    let first_error = per_conn.iter().find_map(|c| c.first_error.clone());
    let sum = |f: fn(&ConnStats) -> u64| per_conn.iter().map(f).sum::<u64>();
    let report = JsonObject::new()
        .field("mode", "fairness")
        .field("path", opts.path.as_str())
        .field("connections", opts.connections)
        .field("duration_secs", opts.duration.as_secs_f64())
        .field("total", total)
        .field("rps", total as f64 / elapsed)
        .field("per_conn_min", quantile(&mut counts, 0.0))
        .field("per_conn_median", quantile(&mut counts, 0.5))
        .field("per_conn_max", quantile(&mut counts, 1.0))
        .field("zero_response_connections", zero)
        .field(
            "latency_p50_ms",
            quantile(&mut latencies, 0.5).map(micros_to_ms),
        )
        .field(
            "latency_p99_ms",
            quantile(&mut latencies, 0.99).map(micros_to_ms),
        )
        .field(
            "latency_max_ms",
            quantile(&mut latencies, 1.0).map(micros_to_ms),
        )
        .field("non_2xx", sum(|c| c.non_2xx))
        .field("connect_errors", sum(|c| c.connect_errors))
        .field("failures", sum(|c| c.failures))
        .field("reconnects", sum(|c| c.reconnects))
        .field("first_error", first_error)
        .finish();
    (report, zero == 0)
}

/// One client: connect, wait for the start, loop until the end.
fn one_connection(
    addr: SocketAddr,
    request: &[u8],
    duration: Duration,
    start_line: &Barrier,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut conn = match client::connect(addr, CONNECT_TIMEOUT) {
        Ok(conn) => Some(conn),
        Err(err) => {
            stats.connect_errors += 1;
            stats.first_error = Some(format!("connect: {err}"));
            None
        }
    };
    start_line.wait();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let Some(c) = conn.as_mut() else {
            match client::connect(addr, CONNECT_TIMEOUT) {
                Ok(new) => {
                    stats.reconnects += 1;
                    conn = Some(new);
                }
                Err(err) => {
                    stats.connect_errors += 1;
                    stats.first_error.get_or_insert(format!("connect: {err}"));
                    // Do not spin on a refusing server.
                    thread::sleep(Duration::from_millis(10));
                }
            }
            continue;
        };
        let sent = Instant::now();
        if let Err(err) = c.send(request) {
            stats.failures += 1;
            stats.first_error.get_or_insert(format!("write: {err}"));
            conn = None;
            continue;
        }
        match c.read_response(end) {
            Ok(response) => {
                stats.responses += 1;
                stats
                    .latencies_us
                    .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                if !(200..300).contains(&response.status) {
                    stats.non_2xx += 1;
                }
                if response.close {
                    conn = None;
                }
            }
            Err(Failure::TimedOut) => break,
            Err(failure) => {
                stats.failures += 1;
                stats.first_error.get_or_insert(format!("read: {failure}"));
                conn = None;
            }
        }
    }
    stats
}
