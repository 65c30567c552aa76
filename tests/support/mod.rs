//! Helpers for integration tests: the service as a real child process on
//! 127.0.0.1, a small blocking HTTP/1.1 client, and /proc readings. The
//! submodules hold throwaway PostgreSQL and Redis servers (`postgres`,
//! `redis`, on the plumbing of `server_process`), the reading of
//! `kubernetes/` (`manifests`) and a mixed client load for restart tests
//! (`load`).
//!
//! Every wait here has a timeout whose panic message says what was awaited.

#![allow(dead_code, unreachable_pub)]

pub mod arrivals;
pub mod load;
pub mod manifests;
pub mod notify;
pub mod postgres;
pub mod redis;
pub mod server_process;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How long a service may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound for reading one response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed connection may take to show EOF.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the service logs once it is draining (`/readyz` 503) after SIGTERM.
pub const DRAINING_LOG: &str = "SIGTERM received";
/// What the service logs once its listener is closed and the last call for
/// idle keep-alive connections has begun.
pub const LISTENER_CLOSED_LOG: &str = "shutdown: listener closed";
/// Longest wait for a connect. A SYN that arrives while the acceptor has
/// stopped admitting is dropped and retried by the kernel after 1 s, and
/// then refused, so a connect racing the listener close may take that long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The release (or test-profile) binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gremlins-api")
}

/// A running service process, killed (by its PID) when dropped.
pub struct Service {
    pid: u32,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    exit: Receiver<ExitStatus>,
    exited: Option<ExitStatus>,
    /// The service's own TMPDIR (its spool dir lives there), removed with
    /// whatever a killed service left in it when this is dropped.
    _temp: tempfile::TempDir,
}

