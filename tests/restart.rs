//! Restarting the service on one host, as its clients see it: real
//! processes on 127.0.0.1, real signals, and a mixed client load
//! (`support::load`) whose every request is classified.
//!
//! The first test shows what a plain stop and start costs, refused
//! connections, and so that the harness can see them: a restart test that
//! finds none means something only if this one finds some. The next ones
//! check the harness itself: a service left alone answers every request
//! of the load, and each way a server can fail a request is told apart.
//!
//! One service process runs at a time (see [`one_at_a_time`]): the machine
//! has two cores shared with other builds.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::load::{ClientKind, Load, LoadMix, Mark};
use support::notify::{NotifySocket, field};
use support::{START_TIMEOUT, Service, binary};

/// Longest wait for a service to exit after SIGTERM: the drain of a few
/// short requests and the last call for idle connections (300 ms).
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for every kind of client to get a 2xx response from a
/// service that has just started listening.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times the service is stopped and started again.
const RESTARTS: usize = 3;
/// The service's settings in these tests (besides `--listen`).
const ARGS: [&str; 3] = ["--enable-test-routes", "--workers", "8"];
/// The load: every kind of client, slow requests of 100 ms.
const MIX: LoadMix = LoadMix {
    keep_alive: 4,
    per_request_connection: 4,
    slow: 2,
    posts: 2,
    slow_ms: 100,
};

/// Serialises the tests of this file: one service process at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the service on 127.0.0.1:`port` (0: a free port) and waits until
/// it logs that it listens.
fn start_on(port: u16) -> Service {
    let mut command = Command::new(binary());
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(ARGS);
    Service::spawn(command, &[])
}

/// SIGTERM, then waits for a clean exit (0); returns how long it took.
fn stop(service: &mut Service, what: &str) -> Duration {
    let signalled = Instant::now();
    service.signal("TERM");
    let code = service.exit_code(EXIT_TIMEOUT);
    assert_eq!(
        code,
        0,
        "exit code of {what} after SIGTERM; log:\n{}",
        service.log_text()
    );
    signalled.elapsed()
}

#[test]
fn a_plain_stop_and_start_refuses_connections() {
    let _one = one_at_a_time();
    let mut service = start_on(0);
    let addr: SocketAddr = service.addr;
    let load = Load::start(addr, MIX);
    let mut seen =
        load.wait_for_ok_from_every_kind(Mark::LOAD_START, ANSWER_TIMEOUT, "to the first service");
    for restart in 1..=RESTARTS {
        let refused_before = seen.refused;
        let stopping = Instant::now();
        let drained = stop(&mut service, &format!("service {restart}"));
        // A 2xx on a connection made from here on comes from the new
        // service: the old one has exited.
        let new_service = load.mark();
        service = start_on(addr.port());
        let gap = stopping.elapsed();
        assert_eq!(
            service.addr, addr,
            "the new service listens where the old one did"
        );
        seen = load.wait_for_ok_from_every_kind(
            new_service,
            ANSWER_TIMEOUT,
            &format!("after the old service {restart} exited"),
        );
        eprintln!(
            "restart {restart}: the old service exited {drained:?} after SIGTERM, the new one \
             listened {gap:?} after it; {} connects refused meanwhile",
            seen.refused - refused_before
        );
    }
    let counts = load.stop();
    eprintln!("load over {RESTARTS} stops and starts: {counts:#}");
    stop(&mut service, "the last service");

    assert!(
        counts.refused > 0,
        "a stop and a start refused no connect: the harness cannot see refusals; {counts:#}"
    );
    for kind in ClientKind::ALL {
        assert!(
            counts.client(kind).ok > 0,
            "no {kind} request was answered: {counts:#}"
        );
    }
    // What a graceful stop promises besides the refusals: every request
    // the server could have received was answered (idle keep-alive
    // connections it closed are stale, not lost).
    assert_eq!(
        counts.failures(),
        counts.refused,
        "a plain stop and start should only refuse connects: {counts:#}"
    );
}

#[test]
fn a_service_left_alone_answers_every_request_of_the_load() {
    let _one = one_at_a_time();
    let mut service = start_on(0);
    let load = Load::start(service.addr, MIX);
    let answered = load.wait_for_ok_from_every_kind(Mark::LOAD_START, ANSWER_TIMEOUT, "at all");
    // Every slow client through one more request at least.
    load.wait_until(ANSWER_TIMEOUT, "more slow requests answered", |counts| {
        counts.client(ClientKind::Slow).ok >= answered.client(ClientKind::Slow).ok + MIX.slow as u64
    });
    let counts = load.stop();
    eprintln!("load on a service left alone: {counts:#}");
    stop(&mut service, "the service");
    counts.assert_all_answered();
}

