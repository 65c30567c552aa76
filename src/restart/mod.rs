//! Hot restart on one host without a refused connection.
//!
//! On SIGHUP (or [`ShutdownHandle::restart`]) the restart thread starts
//! the successor, the same program with the same arguments and
//! environment, with the listening sockets at descriptors 3.. by the
//! socket-activation protocol (`exec`), and waits, at most
//! `restart_timeout`, for it to write `READY <pid>` on a pipe once it
//! accepts. Then it tells the service manager the successor is the main
//! process and triggers this process's drain, which leaves the shared
//! socket alone: a socket filter or a shutdown belongs to the socket, not
//! the descriptor, and would blackhole the successor. Connections the
//! kernel queues from then on are the successor's; none is refused,
//! because the socket never closes.
//!
//! A successor that cannot start, exits, or is not ready in time is
//! logged, killed if need be, and recorded; this process goes on serving.
//!
//! Why one socket handed over rather than a second one bound with
//! `SO_REUSEPORT`: two sockets have two accept queues, and closing the old
//! one resets whatever was queued on it.
//!
//! [`ShutdownHandle::restart`]: crate::ShutdownHandle::restart

mod exec;

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::pipe;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::lifecycle::{Lifecycle, RestartOutcome, RestartRecord, Trigger};

/// Token of the waker: a request, or the stop.
const WAKE: Token = Token(0);
/// Token of the ready pipe of the successor being started.
const READY: Token = Token(1);
/// Longest ready message read (`READY <pid>\n`).
const READY_MESSAGE_MAX: usize = 64;

/// The listening sockets, shared by the acceptor and the restart thread.
/// Closed when the last holder drops them, so the restart thread is
/// stopped before the acceptor closes its copy (see `Restarter::stop`).
#[derive(Debug)]
pub(crate) struct Listeners {
    pub(crate) sockets: Vec<TcpListener>,
    /// Each socket's name, as `LISTEN_FDNAMES` gives it on.
    pub(crate) names: Vec<String>,
}

/// The name of the admin listener's socket, given on to a successor and
/// expected from socket activation (`FileDescriptorName=admin`).
pub(crate) const ADMIN_SOCKET_NAME: &str = "admin";

impl Listeners {
    /// Whether socket `index` is the admin listener.
    pub(crate) fn is_admin(&self, index: usize) -> bool {
        self.names[index] == ADMIN_SOCKET_NAME
    }
}

/// What a restart starts, and how long it waits.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) timeout: Duration,
}

impl Plan {
    /// `restart_exec`, or this process's program by the path it had at
    /// start (`None` if it cannot be found: a restart then fails, logged),
    /// with this process's arguments.
    pub(crate) fn new(restart_exec: Option<&Path>, timeout: Duration) -> Option<Self> {
        let program = match restart_exec {
            Some(program) => program.to_path_buf(),
            None => match std::env::current_exe() {
                Ok(program) => program,
                Err(error) => {
                    log::warn!(
                        "restart: cannot find this program ({error}); SIGHUP will not restart"
                    );
                    return None;
                }
            },
        };
        Some(Self {
            program,
            args: std::env::args_os().skip(1).collect(),
            timeout,
        })
    }
}

/// The running restart thread.
#[derive(Debug)]
pub(crate) struct Restarter {
    thread: JoinHandle<()>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Restarter {
    pub(crate) fn spawn(
        plan: Option<Plan>,
        listeners: Arc<Listeners>,
        lifecycle: Arc<Lifecycle>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        lifecycle.restarts.attach(Arc::clone(&waker));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("restart".into())
                .spawn(move || {
                    let mut thread = Thread {
                        poll,
                        plan,
                        listeners,
                        lifecycle,
                        stop,
                        starting: None,
                    };
                    thread.run();
                })?
        };
        Ok(Self {
            thread,
            waker,
            stop,
        })
    }

    /// Asks the thread to stop (a successor still starting is killed: it
    /// said it was not accepting yet); [`join`](Self::join) waits for it.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Waits for the thread asked to stop, so that it holds the listening
    /// sockets no longer.
    pub(crate) fn join(self) {
        if self.thread.join().is_err() {
            log::error!("the restart thread panicked");
        }
    }
}

/// A successor started, not ready yet.
struct Starting {
    child: Child,
    ready: pipe::Receiver,
    received: Vec<u8>,
    asked: Instant,
    deadline: Instant,
}

/// What the successor's ready pipe said so far.
enum Progress {
    Waiting,
    Ready,
    /// Closed without a ready message, or said something else.
    Failed(String),
}

struct Thread {
    poll: Poll,
    plan: Option<Plan>,
    listeners: Arc<Listeners>,
    lifecycle: Arc<Lifecycle>,
    stop: Arc<AtomicBool>,
    starting: Option<Starting>,
}