impl Service {
    /// Starts the reference binary on 127.0.0.1:0 with `args` and the
    /// environment `env`, and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary());
        command.arg("--listen").arg("127.0.0.1:0").args(args);
        Self::spawn(command, env)
    }

    /// Starts any program that logs `listening on ADDR` like the service.
    pub fn spawn(mut command: Command, env: &[(&str, &str)]) -> Self {
        let temp = tempfile::Builder::new()
            .prefix("gremlins-test-")
            .tempdir()
            .expect("a temp dir for the service");
        command
            .env("RUST_LOG", "info")
            .env("TMPDIR", temp.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child: Child = command.spawn().expect("spawn the service");
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, lines) = crossbeam_channel::unbounded();
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log lock").push(line.clone());
                    let _ = line_tx.send(line);
                }
            });
        }
        let (exit_tx, exit) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut service = Self {
            pid,
            addr: "127.0.0.1:1".parse().expect("addr"),
            lines,
            log,
            exit,
            exited: None,
            _temp: temp,
        };
        let line = service.wait_for_log("listening on ", START_TIMEOUT);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address after 'listening on'");
        service.addr = addr.parse().expect("a socket address");
        service
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The admin listener's address, as the service logged it at start
    /// (`--admin-listen`).
    pub fn admin_addr(&self) -> SocketAddr {
        let log = self.log_text();
        log.split("admin listener on ")
            .nth(1)
            .and_then(|rest| {
                rest.split(':')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(":")
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no 'admin listener on ADDR:' in the log:\n{log}"))
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, `STOP`, ...) to the process.
    pub fn signal(&self, name: &str) {
        assert!(self.kill(name), "kill -{name} {} failed", self.pid);
    }

    /// Runs `kill -NAME PID`; whether it succeeded.
    fn kill(&self, name: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status()
            .expect("run kill")
            .success()
    }

    /// Sends a signal as [`signal`](Self::signal) does, unless the process
    /// has exited (as the kubelet's SIGTERM after a preStop hook may find
    /// it); returns whether it was sent.
    pub fn signal_unless_exited(&mut self, name: &str) -> bool {
        if self.exited.is_none() {
            self.exited = self.exit.try_recv().ok();
        }
        if self.exited.is_some() {
            return false;
        }
        if self.kill(name) {
            return true;
        }
        // It exited between the look and the kill.
        self.exited = self.exit.recv_timeout(Duration::from_secs(5)).ok();
        assert!(
            self.exited.is_some(),
            "kill -{name} {} failed and the process has not exited",
            self.pid
        );
        false
    }

    /// Waits for the next log line containing `needle` (lines already read
    /// by an earlier wait are not seen again).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for a log line containing {needle:?}; log so far:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        match self.exit.recv_timeout(timeout) {
            Ok(status) => {
                self.exited = Some(status);
                // The log reader finishes at EOF, right after exit.
                status
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "the service did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                )
            }
            Err(RecvTimeoutError::Disconnected) => panic!("lost track of the service process"),
        }
    }

    /// Sends SIGTERM and waits, up to `timeout`, for the exit; returns the
    /// exit code and the time from the signal to the exit.
    pub fn terminate(&mut self, timeout: Duration) -> (i32, Duration) {
        let signalled = Instant::now();
        self.signal("TERM");
        let code = self.exit_code(timeout);
        (code, signalled.elapsed())
    }

    /// The exit code, after [`wait_exit`](Self::wait_exit).
    pub fn exit_code(&mut self, timeout: Duration) -> i32 {
        let status = self.wait_exit(timeout);
        status
            .code()
            .unwrap_or_else(|| panic!("the service was killed by a signal: {status:?}"))
    }

    /// Waits for the exit and asserts its code, showing the log if it
    /// differs.
    pub fn assert_exit_code(&mut self, expected: i32, timeout: Duration) {
        let code = self.exit_code(timeout);
        assert_eq!(code, expected, "exit code; log:\n{}", self.log_text());
    }

    /// Every JSON shutdown report logged so far, in order: one per
    /// process (a hot restart's successor logs to the same stderr).
    pub fn reports(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter_map(|line| {
                let json = &line[line.find("{\"shutdown_report\"")?..];
                serde_json::from_str::<serde_json::Value>(json).ok()
            })
            .map(|report| report["shutdown_report"].clone())
            .collect()
    }

    /// The JSON shutdown report (the last log line), after exit.
    pub fn report(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(report) = self.reports().pop() {
                return report;
            }
            match self.lines.recv_deadline(deadline) {
                Ok(_) => {}
                Err(_) => panic!("no shutdown report in the log:\n{}", self.log_text()),
            }
        }
    }

    /// A field of /proc/PID/status, such as `VmHWM` (kB) or `Threads`.
    pub fn status_field(&self, field: &str) -> u64 {
        proc_status_field(self.pid, field)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.exited.is_none() && self.exit.try_recv().is_err() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.pid.to_string())
                .status();
        }
    }
}

/// Reads once from `stream`, as `Read::read` does, and again when a
/// signal interrupts the read: a socket with a read timeout (SO_RCVTIMEO)
/// fails with EINTR whenever a signal handler runs in the reading thread
/// or the process is stopped and continued, SA_RESTART or not
/// (signal(7)); that is no answer from the server. Says so on stderr, with
/// the time since boot, to match a kernel trace. At most 100 reads.
pub fn read_retrying(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    retrying_interrupted(|| {
        let mut reader = stream;
        reader.read(buffer)
    })
}

/// Peeks once at `stream`, again when a signal interrupts it, as
/// [`read_retrying`] reads.
pub fn peek_retrying(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    retrying_interrupted(|| stream.peek(buffer))
}

fn retrying_interrupted(mut call: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    let mut result = call();
    for _ in 0..100 {
        match &result {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                eprintln!(
                    "test client: a read was interrupted (EINTR) at {} s since boot; reading again",
                    uptime()
                );
                result = call();
            }
            _ => break,
        }
    }
    result
}

