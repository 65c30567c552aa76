//! A throwaway Redis server for integration tests: its own port on
//! 127.0.0.1 and directory, no persistence, and a process that a test can
//! pause, kill and restart.
//!
//! [`Redis::start`] gives a test its own server (fault tests need that: they
//! kill it); [`shared`] gives every test of one test binary the same server,
//! started on first use.
//!
//! # No orphans
//!
//! `Drop` kills the server and removes its directory. But statics are never
//! dropped (so [`shared`] servers are not), and a test process can also end
//! by `SIGKILL` (a harness timeout), Ctrl-C or `std::process::exit`. So every
//! instance also has a watchdog: a small `sh` child whose stdin is a pipe
//! from the test process. Only the test process holds the write end (std
//! creates pipes close-on-exec), so the watchdog reads end-of-file exactly
//! when the test process is gone, however it ended, and then kills the
//! server by PID and removes the directory. While the test process lives it
//! tells the watchdog the current PID (`pid N`, and `gone N` once that
//! process has been reaped, so a reused PID is never killed) and disarms it
//! on drop (`done`). The server and the watchdog run in their own process
//! groups, so Ctrl-C on a terminal reaches only the test process, and the
//! watchdog cleans up. (`PR_SET_PDEATHSIG` was rejected: it needs `unsafe`,
//! fires when the spawning *thread* ends, which for a shared server is the
//! first test's, and does not remove the directory.)

#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How long `redis-server` may take from spawn to "Ready to accept
/// connections".
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped or killed server may take to be gone.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `redis-cli` (or other helper command) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ports [`Redis::start`] tries when another process takes the
/// chosen port between the check and the server's bind.
const PORT_ATTEMPTS: usize = 8;
/// The lowest port [`pick_port`] chooses: below it live well-known services
/// such as the system's own PostgreSQL (5432) and Redis (6379).
const PORT_FLOOR: u16 = 10_000;
/// What `redis-server` logs once it accepts connections.
const READY_LINE: &str = "Ready to accept connections";
/// What a server that lost the race for its port logs before exiting.
const PORT_TAKEN_LINE: &str = "Address already in use";

/// What one connection attempt saw within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The server answered.
    Answered,
    /// Nothing listens on the port: the connection was refused.
    Refused,
    /// The connection was made (by the kernel's listen backlog, at least)
    /// but nothing came back: a paused server.
    Silent,
    /// The connection was closed or reset without an answer.
    Closed,
}

/// The server every test of this test binary shares, started on first use.
///
/// Statics are never dropped: the instance's watchdog kills the server and
/// removes its directory when the test process ends. Do not stop, pause or
/// kill it (that is why only `&self` is available); fault tests start their
/// own with [`Redis::start`]. Tests that share it keep to their own keys
/// (a prefix per test) or their own logical database (`SELECT n`).
pub fn shared() -> &'static Redis {
    static SHARED: OnceLock<Redis> = OnceLock::new();
    SHARED.get_or_init(Redis::start)
}

/// A throwaway `redis-server` on 127.0.0.1 without persistence (`--save ""
/// --appendonly no`), gone after drop (or, at the latest, right after the
/// test process ends).
pub struct Redis {
    /// The instance's temp directory (`--dir`); nothing is written there.
    root: PathBuf,
    port: u16,
    /// The current server process; `None` while stopped.
    run: Option<Run>,
    watchdog: Watchdog,
}

