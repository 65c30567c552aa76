//! gremlins-api: a synchronous HTTP/1.1 server that never loses work when
//! it is stopped, and the reference service built on it.
//!
//! # The lifecycle contract
//!
//! 1. **Running**: the acceptor admits connections, a poller parks idle
//!    ones, a fixed pool of workers runs the handler. `/readyz` is 200.
//! 2. **Draining** (first SIGTERM or SIGINT, or [`ShutdownHandle::shutdown`]):
//!    readiness fails at once, each connection is closed (`Connection:
//!    close`) after the requests it already carries are answered, and
//!    connections are still accepted for `drain_delay`.
//! 3. **Closing**: connections already in the kernel's backlog are accepted,
//!    then the listener is closed (new connects are refused, not reset).
//!    Every request already received is finished; idle keep-alive
//!    connections get a short last call.
//! 4. At `shutdown_timeout` after the signal at the latest, requests still
//!    queued are answered 503 (`DRYAD-SYS-5003`, safe to retry) and running
//!    ones are abandoned and logged.
//! 5. **Cleanup**: hooks run last-registered-first, each bounded, within
//!    `cleanup_timeout`. Then the workers exit, dropping their clients.
//! 6. **Exited**: [`Server::run`] returns a [`ShutdownReport`]; its exit
//!    code is 0 when clean, [`EXIT_DRAIN_TIMED_OUT`],
//!    [`EXIT_CLEANUP_FAILED`] or [`EXIT_THREAD_DIED`] otherwise. A second signal exits at once with
//!    128 + the signal number.
//!
//! # How it serves
//!
//! A fixed number of threads, whatever the number of connections, and one
//! rule that makes a fixed pool safe with blocking handlers: **a worker
//! never waits on a client.** A worker waits only on its handler (which may
//! wait on PostgreSQL); every wait on a socket belongs to the poller.
//!
//! - The **acceptor** owns the listener. At `max_connections` it closes the
//!   longest-idle keep-alive connection to admit a new one; only when none
//!   is idle does the new one get `503`.
//! - The **poller** (edge-triggered readiness, one registration per socket)
//!   reads each request whole, head and body, into memory before a worker
//!   sees it; answers `Expect: 100-continue` itself; finishes writes a
//!   worker could not; parks idle keep-alive connections; and ends clients
//!   that are too slow: a head must arrive within `header_timeout`, a body
//!   at `min_body_rate` on average after `min_rate_grace` (else `408`), a
//!   reader must take responses at `min_write_rate` (else it is reset).
//! - Request bodies being read and responses not yet written share one
//!   memory budget, `max_buffered_bytes`: a body reserves its room before
//!   it is read; when the budget is used up the poller stops reading those
//!   bodies, and one that waits more than a second is answered `503`.
//! - The **workers** (a fixed pool behind a bounded queue; full: `503`) run
//!   the handler on the complete request, serve the pipelined requests
//!   already complete behind it (a bounded number per turn), write without
//!   blocking, and hand what the socket did not take back to the poller.
//!   A request counts as in flight from its whole head until the last byte
//!   of its response is written, wherever the connection is.
//! - A connection is in exactly one state at a time (reading its head or
//!   body, waiting for room, queued, served, writing, idle, lingering), and
//!   moves through one function of the connection registry.
//! - If the acceptor or the poller dies, the server shuts down and exits
//!   with [`EXIT_THREAD_DIED`]; no setting can make a thread panic (every
//!   deadline is computed without overflow, and absurd durations are
//!   refused at start).
//!
//! ```
//! use gremlins_api::{Config, Response, Server, StatusCode};
//!
//! let mut config = Config::default();
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

pub mod app;
pub mod config;
mod error;
pub mod http;
pub mod lifecycle;
pub mod server;
mod sync;

pub use config::Config;
pub use error::Error;
pub use http::{Request, Response, StatusCode};
pub use lifecycle::{
    EXIT_CLEAN, EXIT_CLEANUP_FAILED, EXIT_DRAIN_TIMED_OUT, EXIT_THREAD_DIED, Outcome, Phase,
    ShutdownHandle, ShutdownReport, SignalListener, Trigger,
};
pub use server::{Handler, Server, Stats, StatsSnapshot};
