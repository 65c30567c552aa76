//! The listening socket: created with the options std lacks, accepting
//! without blocking, and closed without resetting the accept backlog.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use socket2::{Domain, Socket, Type};

/// Connections the kernel may complete before they are accepted.
const BACKLOG: i32 = 1024;
/// Bytes of responses a connection's socket may hold that have not been
/// sent yet (`TCP_NOTSENT_LOWAT`; what is in flight comes on top). Without
/// it the kernel takes up to 4 MiB per socket at once, and a client that
/// reads slowly holds that memory out of the server's sight; with it, the
/// rest stays with the poller, which applies the minimum write rate.
#[cfg(target_os = "linux")]
const UNSENT_LOW_WATER: u32 = 64 * 1024;

/// Binds and listens on `addr`, in non-blocking mode.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting on the same port must not wait for TIME_WAIT to expire.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Accepted sockets inherit these on Linux: no setsockopt per accept.
    #[cfg(target_os = "linux")]
    {
        socket.set_tcp_nodelay(true)?;
        socket.set_tcp_notsent_lowat(UNSENT_LOW_WATER)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts one connection, non-blocking and close-on-exec, with
/// `TCP_NODELAY` (responses are written whole, so Nagle only adds delay;
/// on Linux it comes from the listener).
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
        stream.set_nodelay(true)?;
        stream
    };
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
/// they are connected. Asked of the kernel through sock_diag netlink (a
/// dump of SYN_RECV sockets, far cheaper than reading `/proc/net/tcp`, which
/// formats every connection); 0 elsewhere than Linux or if it fails.
pub(crate) fn half_open_handshakes(listener: &TcpListener) -> usize {
    #[cfg(target_os = "linux")]
    {
        listener
            .local_addr()
            .and_then(sock_diag::count_syn_recv)
            .unwrap_or_else(|error| {
                log::debug!("could not count half-open handshakes: {error}");
                0
            })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        0
    }
}

/// The one sock_diag request this server makes, encoded by hand (a few
/// fixed-layout structs from `linux/netlink.h` and `linux/inet_diag.h`).
#[cfg(target_os = "linux")]
mod sock_diag {
    use std::io::{self, Read};
    use std::net::SocketAddr;
    use std::time::Duration;

    use socket2::{Domain, Protocol, Socket, Type};

    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLMSG_HEADER_LEN: usize = 16;
    /// `inet_diag_req_v2`: family, protocol, ext, pad, states, then a
    /// 48-byte `inet_diag_sockid`.
    const REQUEST_LEN: usize = 56;
    const TCP_SYN_RECV: u32 = 3;
    /// A reply longer than this is not expected for one port's handshakes
    /// under way at shutdown; a longer wait would only delay the exit.
    const REPLY_TIMEOUT: Duration = Duration::from_millis(100);

    /// Counts SYN_RECV sockets whose local port is `local`'s.
    pub(super) fn count_syn_recv(local: SocketAddr) -> io::Result<usize> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_SOCK_DIAG)),
        )?;
        socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let family = if local.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let mut request = Vec::with_capacity(NLMSG_HEADER_LEN + REQUEST_LEN);
        let total = u32::try_from(NLMSG_HEADER_LEN + REQUEST_LEN).unwrap_or(u32::MAX);
        request.extend_from_slice(&total.to_ne_bytes());
        request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        request.push(u8::try_from(family).unwrap_or_default());
        request.push(u8::try_from(libc::IPPROTO_TCP).unwrap_or_default());
        request.extend_from_slice(&[0, 0]); // ext, pad
        request.extend_from_slice(&(1u32 << TCP_SYN_RECV).to_ne_bytes());
        request.resize(NLMSG_HEADER_LEN + REQUEST_LEN, 0); // sockid: any
        socket.send(&request)?;

        let port = local.port().to_be_bytes();
        let mut count = 0;
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let received = (&socket).read(&mut buffer)?;
            let mut messages = &buffer[..received];
            while messages.len() >= NLMSG_HEADER_LEN {
                let field = |at: usize| [messages[at], messages[at + 1]];
                let length =
                    u32::from_ne_bytes([messages[0], messages[1], messages[2], messages[3]]);
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                let kind = u16::from_ne_bytes(field(4));
                if length < NLMSG_HEADER_LEN || length > messages.len() {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                match kind {
                    NLMSG_DONE => return Ok(count),
                    NLMSG_ERROR => return Err(io::Error::other("sock_diag answered an error")),
                    SOCK_DIAG_BY_FAMILY => {
                        // inet_diag_msg: family, state, timer, retrans, then
                        // the sockid, whose first field is the local port
                        // in network order.
                        let body = &messages[NLMSG_HEADER_LEN..length];
                        if body.len() >= 6 && body[4..6] == port {
                            count += 1;
                        }
                    }
                    _ => {}
                }
                // Messages are aligned to 4 bytes.
                let advance = (length + 3) & !3;
                messages = &messages[advance.min(messages.len())..];
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_handshake_waiting_for_its_final_ack_is_counted_as_half_open() {
        let listener = bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        assert_eq!(half_open_handshakes(&listener), 0);
        // With quick ACKs off, Linux holds the handshake's final ACK until
        // the first data (or its delayed-ACK timer): meanwhile the server
        // side is SYN_RECV.
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        client.set_tcp_quickack(false).expect("quick ACKs off");
        let address = listener.local_addr().expect("local address");
        client.connect(&address.into()).expect("connect");
        assert_eq!(half_open_handshakes(&listener), 1);
        // The first data carries the ACK: the handshake completes and the
        // connection can be accepted (SO_RCVTIMEO bounds accept's wait).
        (&client).write_all(b"x").expect("write");
        listener.set_nonblocking(false).expect("blocking listener");
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("accept timeout");
        listener
            .accept()
            .expect("the completed handshake, accepted");
        assert_eq!(half_open_handshakes(&listener), 0);
    }
}
