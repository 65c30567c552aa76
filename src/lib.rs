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

pub use config::Config;
pub use error::Error;
pub use http::{Request, Response, StatusCode};
pub use lifecycle::{
    EXIT_CLEAN, EXIT_CLEANUP_FAILED, EXIT_DRAIN_TIMED_OUT, EXIT_THREAD_DIED, Phase, ShutdownHandle,
    ShutdownReport, SignalListener,
};
pub use server::{Handler, Server};
