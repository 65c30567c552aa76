//! The connection registry: every open connection by key, whether it is
//! parked on the poller (idle, or with a partial head), lingering after its
//! last response, or busy in a worker, and when each parked one expires.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use polling::{Event, Poller};
use slab::Slab;

use crate::http::Connection;
use crate::lifecycle::InFlightGuard;

/// A connection as the server tracks it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) http: Connection,
    key: usize,
    /// Unique for the life of the process; tells a reused key's new
    /// connection from the old one's timer records and events.
    id: u64,
    /// When lingering must end, once it has started.
    linger_until: Option<Instant>,
    /// Counts the connection as open until it is dropped or starts to
    /// linger (its last response is written: it no longer holds the drain).
    open: Option<InFlightGuard>,
}

/// Why a parked connection's timer is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// No bytes of a next request yet.
    Idle,
    /// Part of a head has arrived.
    PartialHead,
    /// The final response is written; waiting for the client to close.
    Linger,
}

#[derive(Debug)]
enum Place {
    Parked {
        conn: Box<Conn>,
        wait: Wait,
        deadline: Instant,
    },
    /// A worker or the poller holds it. `ready` records a readiness event
    /// that arrived meanwhile (the worker re-arms before it parks).
    Busy { ready: bool },
}

#[derive(Debug)]
struct Slot {
    id: u64,
    place: Place,
    /// The deadline of this connection's live record in the heap, if any.
    /// Records with another deadline are stale and skipped when they come
    /// up; one is added only when a deadline moves earlier than the live
    /// one (a later deadline is re-queued when the live record comes up),
    /// so a connection has a handful of records at most.
    timer_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Slots {
    slab: Slab<Slot>,
    /// Timer records: (deadline, key, id); see `Slot::timer_at`.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    /// Set at shutdown: idle connections must not be kept past it.
    last_call: Option<Instant>,
    /// Parked connections with requests already buffered, which a worker
    /// handed back to take turns with others: (key, id). The poller
    /// dispatches them on its next wake-up.
    requeued: Vec<(usize, u64)>,
}

/// What a readiness event found.
#[derive(Debug)]
pub(crate) enum Ready {
    /// A parked connection with bytes to read: serve it.
    Serve(Box<Conn>),
    /// A lingering connection: read and discard.
    Linger(Box<Conn>),
}

/// A parked connection whose time ran out.
#[derive(Debug)]
pub(crate) struct Expired {
    pub(crate) conn: Box<Conn>,
    pub(crate) wait: Wait,
}

/// The registry and the poller its connections are registered with.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) poller: Poller,
    slots: Mutex<Slots>,
    /// Set once by the server when the poller thread must stop; read by
    /// the poller after each wake-up.
    stopping: AtomicBool,
    idle_timeout: Duration,
    header_timeout: Duration,
}

/// How long a connection may linger after its final response.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