// ---------------------------------------------------------------------------
// The load's classification, against servers that misbehave on purpose.

/// What a [`FakeServer`] does with each connection.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers the first request (keep-alive, no `Connection: close`),
    /// its last byte and the FIN in one segment, so the connection is
    /// closed before the client can reuse it.
    AnswerThenCloseWhileIdle,
    /// Answers the first request (keep-alive), reads the second one and
    /// closes without answering.
    AnswerThenDropTheNextRequest,
    /// Reads each request and closes without answering.
    DropTheRequest,
    /// Reads each request and resets the connection (`SO_LINGER` 0).
    ResetAfterTheRequest,
    /// Answers each request `503` with `Connection: close`.
    Answer503,
    /// Answers each request with bytes that are no HTTP response.
    AnswerGarbage,
}

const KEEP_ALIVE_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A one-thread TCP server on 127.0.0.1:0 that serves connections one
/// after the other as its [`Behaviour`] says; stopped and joined when
/// dropped.
struct FakeServer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(behaviour: Behaviour) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let addr = listener.local_addr().expect("the fake server's address");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    // A client that went away is no matter here.
                    let _ = serve(stream, behaviour);
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the blocking accept, which then sees the flag.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, support::CONNECT_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head (the load's GETs have no body); false at EOF.
fn read_request(stream: &mut std::net::TcpStream) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(false);
        }
        head.push(byte[0]);
    }
    Ok(true)
}

/// One connection of a [`FakeServer`].
fn serve(mut stream: std::net::TcpStream, behaviour: Behaviour) -> std::io::Result<()> {
    use std::io::Write;
    stream.set_read_timeout(Some(support::RESPONSE_TIMEOUT))?;
    if !read_request(&mut stream)? {
        return Ok(());
    }
    match behaviour {
        Behaviour::AnswerThenCloseWhileIdle => {
            // Corked, the response waits for the FIN and leaves with it.
            let socket = socket2::SockRef::from(&stream);
            socket.set_tcp_cork(true)?;
            stream.write_all(KEEP_ALIVE_OK)?;
            stream.shutdown(std::net::Shutdown::Write)?;
            // Until the client, finding the connection ended, closes it.
            while read_request(&mut stream)? {}
        }
        Behaviour::AnswerThenDropTheNextRequest => {
            stream.write_all(KEEP_ALIVE_OK)?;
            read_request(&mut stream)?;
        }
        Behaviour::DropTheRequest => {}
        Behaviour::ResetAfterTheRequest => {
            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        }
        Behaviour::Answer503 => stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
        Behaviour::AnswerGarbage => stream.write_all(b"garbage\r\n\r\n")?,
    }
    Ok(())
}

/// Runs one keep-alive client against `addr` until it has `requests`
/// outcomes; returns the counts.
fn one_client_against(addr: SocketAddr, requests: u64, what: &str) -> support::load::Counts {
    let load = Load::start(
        addr,
        LoadMix {
            keep_alive: 1,
            ..LoadMix::default()
        },
    );
    load.wait_until(
        ANSWER_TIMEOUT,
        &format!("{requests} outcomes {what}"),
        |counts| counts.total() >= requests,
    );
    load.stop()
}

