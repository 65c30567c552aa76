//! [`ServerConfig`]: every setting of the server, its default (in
//! `Default`, and nowhere else) and its validation.
//!
//! This is the library's layer: plain fields, durations as [`Duration`],
//! no command line. The reference service's own settings are
//! [`ServiceConfig`](crate::app::ServiceConfig); the binary's command line
//! (flags and environment variables) fills both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::{Limits, MAX_HEADERS_CEILING};
use crate::lifecycle::drain::DrainPolicy;

/// The longest duration any setting may have. Longer ones are refused by
/// validation, so no deadline computed from one can overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every setting of the server: sockets, limits on requests, the waits on
/// clients, the memory budget and the shutdown's timeouts.
///
/// Start from [`ServerConfig::default`] and change what you need;
/// [`Server::bind`](crate::Server::bind) validates the whole.
///
/// ```
/// use std::time::Duration;
///
/// let mut config = gremlins_api::ServerConfig::default();
/// config.listen = "127.0.0.1:0".parse().unwrap();
/// config.shutdown_timeout = Duration::from_secs(10);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one (see
    /// [`Server::local_addr`](crate::Server::local_addr)). Default
    /// `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Address of the admin listener, for the platform only (the kubelet):
    /// `GET /drain` there starts the shutdown's drain and answers when it
    /// ends; every other request is passed to the handler (so probes can
    /// use it), and nothing that arrives there counts as traffic for the
    /// adaptive drain. Keep it unreachable for clients (a port the
    /// Service does not expose, closed by a NetworkPolicy): whoever reaches
    /// it can stop the process. A socket-activated one is the socket named
    /// `admin`. Default `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Worker threads that run the handler. Handlers may block (on a
    /// database), so this is more than the number of cores. Default 16; at
    /// least 1.
    pub workers: usize,
    /// Poller threads, each doing the socket reads and unfinished writes of
    /// its share of the connections (spread round-robin as they are
    /// accepted). Default 0: one per [`CORES_PER_POLLER`] available cores,
    /// at least one; at most [`MAX_POLLERS`].
    pub pollers: usize,
    /// Connections with a complete request that may wait for a worker;
    /// beyond, a request is answered 503 with `Retry-After: 1`. Default
    /// 1024; at least 1.
    pub queue_capacity: usize,
    /// Open connections at most; beyond, the longest-idle keep-alive
    /// connection is closed to admit a new one, or, when none is idle, the
    /// new one gets 503 and is closed. Default 1024; at least 1.
    pub max_connections: usize,
    /// Requests served on one connection before it is closed. Default 0:
    /// no limit.
    pub max_requests_per_connection: u32,
    /// Largest request head (request line and header fields), in bytes;
    /// beyond: 431. Default 16 KiB; at least 256.
    pub max_head_bytes: usize,
    /// Most header fields in one request; beyond: 431. Default 64; between
    /// 1 and 256.
    pub max_headers: usize,
    /// Longest request target, in bytes; beyond: 414. Default 8 KiB;
    /// between 1 and `max_head_bytes`.
    pub max_uri_bytes: usize,
    /// Largest request body, in bytes; beyond: 413. Default 1 MiB; at most
    /// `max_buffered_bytes`.
    pub max_body_bytes: u64,
    /// Time a request head may take to arrive, from its first byte; then
    /// 408 and close. Default 10 s; more than zero.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open. Default 5 s; more
    /// than zero.
    pub idle_timeout: Duration,
    /// Time a whole request body may take to arrive, from its head: a
    /// backstop, `min_body_rate` is what catches slow clients. Default
    /// 2 min; more than zero.
    pub body_timeout: Duration,
    /// Time a client may take, in all, to read the responses that did not
    /// fit its socket at once: a backstop, `min_write_rate` is what catches
    /// slow readers. Default 2 min; more than zero.
    pub write_timeout: Duration,
    /// Bytes per second a request body must arrive at, on average over the
    /// whole body, once `min_rate_grace` has passed (408 and close
    /// otherwise). Default 240; 0: no minimum.
    pub min_body_rate: u64,
    /// Bytes per second a client must read responses at, on average, once
    /// `min_rate_grace` has passed (reset otherwise). Default 240; 0: no
    /// minimum.
    pub min_write_rate: u64,
    /// Time a body or a response is given before its minimum rate applies.
    /// Default 5 s; 0: the rates apply at once.
    pub min_rate_grace: Duration,
    /// Bytes all request bodies being read and all unwritten responses may
    /// hold together. When it is used up, bodies wait (TCP slows their
    /// clients), and one that waits more than a second is answered 503.
    /// Default 64 MiB; at least `max_body_bytes`.
    pub max_buffered_bytes: u64,
    /// Time from the end of the drain (the listener's close) until
    /// requests still running are abandoned and queued ones answered 503.
    /// Default 30 s; more than zero.
    pub shutdown_timeout: Duration,
    /// Time all cleanup hooks together may take after the drain. Default
    /// 5 s; more than zero.
    pub cleanup_timeout: Duration,
    /// Time to keep accepting and serving after the trigger (responses say
    /// `Connection: close`), so load balancers notice the failing
    /// readiness: a fixed drain. With `drain_quiet` set, the least the
    /// adaptive drain lasts (as `drain_min`; the longer of the two wins).
    /// Default 0: none.
    pub drain_delay: Duration,
    /// The adaptive drain: after the trigger, keep accepting and serving
    /// until no new connection and no new request has arrived for this
    /// long (counted from the trigger when nothing arrived), within
    /// `drain_min` and `drain_max`. Default 0: off (the drain is
    /// `drain_delay`).
    pub drain_quiet: Duration,
    /// The least the adaptive drain lasts. Default 0; at most `drain_max`;
    /// needs `drain_quiet`.
    pub drain_min: Duration,
    /// The most the adaptive drain lasts, whatever still arrives; what the
    /// shutdown budget counts for the drain. Default 10 s; at least
    /// `drain_quiet`, `drain_min` and `drain_delay`.
    pub drain_max: Duration,
    /// Window in which an idle keep-alive connection may still send one
    /// last request once the listener is closed. Default 300 ms; 0: idle
    /// connections close at once.
    pub last_call: Duration,
    /// The grace period the platform gives between SIGTERM and SIGKILL.
    /// When set, validation refuses timeouts that do not fit inside it.
    /// Default `None`: not checked.
    pub grace_period: Option<Duration>,
    /// The program a hot restart (SIGHUP) starts as the successor, with
    /// this process's arguments and environment. Default `None`: the
    /// program this process was started from, by the path it had at start
    /// (so a new binary installed at that path is what starts).
    pub restart_exec: Option<PathBuf>,
    /// Time a hot restart's successor has to say it is accepting; past it,
    /// it is killed and this process goes on serving. Default 30 s; more
    /// than zero.
    pub restart_timeout: Duration,
    /// For the thread-supervision tests only: the thread made to panic at
    /// its first connection.
    #[doc(hidden)]
    pub test_panic_thread: Option<SupervisedThread>,
    /// For the watchdog tests only: the poller stops responding this long
    /// after the server started.
    #[doc(hidden)]
    pub test_stall_poller_after: Option<Duration>,
    /// For the restart tests only: the server never starts accepting (a
    /// successor that never becomes ready).
    #[doc(hidden)]
    pub test_never_ready: bool,
}

