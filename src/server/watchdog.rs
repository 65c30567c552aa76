//! The systemd watchdog, when the service manager asks for one
//! (`WATCHDOG_USEC`): every half interval, `WATCHDOG=1`, but only when
//! the acceptor and the poller answered their last heartbeat. A thread
//! stuck anywhere stops the pings, and the manager restarts the service
//! (`WatchdogSec=`, `Restart=`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use mio::Waker;

use super::heartbeat::Heartbeat;
use super::pollers::Pollers;
use crate::lifecycle::Lifecycle;

/// The running watchdog thread.
#[derive(Debug)]
pub(crate) struct Watchdog {
    thread: JoinHandle<()>,
    stop: Sender<()>,
}

/// The threads the watchdog vouches for.
pub(crate) struct Watched {
    pub(crate) pollers: Arc<Pollers>,
    pub(crate) acceptor: Arc<Heartbeat>,
    pub(crate) acceptor_waker: Arc<Waker>,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

impl Watchdog {
    pub(crate) fn spawn(interval: Duration, watched: Watched) -> std::io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let period = interval / 2;
        log::info!(
            "watchdog: telling the service manager every {} ms that the server is alive",
            period.as_millis()
        );
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut stuck = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    let poller = watched.pollers.answered_then_ask();
                    let acceptor = watched.acceptor.answered_then_ask();
                    let _ = watched.acceptor_waker.wake();
                    if poller && acceptor {
                        watched.lifecycle.notify.watchdog();
                        stuck = false;
                    } else if !stuck {
                        stuck = true;
                        let which = if poller { "acceptor" } else { "poller" };
                        log::error!(
                            "watchdog: the {which} did not answer within {} ms; no longer \
                             telling the service manager the server is alive",
                            period.as_millis()
                        );
                    }
                }
            })?;
        Ok(Self { thread, stop })
    }

    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            log::error!("the watchdog thread panicked");
        }
    }
}
