//! The reactor: the runtime's one mio `Poll` (the *driver*), its `Waker`,
//! and the table of readiness sinks.
//!
//! Owns: registration of any `mio::event::Source`, the token table, turning
//! events into `ReadySink::ready` calls. Invariants: the driver (the `Poll`
//! and its event buffer) is used by at most one thread at a time, the one
//! holding `driver`; sinks are called with no reactor lock held; a token
//! carries a generation so an event for a deregistered source never reaches
//! a sink registered later under the same slot.
//! Must not touch: actors, their messages or the scheduler's queues (a sink
//! decides what readiness means).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::Mutex;
use slab::Slab;

use crate::signal::SignalPipe;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);
pub(crate) const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

/// Receives readiness for one registered source. Called on a worker
/// thread (whichever is driving the reactor); it should only record the
/// readiness and schedule work, never do I/O or block.
pub trait ReadySink: Send + Sync + 'static {
    /// The source became ready as `readiness` says.
    fn ready(&self, readiness: Readiness);
}

/// What a readiness event says about a source. Readiness is edge-triggered:
/// the owner must read (or write) until `WouldBlock` before it can expect
/// another event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness(u8);

impl Readiness {
    const READABLE: u8 = 1;
    const WRITABLE: u8 = 2;
    const READ_CLOSED: u8 = 4;
    const WRITE_CLOSED: u8 = 8;
    const ERROR: u8 = 16;

    /// No readiness.
    pub const EMPTY: Readiness = Readiness(0);
    /// Readable (for a source that is not a mio `Source`, e.g. an
    /// in-memory transport reporting through a `ReadySink`).
    pub const READ: Readiness = Readiness(Self::READABLE);
    /// Writable.
    pub const WRITE: Readiness = Readiness(Self::WRITABLE);
    /// The read half closed (with `READ`: there is an end to read).
    pub const READ_HUP: Readiness = Readiness(Self::READ_CLOSED);
    /// The write half closed.
    pub const WRITE_HUP: Readiness = Readiness(Self::WRITE_CLOSED);
    /// An error to fetch from the source.
    pub const FAILED: Readiness = Readiness(Self::ERROR);

    /// Both readinesses at once.
    pub const fn union(self, other: Readiness) -> Readiness {
        Readiness(self.0 | other.0)
    }

    fn from_event(event: &mio::event::Event) -> Self {
        let mut bits = 0;
        if event.is_readable() {
            bits |= Self::READABLE;
        }
        if event.is_writable() {
            bits |= Self::WRITABLE;
        }
        if event.is_read_closed() {
            bits |= Self::READ_CLOSED;
        }
        if event.is_write_closed() {
            bits |= Self::WRITE_CLOSED;
        }
        if event.is_error() {
            bits |= Self::ERROR;
        }
        Readiness(bits)
    }

    /// The source can be read (or has an error or end to report).
    pub fn is_readable(self) -> bool {
        self.0 & Self::READABLE != 0
    }
    /// The source can be written.
    pub fn is_writable(self) -> bool {
        self.0 & Self::WRITABLE != 0
    }
    /// The read half is closed (peer shut down or hung up).
    pub fn is_read_closed(self) -> bool {
        self.0 & Self::READ_CLOSED != 0
    }
    /// The write half is closed.
    pub fn is_write_closed(self) -> bool {
        self.0 & Self::WRITE_CLOSED != 0
    }
    /// The source reported an error (read it with `take_error`).
    pub fn is_error(self) -> bool {
        self.0 & Self::ERROR != 0
    }
}

/// The registration of one source with a runtime's reactor; pass it back to
/// `Handle::reregister` and `Handle::deregister`.
#[derive(Debug, PartialEq, Eq)]
pub struct IoToken(pub(crate) Token);

struct SinkEntry {
    token: Token,
    sink: Arc<dyn ReadySink>,
}

pub(crate) struct Driver {
    poll: Poll,
    events: Events,
    ready: Vec<(Arc<dyn ReadySink>, Readiness)>,
}