#[test]
fn the_load_tells_apart_refused_stale_lost_reset_bad_status_and_malformed() {
    use support::load::Counts;
    const REQUESTS: u64 = 6;
    /// The counters that must be non-zero, by name, and all others zero.
    fn nonzero(counts: &Counts) -> Vec<&'static str> {
        [
            ("ok", counts.ok),
            ("bad_status", counts.bad_status),
            ("refused", counts.refused),
            ("reset", counts.reset),
            ("lost", counts.lost),
            ("timeout", counts.timeout),
            ("connect_timeout", counts.connect_timeout),
            ("malformed", counts.malformed),
            ("other_error", counts.other_error),
            ("stale", counts.stale),
        ]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, _)| name)
        .collect()
    }

    // A port bound but not listening refuses connects, and is nobody
    // else's while it is bound (a port merely closed again may be handed
    // to the next bind to port 0, such as a service of another test).
    let bound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .and_then(|socket| {
            socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            Ok(socket)
        })
        .expect("a bound socket");
    let not_listening = bound
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .expect("the bound socket's address");
    let counts = one_client_against(not_listening, REQUESTS, "from a port nobody listens on");
    drop(bound);
    assert_eq!(nonzero(&counts), ["refused"], "{counts:#}");

    let cases = [
        (Behaviour::AnswerThenCloseWhileIdle, &["ok", "stale"][..]),
        (Behaviour::AnswerThenDropTheNextRequest, &["ok", "lost"]),
        (Behaviour::DropTheRequest, &["lost"]),
        (Behaviour::ResetAfterTheRequest, &["reset"]),
        (Behaviour::Answer503, &["bad_status"]),
        (Behaviour::AnswerGarbage, &["malformed"]),
    ];
    for (behaviour, expected) in cases {
        let server = FakeServer::start(behaviour);
        let counts = one_client_against(server.addr, REQUESTS, &format!("from {behaviour:?}"));
        drop(server);
        eprintln!("{behaviour:?}: {counts}");
        assert_eq!(nonzero(&counts), expected, "{behaviour:?}: {counts:#}");
        match behaviour {
            // Every request but the first on a connection found it ended.
            Behaviour::AnswerThenCloseWhileIdle => {
                assert!(
                    counts.stale <= counts.ok && counts.ok <= counts.stale + 1,
                    "{counts:#}"
                );
            }
            Behaviour::AnswerThenDropTheNextRequest => assert!(
                counts
                    .samples
                    .iter()
                    .all(|sample| sample.contains("reused")),
                "only second requests on a connection are lost: {counts:#}"
            ),
            Behaviour::Answer503 => {
                assert_eq!(
                    counts.statuses.keys().collect::<Vec<_>>(),
                    [&503],
                    "{counts:#}"
                );
            }
            _ => {}
        }
    }
}

/// Restarts in the test under load.
const SIGHUPS: usize = 20;
/// Every fifth SIGHUP is sent twice, back to back: the second must be
/// ignored (or merged with the first by the kernel), never a generation.
const DOUBLED_EVERY: usize = 5;
/// The restart tests' drain bound, so a stuck drain shows as a failure.
const SHUTDOWN_TIMEOUT: &str = "10s";
/// Longest wait for a restart: the successor starts in milliseconds.
const RESTART_WAIT: Duration = Duration::from_secs(20);

/// Starts the service with `NOTIFY_SOCKET` pointing at `notify` and waits
/// for its `READY=1`.
fn start_notifying(notify: &NotifySocket, extra: &[&str]) -> Service {
    let mut command = Command::new(binary());
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shutdown-timeout",
            SHUTDOWN_TIMEOUT,
        ])
        .args(ARGS)
        .args(extra);
    let service = Service::spawn(command, &[("NOTIFY_SOCKET", notify.path())]);
    let (before, ready) = notify.wait_for("READY=1", START_TIMEOUT);
    assert!(
        before.is_empty() && ready == "READY=1\n",
        "{before:?} {ready:?}"
    );
    service
}

/// The inodes of the sockets listening on `port` (IPv4 and IPv6), from
/// the kernel's tables.
fn listening_inodes(port: u16) -> Vec<u64> {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // local address, state 0A (LISTEN), inode.
                    (fields.len() > 9 && fields[1].ends_with(&port) && fields[3] == "0A")
                        .then(|| fields[9].parse().ok())
                        .flatten()
                })
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// Whether `pid` holds the socket with `inode`.
fn holds_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                std::fs::read_link(entry.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
        })
        .unwrap_or(false)
}

