//! Sockets and threads: the acceptor, the readiness pollers each with its
//! connection registry, the memory budget, and the fixed pool of workers;
//! and the steps of the shutdown sequence that concern them.
//!
//! Data flows one way: acceptor -> registry (idle) -> poller (reads the
//! whole request) -> queue -> worker (handler, non-blocking write) -> back
//! to the registry (idle, or the rest of the write for the poller). See
//! the crate docs for the rule this serves: a worker never waits on a
//! client.

mod acceptor;
mod admin;
mod budget;
mod conn;
mod exits;
mod handler;
mod heartbeat;
mod listener;
mod log_limit;
mod poller;
mod pollers;
mod registry;
mod running;
mod serve;
mod stats;
mod supervised;
mod watchdog;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::config::{ServerConfig, SupervisedThread};
use crate::error::Error;
use crate::inherit;
use crate::lifecycle::coordinator::{self, Drain, Timeouts};
use crate::lifecycle::{AbandonedRequest, Lifecycle, ShutdownHandle, ShutdownReport};
use crate::restart::{self, Listeners, Restarter};
use acceptor::{Acceptor, Stop};
use conn::{Job, Next};
use exits::WorkerExits;
use heartbeat::Heartbeat;
use pollers::Pollers;
use running::RunningSlot;
use serve::ServeContext;
use watchdog::{Watchdog, Watched};

pub use handler::Handler;
pub use stats::{Stats, StatsSnapshot};
use supervised::Supervised;

/// A bound server, not serving yet.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    /// Shared with the restart thread, which hands them to a successor.
    listeners: Arc<Listeners>,
    /// The service's addresses (the admin listener's is apart).
    local_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    lifecycle: Arc<Lifecycle>,
    /// Made here rather than in `run`, with the worker queue, so that
    /// `stats` reads the queue and the memory budget from the start.
    pollers: Arc<Pollers>,
    /// Each poller's poll instance, which its registry registers with.
    polls: Vec<mio::Poll>,
    /// The worker queue's receiving end; its sender is the registry's.
    queue: Receiver<Job>,
    stats: Stats,
}

impl Server {
    /// Validates `config`, takes the listening sockets this process was
    /// given by socket activation (`LISTEN_PID`, `LISTEN_FDS`,
    /// `LISTEN_FDNAMES`: systemd, or a hot restart's predecessor), or binds
    /// `listen` when it was given none, and creates the connection
    /// registry with its worker queue and memory budget. Connections are
    /// queued by the kernel from here on and served once [`run`] starts.
    ///
    /// [`run`]: Self::run
    pub fn bind(config: ServerConfig) -> Result<Self, Error> {
        config.validate()?;
        let bind_error = |source| Error::Bind {
            addr: config.listen,
            source,
        };
        let mut listeners = match inherit::take_listeners().map_err(Error::Inherit)? {
            Some(inherited) => {
                let mut sockets = Vec::with_capacity(inherited.len());
                let mut names = Vec::with_capacity(inherited.len());
                for socket in inherited {
                    log::info!(
                        "took listening socket {} ({}) from socket activation: {}",
                        socket.fd,
                        socket.name,
                        socket
                            .listener
                            .local_addr()
                            .map_or_else(|error| error.to_string(), |addr| addr.to_string())
                    );
                    sockets.push(socket.listener);
                    names.push(socket.name);
                }
                log::info!(
                    "not binding --listen {}: given sockets to serve",
                    config.listen
                );
                Listeners { sockets, names }
            }
            None => {
                let socket = listener::bind(config.listen).map_err(bind_error)?;
                log::info!(
                    "bound {} (no sockets given by socket activation)",
                    config.listen
                );
                Listeners {
                    sockets: vec![socket],
                    names: vec!["listen".into()],
                }
            }
        };
        let given_admin = (0..listeners.sockets.len()).any(|index| listeners.is_admin(index));
        if let (Some(addr), false) = (config.admin_listen, given_admin) {
            let socket = listener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
            listeners.sockets.push(socket);
            listeners.names.push(restart::ADMIN_SOCKET_NAME.into());
        }
        let mut local_addrs = Vec::with_capacity(listeners.sockets.len());
        let mut admin_addr = None;
        for (index, socket) in listeners.sockets.iter().enumerate() {
            let addr = socket.local_addr().map_err(bind_error)?;
            if listeners.is_admin(index) {
                log::info!(
                    "admin listener on {addr}: {} (for the platform only: it stops this \
                     process; its traffic does not count for the drain)",
                    admin::DRAIN_PATH
                );
                admin_addr = Some(addr);
            } else {
                local_addrs.push(addr);
            }
        }
        let lifecycle = Lifecycle::new();
        let (queue_tx, queue) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
        let (pollers, polls) = Pollers::new(
            config.poller_count(),
            client_timeouts(&config),
            config.max_buffered_bytes,
            &queue_tx,
            &lifecycle,
        )
        .map_err(Error::Spawn)?;
        drop(queue_tx);
        let pollers = Arc::new(pollers);
        let stats = Stats::new(
            Arc::clone(&lifecycle),
            queue.clone(),
            Arc::clone(&pollers.budget),
        );
        Ok(Self {
            config,
            listeners: Arc::new(listeners),
            local_addrs,
            admin_addr,
            lifecycle,
            pollers,
            polls,
            queue,
            stats,
        })
    }