impl Registry {
    pub(crate) fn new(idle_timeout: Duration, header_timeout: Duration) -> std::io::Result<Self> {
        Ok(Self {
            poller: Poller::new()?,
            slots: Mutex::new(Slots::default()),
            stopping: AtomicBool::new(false),
            idle_timeout,
            header_timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a newly accepted connection, parked until it sends bytes
    /// (`Wait::Idle`) or closes (`Wait::Linger`, after a refusal).
    pub(crate) fn insert(
        &self,
        http: Connection,
        open: InFlightGuard,
        wait: Wait,
    ) -> std::io::Result<()> {
        let mut slots = self.lock();
        let id = slots.next_id;
        slots.next_id += 1;
        let key = slots.slab.insert(Slot {
            id,
            place: Place::Busy { ready: false },
            timer_at: None,
        });
        // SAFETY: the socket is deleted from the poller before it is
        // dropped: a `Conn` leaves the registry through `close`, which
        // deletes it, and at exit `close_all_parked` closes what is still
        // parked (run by the poller as it stops, and again by the server
        // after the poller has joined). A connection a worker still holds
        // at exit (an abandoned request) stays registered until the
        // process ends, which closes both.
        #[allow(unsafe_code)]
        let added = unsafe { self.poller.add(http.stream(), Event::readable(key)) };
        if let Err(error) = added {
            slots.slab.remove(key);
            return Err(error);
        }
        let mut conn = Box::new(Conn {
            http,
            key,
            id,
            linger_until: None,
            open: (wait != Wait::Linger).then_some(open),
        });
        let deadline = self.deadline_for(&slots, wait, &mut conn);
        Self::place(&mut slots, conn, wait, deadline);
        drop(slots);
        self.poller.notify()
    }

    fn deadline_for(&self, slots: &Slots, wait: Wait, conn: &mut Conn) -> Instant {
        let now = Instant::now();
        match wait {
            Wait::Idle => {
                let idle = now + self.idle_timeout;
                slots
                    .last_call
                    .map_or(idle, |last_call| idle.min(last_call))
            }
            Wait::PartialHead => conn.http.head_started().unwrap_or(now) + self.header_timeout,
            Wait::Linger => *conn.linger_until.get_or_insert(now + LINGER_TIMEOUT),
        }
    }

    /// Puts a connection in its slot as parked, with a timer.
    fn place(slots: &mut Slots, conn: Box<Conn>, wait: Wait, deadline: Instant) {
        let key = conn.key;
        let id = conn.id;
        let Some(slot) = slots.slab.get_mut(key) else {
            return;
        };
        slot.place = Place::Parked {
            conn,
            wait,
            deadline,
        };
        if slot.timer_at.is_none_or(|at| deadline < at) {
            slot.timer_at = Some(deadline);
            slots.timers.push(Reverse((deadline, key, id)));
        }
    }

    /// How many connections are registered (parked, lingering or busy).
    pub(crate) fn registered(&self) -> usize {
        self.lock().slab.len()
    }

    /// Parks a connection a worker is done with, until its next bytes (or
    /// its timer). If bytes arrived while the worker held it, gives it
    /// straight back instead.
    pub(crate) fn park(&self, mut conn: Box<Conn>, wait: Wait) -> Option<Box<Conn>> {
        if conn.http.prepare_to_park().is_err() {
            self.close(conn);
            return None;
        }
        // Re-armed before it is placed, so the event cannot be missed: an
        // event that fires first finds the slot busy and marks it ready.
        if self
            .poller
            .modify(conn.http.stream(), Event::readable(conn.key))
            .is_err()
        {
            self.close(conn);
            return None;
        }
        let mut slots = self.lock();
        let Some(slot) = slots.slab.get_mut(conn.key) else {
            drop(slots);
            let _ = self.poller.delete(conn.http.stream());
            return None;
        };
        if let Place::Busy { ready: true } = slot.place {
            slot.place = Place::Busy { ready: false };
            return Some(conn);
        }
        let deadline = self.deadline_for(&slots, wait, &mut conn);
        let earliest = slots
            .timers
            .peek()
            .is_none_or(|Reverse((first, ..))| deadline < *first);
        Self::place(&mut slots, conn, wait, deadline);
        drop(slots);
        if earliest {
            // The poller may be asleep with a later timeout.
            let _ = self.poller.notify();
        }
        None
    }

    /// Hands back a connection that still has buffered requests after a
    /// worker's turn, so other connections get a turn first: parked, and
    /// queued for the poller to dispatch again (no readiness event would
    /// come for bytes already read).
    pub(crate) fn requeue(&self, mut conn: Box<Conn>) {
        let mut slots = self.lock();
        let deadline = self.deadline_for(&slots, Wait::Idle, &mut conn);
        let entry = (conn.key, conn.id);
        Self::place(&mut slots, conn, Wait::Idle, deadline);
        slots.requeued.push(entry);
        drop(slots);
        let _ = self.poller.notify();
    }

    /// Takes the connections handed back by [`requeue`](Self::requeue).
    pub(crate) fn take_requeued(&self) -> Vec<Ready> {
        let mut slots = self.lock();
        let requeued = std::mem::take(&mut slots.requeued);
        requeued
            .into_iter()
            .filter_map(|(key, id)| {
                let slot = slots.slab.get_mut(key).filter(|slot| slot.id == id)?;
                match std::mem::replace(&mut slot.place, Place::Busy { ready: false }) {
                    Place::Parked { conn, .. } => Some(Ready::Serve(conn)),
                    busy @ Place::Busy { .. } => {
                        slot.place = busy;
                        None
                    }
                }
            })
            .collect()
    }

    /// Lets a connection whose final response is written linger: what the
    /// client still sends is read and discarded (so closing does not reset
    /// the connection under the response), until it closes or the linger
    /// deadline passes.
    pub(crate) fn linger(&self, mut conn: Box<Conn>) {
        conn.open = None;
        loop {
            match conn.http.discard_input() {
                Ok(false) => match self.park(conn, Wait::Linger) {
                    Some(ready) => conn = ready,
                    None => return,
                },
                Ok(true) | Err(_) => return self.close(conn),
            }
        }
    }

    /// Takes the connection a readiness event is for.
    pub(crate) fn take_ready(&self, key: usize) -> Option<Ready> {
        let mut slots = self.lock();
        let slot = slots.slab.get_mut(key)?;
        match std::mem::replace(&mut slot.place, Place::Busy { ready: false }) {
            Place::Parked {
                conn,
                wait: Wait::Linger,
                ..
            } => Some(Ready::Linger(conn)),
            Place::Parked { conn, .. } => Some(Ready::Serve(conn)),
            Place::Busy { .. } => {
                slot.place = Place::Busy { ready: true };
                None
            }
        }
    }

    /// Removes a connection and closes it.
    pub(crate) fn close(&self, conn: Box<Conn>) {
        {
            let mut slots = self.lock();
            if slots
                .slab
                .get(conn.key)
                .is_some_and(|slot| slot.id == conn.id)
            {
                slots.slab.remove(conn.key);
            }
        }
        let _ = self.poller.delete(conn.http.stream());
    }

    /// When the poller must wake for the next timer, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lock()
            .timers
            .peek()
            .map(|Reverse((deadline, ..))| *deadline)
    }

    /// Takes every parked connection whose deadline has passed.
    pub(crate) fn expire(&self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        let mut slots = self.lock();
        while let Some(Reverse((due, key, id))) = slots.timers.peek().copied() {
            if due > now {
                break;
            }
            slots.timers.pop();
            let Some(slot) = slots
                .slab
                .get_mut(key)
                .filter(|slot| slot.id == id && slot.timer_at == Some(due))
            else {
                continue;
            };
            slot.timer_at = None;
            match &slot.place {
                Place::Parked { deadline, .. } if *deadline > now => {
                    let deadline = *deadline;
                    slot.timer_at = Some(deadline);
                    slots.timers.push(Reverse((deadline, key, id)));
                }
                Place::Parked { .. } => {
                    if let Place::Parked { conn, wait, .. } =
                        std::mem::replace(&mut slot.place, Place::Busy { ready: false })
                    {
                        expired.push(Expired { conn, wait });
                    }
                }
                Place::Busy { .. } => {}
            }
        }
        expired
    }

    /// From now on idle connections expire at `until` at the latest,
    /// including those parked already.
    pub(crate) fn begin_last_call(&self, until: Instant) {
        let mut slots = self.lock();
        slots.last_call = Some(until);
        // Deadlines only move earlier here, and queued records carry the
        // old ones: rebuild the heap (once, at shutdown) from the slots.
        let Slots { slab, timers, .. } = &mut *slots;
        timers.clear();
        for (key, slot) in slab.iter_mut() {
            slot.timer_at = None;
            if let Place::Parked { wait, deadline, .. } = &mut slot.place {
                if *wait == Wait::Idle {
                    *deadline = (*deadline).min(until);
                }
                slot.timer_at = Some(*deadline);
                timers.push(Reverse((*deadline, key, slot.id)));
            }
        }
        drop(slots);
        let _ = self.poller.notify();
    }

    /// Asks the poller thread to stop.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.poller.notify();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Closes every parked connection (at exit).
    pub(crate) fn close_all_parked(&self) {
        let parked: Vec<Expired> = {
            let mut slots = self.lock();
            slots
                .slab
                .iter_mut()
                .filter(|(_, slot)| matches!(slot.place, Place::Parked { .. }))
                .filter_map(|(_, slot)| {
                    match std::mem::replace(&mut slot.place, Place::Busy { ready: false }) {
                        Place::Parked { conn, wait, .. } => Some(Expired { conn, wait }),
                        Place::Busy { .. } => None,
                    }
                })
                .collect()
        };
        for expired in parked {
            self.close(expired.conn);
        }
    }
}