/// Whether `pid` has exited (gone, or a zombie its new parent has not
/// reaped yet).
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Every shutdown report in the log (one per process; a successor logs to
/// the same stderr), waiting until there are `count`.
fn reports(service: &Service, count: usize) -> Vec<serde_json::Value> {
    support::wait_until(EXIT_TIMEOUT, &format!("{count} shutdown reports"), || {
        service.reports().len() >= count
    });
    service.reports()
}

/// The PIDs of a service's generations, oldest first; those still
/// running when a test fails are killed (by PID) as it unwinds.
#[derive(Debug)]
struct Generations(Vec<u32>);

impl std::ops::Deref for Generations {
    type Target = Vec<u32>;
    fn deref(&self) -> &Vec<u32> {
        &self.0
    }
}

impl std::ops::DerefMut for Generations {
    fn deref_mut(&mut self) -> &mut Vec<u32> {
        &mut self.0
    }
}

impl Drop for Generations {
    fn drop(&mut self) {
        for pid in self.0.iter().filter(|pid| !has_exited(**pid)) {
            let _ = support::server_process::send_signal("KILL", &[*pid]);
        }
    }
}

fn signal(name: &str, pid: u32) {
    support::server_process::send_signal(name, &[pid])
        .unwrap_or_else(|error| panic!("kill -{name} {pid}: {error}"));
}

/// The successor a restart handed over to: `RELOADING=1` with
/// `MONOTONIC_USEC`, then `MAINPID=` + `READY=1`, and nothing else.
fn handed_over_to(notify: &NotifySocket) -> u32 {
    let (before, handed_over) = notify.wait_for("MAINPID=", RESTART_WAIT);
    assert!(
        before.len() == 1
            && before[0].starts_with("RELOADING=1\nMONOTONIC_USEC=")
            && field(&before[0], "MONOTONIC_USEC").is_some_and(|usec| usec.parse::<u64>().is_ok()),
        "RELOADING=1 with MONOTONIC_USEC, then the hand-over; got {before:?}"
    );
    assert!(
        handed_over.lines().any(|line| line == "READY=1"),
        "MAINPID comes with READY=1: {handed_over:?}"
    );
    field(&handed_over, "MAINPID")
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("a PID in {handed_over:?}"))
}

#[test]
fn twenty_sighups_under_load_answer_every_request() {
    let _one = one_at_a_time();
    let notify = NotifySocket::bind();
    let mut first = start_notifying(&notify, &[]);
    let addr = first.addr;
    let inodes = listening_inodes(addr.port());
    assert_eq!(
        inodes.len(),
        1,
        "one listening socket on the port: {inodes:?}"
    );
    let inode = inodes[0];
    let load = Load::start(addr, MIX);
    load.wait_for_ok_from_every_kind(Mark::LOAD_START, ANSWER_TIMEOUT, "before the first SIGHUP");
    let mut generations = Generations(vec![first.pid()]);
    let mut doubled = 0;
    for restart in 1..=SIGHUPS {
        let main = generations[generations.len() - 1];
        signal("HUP", main);
        if restart % DOUBLED_EVERY == 0 {
            signal("HUP", main);
            doubled += 1;
        }
        let successor = handed_over_to(&notify);
        assert!(
            !generations.contains(&successor),
            "restart {restart}: a new process, not {successor} again ({generations:?})"
        );
        generations.push(successor);
        assert_eq!(
            listening_inodes(addr.port()),
            [inode],
            "restart {restart}: the same listening socket, never a second one"
        );
        assert!(
            holds_socket(successor, inode),
            "restart {restart}: the successor holds the socket"
        );
        // The next SIGHUP goes as soon as READY=1 arrived, while the old
        // process still drains; every few, the load shows it is served.
        if restart % DOUBLED_EVERY == 1 {
            let before = load.counts();
            load.wait_for_more_ok_from_every_kind(
                &before,
                ANSWER_TIMEOUT,
                &format!("after restart {restart}"),
            );
        }
    }
    let last = generations[SIGHUPS];
    let before = load.counts();
    load.wait_for_more_ok_from_every_kind(&before, ANSWER_TIMEOUT, "after the last restart");
    let counts = load.stop();
    println!("{SIGHUPS} restarts under load: {counts}");
    counts.assert_all_answered();

    signal("TERM", last);
    let (before, stopping) = notify.wait_for("STOPPING=1", EXIT_TIMEOUT);
    assert!(
        before.is_empty(),
        "nothing between the last hand-over and STOPPING=1: {before:?}"
    );
    assert_eq!(stopping, "STOPPING=1\n");
    first.assert_exit_code(0, EXIT_TIMEOUT);
    support::wait_until(EXIT_TIMEOUT, "every generation to exit", || {
        generations.iter().all(|pid| has_exited(*pid))
    });

    let reports = reports(&first, SIGHUPS + 1);
    for (generation, pid) in generations.iter().enumerate() {
        let report = reports
            .iter()
            .find(|report| report["pid"] == *pid)
            .unwrap_or_else(|| panic!("a shutdown report from generation {generation}, pid {pid}"));
        let expected_trigger = if generation < SIGHUPS {
            "restart"
        } else {
            "SIGTERM"
        };
        assert_eq!(
            report["trigger"], expected_trigger,
            "generation {generation}: {report}"
        );
        assert_eq!(report["exit_code"], 0, "generation {generation}: {report}");
        assert_eq!(
            report["requests_received"], report["responses_written"],
            "generation {generation} answered every request it received: {report}"
        );
        assert!(
            report["phases"]["total_ms"].as_u64() < Some(10_000),
            "generation {generation} exited within its drain: {report}"
        );
        if generation < SIGHUPS {
            assert_eq!(
                report["successor_pid"],
                generations[generation + 1],
                "{report}"
            );
        }
    }
    let ready = notify
        .all()
        .iter()
        .filter(|message| message.lines().any(|line| line == "READY=1"))
        .count();
    assert_eq!(
        ready,
        SIGHUPS + 1,
        "READY=1 once at start and once per hand-over: {:?}",
        notify.all()
    );
    let ignored = first
        .log_text()
        .matches("while a restart is under way; ignored")
        .count()
        + first
            .log_text()
            .matches("while shutting down; ignored")
            .count();
    assert!(
        ignored <= doubled,
        "only the doubled SIGHUPs are ignored: {ignored} of {doubled}"
    );
}

