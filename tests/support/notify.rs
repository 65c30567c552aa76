//! A stand-in for systemd's notify socket: a datagram socket the test
//! binds and passes as `NOTIFY_SOCKET`, recording every message the
//! service (and its successors) send, in order.

#![allow(dead_code, unreachable_pub)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

/// The recording socket and what it received.
pub struct NotifySocket {
    path: PathBuf,
    messages: Receiver<(Instant, String)>,
    seen: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gremlins-notify-")
            .tempdir()
            .expect("a temp dir for the notify socket");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let (sender, messages) = crossbeam_channel::unbounded();
        let seen = Arc::new(Mutex::new(Vec::new()));
        {
            let seen = Arc::clone(&seen);
            // Ends when the test drops the receiver and a message comes,
            // or when the process ends.
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 4096];
                while let Ok(read) = socket.recv(&mut buffer) {
                    let message = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    seen.lock().expect("seen lock").push(message.clone());
                    if sender.send((Instant::now(), message)).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            path,
            messages,
            seen,
            _dir: dir,
        }
    }

    /// The value of `NOTIFY_SOCKET`.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }

    /// Waits for the next message with a line starting `line_start`
    /// (messages before it are skipped, and returned too).
    pub fn wait_for(&self, line_start: &str, timeout: Duration) -> (Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            match self.messages.recv_deadline(deadline) {
                Ok((_, message)) if message.lines().any(|line| line.starts_with(line_start)) => {
                    return (skipped, message);
                }
                Ok((_, message)) => skipped.push(message),
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for a notify message with {line_start:?}; \
                     received so far: {:?}",
                    self.all()
                ),
            }
        }
    }

    /// The messages received within `window` from now (waits the whole
    /// window: for counting periodic messages).
    pub fn during(&self, window: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + window;
        let mut received = Vec::new();
        while let Ok(message) = self.messages.recv_deadline(deadline) {
            received.push(message);
        }
        received
    }

    /// Every message received so far, in order.
    pub fn all(&self) -> Vec<String> {
        self.seen.lock().expect("seen lock").clone()
    }
}

/// The value of `KEY=` in a notify message.
pub fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}