    /// The address actually listened on (useful with port 0); the first
    /// one, when socket activation gave several.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every address the service listens on, in order (the admin
    /// listener's is [`admin_addr`](Self::admin_addr)).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The admin listener's address, when there is one
    /// ([`ServerConfig::admin_listen`], or a socket named `admin` given by
    /// socket activation).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// A handle that starts the graceful shutdown, reports the phase and
    /// registers cleanup hooks.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            lifecycle: Arc::clone(&self.lifecycle),
        }
    }

    /// A handle that reads the server's counts, gauges and phase, as long
    /// as it is kept (also after [`run`] returned).
    ///
    /// [`run`]: Self::run
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Serves with `handler` until a shutdown is triggered (by a signal
    /// listener or a [`ShutdownHandle`]), then shuts down gracefully: stops
    /// accepting, finishes every request already received (bounded by
    /// `shutdown_timeout`), runs the cleanup hooks (bounded by
    /// `cleanup_timeout`), stops the threads, and returns the report. The
    /// caller logs it and exits with its code.
    pub fn run(self, handler: impl Handler) -> Result<ShutdownReport, Error> {
        let Self {
            config,
            listeners,
            local_addrs,
            admin_addr: _,
            lifecycle,
            pollers,
            polls,
            queue: queue_rx,
            stats: _,
        } = self;
        let exits = Arc::new(WorkerExits::new(config.workers));
        let running: Arc<[RunningSlot]> = (0..config.workers)
            .map(|_| RunningSlot::default())
            .collect();
        let context = Arc::new(ServeContext {
            pollers: Arc::clone(&pollers),
            lifecycle: Arc::clone(&lifecycle),
            handler: Arc::new(handler),
            limits: config.limits(),
            max_requests_per_connection: config.max_requests_per_connection,
            longest_drain: config.drain_policy().longest(),
            running: Arc::clone(&running),
        });
        let workers = (0..config.workers)
            .map(|id| {
                let queue = queue_rx.clone();
                let context = Arc::clone(&context);
                let exited = WorkerExit {
                    id,
                    exits: Arc::clone(&exits),
                };
                std::thread::Builder::new()
                    .name(format!("worker-{id}"))
                    .spawn(move || {
                        let _exited = exited;
                        worker::run(id, &queue, &context);
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Spawn)?;
        let test = poller::TestHooks {
            panic: config.test_panic_thread == Some(SupervisedThread::Poller),
            stall_at: config
                .test_stall_poller_after
                .map(|after| Instant::now() + after),
        };
        let poller_threads = polls
            .into_iter()
            .enumerate()
            .map(|(index, poll)| {
                let context = Arc::clone(&context);
                std::thread::Builder::new()
                    .name(format!("poller-{index}"))
                    .spawn(move || {
                        let _supervised = Supervised::new("poller", &context.lifecycle);
                        poller::run(poll, index, &context, test);
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Spawn)?;
        let mut threads = Threads {
            acceptor: None,
            restarter: None,
            watchdog: None,
            poller_threads,
            workers,
            exits,
            queue: queue_rx,
            pollers: Arc::clone(&pollers),
            running,
            lifecycle: Arc::clone(&lifecycle),
        };
        if config.test_never_ready {
            log::warn!("never accepting, as the test asked");
            std::thread::sleep(TEST_NEVER_READY);
        }
        let acceptor_heartbeat = Arc::new(Heartbeat::default());
        let started = Acceptor::spawn(
            Arc::clone(&listeners),
            Arc::clone(&pollers),
            Arc::clone(&lifecycle),
            config.max_connections,
            Arc::clone(&acceptor_heartbeat),
            config.test_panic_thread == Some(SupervisedThread::Acceptor),
        )
        .and_then(|acceptor| {
            let watchdog = match lifecycle.notify.watchdog_interval() {
                Some(interval) => Some(Watchdog::spawn(
                    interval,
                    Watched {
                        pollers: Arc::clone(&pollers),
                        acceptor: acceptor_heartbeat,
                        acceptor_waker: Arc::clone(&acceptor.waker),
                        lifecycle: Arc::clone(&lifecycle),
                    },
                )?),
                None => None,
            };
            threads.acceptor = Some(acceptor);
            threads.watchdog = watchdog;
            let plan = restart::Plan::new(config.restart_exec.as_deref(), config.restart_timeout);
            threads.restarter = Some(Restarter::spawn(
                plan,
                Arc::clone(&listeners),
                Arc::clone(&lifecycle),
            )?);
            Ok(())
        });
        drop(listeners);
        if let Err(error) = started {
            // Nothing was accepted: stop the idle threads before failing.
            // Touching nothing on the sockets: a predecessor may still
            // serve them.
            threads.stop_accepting(Instant::now(), true);
            threads.stop(&[], Instant::now() + config.shutdown_timeout);
            return Err(Error::Spawn(error));
        }
        let addresses: Vec<String> = local_addrs.iter().map(ToString::to_string).collect();
        log::info!(
            "listening on {} with {} workers and {} pollers",
            addresses.join(", "),
            config.workers,
            pollers.count()
        );
        if !restart::announce_ready(&lifecycle) {
            lifecycle.notify.ready();
        }
        drop(context);
        let timeouts = Timeouts {
            drain: config.drain_policy(),
            shutdown: config.shutdown_timeout,
            last_call: config.last_call,
            cleanup: config.cleanup_timeout,
        };
        Ok(coordinator::run(&lifecycle, timeouts, &mut threads))
    }
}

/// How long a server asked by a test never to accept waits: longer than
/// any test.
const TEST_NEVER_READY: Duration = Duration::from_secs(600);

/// The timeouts and minimum rates of the server's waits on clients.
fn client_timeouts(config: &ServerConfig) -> registry::Timeouts {
    registry::Timeouts {
        idle: config.idle_timeout,
        header: config.header_timeout,
        rates: conn::Rates {
            min_body_rate: config.min_body_rate,
            min_write_rate: config.min_write_rate,
            grace: config.min_rate_grace,
            body_timeout: config.body_timeout,
            write_timeout: config.write_timeout,
        },
    }
}

/// Tells the server a worker thread has ended, also when it unwinds.
struct WorkerExit {
    id: usize,
    exits: Arc<WorkerExits>,
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        self.exits.exited(self.id);
    }
}

/// The running threads, as the shutdown sequence drives them.
struct Threads {
    acceptor: Option<Acceptor>,
    restarter: Option<Restarter>,
    watchdog: Option<Watchdog>,
    poller_threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    exits: Arc<WorkerExits>,
    /// A receiver of the worker queue, to answer what is left in it.
    queue: Receiver<Job>,
    pollers: Arc<Pollers>,
    running: Arc<[RunningSlot]>,
    lifecycle: Arc<Lifecycle>,
}

impl Drain for Threads {
    fn stop_accepting(&mut self, until: Instant, hand_over: bool) {
        // Both threads hold the sockets: they close once both are gone, by
        // the time this returns. The restarter stops while the acceptor
        // admits the backlog.
        let restarter = self.restarter.take();
        if let Some(restarter) = &restarter {
            restarter.request_stop();
        }
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.stop_accepting(if hand_over {
                Stop::HandOver
            } else {
                Stop::Close { until }
            });
        }
        if let Some(restarter) = restarter {
            restarter.join();
        }
    }

    fn last_call(&mut self, until: Instant) {
        self.pollers.begin_last_call(until);
    }

    fn refuse_queued(&mut self) -> u64 {
        let mut refused = 0;
        while let Ok(job) = self.queue.try_recv() {
            let Job::Serve(conn) = job else {
                continue;
            };
            refused += 1;
            if let Some(conn) = self
                .pollers
                .transition(conn, Next::Refuse(registry::shutting_down()))
            {
                self.pollers.transition(conn, Next::Poll);
            }
        }
        refused
    }

    fn running(&self) -> Vec<AbandonedRequest> {
        running::running_requests(&self.running)
    }

    fn stop(&mut self, abandoned: &[usize], deadline: Instant) {
        // The poller is about to stop answering its heartbeat.
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.stop();
        }
        // The workers finish what is queued and exit; the pollers outlive
        // them, so output they hand back is written. With no connection
        // left there is none: they stop alongside.
        self.pollers.close_queue(self.workers.len());
        let nothing_to_write = self.lifecycle.connections.count() == 0;
        if nothing_to_write {
            self.pollers.request_stop();
        }
        let exited = self.exits.wait_all_but(abandoned, deadline);
        for (id, thread) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            if exited[id] {
                if thread.join().is_err() {
                    log::error!("worker {id} panicked");
                }
            } else {
                log::warn!("worker {id} is still running; not waiting for it");
            }
        }
        let refused = self.refuse_queued();
        if refused > 0 {
            self.lifecycle
                .counts
                .refused_shutting_down
                .fetch_add(refused, std::sync::atomic::Ordering::Relaxed);
        }
        if !nothing_to_write {
            self.pollers.request_stop();
        }
        for poller in std::mem::take(&mut self.poller_threads) {
            if poller.join().is_err() {
                log::error!("a poller thread panicked");
            }
        }
        // The poller is gone: what was parked since is closed here.
        self.pollers.close_all_parked();
    }
}