/// A successor that fails as `restart_exec` makes it: the old process
/// goes on serving the load, logs why, reports it, and stops cleanly.
fn a_failed_restart_loses_nothing(
    restart_exec: &Path,
    extra: &[&str],
    outcome: &str,
    logged: &str,
) {
    let _one = one_at_a_time();
    let notify = NotifySocket::bind();
    let exec = restart_exec.to_str().expect("a UTF-8 path");
    let mut args = vec!["--restart-exec", exec];
    args.extend_from_slice(extra);
    let mut service = start_notifying(&notify, &args);
    let load = Load::start(service.addr, MIX);
    load.wait_for_ok_from_every_kind(Mark::LOAD_START, ANSWER_TIMEOUT, "before the SIGHUP");
    signal("HUP", service.pid());
    let (before, failed) = notify.wait_for("STATUS=restart failed", RESTART_WAIT);
    assert!(
        before.len() == 1 && before[0].starts_with("RELOADING=1\n"),
        "RELOADING=1, then the failure: {before:?}"
    );
    assert!(
        failed.starts_with("READY=1\n"),
        "the reload ends with READY=1: {failed:?}"
    );
    service.wait_for_log("restart failed:", RESTART_WAIT);
    assert!(
        service.log_text().contains(logged),
        "the log says why ({logged:?}):\n{}",
        service.log_text()
    );
    let before = load.counts();
    load.wait_for_more_ok_from_every_kind(&before, ANSWER_TIMEOUT, "after the failed restart");
    let counts = load.stop();
    println!("a failed restart ({outcome}) under load: {counts}");
    counts.assert_all_answered();
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, 0, "{}", service.log_text());
    let report = service.report();
    assert_eq!(report["trigger"], "SIGTERM", "{report}");
    assert_eq!(report["restarts"][0]["outcome"], outcome, "{report}");
    if let Some(pid) = report["restarts"][0]["successor_pid"].as_u64() {
        let pid = u32::try_from(pid).expect("a PID");
        assert!(has_exited(pid), "the failed successor {pid} is gone");
    }
    support::assert_nothing_lost(&report);
}

/// A `--restart-exec` in `dir` that starts the service, which then never
/// accepts (a successor that never becomes ready).
fn never_ready(dir: &Path) -> PathBuf {
    script(
        dir,
        "hangs",
        &format!("export TEST_NEVER_READY=true\nexec '{}' \"$@\"", binary()),
    )
}

/// An executable shell script `name` in `dir` with `body`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn a_successor_that_exits_at_once_leaves_the_old_process_serving() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let exits = script(dir.path(), "exits", "exit 3");
    a_failed_restart_loses_nothing(&exits, &[], "exited", "exited or closed its ready pipe");
}

#[test]
fn a_successor_that_never_becomes_ready_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let hangs = never_ready(dir.path());
    a_failed_restart_loses_nothing(
        &hangs,
        &["--restart-timeout", "1s"],
        "timed_out",
        "was not accepting within 1000 ms; killed it",
    );
}

#[test]
fn a_missing_restart_exec_leaves_the_old_process_serving() {
    let dir = tempfile::tempdir().expect("a temp dir");
    a_failed_restart_loses_nothing(
        &dir.path().join("no-such-program"),
        &[],
        "spawn_failed",
        "No such file or directory",
    );
}

