//! Starting the successor of a hot restart: the same program (or
//! `restart_exec`) with the same arguments and environment, the listening
//! sockets at descriptors 3.. by the socket-activation protocol, and the
//! ready pipe after them.
//!
//! `LISTEN_PID` (and `WATCHDOG_PID`) must name the new process, whose PID
//! is known only after `fork`. Setting a variable there is not safe in a
//! threaded program (`setenv` may allocate and lock), so the environment
//! is built whole before the fork, with room for the PID, and the child
//! only writes digits into that room, moves descriptors with `dup2` and
//! calls `execve`: all async-signal-safe. That is the one `unsafe` here.

#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use crate::inherit::{LISTEN_FDS_START, READY_FD_VAR};

/// Variables the successor gets anew (or not at all).
const REPLACED: [&str; 5] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    READY_FD_VAR,
];
/// Room for a PID's digits (`pid_t` is 32 bits).
const PID_DIGITS: usize = 10;

/// What the successor is given.
pub(crate) struct Successor<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
    /// The listening sockets, in order, with their names.
    pub(crate) listeners: Vec<(BorrowedFd<'a>, &'a str)>,
    /// The write end of the ready pipe.
    pub(crate) ready: BorrowedFd<'a>,
}

/// Starts the successor; the error is the one `execve` (or `fork`) gave.
pub(crate) fn spawn(successor: &Successor<'_>) -> io::Result<Child> {
    let count = successor.listeners.len();
    let ready_fd = LISTEN_FDS_START + RawFd::try_from(count).map_err(io::Error::other)?;
    // Copies above every target number, so that moving one into place
    // never overwrites another still to be moved; close-on-exec, and
    // closed here when the spawn returns.
    let above = ready_fd + 1;
    let sources = successor
        .listeners
        .iter()
        .map(|(fd, _)| *fd)
        .chain(std::iter::once(successor.ready))
        .map(|fd| {
            // SAFETY: F_DUPFD_CLOEXEC on a borrowed, open descriptor makes
            // a new one that this function owns.
            let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: just made, owned by nothing else.
            Ok(unsafe { OwnedFd::from_raw_fd(copy) })
        })
        .collect::<io::Result<Vec<OwnedFd>>>()?;
    let moves: Vec<(RawFd, RawFd)> = sources
        .iter()
        .zip(LISTEN_FDS_START..)
        .map(|(source, target)| (source.as_raw_fd(), target))
        .collect();

    let names: Vec<&str> = successor.listeners.iter().map(|(_, name)| *name).collect();
    let mut environment: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(name, _)| !REPLACED.iter().any(|replaced| name == replaced))
        .map(|(name, value)| entry(name.as_bytes(), value.as_bytes()))
        .collect();
    environment.push(entry(b"LISTEN_FDS", count.to_string().as_bytes()));
    environment.push(entry(b"LISTEN_FDNAMES", names.join(":").as_bytes()));
    environment.push(entry(
        READY_FD_VAR.as_bytes(),
        ready_fd.to_string().as_bytes(),
    ));
    let mut pid_slots = vec![environment.len()];
    environment.push(pid_room(b"LISTEN_PID"));
    if std::env::var_os("WATCHDOG_USEC").is_some() {
        pid_slots.push(environment.len());
        environment.push(pid_room(b"WATCHDOG_PID"));
    }

    let mut image = Image {
        program: c_string(successor.program.as_os_str().as_bytes())?,
        args: std::iter::once(successor.program.as_os_str().to_owned())
            .chain(successor.args.iter().cloned())
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<io::Result<_>>()?,
        environment,
        argv: Vec::new(),
        envp: Vec::new(),
        pid_slots,
        moves,
    };
    image.argv = image.args.iter().map(|arg| arg.as_ptr()).collect();
    image.argv.push(std::ptr::null());
    image.envp = image
        .environment
        .iter()
        .map(|entry| entry.as_ptr().cast())
        .collect();
    image.envp.push(std::ptr::null());
    let mut command = Command::new(successor.program);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe functions (getpid, dup2, execve) and writes
    // into memory it owns, allocating nothing: see `Image::exec`.
    unsafe {
        command.pre_exec(move || image.exec());
    }
    let child = command.spawn();
    drop(sources);
    child
}

/// `NAME=value` as bytes, NUL-terminated.
fn entry(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
    entry.extend_from_slice(name);
    entry.push(b'=');
    entry.extend_from_slice(value);
    entry.push(0);
    entry
}

/// `NAME=` with room for a PID and its NUL, filled in the child.
fn pid_room(name: &[u8]) -> Vec<u8> {
    let mut room = Vec::with_capacity(name.len() + 1 + PID_DIGITS + 1);
    room.extend_from_slice(name);
    room.push(b'=');
    room
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
}

/// Everything `execve` needs, built before the fork.
struct Image {
    program: CString,
    args: Vec<CString>,
    /// Pointers into `args`, NULL-terminated.
    argv: Vec<*const libc::c_char>,
    environment: Vec<Vec<u8>>,
    /// Pointers into `environment`, NULL-terminated.
    envp: Vec<*const libc::c_char>,
    /// Entries of `environment` that get the child's PID.
    pid_slots: Vec<usize>,
    /// (source, target) descriptors.
    moves: Vec<(RawFd, RawFd)>,
}

// SAFETY: the raw pointers point into `args` and `environment`, which the
// image owns; the image is used by one thread at a time (the closure is
// FnMut, run once, in the child).
unsafe impl Send for Image {}
// SAFETY: as above; a shared `Image` is never read through its pointers.
unsafe impl Sync for Image {}

impl Image {
    /// In the forked child: the PID into its slots, the descriptors into
    /// place, then `execve`. Returns only on failure.
    fn exec(&mut self) -> io::Result<()> {
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        let mut digits = [0u8; PID_DIGITS];
        let mut at = PID_DIGITS;
        let mut rest = u32::try_from(pid).unwrap_or(0);
        loop {
            at -= 1;
            digits[at] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            rest /= 10;
            if rest == 0 || at == 0 {
                break;
            }
        }
        for slot in &self.pid_slots {
            // Capacity was reserved: these pushes do not allocate.
            let room = &mut self.environment[*slot];
            room.extend_from_slice(&digits[at..]);
            room.push(0);
        }
        for (source, target) in &self.moves {
            // SAFETY: dup2 onto a number this process may use; the copy
            // is not close-on-exec, so the successor inherits it.
            if unsafe { libc::dup2(*source, *target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // The filled slots' pointers, derived anew after the writes.
        for slot in &self.pid_slots {
            self.envp[*slot] = self.environment[*slot].as_ptr().cast();
        }
        // SAFETY: program, argv and envp are NUL-terminated strings and
        // NULL-terminated arrays that live until execve replaces the image.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

/// Asks `child` to stop gracefully (SIGTERM), as a service manager would.
pub(crate) fn terminate(child: &Child) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill has no memory effects; the PID is our unreaped child's,
    // so it cannot have been reused.
    if unsafe { libc::kill(pid, libc::SIGTERM) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