impl Redis {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it
    /// accepts connections.
    ///
    /// Picks another port if one is taken between the check and the bind
    /// (up to [`PORT_ATTEMPTS`] times). Bounded by [`READY_TIMEOUT`]; panics
    /// with the server's log when that passes or the server fails; panics
    /// naming the Debian package when `redis-server` is not installed.
    /// Afterwards the server answers on [`url`](Self::url).
    pub fn start() -> Self {
        let root = create_temp_dir("gremlins-redis");
        let watchdog = Watchdog::spawn(WATCHDOG_SCRIPT, &[&root]);
        let mut redis = Self {
            root,
            port: 0,
            run: None,
            watchdog,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            match redis.launch(pick_port()) {
                Ok(()) => return redis,
                Err(Launch::PortTaken(_)) if attempt < PORT_ATTEMPTS => {}
                Err(Launch::PortTaken(log)) => {
                    panic!(
                        "redis lost the race for a free port {PORT_ATTEMPTS} times; last log:\n{log}"
                    )
                }
                Err(Launch::Failed(error)) => panic!("{error}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1 and [`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The instance's temp directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Whether the server process is running (it may be paused).
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// The server's PID. Panics if it is not running.
    pub fn pid(&self) -> u32 {
        self.running().pid
    }

    /// Everything the current (or last) server process logged.
    pub fn log_text(&self) -> String {
        self.run.as_ref().map(Run::log_text).unwrap_or_default()
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT ARGS...` and returns its output
    /// without the final newline. Error replies come back as text
    /// (`ERR ...`): redis-cli exits 0 for them.
    ///
    /// Bounded by [`COMMAND_TIMEOUT`] (a paused server never answers);
    /// panics with redis-cli's stderr when it fails (e.g. cannot connect).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(binaries().cli.as_path());
        command
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(args);
        let what = format!("redis-cli {args:?} on port {}", self.port);
        let output = run_bounded(&mut command, COMMAND_TIMEOUT, &what)
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            output.status.success(),
            "{what} failed ({}):\n{}",
            output.status,
            output_text(&output)
        );
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        text
    }

    /// Connects to 127.0.0.1:PORT and sends `PING`; says what happened
    /// within `timeout`.
    pub fn probe(&self, timeout: Duration) -> Probe {
        probe(self.addr(), b"PING\r\n", timeout, |answer| {
            answer.starts_with(b"+PONG")
        })
    }

    /// Waits until the current server process has logged that it accepts
    /// connections and then answers one [`probe`](Self::probe), all within
    /// `timeout`. Use it after [`resume`](Self::resume). Panics, saying
    /// which, when either does not happen in time.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let run = self.running();
        run.wait_until(
            deadline,
            &format!("redis on port {} to accept connections", self.port),
            |state| state.ready,
        )
        .unwrap_or_else(|error| panic!("{error}; log:\n{}", run.log_text()));
        let probe = self.probe(deadline.saturating_duration_since(Instant::now()));
        assert_eq!(
            probe,
            Probe::Answered,
            "redis on port {} did not answer a probe within {timeout:?}",
            self.port
        );
    }

    /// Stops (`SIGSTOP`) the server. The kernel still completes TCP
    /// handshakes (the listen backlog), but nothing answers, on new or
    /// existing connections, until [`resume`](Self::resume). Panics if the
    /// server is not running.
    pub fn pause(&self) {
        send_signal("STOP", &[self.pid()]).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Continues (`SIGCONT`) the server; harmless if it is not paused.
    /// Panics if the server is not running.
    pub fn resume(&self) {
        send_signal("CONT", &[self.pid()]).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Graceful shutdown: `SIGTERM` (resuming the server if paused), which
    /// closes client connections and exits (nothing is saved). Waits, up to
    /// [`STOP_TIMEOUT`], until the process is gone; afterwards connections
    /// are refused and [`restart`](Self::restart) starts it again. Panics if
    /// the server is not running or does not stop in time.
    pub fn stop(&mut self) {
        self.shut_down("TERM")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// `SIGKILL`s the server (paused or not) and waits, up to
    /// [`STOP_TIMEOUT`], until it is gone; afterwards connections are refused
    /// and every key is lost. Panics if the server is not running.
    pub fn kill(&mut self) {
        self.shut_down("KILL")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Starts the server again on the same port (after a [`stop`](Self::stop)
    /// if it is running), empty, and waits, up to [`READY_TIMEOUT`], until it
    /// accepts connections. Panics if the port was taken meanwhile or the
    /// server fails to start.
    pub fn restart(&mut self) {
        if self.run.is_some() {
            self.stop();
        }
        match self.launch(self.port) {
            Ok(()) => {}
            Err(Launch::PortTaken(log)) => {
                panic!(
                    "port {} was taken while redis was down; log:\n{log}",
                    self.port
                )
            }
            Err(Launch::Failed(error)) => panic!("{error}"),
        }
    }

    /// Spawns `redis-server` on `port` and waits until it is ready.
    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let mut command = Command::new(binaries().server.as_path());
        command
            .arg("--port")
            .arg(port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ])
            .arg("--dir")
            .arg(&self.root)
            .current_dir(&self.root);
        let run = Run::spawn(command, READY_LINE, &self.watchdog);
        let what = format!("redis on port {port} to accept connections");
        let outcome = run.wait_until(Instant::now() + READY_TIMEOUT, &what, |state| {
            state.ready || state.is_gone()
        });
        let ready = run.lock_state().ready;
        if !ready {
            // It exited (or timed out): make sure it is gone before a retry.
            if outcome.is_ok() || send_signal("KILL", &[run.pid]).is_ok() {
                let _ = run.wait_until(
                    Instant::now() + STOP_TIMEOUT,
                    "the failed server to exit",
                    RunState::is_gone,
                );
            }
            let log = run.log_text();
            return match outcome {
                Ok(()) if log.contains(PORT_TAKEN_LINE) => Err(Launch::PortTaken(log)),
                Ok(()) => Err(Launch::Failed(format!(
                    "redis on port {port} exited while starting; log:\n{log}"
                ))),
                Err(error) => Err(Launch::Failed(format!("{error}; log:\n{log}"))),
            };
        }
        self.port = port;
        self.run = Some(run);
        Ok(())
    }

    /// Sends `signal`, resumes the server in case it is paused and waits
    /// until it is gone.
    fn shut_down(&mut self, signal: &str) -> Result<(), String> {
        let run = self.run.as_ref().ok_or_else(|| self.not_running())?;
        send_signal(signal, &[run.pid])?;
        // A paused server handles the signal once it runs again.
        let _ = send_signal("CONT", &[run.pid]);
        let what = format!("redis {} to exit after SIG{signal}", run.pid);
        run.wait_until(Instant::now() + STOP_TIMEOUT, &what, RunState::is_gone)
            .map_err(|error| format!("{error}; log:\n{}", run.log_text()))?;
        self.run = None;
        Ok(())
    }

    fn running(&self) -> &Run {
        self.run
            .as_ref()
            .unwrap_or_else(|| panic!("{}", self.not_running()))
    }

    fn not_running(&self) -> String {
        format!("redis on port {} is not running", self.port)
    }
}

impl Drop for Redis {
    /// Kills the server, removes the directory and disarms the watchdog. If
    /// the server cannot be killed, the watchdog stays armed and cleans up
    /// when the test process ends.
    fn drop(&mut self) {
        if self.run.is_some() {
            if let Err(error) = self.shut_down("KILL") {
                eprintln!(
                    "{error}; leaving redis on port {} to its watchdog",
                    self.port
                );
                return;
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            eprintln!("could not remove {}: {error}", self.root.display());
        }
        self.watchdog.finish();
    }
}

/// Why a server did not become ready.
enum Launch {
    /// Another process bound the port first; carries the log.
    PortTaken(String),
    /// Anything else; carries the message with the log.
    Failed(String),
}

/// The watchdog `sh` script: `$1` is the instance directory; see the module
/// docs.
const WATCHDOG_SCRIPT: &str = r#"
root=$1 pid=
while read -r word arg; do
  case $word in
    pid) pid=$arg ;;
    gone) if [ "$arg" = "$pid" ]; then pid=; fi ;;
    done) exit 0 ;;
  esac
done
# End of input without "done": the test process is gone.
if [ -n "$pid" ]; then kill -s KILL "$pid" 2>/dev/null; fi
rm -rf "$root" 2>/dev/null || rm -rf "$root"
"#;

/// The Redis programs.
struct Binaries {
    server: PathBuf,
    cli: PathBuf,
}

/// Finds `redis-server` and `redis-cli` on `PATH`.
fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let find = |program: &str| {
            std::env::var_os("PATH")
                .and_then(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join(program))
                        .find(|path| path.is_file())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{program} is not on PATH; install the Debian package `redis-server` \
                         (it brings redis-cli in `redis-tools`)"
                    )
                })
        };
        Binaries {
            server: find("redis-server"),
            cli: find("redis-cli"),
        }
    })
}

// ---------------------------------------------------------------------------
// Process plumbing. tests/support/postgres.rs has its own copy so that either
// module can be used alone.
// ---------------------------------------------------------------------------

/// What the threads watching one server process report.
enum Event {
    /// The ready line appeared in the output.
    Ready,
    /// One of stdout and stderr reached end-of-file: every process holding
    /// it has exited.
    OutputClosed,
    /// The process was reaped.
    Exited(ExitStatus),
}

/// What is known about one server process, from its [`Event`]s.
struct RunState {
    ready: bool,
    /// Of stdout and stderr, how many are still open.
    open_outputs: usize,
    exit: Option<ExitStatus>,
}

impl RunState {
    /// Reaped, and no process (no forked child either) holds its output.
    fn is_gone(&self) -> bool {
        self.exit.is_some() && self.open_outputs == 0
    }
}

/// One server process, from spawn until it and its children are gone.
struct Run {
    pid: u32,
    events: Receiver<Event>,
    /// Written only by [`Run::wait_until`], which applies events under this
    /// lock, so concurrent waiters see each event exactly once.
    state: Mutex<RunState>,
    /// Every output line; the reader threads append, anyone reads.
    log: Arc<Mutex<Vec<String>>>,
}

impl Run {
    /// Spawns `command` in its own process group with its output read into
    /// the log, tells the watchdog its PID, and tells it again once the
    /// process has been reaped.
    fn spawn(mut command: Command, ready_line: &'static str, watchdog: &Watchdog) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("could not spawn {command:?}: {error}"));
        let pid = child.id();
        watchdog.tell(&format!("pid {pid}"));
        let (events_tx, events) = crossbeam_channel::unbounded();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("BUG: stdout is piped");
        let stderr = child.stderr.take().expect("BUG: stderr is piped");
        read_output(stdout, ready_line, Arc::clone(&log), events_tx.clone());
        read_output(stderr, ready_line, Arc::clone(&log), events_tx.clone());
        let control = Arc::clone(&watchdog.control);
        std::thread::spawn(move || {
            let status = child.wait();
            Watchdog::tell_to(&control, &format!("gone {pid}"));
            match status {
                Ok(status) => {
                    let _ = events_tx.send(Event::Exited(status));
                }
                Err(error) => eprintln!("lost track of server process {pid}: {error}"),
            }
        });
        let state = Mutex::new(RunState {
            ready: false,
            open_outputs: 2,
            exit: None,
        });
        Self {
            pid,
            events,
            state,
            log,
        }
    }

    /// Applies events until `done` holds, `deadline` passes (an error naming
    /// `what`), or no event can come any more (an error too).
    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn(&RunState) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut state = self.lock_state();
        loop {
            if done(&state) {
                return Ok(());
            }
            match self.events.recv_deadline(deadline) {
                Ok(Event::Ready) => state.ready = true,
                Ok(Event::OutputClosed) => state.open_outputs -= 1,
                Ok(Event::Exited(status)) => state.exit = Some(status),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "timed out after {:?} waiting for {what}",
                        started.elapsed()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "gave up waiting for {what}: process {} is gone",
                        self.pid
                    ));
                }
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }
}

/// Reads `output` line by line (lossily: a server may log any bytes) into
/// `log`, reporting the ready line and end-of-file.
fn read_output(
    output: impl Read + Send + 'static,
    ready_line: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    events: Sender<Event>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(output);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
            let ready = line.contains(ready_line);
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
            if ready {
                let _ = events.send(Event::Ready);
            }
        }
        let _ = events.send(Event::OutputClosed);
    });
}

/// The `sh` child that kills the server and removes its directory once the
/// test process is gone; see the module docs.
struct Watchdog {
    /// `None` once disarmed and reaped.
    child: Option<Child>,
    /// The watchdog's stdin; the test process holds the only write end.
    /// `None` once disarmed.
    control: Arc<Mutex<Option<ChildStdin>>>,
}

impl Watchdog {
    /// How long a disarmed watchdog may take to exit.
    const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

    fn spawn(script: &str, args: &[&Path]) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("could not spawn the watchdog sh: {error}"));
        let stdin = child
            .stdin
            .take()
            .expect("BUG: the watchdog's stdin is piped");
        Self {
            child: Some(child),
            control: Arc::new(Mutex::new(Some(stdin))),
        }
    }

    fn tell(&self, line: &str) {
        Self::tell_to(&self.control, line);
    }

    fn tell_to(control: &Mutex<Option<ChildStdin>>, line: &str) {
        let mut control = control.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stdin) = control.as_mut() {
            if let Err(error) = writeln!(stdin, "{line}") {
                eprintln!("the watchdog did not take {line:?}: {error}");
            }
        }
    }

    /// Disarms the watchdog and reaps it, waiting up to
    /// [`EXIT_TIMEOUT`](Self::EXIT_TIMEOUT).
    fn finish(&mut self) {
        self.tell("done");
        drop(
            self.control
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let Some(mut child) = self.child.take() else {
            return;
        };
        let (exited_tx, exited) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = exited_tx.send(child.wait());
        });
        if exited.recv_timeout(Self::EXIT_TIMEOUT).is_err() {
            eprintln!(
                "the disarmed watchdog did not exit within {:?}",
                Self::EXIT_TIMEOUT
            );
        }
    }
}

/// Connects to `addr`, writes `request` and reads what comes back, all
/// within `timeout`; `answered` judges the first bytes.
fn probe(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    answered: impl Fn(&[u8]) -> bool,
) -> Probe {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = match TcpStream::connect_timeout(&addr, remaining()) {
        Ok(stream) => stream,
        Err(error) if error.kind() == ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Probe::Silent;
        }
        Err(error) => panic!("probe: could not connect to {addr}: {error}"),
    };
    if stream.write_all(request).is_err() {
        return Probe::Closed;
    }
    stream
        .set_read_timeout(Some(remaining()))
        .expect("set a read timeout");
    let mut answer = [0u8; 64];
    match stream.read(&mut answer) {
        Ok(0) => Probe::Closed,
        Ok(count) if answered(&answer[..count]) => Probe::Answered,
        Ok(count) => panic!(
            "probe: unexpected answer from {addr}: {:?}",
            String::from_utf8_lossy(&answer[..count])
        ),
        Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Probe::Silent
        }
        Err(_) => Probe::Closed,
    }
}

/// `kill -s SIGNAL PID...`; an error if any of them could not be signalled.
fn send_signal(signal: &str, pids: &[u32]) -> Result<(), String> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut command = Command::new("kill");
    command
        .arg("-s")
        .arg(signal)
        .args(pids.iter().map(u32::to_string));
    let output = run_bounded(&mut command, COMMAND_TIMEOUT, "kill")?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -s {signal} {pids:?} failed: {}",
            output_text(&output)
        ))
    }
}

/// Runs `command` to completion with its output captured, killing it (by
/// PID) if it takes longer than `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration, what: &str) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(|error| format!("could not run {what} ({command:?}): {error}"))?;
    let pid = child.id();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done.recv_timeout(timeout) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(format!("waiting for {what} failed: {error}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            Err(format!("{what} did not finish within {timeout:?}"))
        }
    }
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A new, empty directory under [`std::env::temp_dir`], named after the
/// test process and a counter.
fn create_temp_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    for _ in 0..1000 {
        // Relaxed: the counter only has to hand out distinct numbers.
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{number}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return path,
            // Left behind by an earlier process with the same PID.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => panic!("could not create {}: {error}", path.display()),
        }
    }
    panic!(
        "no free directory name {prefix}-{}-N under {}",
        std::process::id(),
        std::env::temp_dir().display()
    )
}

/// A port on 127.0.0.1 that is free right now.
///
/// It is chosen at random between [`PORT_FLOOR`] and the start of the
/// kernel's ephemeral range, rather than from binding port 0: an ephemeral
/// port freed by `stop()` could be taken by any outgoing connection (psql,
/// the service's own clients) before `restart()` binds it again. Falls back
/// to binding port 0 when the range is unknown or too small. The caller
/// retries if the port is taken before the server binds it.
fn pick_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    if ephemeral_start > PORT_FLOOR + 1000 {
        let random = RandomState::new();
        let span = u64::from(ephemeral_start - PORT_FLOOR);
        for attempt in 0..100u64 {
            let offset = u16::try_from(random.hash_one(attempt) % span)
                .expect("BUG: the offset is below a u16 span");
            let port = PORT_FLOOR + offset;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}
