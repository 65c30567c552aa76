//! A traffic source for drain tests: new connections at a steady pace, as
//! load balancers and kube-proxy keep sending them to a pod for a while
//! after its deletion starts (endpoint propagation), each carrying one
//! `GET /`, every outcome recorded.
//!
//! Bounded: the source stops at the time it was given, at its first
//! refused connect, or after [`MAX_ATTEMPTS`], whichever comes first. The
//! pause between connects is the source's pace, not a synchronisation.

use std::io::Write;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Client, Dial, dial};

/// Most connections one source opens.
pub const MAX_ATTEMPTS: u64 = 2_000;

/// What the source saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Connections that got `200` with `Connection: close`.
    pub answered: u64,
    /// Connects refused (nothing listening any more); the source stops at
    /// the first.
    pub refused: u64,
    /// Anything else: no answer, a reset, a status other than 200, a
    /// response that keeps the connection open during the drain.
    pub failures: Vec<String>,
    /// When the last answered connection was opened.
    pub last_answered_at: Option<Instant>,
}

/// The running source.
pub struct NewConnections {
    thread: JoinHandle<Tally>,
}

impl NewConnections {
    /// Opens a connection to `addr` every `pace` until `until` (or a
    /// refusal), each with `GET /`; a response must say `Connection:
    /// close` once `draining_from` has passed.
    pub fn start(addr: SocketAddr, pace: Duration, until: Instant, draining_from: Instant) -> Self {
        let thread = std::thread::spawn(move || {
            let mut tally = Tally::default();
            for _ in 0..MAX_ATTEMPTS {
                let opened = Instant::now();
                if opened >= until {
                    break;
                }
                match dial(addr) {
                    Dial::Accepted(stream) => {
                        let mut client = Client::from_stream(stream);
                        let result = client
                            .stream
                            .write_all(b"GET / HTTP/1.1\r\nHost: drain-test\r\n\r\n")
                            .map_err(|error| format!("write failed: {error}"))
                            .and_then(|()| client.try_read_response());
                        match result {
                            Ok(response)
                                if response.status == 200
                                    && (response.closes() || opened < draining_from) =>
                            {
                                tally.answered += 1;
                                tally.last_answered_at = Some(opened);
                            }
                            Ok(response) => tally.failures.push(format!(
                                "status {} (Connection: close {}) on a connection opened {:?} \
                                 after the drain began",
                                response.status,
                                response.closes(),
                                opened.saturating_duration_since(draining_from)
                            )),
                            Err(error) => tally.failures.push(error),
                        }
                    }
                    Dial::Refused => {
                        tally.refused += 1;
                        break;
                    }
                    Dial::Failed(error) => tally.failures.push(format!("connect failed: {error}")),
                }
                std::thread::sleep(pace.saturating_sub(opened.elapsed()));
            }
            tally
        });
        Self { thread }
    }

    /// Waits for the source to stop and returns what it saw.
    pub fn finish(self) -> Tally {
        self.thread.join().expect("the traffic source panicked")
    }
}