#[test]
fn a_successor_is_the_program_now_at_the_path_and_reads_its_settings_anew() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("a temp dir");
    let installed = dir.path().join("gremlins-api");
    std::fs::copy(binary(), &installed).expect("install a copy of the binary");
    let notify = NotifySocket::bind();
    let mut command = Command::new(&installed);
    command.args(["--listen", "127.0.0.1:0", "--enable-test-routes"]);
    let mut first = Service::spawn(
        command,
        &[("NOTIFY_SOCKET", notify.path()), ("WORKERS", "5")],
    );
    notify.wait_for("READY=1", START_TIMEOUT);
    assert!(
        first.log_text().contains("with 5 workers"),
        "{}",
        first.log_text()
    );
    // A deploy: a new program replaces the old one at the same path (here
    // the same binary behind a script with a new setting), by rename.
    let staged = script(
        dir.path(),
        "gremlins-api.new",
        &format!("export WORKERS=3\nexec '{}' \"$@\"", binary()),
    );
    std::fs::rename(&staged, &installed).expect("replace the program");
    signal("HUP", first.pid());
    let successor = Generations(vec![handed_over_to(&notify)]);
    let successor = &successor;
    let started = first.wait_for_log("with 3 workers", RESTART_WAIT);
    assert!(started.contains("listening on"), "{started}");
    assert_eq!(
        support::get(first.addr, "/healthz").status,
        200,
        "the successor serves"
    );
    first.assert_exit_code(0, EXIT_TIMEOUT);
    signal("TERM", successor[0]);
    support::wait_until(EXIT_TIMEOUT, "the successor to exit", || {
        has_exited(successor[0])
    });
}

#[test]
fn sigterm_while_a_successor_starts_stops_both_and_loses_nothing() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("a temp dir");
    let hangs = never_ready(dir.path());
    let notify = NotifySocket::bind();
    let exec = hangs.to_str().expect("a UTF-8 path");
    let mut service = start_notifying(&notify, &["--restart-exec", exec]);
    let load = Load::start(service.addr, MIX);
    load.wait_for_ok_from_every_kind(Mark::LOAD_START, ANSWER_TIMEOUT, "before the SIGHUP");
    signal("HUP", service.pid());
    let started = service.wait_for_log("started the successor, pid", RESTART_WAIT);
    let successor = Generations(vec![support::pid_after(
        &started,
        "started the successor, pid ",
    )]);
    service.wait_for_log("never accepting, as the test asked", RESTART_WAIT);
    service.signal("TERM");
    notify.wait_for("STOPPING=1", EXIT_TIMEOUT);
    service.assert_exit_code(0, EXIT_TIMEOUT);
    let counts = load.stop();
    println!("SIGTERM during a restart: {counts}");
    assert_eq!(
        counts.total(),
        counts.ok + counts.refused,
        "only refusals once both are gone: {counts:#}"
    );
    let report = service.report();
    assert_eq!(report["trigger"], "SIGTERM", "{report}");
    assert_eq!(report["restarts"][0]["outcome"], "abandoned", "{report}");
    assert!(has_exited(successor[0]), "the successor was stopped too");
    support::assert_nothing_lost(&report);
}

#[test]
fn a_successor_stopped_at_once_waits_for_its_predecessor_to_finish() {
    let _one = one_at_a_time();
    let notify = NotifySocket::bind();
    let mut first = start_notifying(&notify, &[]);
    let addr = first.addr;
    // A request that is still running on the first process when both stop.
    let slow = std::thread::spawn(move || support::get(addr, "/test/sleep?ms=1500"));
    support::wait_until(RESTART_WAIT, "the slow request to run", || {
        support::metric(addr, "gremlins_in_flight_requests") >= 2
    });
    signal("HUP", first.pid());
    let successor = Generations(vec![handed_over_to(&notify)]);
    signal("TERM", successor[0]);
    assert_eq!(slow.join().expect("the slow client").status, 200);
    first.assert_exit_code(0, EXIT_TIMEOUT);
    support::wait_until(EXIT_TIMEOUT, "the successor to exit", || {
        has_exited(successor[0])
    });
    let log = first.log_text();
    let position = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in the log:\n{log}"))
    };
    let first_report = position(&format!("\"pid\":{}", first.pid()));
    let waited = position(&format!("the predecessor, pid {}, has exited", first.pid()));
    let successor_report = position(&format!("\"pid\":{}", successor[0]));
    assert!(
        first_report < waited && waited < successor_report,
        "the successor exits after its predecessor:\n{log}"
    );
}
