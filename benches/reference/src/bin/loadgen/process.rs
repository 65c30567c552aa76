//! The server process seen from outside: sending it SIGTERM and noticing the
//! moment it exits (Linux only).
//!
//! The server is usually a child of the script, not of this tool, so it
//! becomes a zombie when it exits and stays one until the script reaps it:
//! "exited" here means "no longer running" (gone or zombie), which is what
//! `pidfd_open` + `poll` reports. If pidfd is unavailable, `/proc/PID/stat`
//! is polled every [`EXIT_POLL_INTERVAL`].

use std::io;
use std::thread;
use std::time::{Duration, Instant};

/// Fallback poll interval when pidfd is unavailable: the error it adds to a
/// measured exit time.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Sends SIGTERM to `pid`.
pub(crate) fn send_sigterm(pid: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True while `pid` exists and is not a zombie.
pub(crate) fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses
        // and may itself contain spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// An exit watch on one process, opened before it is signalled so the pid
/// cannot be reused under us.
pub(crate) struct ExitWatch {
    pid: i32,
    /// A pidfd, or -1 when unavailable (then `/proc` is polled).
    pidfd: i32,
}

impl ExitWatch {
    /// Opens a watch on `pid`; fails if the process does not exist.
    pub(crate) fn open(pid: i32) -> io::Result<Self> {
        if !is_running(pid) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} is not running"),
            ));
        }
        // SAFETY: pidfd_open(2) takes a pid and flags; no memory is shared.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = i32::try_from(fd).unwrap_or(-1);
        Ok(Self { pid, pidfd })
    }

    /// Waits until the process stops running or `deadline` passes; returns
    /// the instant it was seen gone, or `None` on timeout.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Instant> {
        loop {
            let now = Instant::now();
            if self.pidfd < 0 {
                if !is_running(self.pid) {
                    return Some(now);
                }
                if now >= deadline {
                    return None;
                }
                thread::sleep(EXIT_POLL_INTERVAL);
                continue;
            }
            let left = deadline.saturating_duration_since(now);
            let timeout_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let mut fds = libc::pollfd {
                fd: self.pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `fds` is a valid pollfd for the duration of the call.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::poll(&mut fds, 1, timeout_ms) };
            let seen = Instant::now();
            if rc > 0 {
                return Some(seen);
            }
            if rc == 0 && seen >= deadline {
                return None;
            }
            // EINTR, or woke a little early: go round again.
        }
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        if self.pidfd >= 0 {
            // SAFETY: the fd was opened by us and is closed once.
            #[allow(unsafe_code)]
            unsafe {
                libc::close(self.pidfd);
            }
        }
    }
}