impl Thread {
    fn run(&mut self) {
        let mut events = Events::with_capacity(4);
        loop {
            let timeout = self
                .starting
                .as_ref()
                .map(|starting| starting.deadline.saturating_duration_since(Instant::now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    log::error!("restart: waiting failed: {error}");
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                if let Some(starting) = self.starting.take() {
                    self.abandon(starting);
                }
                return;
            }
            if let Some(starting) = self.starting.take() {
                match self.progress(starting) {
                    Step::Waiting(starting) => self.starting = Some(starting),
                    Step::Failed => {}
                    Step::HandedOver => return,
                }
            }
            if self.lifecycle.restarts.take_request() {
                self.begin();
            }
        }
    }

    /// Starts the successor for the request just taken.
    fn begin(&mut self) {
        let asked = Instant::now();
        if self.starting.is_some() {
            log::warn!("restart: asked again while a restart is under way; ignored");
            return;
        }
        self.lifecycle.notify.reloading();
        match self.start(asked) {
            Ok(starting) => {
                log::info!(
                    "restart: started the successor, pid {}; waiting at most {} ms for it to accept",
                    starting.child.id(),
                    starting
                        .deadline
                        .saturating_duration_since(asked)
                        .as_millis()
                );
                self.starting = Some(starting);
            }
            Err(error) => self.failed(
                RestartOutcome::SpawnFailed,
                None,
                asked,
                format!("could not start the successor: {error}"),
            ),
        }
    }

    fn start(&mut self, asked: Instant) -> io::Result<Starting> {
        let Some(plan) = &self.plan else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "this program's path is unknown; set restart_exec",
            ));
        };
        let (sender, mut ready) = pipe::new()?;
        let sender = OwnedFd::from(sender);
        let successor = exec::Successor {
            program: &plan.program,
            args: plan.args.clone(),
            listeners: self
                .listeners
                .sockets
                .iter()
                .map(AsFd::as_fd)
                .zip(self.listeners.names.iter().map(String::as_str))
                .collect(),
            ready: sender.as_fd(),
        };
        let child = exec::spawn(&successor).map_err(|error| {
            io::Error::new(error.kind(), format!("{}: {error}", plan.program.display()))
        })?;
        // Only the successor holds the write end now: it closes when the
        // successor exits.
        drop(sender);
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut ready, READY, Interest::READABLE)
        {
            let mut child = child;
            kill(&mut child);
            return Err(error);
        }
        Ok(Starting {
            child,
            ready,
            received: Vec::new(),
            asked,
            deadline: asked + plan.timeout,
        })
    }

    /// Reads what the successor said; hands over when it is ready, gives
    /// up when it failed or its time is up.
    fn progress(&mut self, mut starting: Starting) -> Step {
        let progress = read_ready(&mut starting);
        if !matches!(progress, Progress::Waiting) || Instant::now() >= starting.deadline {
            let _ = self.poll.registry().deregister(&mut starting.ready);
        }
        let pid = starting.child.id();
        match progress {
            Progress::Ready => self.hand_over(starting),
            Progress::Failed(why) => {
                let status = exit_status(&mut starting.child);
                self.failed(
                    RestartOutcome::Exited,
                    Some(pid),
                    starting.asked,
                    format!("the successor (pid {pid}) {why} before it was accepting ({status})"),
                );
                Step::Failed
            }
            Progress::Waiting if Instant::now() >= starting.deadline => {
                kill(&mut starting.child);
                let waited = starting.deadline.saturating_duration_since(starting.asked);
                self.failed(
                    RestartOutcome::TimedOut,
                    Some(pid),
                    starting.asked,
                    format!(
                        "the successor (pid {pid}) was not accepting within {} ms; killed it",
                        waited.as_millis()
                    ),
                );
                Step::Failed
            }
            Progress::Waiting => Step::Waiting(starting),
        }
    }

    /// The successor accepts: it becomes the main process, and this one
    /// drains. If a stop was triggered meanwhile, the stop wins: the
    /// successor is asked to stop too (it drains what it accepted).
    fn hand_over(&mut self, mut starting: Starting) -> Step {
        let pid = starting.child.id();
        let notify = &self.lifecycle.notify;
        let took_over = self
            .lifecycle
            .trigger_first(Trigger::Restart, || notify.handed_over(pid));
        let ms = millis(starting.asked.elapsed());
        if took_over {
            log::info!(
                "restart: the successor, pid {pid}, accepts after {ms} ms; this process stops \
                 accepting and drains"
            );
            self.lifecycle.restarts.finish(RestartRecord {
                outcome: RestartOutcome::TookOver,
                successor_pid: Some(pid),
                ms,
                detail: None,
            });
            // The successor outlives this process; it is not waited for.
            return Step::HandedOver;
        }
        let detail = match exec::terminate(&starting.child) {
            Ok(()) => format!("a stop began first; asked the successor (pid {pid}) to stop too"),
            Err(error) => {
                kill(&mut starting.child);
                format!(
                    "a stop began first; could not ask the successor (pid {pid}) to stop \
                     ({error}); killed it"
                )
            }
        };
        log::warn!("restart: {detail}");
        self.lifecycle.restarts.finish(RestartRecord {
            outcome: RestartOutcome::Abandoned,
            successor_pid: Some(pid),
            ms,
            detail: Some(detail),
        });
        Step::Failed
    }

    /// A stop began while the successor was starting: it is not accepting
    /// yet (it said nothing), so it is killed.
    fn abandon(&mut self, mut starting: Starting) {
        let _ = self.poll.registry().deregister(&mut starting.ready);
        kill(&mut starting.child);
        let pid = starting.child.id();
        let detail =
            format!("a stop began while the successor (pid {pid}) was starting; killed it");
        log::warn!("restart: {detail}");
        self.lifecycle.restarts.finish(RestartRecord {
            outcome: RestartOutcome::Abandoned,
            successor_pid: Some(pid),
            ms: millis(starting.asked.elapsed()),
            detail: Some(detail),
        });
    }

    /// Logs and records a restart that failed; this process goes on.
    fn failed(&self, outcome: RestartOutcome, pid: Option<u32>, asked: Instant, why: String) {
        log::error!("restart failed: {why}; this process goes on serving");
        self.lifecycle.notify.reload_failed(&why);
        self.lifecycle.restarts.finish(RestartRecord {
            outcome,
            successor_pid: pid,
            ms: millis(asked.elapsed()),
            detail: Some(why),
        });
    }
}