/// With `pollers` 0, one poller per this many available cores. One per
/// core: a poller that answers requests at once
/// ([`Handler::handle_inline`]) is an event loop, like actix-web's one
/// worker per core, and its reads and writes are most of what a request
/// costs; a poller with nothing to do sleeps in `epoll_wait` and costs a
/// thread, nothing more (measured on two cores: two pollers serve `GET /`
/// at 512 connections 1.2x one, and a `POST` served by the workers no
/// worse; see `benches/`).
///
/// [`Handler::handle_inline`]: crate::Handler::handle_inline
pub const CORES_PER_POLLER: usize = 1;
/// The most pollers: beyond, the acceptor and the shared worker queue are
/// the limit.
pub const MAX_POLLERS: usize = 64;

/// A thread the server cannot run without.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisedThread {
    /// The thread that accepts connections.
    Acceptor,
    /// The thread that waits on every socket.
    Poller,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            workers: 16,
            pollers: 0,
            queue_capacity: 1024,
            max_connections: 1024,
            max_requests_per_connection: 0,
            max_head_bytes: limits.max_head_bytes,
            max_headers: limits.max_headers,
            max_uri_bytes: limits.max_uri_bytes,
            max_body_bytes: limits.max_body_bytes,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(120),
            min_body_rate: 240,
            min_write_rate: 240,
            min_rate_grace: Duration::from_secs(5),
            max_buffered_bytes: 64 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            cleanup_timeout: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            drain_quiet: Duration::ZERO,
            drain_min: Duration::ZERO,
            drain_max: Duration::from_secs(10),
            last_call: Duration::from_millis(300),
            grace_period: None,
            restart_exec: None,
            restart_timeout: Duration::from_secs(30),
            test_panic_thread: None,
            test_stall_poller_after: None,
            test_never_ready: false,
        }
    }
}

