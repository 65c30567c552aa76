//! Turns SIGTERM and SIGINT (Ctrl-C on Windows) into a graceful shutdown,
//! and a second one into an immediate exit with 128 + signal number; and
//! SIGHUP (what `systemctl reload` sends) into a hot restart.

use std::io;

use super::state::{ShutdownHandle, Trigger};

/// The signals that start a graceful shutdown, and the trigger each is
/// reported as.
#[cfg(unix)]
const SHUTDOWN_SIGNALS: [(i32, Trigger); 2] = [
    (signal_hook::consts::SIGTERM, Trigger::Sigterm),
    (signal_hook::consts::SIGINT, Trigger::Sigint),
];

/// The trigger a shutdown signal is reported as; `None` for another signal.
#[cfg(unix)]
fn trigger_of(signal: i32) -> Option<Trigger> {
    SHUTDOWN_SIGNALS
        .iter()
        .find(|(number, _)| *number == signal)
        .map(|(_, trigger)| *trigger)
}

/// Listens for shutdown and restart signals until dropped.
#[derive(Debug)]
pub struct SignalListener {
    #[cfg(unix)]
    handle: signal_hook::iterator::Handle,
    #[cfg(unix)]
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(unix)]
impl SignalListener {
    /// Installs the handlers: the first SIGTERM or SIGINT triggers a
    /// graceful shutdown through `shutdown`; a second one exits at once.
    /// SIGHUP starts a hot restart ([`ShutdownHandle::restart`]).
    pub fn install(shutdown: ShutdownHandle) -> io::Result<Self> {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;

        let signals = SHUTDOWN_SIGNALS.map(|(signal, _)| signal);
        let signalled = Arc::new(AtomicBool::new(false));
        for signal in signals {
            // Handlers run in registration order inside the signal handler.
            // The conditional exit is registered first, so on the first
            // signal it still reads `false` and does nothing; the flag is set
            // right after. On a second signal it reads `true` and exits with
            // 128 + signo at once, even if the shutdown thread is stuck.
            // Registered the other way round, the first signal would exit.
            let code = i32::from(super::report::EXIT_FORCED_BASE) + signal;
            signal_hook::flag::register_conditional_shutdown(signal, code, Arc::clone(&signalled))?;
            signal_hook::flag::register(signal, Arc::clone(&signalled))?;
        }
        // The iterator wakes its thread through a self-pipe: no polling.
        let restart = signal_hook::consts::SIGHUP;
        let mut signals =
            signal_hook::iterator::Signals::new(signals.into_iter().chain([restart]))?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    match trigger_of(signal) {
                        Some(trigger) if !shutdown.is_shutting_down() => {
                            log::info!("shutdown: received {}", trigger.name());
                            shutdown.trigger(trigger);
                        }
                        Some(trigger) => log::info!(
                            "shutdown: received {}; the shutdown is already under way",
                            trigger.name()
                        ),
                        None => shutdown.restart_because("SIGHUP"),
                    }
                }
            })?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

#[cfg(unix)]
impl Drop for SignalListener {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(windows)]
impl SignalListener {
    /// Ctrl-C starts a graceful shutdown; a second one exits with 130.
    pub fn install(shutdown: ShutdownHandle) -> io::Result<Self> {
        ctrlc::set_handler(move || {
            if shutdown.is_shutting_down() {
                std::process::exit(130);
            }
            shutdown.trigger(Trigger::Sigint);
        })
        .map_err(io::Error::other)?;
        Ok(Self {})
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn sigterm_and_sigint_are_the_shutdown_triggers() {
        assert_eq!(
            trigger_of(signal_hook::consts::SIGTERM),
            Some(Trigger::Sigterm)
        );
        assert_eq!(
            trigger_of(signal_hook::consts::SIGINT),
            Some(Trigger::Sigint)
        );
        assert_eq!(trigger_of(signal_hook::consts::SIGHUP), None);
    }
}