/// Seconds since boot (CLOCK_BOOTTIME, as /proc/uptime gives it), to
/// match a log line against a kernel trace.
fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text()))
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// A client connection that reads responses one by one.
pub struct Client {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).expect("connect to the service");
        Self::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write the request");
    }

    /// Writes `request` and reads its answer, saying why if there is none
    /// (a failed write included).
    pub fn try_exchange(&mut self, request: &[u8]) -> Result<Response, String> {
        self.stream
            .write_all(request)
            .map_err(|error| format!("write failed: {error}"))?;
        self.try_read_response()
    }

    /// Sends `GET path` (keep-alive).
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Reads one response; panics with what was read if there is none.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response()
            .unwrap_or_else(|error| panic!("no complete response: {error}"))
    }

    /// Reads one response (skipping `100 Continue`), or says why not.
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        loop {
            let response = self.try_read_one()?;
            if response.status != 100 {
                return Ok(response);
            }
        }
    }

    /// Reads one response, including an interim one.
    pub fn try_read_one(&mut self) -> Result<Response, String> {
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        self.buffer.drain(..head_end);
        let length: usize = if status == 100 {
            0
        } else {
            headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.parse().ok())
                .ok_or("response without Content-Length")?
        };
        while self.buffer.len() < length {
            self.fill()?;
        }
        let body = self.buffer.drain(..length).collect();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let read = read_retrying(&self.stream, &mut chunk);
        match read {
            Ok(0) => Err(format!(
                "connection closed after {} unparsed bytes",
                self.buffer.len()
            )),
            Ok(count) => {
                self.buffer.extend_from_slice(&chunk[..count]);
                Ok(())
            }
            Err(error) => Err(format!("read failed: {error}")),
        }
    }

    /// How the connection ends within `timeout`, the server sending
    /// nothing more: a clean close (EOF, the server's FIN), a reset or
    /// other error (a crash, or a close with unread input), or not at all.
    pub fn ending_within(&mut self, timeout: Duration) -> Ending {
        assert!(
            self.buffer.is_empty(),
            "unread response bytes: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        let deadline = Instant::now() + timeout;
        let mut byte = [0u8; 1];
        let ending = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ending::StillOpen;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.stream.read(&mut byte) {
                Ok(0) => break Ending::Eof,
                Ok(_) => panic!(
                    "unexpected bytes from the server: {:?}",
                    String::from_utf8_lossy(&byte)
                ),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => break Ending::Failed(error),
            }
        };
        self.stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .expect("read timeout");
        ending
    }

    /// Asserts that the server closes the connection cleanly (EOF, not a
    /// reset) within `timeout` without sending anything more.
    pub fn assert_clean_close_within(&mut self, timeout: Duration, what: &str) {
        match self.ending_within(timeout) {
            Ending::Eof => {}
            Ending::Failed(error) => panic!(
                "{what}: expected a clean close (EOF), the connection failed with {error:?} \
                 (a reset: a crash, or a close with unread input)"
            ),
            Ending::StillOpen => {
                panic!("{what}: the server did not close the connection within {timeout:?}")
            }
        }
    }
}

/// How a connection ended, as a client sees it.
#[derive(Debug)]
pub enum Ending {
    /// End of stream: the server closed cleanly (FIN) after its last byte.
    Eof,
    /// A reset or another error: not a clean close.
    Failed(io::Error),
    /// Still open when the wait ended.
    StillOpen,
}

/// How a connect ended.
pub enum Dial {
    Accepted(TcpStream),
    /// ECONNREFUSED: nothing listens any more.
    Refused,
    /// Anything else: a timeout, a reset, ...
    Failed(io::Error),
}

/// Connects to `addr` within [`CONNECT_TIMEOUT`] and says how that ended.
pub fn dial(addr: SocketAddr) -> Dial {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(stream) => Dial::Accepted(stream),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => Dial::Refused,
        Err(error) => Dial::Failed(error),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// One request on a fresh connection that asks to close.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut client = Client::connect(addr);
    client
        .send(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes());
    client.read_response()
}

/// Asserts that the server closes `client`'s connection cleanly (EOF, not
/// a reset) within [`CLOSE_TIMEOUT`] without sending anything more.
pub fn assert_closed(client: &mut Client, what: &str) {
    client.assert_clean_close_within(CLOSE_TIMEOUT, what);
}

/// Asserts that the shutdown report accounts for every request: each head
/// the server received got its response written to the last byte.
pub fn assert_nothing_lost(report: &serde_json::Value) {
    assert_requests_unanswered(report, 0);
}

