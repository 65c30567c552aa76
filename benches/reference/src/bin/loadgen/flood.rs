//! `loadgen pipeline-flood`: N connections, one thread each, that pipeline
//! `GET PATH` as fast as the server takes them and never read a byte of
//! the responses. The responses fill this side's receive buffer and then
//! the server's send buffer; what the server does then (buffer without
//! bound, stop reading, time the connection out) is what this exercises.
//!
//! Per connection it measures how long the server held it: from connect
//! until the server closed or reset it (seen with `poll`, without reading),
//! or until the end of the run if it never did.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::json::JsonObject;
use crate::stats::{micros_to_ms, quantile};

/// Bound on establishing one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one blocked write waits before the deadline and the peer's
/// state are checked again.
const WRITE_SLICE: Duration = Duration::from_millis(100);

/// Requests in the buffer written over and over (kept whole: writing
/// resumes where the last write stopped, so the stream stays valid HTTP).
const BATCH: usize = 64;

/// Stack for each connection thread; they hold little.
const CLIENT_STACK: usize = 64 * 1024;

/// What `pipeline-flood` does.
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) path: String,
}

/// One connection's outcome.
#[derive(Default)]
struct Flooded {
    connected: bool,
    /// Connect to server close (or to the end of the run), microseconds.
    held_us: u64,
    /// The server closed or reset it before the end.
    closed_by_server: bool,
    bytes_written: u64,
    /// Time until the first write that could not complete at once (the
    /// server stopped taking requests), microseconds.
    first_block_us: Option<u64>,
    error: Option<String>,
}

/// Runs the flood and returns the report line and whether every
/// connection was established.
pub(crate) fn run(opts: &Options) -> (String, bool) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gremlins-loadgen\r\n\r\n",
        opts.path, opts.addr
    );
    let request_len = request.len() as u64;
    let batch = Arc::new(request.repeat(BATCH).into_bytes());
    // Every thread connects first, then all start together.
    let start_line = Arc::new(Barrier::new(opts.connections + 1));
    let mut handles = Vec::with_capacity(opts.connections);
    let mut spawn_errors = 0u64;
    for _ in 0..opts.connections {
        let batch = Arc::clone(&batch);
        let line = Arc::clone(&start_line);
        let (addr, duration) = (opts.addr, opts.duration);
        let spawned = thread::Builder::new()
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
                let connected = Instant::now();
                line.wait();
                flood(stream, &batch, connected, Instant::now() + duration)
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(_) => {
                spawn_errors += 1;
                // Stand in for the missing thread so the barrier opens.
                let start_line = Arc::clone(&start_line);
                thread::spawn(move || start_line.wait());
            }
        }
    }
    start_line.wait();
    let mut outcomes: Vec<Flooded> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| Flooded {
                error: Some(String::from("thread panicked")),
                ..Flooded::default()
            })
        })
        .collect();
    summarize(opts, request_len, spawn_errors, &mut outcomes)
}

/// Writes `batch` over and over until `deadline`, or until the server
/// closes the connection.
fn flood(
    stream: io::Result<TcpStream>,
    batch: &[u8],
    connected: Instant,
    deadline: Instant,
) -> Flooded {
    let mut out = Flooded::default();
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(err) => {
            out.error = Some(format!("connect: {err}"));
            return out;
        }
    };
    out.connected = true;
    if let Err(err) = stream.set_write_timeout(Some(WRITE_SLICE)) {
        out.error = Some(format!("set_write_timeout: {err}"));
        out.held_us = micros_since(connected);
        return out;
    }
    let _ = stream.set_nodelay(true);
    let mut pos = 0usize;
    let mut last_check = Instant::now();
    while Instant::now() < deadline {
        // While writes go through, still look for a close now and then
        // (a server may half-close and keep reading).
        if last_check.elapsed() >= WRITE_SLICE {
            last_check = Instant::now();
            if peer_gone(&stream) {
                out.closed_by_server = true;
                break;
            }
        }
        match stream.write(&batch[pos..]) {
            Ok(0) => {
                out.closed_by_server = true;
                break;
            }
            Ok(n) => {
                let short = n < batch.len() - pos;
                out.bytes_written += n as u64;
                pos = (pos + n) % batch.len();
                if short && out.first_block_us.is_none() {
                    // A short write: the send buffer is full.
                    out.first_block_us = Some(micros_since(connected));
                }
            }
            Err(err) => match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    out.first_block_us
                        .get_or_insert_with(|| micros_since(connected));
                    if peer_gone(&stream) {
                        out.closed_by_server = true;
                        break;
                    }
                }
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted => {
                    out.closed_by_server = true;
                    break;
                }
                _ => {
                    out.error = Some(format!("write: {err}"));
                    break;
                }
            },
        }
    }
    out.held_us = micros_since(connected);
    out
}

/// True when the server has closed (FIN) or reset this connection, seen
/// without reading: `poll` for `POLLRDHUP`, `POLLHUP` or `POLLERR`.
fn peer_gone(stream: &TcpStream) -> bool {
    let mut fds = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `fds` is a valid pollfd for the duration of the call, and the
    // fd stays open (borrowed from `stream`).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::poll(&mut fds, 1, 0) };
    rc > 0 && fds.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn micros_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The report line from every connection's outcome.
fn summarize(
    opts: &Options,
    request_len: u64,
    spawn_errors: u64,
    outcomes: &mut [Flooded],
) -> (String, bool) {
    let connected = outcomes.iter().filter(|o| o.connected).count();
    let mut held_closed: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.connected && o.closed_by_server)
        .map(|o| o.held_us)
        .collect();
    let mut held_all: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.connected)
        .map(|o| o.held_us)
        .collect();
    let mut first_block: Vec<u64> = outcomes.iter().filter_map(|o| o.first_block_us).collect();
    let mut requests: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.connected)
        .map(|o| o.bytes_written / request_len)
        .collect();
    let requests_total: u64 = requests.iter().sum();
    let bytes_total: u64 = outcomes.iter().map(|o| o.bytes_written).sum();
    let first_error = outcomes.iter_mut().find_map(|o| o.error.take());
    let report = JsonObject::new()
        .field("mode", "pipeline-flood")
        .field("path", opts.path.as_str())
        .field("connections", opts.connections)
        .field("connected", connected)
        .field("spawn_errors", spawn_errors)
        .field("duration_secs", opts.duration.as_secs_f64())
        .field("closed_by_server", held_closed.len())
        .field("open_at_end", connected - held_closed.len())
        .field(
            "held_closed_p50_ms",
            quantile(&mut held_closed, 0.5).map(micros_to_ms),
        )
        .field(
            "held_closed_max_ms",
            quantile(&mut held_closed, 1.0).map(micros_to_ms),
        )
        .field(
            "held_p50_ms",
            quantile(&mut held_all, 0.5).map(micros_to_ms),
        )
        .field(
            "held_max_ms",
            quantile(&mut held_all, 1.0).map(micros_to_ms),
        )
        .field("blocked", first_block.len())
        .field(
            "first_block_p50_ms",
            quantile(&mut first_block, 0.5).map(micros_to_ms),
        )
        .field("requests_written", requests_total)
        .field("requests_per_conn_p50", quantile(&mut requests, 0.5))
        .field("requests_per_conn_max", quantile(&mut requests, 1.0))
        .field("bytes_written", bytes_total)
        .field("first_error", first_error)
        .finish();
    (report, connected == opts.connections)
}
