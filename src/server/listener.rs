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
/// they are connected. 0 elsewhere than Linux or if the kernel cannot say.
///
/// Counting them means a sock_diag dump of SYN_RECV sockets, and the
/// kernel finds those by walking its whole established hash table, however
/// few there are: about 1 ms with the 262,144 buckets of a small 2-core
/// machine (the table grows with memory), on every stop. So the kernel is first asked whether
/// one can exist at all: every handshake under way holds a reference on
/// its listener (its request socket's `rsk_listener`, Linux 4.4 on), which
/// it keeps until it is accepted, and the listener's reference count is in
/// its `/proc/net/tcp` row, found without that walk (see
/// [`proc_net::listener_references`]). A count of 1, the socket's own,
/// means no handshake is under way and none waits to be accepted; the
/// dump is made only when it is higher (which an accept queue not empty
/// yet also makes it) or unknown.
pub(crate) fn half_open_handshakes(listener: &TcpListener) -> usize {
    #[cfg(target_os = "linux")]
    {
        if proc_net::listener_references(listener) == Some(1) {
            return 0;
        }
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

/// A listening socket's row in `/proc/net/tcp` (or `tcp6`), read as
/// `/proc/self/net/...`: the unit's `ProcSubset=pid` hides `/proc/net`
/// but not the process's own directory.
#[cfg(target_os = "linux")]
mod proc_net {
    use std::fs::File;
    use std::io::Read;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    /// Bytes asked of the kernel per read. The table is a seq_file, which
    /// formats rows only until a read is filled, and a row is longer than
    /// this: so each read formats at most one row beyond those already
    /// seen, and the reads stop at this listener's row (listening sockets
    /// come first), before the walk of the established hash that the rest
    /// of the table costs.
    const READ_SIZE: usize = 128;
    /// Rows looked at, at most: more listening sockets than this on one
    /// host and the answer is "unknown".
    const MAX_ROWS: usize = 65_536;
    /// The state column of a listening socket (`TCP_LISTEN`, in hex).
    const LISTEN: &str = "0A";

    /// The kernel's reference count on `listener`, read from its row
    /// (found by the socket's inode) in the listening part of the table;
    /// `None` if it cannot be read.
    pub(super) fn listener_references(listener: &TcpListener) -> Option<u64> {
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .ok()?
            .ino()
            .to_string();
        let table = if listener.local_addr().ok()?.is_ipv4() {
            "/proc/self/net/tcp"
        } else {
            "/proc/self/net/tcp6"
        };
        let mut file = File::open(table).ok()?;
        let mut chunk = [0u8; READ_SIZE];
        let mut line = Vec::with_capacity(2 * READ_SIZE);
        let mut rows = 0;
        while rows <= MAX_ROWS {
            let read = file.read(&mut chunk).ok()?;
            if read == 0 {
                return None;
            }
            for &byte in &chunk[..read] {
                if byte != b'\n' {
                    line.push(byte);
                    continue;
                }
                rows += 1;
                // sl, local address, remote address, state, tx:rx queues,
                // timer, retransmits, uid, timeout, inode, references.
                let row = std::str::from_utf8(&line).ok()?;
                let columns: Vec<&str> = row.split_whitespace().take(11).collect();
                if rows > 1 {
                    match columns.as_slice() {
                        [_, _, _, state, ..] if *state != LISTEN => return None,
                        [.., row_inode, references] if *row_inode == inode => {
                            return references.parse().ok();
                        }
                        _ => {}
                    }
                }
                line.clear();
            }
        }
        None
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
        assert_eq!(
            proc_net::listener_references(&listener),
            Some(1),
            "an idle listener: its own reference only, so the dump is skipped"
        );
        assert_eq!(half_open_handshakes(&listener), 0);
        // With quick ACKs off, Linux holds the handshake's final ACK until
        // the first data (or its delayed-ACK timer): meanwhile the server
        // side is SYN_RECV.
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        client.set_tcp_quickack(false).expect("quick ACKs off");
        let address = listener.local_addr().expect("local address");
        client.connect(&address.into()).expect("connect");
        assert_eq!(
            proc_net::listener_references(&listener),
            Some(2),
            "the handshake under way holds a reference on its listener"
        );
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
        assert_eq!(proc_net::listener_references(&listener), Some(1));
        assert_eq!(half_open_handshakes(&listener), 0);
    }

    #[test]
    fn an_ipv6_listener_is_found_in_the_tcp6_table() {
        let Ok(listener) = bind("[::1]:0".parse().expect("address")) else {
            eprintln!("no IPv6 loopback here: nothing to check");
            return;
        };
        assert_eq!(proc_net::listener_references(&listener), Some(1));
    }
}
