//! The process plumbing that `postgres.rs` and `redis.rs` share: a server
//! process with its output read into a log, started on a free port of
//! 127.0.0.1, probed, signalled, and watched by an orphan watchdog.
//!
//! # No orphans
//!
//! A server's owner (`Postgres`, `Redis`) stops it and removes its directory
//! on drop. But statics are never dropped (so `shared()` servers are not),
//! and a test process can also end by `SIGKILL` (a harness timeout), Ctrl-C
//! or `std::process::exit`. So every instance also has a [`Watchdog`]: a
//! small `sh` child whose stdin is a pipe from the test process. Only the
//! test process holds the write end (std creates pipes close-on-exec), so the
//! watchdog reads end-of-file exactly when the test process is gone, however
//! it ended, and then runs its owner's cleanup script (kill the server by
//! PID, remove the directory, ...). While the test process lives, [`Run`]
//! tells the watchdog the current server PID (`pid N`, and `gone N` once that
//! process has been reaped, so a reused PID is never killed), and the owner
//! disarms it on drop (`done`). The server and the watchdog run in their own
//! process groups, so Ctrl-C on a terminal reaches only the test process, and
//! the watchdog cleans up.
//!
//! `PR_SET_PDEATHSIG` was rejected: it needs `unsafe` (or `setpriv
//! --pdeathsig`), it fires when the spawning *thread* ends (every test runs
//! on its own thread, so the first test to finish would kill a shared
//! server), it does not reach children, and it does not remove the
//! directory.

#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How long one helper command (`psql`, `redis-cli`, `kill`, ...) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports [`start_on_free_port`] tries when another process takes
/// the chosen port between the check and the server's bind.
pub const PORT_ATTEMPTS: usize = 8;
/// The lowest port [`pick_port`] chooses: below it live well-known services
/// such as the system's own PostgreSQL (5432) and Redis (6379).
const PORT_FLOOR: u16 = 10_000;

/// What tells one kind of server apart to the plumbing here.
pub struct ServerKind {
    /// The server's name in messages: `postgres`, `redis`.
    pub name: &'static str,
    /// What the server logs once it accepts connections.
    pub ready_line: &'static str,
    /// What a server that lost the race for its port logs before exiting.
    pub port_taken_line: &'static str,
    /// How long the server may take from spawn to its ready line.
    pub ready_timeout: Duration,
    /// How long a server (and every process it forked) may take to be gone
    /// once it was told to stop.
    pub stop_timeout: Duration,
}

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

/// Why a server did not become ready.
pub enum Launch {
    /// Another process bound the port first; carries the log.
    PortTaken(String),
    /// Anything else; carries the message with the log.
    Failed(String),
}

/// Calls `launch` with a free port of 127.0.0.1 until it succeeds, picking
/// another port when one is taken between the check and the bind (up to
/// [`PORT_ATTEMPTS`] times). Panics with the server's log when every attempt
/// lost the race or one failed otherwise.
pub fn start_on_free_port(kind: &ServerKind, mut launch: impl FnMut(u16) -> Result<(), Launch>) {
    for attempt in 1..=PORT_ATTEMPTS {
        match launch(pick_port()) {
            Ok(()) => return,
            Err(Launch::PortTaken(_)) if attempt < PORT_ATTEMPTS => {}
            Err(Launch::PortTaken(log)) => panic!(
                "{} lost the race for a free port {PORT_ATTEMPTS} times; last log:\n{log}",
                kind.name
            ),
            Err(Launch::Failed(error)) => panic!("{error}"),
        }
    }
}

/// Panics, saying why, unless a relaunch on the server's old `port` worked.
pub fn expect_relaunched(kind: &ServerKind, port: u16, relaunch: Result<(), Launch>) {
    match relaunch {
        Ok(()) => {}
        Err(Launch::PortTaken(log)) => panic!(
            "port {port} was taken while {} was down; log:\n{log}",
            kind.name
        ),
        Err(Launch::Failed(error)) => panic!("{error}"),
    }
}

// ---------------------------------------------------------------------------
// One server process
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
pub struct Run {
    pid: u32,
    events: Receiver<Event>,
    /// Written only by [`Run::wait_until`], which applies events under this
    /// lock, so concurrent waiters see each event exactly once.
    state: Mutex<RunState>,
    /// Every output line; the reader threads append, anyone reads.
    log: Arc<Mutex<Vec<String>>>,
}

