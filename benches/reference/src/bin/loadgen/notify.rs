//! `loadgen notify-listen`: the service manager's end of the systemd
//! notify protocol, for benches. Binds a Unix datagram socket (the path to
//! give the server as `NOTIFY_SOCKET`) and prints every message it
//! receives as one line: wall-clock milliseconds since the Unix epoch (the
//! clock `restart-count` uses), then the message's fields separated by
//! spaces, e.g. `1764680308555 MAINPID=30696 READY=1`. Stops after
//! `--max-secs` (or when killed) and removes the socket.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::clock::unix_ms;

/// Longest message kept; the server's are a few short fields.
const MESSAGE_MAX: usize = 4096;

/// Receives and prints messages until `max` has passed.
pub(crate) fn run(path: &Path, max: Duration) -> io::Result<()> {
    let socket = UnixDatagram::bind(path)?;
    let result = receive(&socket, Instant::now() + max);
    let _ = std::fs::remove_file(path);
    result
}

fn receive(socket: &UnixDatagram, deadline: Instant) -> io::Result<()> {
    let mut buf = vec![0u8; MESSAGE_MAX];
    let mut out = io::stdout().lock();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buf) {
            Ok(len) => {
                let text = String::from_utf8_lossy(&buf[..len]);
                let fields: Vec<&str> = text.split('\n').filter(|f| !f.is_empty()).collect();
                writeln!(out, "{} {}", unix_ms(), fields.join(" "))?;
                out.flush()?;
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(err),
        }
    }
}
