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
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::load::{ClientKind, Load, LoadMix, Mark};
use support::{Service, binary};

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
