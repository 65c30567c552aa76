//! Turns SIGTERM and SIGINT (Ctrl-C on Windows) into a graceful shutdown,
//! and a second one into an immediate exit with 128 + signal number.

use std::io;

use super::state::ShutdownHandle;

/// Listens for shutdown signals until dropped.
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
    pub fn install(shutdown: ShutdownHandle) -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;

        let signalled = Arc::new(AtomicBool::new(false));
        for signal in [SIGTERM, SIGINT] {
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
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!(
                        "shutdown: received {}",
                        super::state::Trigger::Signal(signal).name()
                    );
                    shutdown.trigger(super::state::Trigger::Signal(signal));
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
            shutdown.trigger(super::state::Trigger::Signal(2));
        })
        .map_err(io::Error::other)?;
        Ok(Self {})
    }
}