/// Where a successor's start stands after a wake-up.
enum Step {
    Waiting(Starting),
    Failed,
    HandedOver,
}

/// Reads what the ready pipe holds so far.
fn read_ready(starting: &mut Starting) -> Progress {
    let mut buffer = [0u8; READY_MESSAGE_MAX];
    loop {
        match starting.ready.read(&mut buffer) {
            Ok(0) => return Progress::Failed("exited or closed its ready pipe".into()),
            Ok(read) => {
                starting.received.extend_from_slice(&buffer[..read]);
                if starting.received.len() > READY_MESSAGE_MAX {
                    return Progress::Failed("wrote more than a ready message".into());
                }
                if starting.received.ends_with(b"\n") {
                    let expected = ready_message(starting.child.id());
                    return if starting.received == expected.as_bytes() {
                        Progress::Ready
                    } else {
                        Progress::Failed(format!(
                            "wrote {:?} instead of {expected:?}",
                            String::from_utf8_lossy(&starting.received)
                        ))
                    };
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Progress::Failed(format!("could not be read from ({error})")),
        }
    }
}

/// What a successor with `pid` writes on its ready pipe once it accepts.
fn ready_message(pid: u32) -> String {
    format!("READY {pid}\n")
}

/// Tells the predecessor of a hot restart, if this process has one, that
/// it accepts now, having first taken a handle on it, so that this
/// process's own stop can wait for its exit. Returns whether it had one.
pub(crate) fn announce_ready(lifecycle: &Lifecycle) -> bool {
    let Some(mut pipe) = crate::inherit::take_ready_pipe() else {
        return false;
    };
    // Before the message: until it reads it, the parent is the
    // predecessor, alive.
    if let Some((pid, exited)) = crate::inherit::predecessor() {
        lifecycle.restarts.set_predecessor(pid, exited);
    }
    if let Err(error) = pipe.write_all(ready_message(std::process::id()).as_bytes()) {
        log::error!("restart: could not tell the predecessor this process accepts: {error}");
    }
    true
}

/// The successor's exit, after its ready pipe closed: it has exited, or
/// is exiting (the kernel closes descriptors first); one that closed the
/// pipe and goes on is killed.
fn exit_status(child: &mut Child) -> String {
    match child.try_wait() {
        Ok(Some(status)) => status.to_string(),
        _ => {
            kill(child);
            child
                .try_wait()
                .ok()
                .flatten()
                .map_or_else(|| "killed".into(), |status| status.to_string())
        }
    }
}

/// Kills and reaps a successor that is not accepting.
fn kill(child: &mut Child) {
    let _ = child.kill();
    if let Err(error) = child.wait() {
        log::warn!(
            "restart: could not reap the successor (pid {}): {error}",
            child.id()
        );
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