impl Run {
    /// Spawns `command` for a server on `port` and waits, up to the kind's
    /// ready timeout, until it logs its ready line.
    ///
    /// A server that exits first, or does not get ready in time, is killed
    /// and awaited (up to the kind's stop timeout) before this returns, so a
    /// retry never meets it: [`Launch::PortTaken`] when its log says the port
    /// was taken, else [`Launch::Failed`].
    pub fn launch(
        kind: &ServerKind,
        command: Command,
        port: u16,
        watchdog: &Watchdog,
    ) -> Result<Self, Launch> {
        let run = Self::spawn(command, kind.ready_line, watchdog);
        let what = format!("{} on port {port} to accept connections", kind.name);
        let outcome = run.wait_until(Instant::now() + kind.ready_timeout, &what, |state| {
            state.ready || state.is_gone()
        });
        if run.lock_state().ready {
            return Ok(run);
        }
        // It exited (or timed out): make sure it is gone before a retry.
        if outcome.is_ok() || send_signal("KILL", &[run.pid]).is_ok() {
            let _ = run.wait_until(
                Instant::now() + kind.stop_timeout,
                &format!("the failed {} server to exit", kind.name),
                RunState::is_gone,
            );
        }
        let log = run.log_text();
        match outcome {
            Ok(()) if log.contains(kind.port_taken_line) => Err(Launch::PortTaken(log)),
            Ok(()) => Err(Launch::Failed(format!(
                "{} on port {port} exited while starting; log:\n{log}",
                kind.name
            ))),
            Err(error) => Err(Launch::Failed(format!("{error}; log:\n{log}"))),
        }
    }

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

    /// The server process's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until the server has logged its ready line and then answers
    /// one `probe` (given the time left), all within `timeout`. Panics,
    /// saying which, when either does not happen in time.
    pub fn wait_ready(
        &self,
        kind: &ServerKind,
        port: u16,
        timeout: Duration,
        probe: impl FnOnce(Duration) -> Probe,
    ) {
        let deadline = Instant::now() + timeout;
        self.wait_until(
            deadline,
            &format!("{} on port {port} to accept connections", kind.name),
            |state| state.ready,
        )
        .unwrap_or_else(|error| panic!("{error}; log:\n{}", self.log_text()));
        let probe = probe(deadline.saturating_duration_since(Instant::now()));
        assert_eq!(
            probe,
            Probe::Answered,
            "{} on port {port} did not answer a probe within {timeout:?}",
            kind.name
        );
    }

    /// Waits, up to `timeout`, until the process has been reaped and every
    /// process that shared its output (its children too) has exited; the
    /// error names `what` was awaited and carries the log.
    pub fn await_gone(&self, timeout: Duration, what: &str) -> Result<(), String> {
        self.wait_until(Instant::now() + timeout, what, RunState::is_gone)
            .map_err(|error| format!("{error}; log:\n{}", self.log_text()))
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

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
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

// ---------------------------------------------------------------------------
// The watchdog
// ---------------------------------------------------------------------------

/// The watchdog's side of the protocol: it keeps the current server PID in
/// `$pid` until `done` (exit, disarmed) or end-of-file (the test process is
/// gone), after which the owner's cleanup script runs.
const WATCHDOG_PROTOCOL: &str = r#"
pid=
while read -r word arg; do
  case $word in
    pid) pid=$arg ;;
    gone) if [ "$arg" = "$pid" ]; then pid=; fi ;;
    done) exit 0 ;;
  esac
done
# End of input without "done": the test process is gone.
"#;

/// The `sh` child that cleans up after the server once the test process is
/// gone; see the module docs.
pub struct Watchdog {
    /// `None` once disarmed and reaped.
    child: Option<Child>,
    /// The watchdog's stdin; the test process holds the only write end.
    /// `None` once disarmed.
    control: Arc<Mutex<Option<ChildStdin>>>,
}

impl Watchdog {
    /// How long a disarmed watchdog may take to exit.
    const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Spawns the watchdog in its own process group. `cleanup` is the `sh`
    /// script it runs once the test process is gone, with `$pid` the
    /// current server PID (empty if none) and `args` as `$1`, `$2`, ...
    pub fn spawn(cleanup: &str, args: &[&Path]) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{WATCHDOG_PROTOCOL}{cleanup}"))
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
    pub fn finish(&mut self) {
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

// ---------------------------------------------------------------------------
// Probes, signals, helper commands, directories and ports
// ---------------------------------------------------------------------------

/// Connects to `addr`, writes `request` and reads what comes back, all
/// within `timeout`; `answered` judges the first bytes.
pub fn probe(
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
    match super::read_retrying(&stream, &mut answer) {
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
pub fn send_signal(signal: &str, pids: &[u32]) -> Result<(), String> {
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

/// Runs a client program (`psql`, `redis-cli`) described as `what`, bounded
/// by [`COMMAND_TIMEOUT`], and returns its stdout without the final newline.
/// Panics with its output when it fails or takes too long.
pub fn run_client(command: &mut Command, what: &str) -> String {
    let output =
        run_bounded(command, COMMAND_TIMEOUT, what).unwrap_or_else(|error| panic!("{error}"));
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

/// Runs `command` to completion with its output captured, killing it (by
/// PID) if it takes longer than `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration, what: &str) -> Result<Output, String> {
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

/// A command's stdout followed by its stderr, lossily as text.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The first file named `program` in a directory of `PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A new, empty directory under [`std::env::temp_dir`], named after the
/// test process and a counter.
pub fn create_temp_dir(prefix: &str) -> PathBuf {
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