/// Asserts that exactly `unanswered` of the requests whose heads the
/// server received never got their response written (abandoned at the
/// deadline, or a client that could not be written to).
pub fn assert_requests_unanswered(report: &serde_json::Value, unanswered: u64) {
    let count = |field: &str| {
        report[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in the shutdown report {report}"))
    };
    let (received, written) = (count("requests_received"), count("responses_written"));
    assert_eq!(
        received.checked_sub(written),
        Some(unanswered),
        "{received} requests received, {written} responses written: expected {unanswered} \
         unanswered; report {report}"
    );
}

/// A `/metrics` value: the sample line `name value` (`name` may carry
/// its labels, `name{label="x"}`).
pub fn metric_in(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{metrics}"))
}

/// A `/metrics` value, read on a fresh connection.
pub fn metric(addr: SocketAddr, name: &str) -> i64 {
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200, "/metrics: {}", response.text());
    metric_in(&response.text(), name)
}

/// Checks `condition` again and again until it holds (a condition on a
/// service is a round trip to it; nothing here sleeps); panics after
/// `timeout` saying what was awaited.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// Asserts a normal request on a fresh connection still succeeds.
pub fn assert_still_serving(addr: SocketAddr) {
    let response = get(addr, "/healthz");
    assert_eq!(
        response.status,
        200,
        "a normal request after the bad one: {}",
        response.text()
    );
    assert_eq!(response.text(), "ok");
}

// ===========================================================================
// Added for tests/http_conformance.rs and tests/bad_input.rs: an in-process
// server (the library, not the binary) with a route that reads the body.
// ===========================================================================

/// An in-process server built on `gremlins_api::Server` whose routes are:
/// `/echo` reads the whole body and answers it back (a body error is
/// answered with its own status and code); `/ignore` answers `ignored`
/// without reading the body; `/bytes?n=N` answers N bytes of `x`;
/// `/target` (and `*`) answers `host=H path=P query=Q` as the request
/// reads them; every other path answers `ok`. Shut down and
/// joined when dropped.
pub struct EchoServer {
    pub addr: SocketAddr,
    handle: gremlins_api::ShutdownHandle,
    done: Receiver<()>,
}

impl EchoServer {
    /// Binds 127.0.0.1:0 with test-friendly timeouts, lets `configure`
    /// change the config, and serves on a thread.
    pub fn start(configure: impl FnOnce(&mut gremlins_api::ServerConfig)) -> Self {
        use gremlins_api::{Request, Response, Server, ServerConfig, StatusCode};
        let mut config = ServerConfig::default();
        config.listen = "127.0.0.1:0".parse().expect("loopback address");
        config.workers = 2;
        config.shutdown_timeout = Duration::from_secs(5);
        configure(&mut config);
        let server = Server::bind(config).expect("bind the echo server");
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let handler = |request: &mut Request<'_>| match request.path() {
                "/echo" => match request.body_to_vec() {
                    Ok(body) => Response::new(StatusCode::OK, body),
                    Err(error) => error.wire_error().response(),
                },
                "/ignore" => Response::text(StatusCode::OK, "ignored"),
                "/target" | "*" => Response::text(
                    StatusCode::OK,
                    format!(
                        "host={} path={} query={}",
                        request.host().unwrap_or("-"),
                        request.path(),
                        request.query().unwrap_or("-")
                    ),
                ),
                "/bytes" => {
                    let count = request
                        .query_param("n")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    Response::new(StatusCode::OK, vec![b'x'; count])
                }
                _ => Response::text(StatusCode::OK, "ok"),
            };
            let _ = server.run(handler);
            let _ = done_tx.send(());
        });
        Self { addr, handle, done }
    }
}

impl EchoServer {
    /// Client connections the server holds open now.
    pub fn open_connections(&self) -> usize {
        self.handle.open_connections()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        let stopped = self.done.recv_timeout(Duration::from_secs(30));
        if stopped.is_err() && !std::thread::panicking() {
            panic!("the echo server did not stop within 30s of shutdown()");
        }
    }
}

/// The PID written right after `marker` in a log line (`... pid 123; ...`).
pub fn pid_after(line: &str, marker: &str) -> u32 {
    line.split(marker)
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("a PID after {marker:?} in {line:?}"))
}
