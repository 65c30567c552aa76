//! `loadgen subreaper`: runs a program as a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`, Linux), as a service manager does. A hot
//! restart's successor is a child of the process it replaces; when that
//! one exits, the successor is re-parented here, not to an init that may
//! never reap it, so every generation is reaped and its exit status seen.
//!
//! Prints one flat JSON line when the program started (its pid), one per
//! process reaped (pid, exit code or signal, wall-clock ms), and a last one
//! when none is left or `--max-secs` passed first. The program's stdout
//! and stderr go to `--output`, its stdin is empty.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::unix_ms;
use crate::json::JsonObject;

/// What `waitpid` said: a reaped process and its raw status, or that no
/// child is left.
enum Reaped {
    Process { pid: i32, status: i32 },
    NoneLeft,
    Failed(io::Error),
}

/// Starts `command`, reaps it and every process re-parented here; returns
/// the last report line and whether all exited with code 0 in time.
pub(crate) fn run(
    command: &[OsString],
    output: &Path,
    max: Duration,
) -> io::Result<(String, bool)> {
    let deadline = Instant::now() + max;
    // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER takes integers only.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let (program, args) = command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program given"))?;
    let log = OpenOptions::new().create(true).append(true).open(output)?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    println!(
        "{}",
        JsonObject::new()
            .field("mode", "subreaper")
            .field("event", "started")
            .field("pid", u64::from(child.id()))
            .finish()
    );
    // Reaped below through waitpid(-1), not through `child`.
    drop(child);

    let (tx, rx) = mpsc::channel();
    // Blocks in waitpid; left running if the deadline passes first (the
    // process exit ends it).
    thread::spawn(move || {
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer for the call.
            #[allow(unsafe_code)]
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            let reaped = if pid > 0 {
                Reaped::Process { pid, status }
            } else {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => Reaped::NoneLeft,
                    _ => Reaped::Failed(err),
                }
            };
            let last = !matches!(reaped, Reaped::Process { .. });
            if tx.send(reaped).is_err() || last {
                return;
            }
        }
    });

    let (mut reaped, mut unclean) = (0u64, 0u64);
    let end = |event: &str, error: Option<String>, reaped: u64, unclean: u64| {
        let line = JsonObject::new()
            .field("mode", "subreaper")
            .field("event", event)
            .field("reaped", reaped)
            .field("unclean", unclean)
            .field("error", error)
            .finish();
        (line, event == "none_left" && unclean == 0)
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Reaped::Process { pid, status }) => {
                reaped += 1;
                let (code, signal) = if libc::WIFEXITED(status) {
                    (Some(i64::from(libc::WEXITSTATUS(status))), None)
                } else if libc::WIFSIGNALED(status) {
                    (None, Some(i64::from(libc::WTERMSIG(status))))
                } else {
                    (None, None)
                };
                unclean += u64::from(code != Some(0));
                println!(
                    "{}",
                    JsonObject::new()
                        .field("mode", "subreaper")
                        .field("event", "reaped")
                        .field("pid", i64::from(pid))
                        .field("exit_code", code)
                        .field("signal", signal)
                        .field("t_unix_ms", unix_ms())
                        .finish()
                );
            }
            Ok(Reaped::NoneLeft) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(end("none_left", None, reaped, unclean));
            }
            Ok(Reaped::Failed(err)) => {
                return Ok(end(
                    "failed",
                    Some(format!("waitpid: {err}")),
                    reaped,
                    unclean,
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Ok(end("timed_out", None, reaped, unclean));
            }
        }
    }
}
