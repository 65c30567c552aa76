//! gremlins-api: a synchronous HTTP/1.1 server that never loses work when
//! it is stopped, and the reference service built on it.
//!
//! # The lifecycle contract
//!
//! 1. **Running**: the acceptor admits connections, a poller parks idle
//!    ones, a fixed pool of workers runs the handler. `/readyz` is 200.
//! 2. **Draining** (first SIGTERM or SIGINT, [`ShutdownHandle::shutdown`],
//!    or `GET /drain` on the admin listener): readiness fails at once,
//!    each connection is closed (`Connection: close`) after the requests
//!    it already carries are answered, and connections are still accepted
//!    until the drain ends: after `drain_delay`, or, with `drain_quiet`
//!    (the adaptive drain), once no new connection and no new request has
//!    come for that long, within `drain_min` and `drain_max`. The report's
//!    `drain` says how long it lasted and why it ended.
//! 3. **Closing**: connections already in the kernel's backlog are accepted,
//!    then the listener is closed (new connects are refused, not reset).
//!    Every request already received is finished; idle keep-alive
//!    connections get a short last call.
//! 4. At `shutdown_timeout` after the drain's end at the latest, requests still
//!    queued are answered 503 (`DRYAD-SYS-5003`, safe to retry) and running
//!    ones are abandoned and logged.
//! 5. **Cleanup**: hooks run last-registered-first, each bounded, within
//!    `cleanup_timeout`. Then the workers exit, dropping their clients.
//! 6. **Exited**: [`Server::run`] returns a [`ShutdownReport`]; its exit
//!    code is 0 when clean, [`EXIT_DRAIN_TIMED_OUT`],
//!    [`EXIT_CLEANUP_FAILED`] or [`EXIT_THREAD_DIED`] otherwise. A second signal exits at once with
//!    128 + the signal number.
//!
//! # The drain, and who may start it
//!
//! A load balancer keeps sending new connections for a while after it was
//! told to stop (a pod's endpoints propagate to every kube-proxy and
//! ingress controller one after another). The adaptive drain measures that
//! while instead of guessing it: new connections and new requests on the
//! service's listeners are stamped while draining, and the coordinator
//! closes the listener once none has come for `drain_quiet` (counted from
//! the trigger when none came), at the earliest `drain_min` (and
//! `drain_delay`) after the trigger, at the latest `drain_max`.
//!
//! The admin listener (`admin_listen`, or a socket named `admin`) is for
//! the platform: `GET /drain` there triggers the shutdown and is answered,
//! with the drain's figures, when the drain has ended, so a Kubernetes
//! preStop `httpGet` lasts exactly as long as the drain and SIGTERM comes
//! after it. That request holds a worker while it waits (bounded by the
//! longest drain); it waits on the lifecycle, never on a client. Every
//! other request there goes to the handler (probes), and nothing there
//! counts as traffic for the drain. Whoever reaches it can stop the
//! process: keep it off the ports clients reach.
//!
//! # Restart on one host without a refused connection
//!
//! A stop and a start refuse every connection in between, so a deploy on
//! one host hands the listening socket over instead; it never opens a
//! second one (two `SO_REUSEPORT` sockets have two accept queues, and
//! closing one resets what was queued on it).
//!
//! - **Socket activation**: [`Server::bind`] takes the listening sockets
//!   passed by `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` (a systemd
//!   `.socket` unit, `systemd-socket-activate`, or a hot restart) and binds
//!   `listen` only when given none; it removes a socket filter a previous
//!   owner left on one, and logs which it did.
//! - **Hot restart** (SIGHUP, what `systemctl reload` sends, or
//!   [`ShutdownHandle::restart`]): the server starts its successor, the
//!   same program (or `restart_exec`) with the same arguments and
//!   environment, so a new binary at the same path is what runs, with the
//!   sockets at descriptors 3.. (`LISTEN_PID` set to the successor's PID
//!   in the forked child, before `exec`), and waits at most
//!   `restart_timeout` for it to say, on a pipe, that it accepts. Then
//!   this process stops accepting and drains as on SIGTERM (trigger
//!   `restart`), except that it touches nothing on the shared sockets: a
//!   socket filter belongs to the socket, not the descriptor. A successor
//!   that cannot start, exits or hangs is logged, killed, and listed in
//!   the report's `restarts`, and this process goes on serving; a second
//!   SIGHUP while one is under way is logged and ignored; SIGTERM and
//!   SIGINT keep their meaning (one during a restart stops the successor
//!   too). A successor's own stop waits, within its deadline, for its
//!   predecessor to exit (a pidfd), since systemd kills what is left of a
//!   unit once its main process exits.
//! - **systemd notify** (when `NOTIFY_SOCKET` is set): `READY=1` once
//!   accepting; on SIGHUP `RELOADING=1` with `MONOTONIC_USEC`, then
//!   `MAINPID=<successor>` and `READY=1` when it took over (or `READY=1`
//!   with a `STATUS=` saying why not); `STOPPING=1` and
//!   `EXTEND_TIMEOUT_USEC` (the shutdown and cleanup timeouts) on a real
//!   stop only; `WATCHDOG=1` every half `WATCHDOG_USEC`, only while the
//!   acceptor and the poller answer their heartbeats, so a stuck server
//!   stops pinging and systemd restarts it. The units in `systemd/` use
//!   it.
//!
//! # How it serves
//!
//! A fixed number of threads, whatever the number of connections, and one
//! rule that makes a fixed pool safe with blocking handlers: **a worker
//! never waits on a client.** A worker waits only on its handler (which may
//! wait on PostgreSQL); every wait on a socket belongs to the poller. A
//! client that trickles its body or never reads its response costs a
//! connection slot and bounded memory, never a worker, so `/healthz` stays
//! answered under a slowloris.
//!
//! ## Threads
//!
//! | thread | how many | waits on | does |
//! |---|---|---|---|
//! | acceptor | 1 | the listener's readiness | accepts, enforces `max_connections` (closing the longest-idle keep-alive connection to admit a new one, or answering `503` when none is idle), registers each connection with the registry |
//! | poller | `pollers` (default: one per core) | the readiness of every client socket of its share (edge-triggered, one registration per socket; connections are spread round-robin as they are accepted and stay with their poller) and its registry's timers | reads each request whole, head and body, into memory; answers `Expect: 100-continue`; answers what the handler answers from memory at once ([`Handler::handle_inline`]: the reference service's health checks) and queues the rest; finishes the writes a worker could not; parks idle keep-alive connections; ends clients that are too slow |
//! | workers | `workers` | the bounded worker queue, then the handler | run the handler on a complete request, serve the pipelined requests already complete behind it (a bounded number per turn), write without blocking, hand the rest back |
//! | coordinator | the caller of [`Server::run`] | the shutdown trigger, then the drain's counts | runs the shutdown sequence against one deadline |
//! | signals | 1, if a [`SignalListener`] is installed | SIGTERM, SIGINT and SIGHUP (a self-pipe) | triggers the shutdown; a second signal exits at once; SIGHUP asks for a hot restart |
//! | restart | 1 | a request, then the successor's ready pipe, bounded by `restart_timeout` | starts the successor with the listening sockets, hands over or gives up |
//! | watchdog | 1, if systemd asked for one (`WATCHDOG_USEC`) | half the watchdog interval | asks the acceptor and the poller for a heartbeat; pings systemd only when both answered |
//! | cleanup hooks | 1 per hook, while it runs | the hook | bounded by `cleanup_timeout`; a hook that hangs is abandoned, not joined |
//!
//! Data flows one way: acceptor → registry → poller → queue → worker →
//! registry, and the poller again for what is left to write. A request the
//! handler answers at once skips the queue: poller → registry. That saves
//! the hand-off (a worker's wake-up, a context switch and a cold cache;
//! `benches/syscalls.sh` measures it), and keeps probes answered when
//! every worker is busy; the price is that nothing else on that poller
//! moves while it runs, so it is only for answers made in microseconds
//! without I/O.
//!
//! ## A connection's states
//!
//! A connection is in exactly one state at a time, and moves only through
//! one function of the connection registry (`server/registry.rs`,
//! `Registry::transition`): whoever holds it says where it goes next
//! (wait, serve, refuse, linger, close) and the registry puts it there,
//! with the right timer.
//!
//! ```text
//!   accepted ──► Idle ──► ReadingHead ──► ReadingBody ◄──► AwaitingRoom
//!                 ▲                            │  (memory budget full)
//!                 │                            ▼
//!                 │        Queued ◄──── whole request in memory
//!                 │          │
//!                 │          ▼
//!                 ├──── Handling ──► Writing (the client reads slowly;
//!                 │          │           the poller finishes the write)
//!                 │          ▼
//!                 └──── response written ──► Lingering ──► closed
//!                       (keep-alive)         (after a final response)
//! ```
//!
//! `Polling` marks a connection the poller is carrying on with. Each wait
//! has a timer: `idle_timeout` (Idle), `header_timeout` (ReadingHead),
//! `min_body_rate` and `body_timeout` (ReadingBody), one second
//! (AwaitingRoom, then `503`), `min_write_rate` and `write_timeout`
//! (Writing), two seconds (Lingering).
//!
//! ## Memory
//!
//! Request bodies being read and responses not yet written share one
//! budget, `max_buffered_bytes`. A body reserves its room before it is
//! read; when the budget is used up the poller stops reading those bodies
//! (TCP slows their clients), and one that waits more than a second is
//! answered `503`. Under pressure, the slowest readers are reset first.
//! Heads are bounded by `max_head_bytes`, bodies by `max_body_bytes`, the
//! queue by `queue_capacity`, connections by `max_connections`.
//!
//! ## Invariants, and why
//!
//! - **A worker never waits on a client** (above): what makes a fixed pool
//!   with blocking handlers safe.
//! - **One state per connection, one function that moves it**: a
//!   connection is never lost between threads, and the shutdown can tell
//!   at any moment which connections still hold work.
//! - **Counts are guards**: a request counts as in flight from its whole
//!   head until the last byte of its response is written, wherever the
//!   connection is, through a guard whose `Drop` gives the count back; so
//!   a panicking handler cannot wedge the drain. `requests_received` and
//!   `responses_written` in the report are equal when nothing was lost.
//! - **Deadlines, not sleeps**: the shutdown computes one deadline when it
//!   starts and passes it down; every wait has a bound; time arithmetic
//!   never overflows (durations over seven days are refused).
//! - **The listener closes only after the backlog is accepted**: a
//!   connection the kernel completed is served, never reset; new connects
//!   after the close are refused.
//! - **A dead thread is a shutdown**: if the acceptor or the poller dies,
//!   the server shuts down and exits with [`EXIT_THREAD_DIED`]; it never
//!   leaves a process that accepts nothing and reports success.
//! - **Bad input costs bounded memory and time**, gets an answer from the
//!   [`WireError`] table, and closes only that connection.
//!
//! ## Where things are
//!
//! | module | its one job |
//! |---|---|
//! | `http/` | the HTTP/1.1 engine on `httparse`: heads, body framing, responses, keep-alive, the [`WireError`] table; it never waits and knows nothing of threads |
//! | `server/` | sockets and threads: listener, acceptor, poller, registry (the connection states), memory budget, workers, counters, the admin listener's drain endpoint, the watchdog and the heartbeats it checks |
//! | `lifecycle/` | phases and deadline, the in-flight tracker, the drain's clock, cleanup hooks, signals, restart requests, systemd notify, the shutdown sequence and its report |
//! | `restart/` | the hot restart: starting the successor with the sockets (`exec`, which may use `unsafe`: fork-safe environment and descriptors), waiting for it, handing over |
//! | `inherit.rs` | taking ownership of inherited descriptors, once: socket activation's listeners, the ready pipe, the predecessor's pidfd (may use `unsafe`) |
//! | `config.rs` | [`ServerConfig`] and its validation |
//! | `app/` | the reference service: routes, events API, PostgreSQL store, Redis cache, metrics |
//! | `main.rs`, `cli.rs` | the binary: command line (flags and environment), logging, exit code |
//!
//! Each module's opening doc says what it owns; `cargo doc
//! --document-private-items` shows them all.
//!
//! # Embedding it
//!
//! Build a [`ServerConfig`] (plain fields, documented defaults), bind a
//! [`Server`], keep a [`ShutdownHandle`] (to register cleanup hooks and to
//! stop it from code), install a [`SignalListener`] if SIGTERM should stop
//! it, and [`run`](Server::run) it with a [`Handler`]: any
//! `Fn(&mut Request) -> Response`. Test a handler without a socket through
//! [`ParsedRequest`]. The reference service is [`app::App`], configured by
//! [`app::ServiceConfig`].
//!
//! ```
//! use gremlins_api::{Response, Server, ServerConfig, StatusCode};
//!
//! let mut config = ServerConfig::default();
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! let server = Server::bind(config).unwrap();
//! let handle = server.shutdown_handle();
//! handle.register_cleanup("say-goodbye", || Ok::<(), String>(()));
//! let address = server.local_addr();
//! let serving = std::thread::spawn(move || {
//!     server.run(|_request: &mut gremlins_api::Request<'_>| Response::text(StatusCode::OK, "hello"))
//! });
//!
//! use std::io::{Read, Write};
//! let mut client = std::net::TcpStream::connect(address).unwrap();
//! client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).unwrap();
//! assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("hello"));
//!
//! handle.shutdown();
//! let report = serving.join().unwrap().unwrap();
//! assert_eq!(report.exit_code, 0);
//! assert_eq!(report.hooks[0].name, "say-goodbye");
//! ```
//!
//! # Error answers
//!
//! Every error answer, the engine's and the reference service's, is a
//! [`WireError`]: a status, a stable code (`DRYAD-<AREA>-<NNNN>`) and a
//! message, in a short JSON body. Its docs hold the table of codes, with
//! when each is sent and whether a client should retry.

pub mod app;
mod config;
mod error;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod inherit;
mod lifecycle;
mod restart;
mod server;
mod sync;

#[doc(hidden)]
pub use config::SupervisedThread;
pub use config::{CORES_PER_POLLER, ConfigError, MAX_POLLERS, ServerConfig};
pub use error::Error;
pub use http::{
    BodyError, HeadError, ParsedRequest, Request, RequestError, Response, StatusCode, WireError,
};
/// The in-flight tracker, for its benchmark only (feature `internals`);
/// not part of the API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use lifecycle::InFlight;
pub use lifecycle::{
    AbandonedRequest, DrainEnd, DrainSummary, EXIT_CLEAN, EXIT_CLEANUP_FAILED,
    EXIT_DRAIN_TIMED_OUT, EXIT_FORCED_BASE, EXIT_THREAD_DIED, HookOutcome, HookReport, Outcome,
    Phase, PhaseDurations, RestartOutcome, RestartRecord, ShutdownHandle, ShutdownReport,
    SignalListener, Trigger,
};
pub use server::{Handler, Server, Stats, StatsSnapshot};
