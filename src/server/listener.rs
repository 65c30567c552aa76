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

/// Stops the kernel from starting new connections while handshakes
/// already under way can still complete and be accepted.
///
/// `close()` and `shutdown(SHUT_RD)` on a listener reset every connection
/// in its backlog, though their clients may have sent a request already,
/// and `listen(fd, 0)` still queues one more. On Linux a socket filter that
/// drops every segment with SYN set and ACK clear stops new handshakes; the
/// final ACKs (and data) of handshakes already under way still reach the
/// listener, so they complete. The caller accepts until the backlog and
/// the half-open handshakes are gone (see [`half_open_handshakes`]), then
/// closes; the dropped clients' SYN retries are refused.
pub(crate) fn stop_admitting(listener: &TcpListener) {
    #[cfg(target_os = "linux")]
    {
        // Classic BPF over the TCP header (a TCP socket filter sees the
        // segment from its TCP header on).
        const LD_B_ABS: u16 = 0x30; // A = byte at k
        const JSET_K: u16 = 0x45; // if A & k goto jt else jf
        const RET_K: u16 = 0x06; // keep k bytes (0: drop)
        const FLAGS: u32 = 13; // TCP flags byte
        const ACK: u32 = 0x10;
        const SYN: u32 = 0x02;
        let drop_new_handshakes = [
            socket2::SockFilter::new(LD_B_ABS, 0, 0, FLAGS),
            socket2::SockFilter::new(JSET_K, 2, 0, ACK), // ACK set: keep
            socket2::SockFilter::new(JSET_K, 0, 1, SYN), // SYN alone: drop
            socket2::SockFilter::new(RET_K, 0, 0, 0),
            socket2::SockFilter::new(RET_K, 0, 0, u32::MAX),
        ];
        if let Err(error) = socket2::SockRef::from(listener).attach_filter(&drop_new_handshakes) {
            log::warn!("could not stop admitting connections before closing the listener: {error}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = listener;
}

/// How many handshakes to this listener's port are half-open (SYN
/// received, final ACK not yet): connections whose clients already think
/// they are connected. Read from `/proc/net/tcp*` on Linux; 0 elsewhere or
/// if it cannot be read.
pub(crate) fn half_open_handshakes(listener: &TcpListener) -> usize {
    #[cfg(target_os = "linux")]
    {
        /// The `st` column's value for `TCP_SYN_RECV`.
        const SYN_RECV: &str = "03";
        let Ok(local) = listener.local_addr() else {
            return 0;
        };
        let port = format!(":{:04X}", local.port());
        let table = if local.is_ipv4() {
            "/proc/net/tcp"
        } else {
            "/proc/net/tcp6"
        };
        let Ok(table) = std::fs::read_to_string(table) else {
            return 0;
        };
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let mut columns = line.split_whitespace().skip(1);
                let local_address = columns.next().unwrap_or_default();
                let state = columns.nth(1).unwrap_or_default();
                local_address.ends_with(&port) && state == SYN_RECV
            })
            .count()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        0
    }
}
