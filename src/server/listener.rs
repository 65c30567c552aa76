//! The listening socket: created with the options std lacks, accepting
//! without blocking, and closed without resetting the accept backlog.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use socket2::{Domain, Socket, Type};

/// Connections the kernel may complete before they are accepted.
const BACKLOG: i32 = 1024;

/// Binds and listens on `addr`, in non-blocking mode.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting on the same port must not wait for TIME_WAIT to expire.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts one connection, non-blocking and close-on-exec, with
/// `TCP_NODELAY` (responses are written whole, so Nagle only adds delay).
pub(crate) fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    #[cfg(target_os = "linux")]
    let stream: TcpStream = socket2::SockRef::from(listener)
        .accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?
        .0
        .into();
    #[cfg(not(target_os = "linux"))]
    let stream = {
        let (stream, _) = listener.accept()?;
        stream.set_nonblocking(true)?;
        stream
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Stops the kernel from queueing new connections while those already
/// queued can still be accepted.
///
/// `close()` and `shutdown(SHUT_RD)` on a listener reset every connection
/// in its backlog, though their clients may have sent a request already,
/// and `listen(fd, 0)` still queues one more. On Linux a socket filter that
/// drops every packet stops new SYNs (and unfinished handshakes) from
/// reaching the listener; the caller then accepts until `WouldBlock` and
/// closes it, and the dropped clients' SYN retries are refused.
pub(crate) fn stop_admitting(listener: &TcpListener) {
    #[cfg(target_os = "linux")]
    {
        // One classic BPF instruction: `ret #0` (BPF_RET | BPF_K): keep zero
        // bytes of every packet, i.e. drop it.
        const BPF_RET_K: u16 = 0x06;
        let drop_everything = [socket2::SockFilter::new(BPF_RET_K, 0, 0, 0)];
        if let Err(error) = socket2::SockRef::from(listener).attach_filter(&drop_everything) {
            log::warn!("could not stop admitting connections before closing the listener: {error}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = listener;
}