pub(crate) struct Reactor {
    pub(crate) driver: Mutex<Driver>,
    registry: Registry,
    pub(crate) waker: Arc<Waker>,
    sinks: Mutex<Slab<SinkEntry>>,
    generation: AtomicU32,
    count: AtomicUsize,
    /// The SIGINT/SIGTERM self-pipe, when the runtime handles signals.
    pub(crate) signal_pipe: OnceLock<SignalPipe>,
    /// Signals delivered to subscribers, made on the first subscription.
    pub(crate) signal_hub: OnceLock<Arc<crate::signal::SignalHub>>,
}

/// What one turn of the driver saw.
pub(crate) struct Turn {
    pub(crate) signalled: bool,
    /// How many sinks were told of readiness.
    pub(crate) delivered: usize,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Reactor {
            driver: Mutex::new(Driver {
                poll,
                events: Events::with_capacity(1024),
                ready: Vec::new(),
            }),
            registry,
            waker,
            sinks: Mutex::new(Slab::new()),
            generation: AtomicU32::new(1),
            count: AtomicUsize::new(0),
            signal_pipe: OnceLock::new(),
            signal_hub: OnceLock::new(),
        })
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn register(
        &self,
        source: &mut dyn Source,
        interest: Interest,
        sink: Arc<dyn ReadySink>,
    ) -> io::Result<IoToken> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) as usize;
        let token = {
            let mut sinks = self.sinks.lock();
            let entry = sinks.vacant_entry();
            let index = entry.key();
            if index >= (u32::MAX - 2) as usize {
                return Err(io::Error::other("too many registered sources"));
            }
            let token = Token(index | (generation << 32));
            entry.insert(SinkEntry { token, sink });
            token
        };
        if let Err(e) = self.registry.register(source, token, interest) {
            self.sinks.lock().remove(token.0 & 0xFFFF_FFFF);
            return Err(e);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(IoToken(token))
    }

    pub(crate) fn reregister(
        &self,
        source: &mut dyn Source,
        token: &IoToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.registry.reregister(source, token.0, interest)
    }

    pub(crate) fn deregister(&self, source: &mut dyn Source, token: IoToken) -> io::Result<()> {
        let result = self.registry.deregister(source);
        let mut sinks = self.sinks.lock();
        let index = token.0 .0 & 0xFFFF_FFFF;
        if sinks.get(index).is_some_and(|e| e.token == token.0) {
            sinks.remove(index);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }

    /// Drops every sink (at shutdown).
    pub(crate) fn clear_sinks(&self) {
        let old = std::mem::take(&mut *self.sinks.lock());
        self.count.store(0, Ordering::Relaxed);
        drop(old);
    }

    /// How many sources are registered (a hint, for the busy-path poll).
    pub(crate) fn registered(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Polls once, blocking up to `timeout` (None: until an event or a wake).
    pub(crate) fn poll(&self, driver: &mut Driver, timeout: Option<Duration>) {
        if let Err(e) = driver.poll.poll(&mut driver.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "reactor poll failed");
            }
            driver.events.clear();
        }
    }

    /// Hands the readiness of the last `poll` to the sinks.
    pub(crate) fn dispatch(&self, driver: &mut Driver) -> Turn {
        let mut turn = Turn {
            signalled: false,
            delivered: 0,
        };
        let Driver { events, ready, .. } = driver;
        if events.is_empty() {
            return turn;
        }
        {
            let sinks = self.sinks.lock();
            for event in events.iter() {
                let token = event.token();
                if token == WAKER_TOKEN {
                    continue;
                }
                if token == SIGNAL_TOKEN {
                    turn.signalled = true;
                    continue;
                }
                if let Some(entry) = sinks.get(token.0 & 0xFFFF_FFFF) {
                    if entry.token == token {
                        ready.push((entry.sink.clone(), Readiness::from_event(event)));
                    }
                }
            }
        }
        events.clear();
        turn.delivered = ready.len();
        for (sink, readiness) in ready.drain(..) {
            // A sink runs code of the layer above (an actor's readiness
            // map): a panic there must not take the driving worker down.
            let delivered = catch_unwind(AssertUnwindSafe(|| sink.ready(readiness)));
            if delivered.is_err() {
                tracing::error!("a readiness sink panicked; the event is dropped");
            }
        }
        turn
    }
}