/// A setting that cannot work: which one (by its field name), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    problem: String,
}

impl ConfigError {
    /// An error about `setting` (a field name, such as `idle_timeout`).
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }

    /// The setting at fault, by its field name (`idle_timeout`).
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it and what to change, without its name.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid configuration: {} {}",
            self.setting, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

/// Refuses a duration setting that is zero (unless `zero_allowed`) or
/// longer than [`MAX_DURATION`].
pub(crate) fn check_duration(
    setting: &'static str,
    value: Duration,
    zero_allowed: bool,
) -> Result<(), ConfigError> {
    if value.is_zero() && !zero_allowed {
        return Err(ConfigError::new(setting, "must be more than zero"));
    }
    if value > MAX_DURATION {
        return Err(ConfigError::new(
            setting,
            format!(
                "is {}, longer than the longest supported, {}",
                humantime::format_duration(value),
                humantime::format_duration(MAX_DURATION)
            ),
        ));
    }
    Ok(())
}

impl ServerConfig {
    /// Checks that the settings can work together; the error names the
    /// first one that cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = |setting, value: usize| match value {
            0 => Err(ConfigError::new(setting, "must be at least 1")),
            _ => Ok(()),
        };
        at_least_one("workers", self.workers)?;
        if self.pollers > MAX_POLLERS {
            return Err(ConfigError::new(
                "pollers",
                format!("must be at most {MAX_POLLERS} (0: one per {CORES_PER_POLLER} cores)"),
            ));
        }
        at_least_one("queue_capacity", self.queue_capacity)?;
        at_least_one("max_connections", self.max_connections)?;
        if !(1..=MAX_HEADERS_CEILING).contains(&self.max_headers) {
            return Err(ConfigError::new(
                "max_headers",
                format!("must be between 1 and {MAX_HEADERS_CEILING}"),
            ));
        }
        if self.max_head_bytes < 256 {
            return Err(ConfigError::new("max_head_bytes", "must be at least 256"));
        }
        if self.max_uri_bytes == 0 || self.max_uri_bytes > self.max_head_bytes {
            return Err(ConfigError::new(
                "max_uri_bytes",
                "must be between 1 and max_head_bytes",
            ));
        }
        for (setting, value, zero_allowed) in [
            ("header_timeout", self.header_timeout, false),
            ("idle_timeout", self.idle_timeout, false),
            ("body_timeout", self.body_timeout, false),
            ("write_timeout", self.write_timeout, false),
            ("min_rate_grace", self.min_rate_grace, true),
            ("shutdown_timeout", self.shutdown_timeout, false),
            ("cleanup_timeout", self.cleanup_timeout, false),
            ("drain_delay", self.drain_delay, true),
            ("drain_quiet", self.drain_quiet, true),
            ("drain_min", self.drain_min, true),
            ("drain_max", self.drain_max, false),
            ("last_call", self.last_call, true),
            ("restart_timeout", self.restart_timeout, false),
        ] {
            check_duration(setting, value, zero_allowed)?;
        }
        if self.max_body_bytes > self.max_buffered_bytes {
            return Err(ConfigError::new(
                "max_body_bytes",
                format!(
                    "is {} bytes, more than max_buffered_bytes ({} bytes): such a body could never be read",
                    self.max_body_bytes, self.max_buffered_bytes
                ),
            ));
        }
        self.validate_drain()?;
        if let Some(grace) = self.grace_period {
            let drain = self.drain_policy().longest();
            let needed = drain + self.shutdown_timeout + self.cleanup_timeout;
            if needed >= grace {
                return Err(ConfigError::new(
                    "grace_period",
                    format!(
                        "is {}, too short for the longest drain ({}) + shutdown_timeout ({}) + \
                         cleanup_timeout ({}) = {}: the platform would kill the process \
                         mid-shutdown; raise the grace period (terminationGracePeriodSeconds, \
                         TimeoutStopSec) or lower the timeouts",
                        humantime::format_duration(grace),
                        humantime::format_duration(drain),
                        humantime::format_duration(self.shutdown_timeout),
                        humantime::format_duration(self.cleanup_timeout),
                        humantime::format_duration(needed),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The drain settings must bound the drain: `drain_max` caps every
    /// part of the adaptive drain, and its settings do nothing without
    /// `drain_quiet`.
    fn validate_drain(&self) -> Result<(), ConfigError> {
        let show = |duration| humantime::format_duration(duration);
        if self.drain_quiet.is_zero() {
            if !self.drain_min.is_zero() {
                return Err(ConfigError::new(
                    "drain_min",
                    "needs drain_quiet (the adaptive drain); for a fixed drain, set drain_delay",
                ));
            }
            return Ok(());
        }
        for (setting, value) in [
            ("drain_quiet", self.drain_quiet),
            ("drain_min", self.drain_min),
            ("drain_delay", self.drain_delay),
        ] {
            if value > self.drain_max {
                return Err(ConfigError::new(
                    setting,
                    format!(
                        "is {}, longer than drain_max ({}), which caps the adaptive drain",
                        show(value),
                        show(self.drain_max)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The drain's settings, for the shutdown sequence.
    pub(crate) fn drain_policy(&self) -> DrainPolicy {
        DrainPolicy {
            delay: self.drain_delay,
            quiet: self.drain_quiet,
            min: self.drain_min,
            max: self.drain_max,
        }
    }

    /// The poller threads to run: `pollers`, or with 0 one per
    /// [`CORES_PER_POLLER`] available cores, at least one.
    pub fn poller_count(&self) -> usize {
        match self.pollers {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                (cores / CORES_PER_POLLER).clamp(1, MAX_POLLERS)
            }
            count => count,
        }
    }

    /// The limits the HTTP engine applies.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_uri_bytes: self.max_uri_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn zero_workers_is_refused_by_name() {
        let config = ServerConfig {
            workers: 0,
            ..ServerConfig::default()
        };
        let error = config.validate().expect_err("0 workers cannot serve");
        assert_eq!(error.setting(), "workers");
    }

    #[test]
    fn timeouts_must_fit_the_grace_period() {
        let config = ServerConfig {
            grace_period: Some(Duration::from_secs(20)),
            ..ServerConfig::default()
        };
        let error = config.validate().expect_err("30s + 5s does not fit in 20s");
        assert_eq!(error.setting(), "grace_period", "{error}");
        let config = ServerConfig {
            grace_period: Some(Duration::from_secs(45)),
            ..ServerConfig::default()
        };
        config.validate().expect("30s + 5s fits in 45s");
    }

    #[test]
    fn absurd_durations_are_refused_by_name() {
        let config = ServerConfig {
            idle_timeout: Duration::from_secs(u64::MAX),
            ..ServerConfig::default()
        };
        let error = config
            .validate()
            .expect_err("584 billion years is too long");
        assert_eq!(error.setting(), "idle_timeout");
        assert!(error.problem().contains("longest supported"), "{error}");
    }

    #[test]
    fn a_body_larger_than_the_memory_budget_is_refused() {
        let config = ServerConfig {
            max_body_bytes: 2 << 20,
            max_buffered_bytes: 1 << 20,
            ..ServerConfig::default()
        };
        let error = config
            .validate()
            .expect_err("such a body could never be read");
        assert_eq!(error.setting(), "max_body_bytes");
    }

    #[test]
    fn the_longest_drain_counts_in_the_grace_period() {
        let config = ServerConfig {
            drain_quiet: Duration::from_secs(1),
            drain_max: Duration::from_secs(10),
            grace_period: Some(Duration::from_secs(40)),
            ..ServerConfig::default()
        };
        let error = config
            .validate()
            .expect_err("10s + 30s + 5s does not fit in 40s");
        assert_eq!(error.setting(), "grace_period", "{error}");
        let config = ServerConfig {
            drain_delay: Duration::from_secs(4),
            grace_period: Some(Duration::from_secs(40)),
            ..ServerConfig::default()
        };
        config
            .validate()
            .expect("without drain_quiet, drain_max does not count: 4s + 30s + 5s fits in 40s");
    }

    #[test]
    fn the_adaptive_drain_is_capped_by_drain_max() {
        for setting in ["drain_quiet", "drain_min", "drain_delay"] {
            let mut config = ServerConfig {
                drain_quiet: Duration::from_secs(1),
                drain_max: Duration::from_secs(5),
                ..ServerConfig::default()
            };
            let too_long = Duration::from_secs(6);
            match setting {
                "drain_quiet" => config.drain_quiet = too_long,
                "drain_min" => config.drain_min = too_long,
                _ => config.drain_delay = too_long,
            }
            let error = config.validate().expect_err("longer than drain_max");
            assert_eq!(error.setting(), setting, "{error}");
        }
    }

    #[test]
    fn drain_min_without_the_adaptive_drain_is_refused() {
        let config = ServerConfig {
            drain_min: Duration::from_secs(1),
            ..ServerConfig::default()
        };
        let error = config.validate().expect_err("drain_min alone does nothing");
        assert_eq!(error.setting(), "drain_min", "{error}");
    }
}
