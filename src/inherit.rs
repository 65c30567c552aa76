//! What a process inherits at exec and takes ownership of, once: the
//! listening sockets of socket activation (`LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`, from systemd, `systemd-socket-activate` or the
//! previous process of a hot restart), the pipe on which a hot restart's
//! successor says it is accepting (`GREMLINS_READY_FD`), and a handle on
//! that predecessor (a pidfd), to wait for its exit.
//!
//! Owning a descriptor named by a number in the environment is what the
//! compiler cannot check, so this module may use `unsafe`: each
//! descriptor is checked to be open and of the right kind first, and each
//! kind is taken at most once per process, so no two owners ever close
//! the same number.

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{SockRef, Type};

/// The first descriptor of socket activation (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: RawFd = 3;
/// The variable naming the ready pipe of a hot restart's successor.
pub(crate) const READY_FD_VAR: &str = "GREMLINS_READY_FD";

/// Set once the listeners were taken (or found absent).
static LISTENERS_TAKEN: AtomicBool = AtomicBool::new(false);
/// Set once the ready pipe was taken (or found absent).
static READY_PIPE_TAKEN: AtomicBool = AtomicBool::new(false);

/// A listening socket this process was given, with its name
/// (`LISTEN_FDNAMES`; `unknown` when none was given).
#[derive(Debug)]
pub(crate) struct InheritedListener {
    pub(crate) listener: TcpListener,
    pub(crate) name: String,
    pub(crate) fd: RawFd,
}

/// Takes the listening sockets passed to this process by socket
/// activation, if `LISTEN_PID` names it; `Ok(None)` when there are none
/// (bind instead), or when they were taken already. Each is made
/// close-on-exec and non-blocking, and any socket filter left on it by a
/// previous owner (the one a graceful stop attaches) is removed. A
/// descriptor that is not a listening TCP socket is an error: serving
/// something else than what the service manager meant would be worse
/// than not starting.
pub(crate) fn take_listeners() -> io::Result<Option<Vec<InheritedListener>>> {
    if LISTENERS_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // Checks LISTEN_PID against this process, then marks each descriptor
    // close-on-exec (failing on one that is not open).
    let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()?.collect();
    if passed.is_empty() {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(passed.len());
    for (fd, name) in passed {
        // SAFETY: the descriptor is open (made close-on-exec above) and was
        // passed to this process, LISTEN_PID says so; the flag above makes
        // this the only place that ever takes it, so it has one owner.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        listeners.push(InheritedListener {
            listener: listening_tcp(owned, fd, &name)?,
            name,
            fd,
        });
    }
    Ok(Some(listeners))
}

/// Checks that `owned` is a listening TCP socket, and prepares it.
fn listening_tcp(owned: OwnedFd, fd: RawFd, name: &str) -> io::Result<TcpListener> {
    let socket = socket2::Socket::from(owned);
    let not_ours = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited descriptor {fd} ({name}) is {what}, not a listening TCP socket"),
        )
    };
    let domain = socket
        .domain()
        .map_err(|error| not_ours(&format!("not a socket ({error})")))?;
    if domain != socket2::Domain::IPV4 && domain != socket2::Domain::IPV6 {
        return Err(not_ours("not an IP socket"));
    }
    if socket.r#type()? != Type::STREAM {
        return Err(not_ours("not a stream socket"));
    }
    if !socket.is_listener()? {
        return Err(not_ours("not listening"));
    }
    clear_filter(&SockRef::from(&socket));
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Removes a socket filter a previous owner left on the socket; a socket
/// without one is the usual case.
fn clear_filter(socket: &SockRef<'_>) {
    #[cfg(target_os = "linux")]
    match socket.detach_filter() {
        Ok(()) => log::warn!("removed a socket filter left on an inherited listener"),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
        Err(error) => log::warn!("could not remove a socket filter from a listener: {error}"),
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Takes the pipe on which this process, a hot restart's successor, tells
/// its predecessor that it is accepting; `None` when this process was not
/// started by a hot restart (or it was taken already).
pub(crate) fn take_ready_pipe() -> Option<File> {
    if READY_PIPE_TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    let value = std::env::var_os(READY_FD_VAR)?;
    let Some(fd) = parse_fd(&value) else {
        log::warn!("{READY_FD_VAR}={value:?} is not a descriptor number; ignored");
        return None;
    };
    // SAFETY: fcntl on any number is defined; it fails on one not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above; the descriptor is open.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        log::warn!(
            "{READY_FD_VAR}={fd} is not an open descriptor ({}); ignored",
            io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: open (checked above), passed to this process by its
    // predecessor, and taken only here, once (the flag above).
    Some(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The predecessor of a hot restart (this process's parent while it waits
/// for the ready message), as a descriptor that turns readable when it
/// exits; `None` when it cannot be had (a kernel before 5.3).
pub(crate) fn predecessor() -> Option<(u32, OwnedFd)> {
    let pid = std::os::unix::process::parent_id();
    let raw = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a PID and flags and returns a new
    // descriptor (or -1); it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    let Ok(fd) = RawFd::try_from(fd) else {
        return None;
    };
    if fd < 0 {
        log::warn!(
            "restart: cannot watch the predecessor, pid {pid} ({}); a stop will not wait for it",
            io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: just returned by the kernel, owned by nothing else; pidfds
    // are close-on-exec.
    Some((pid, unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A descriptor number above the standard streams.
fn parse_fd(value: &OsStr) -> Option<RawFd> {
    value
        .to_str()?
        .parse::<RawFd>()
        .ok()
        .filter(|fd| *fd >= LISTEN_FDS_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_fd_must_be_a_number_above_the_standard_streams() {
        assert_eq!(parse_fd(OsStr::new("7")), Some(7));
        assert_eq!(parse_fd(OsStr::new("2")), None);
        assert_eq!(parse_fd(OsStr::new("-1")), None);
        assert_eq!(parse_fd(OsStr::new("x")), None);
    }

    #[test]
    fn a_listening_tcp_socket_is_taken_and_anything_else_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listening_tcp(OwnedFd::from(listener), 3, "test").expect("a TCP listener is ours");
        let unbound = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let error = listening_tcp(OwnedFd::from(unbound), 4, "udp").expect_err("UDP is not ours");
        assert!(error.to_string().contains("not a stream socket"), "{error}");
    }
}
