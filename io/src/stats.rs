//! What a listener shares with its connections: the counters
//! ([`ListenerStats`]), the connection limit's pause flag, the address,
//! and the "stopped" signal that [`ListenerInfo`] waits on. It lives
//! beside both (not inside `listener/`), so that connections depend on it
//! and not on the listener.
//!
//! Invariant: `active` counts connections from accept until their actor
//! exits; whoever swaps `paused` from set to clear wakes the listener.
//!
//! Must not touch: sockets or actors other than the listener's recipient.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use weft_actors::Recipient;
use weft_runtime::Handle;

/// A snapshot of a listener's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub active: usize,
    /// Connections that have ended.
    pub closed: u64,
    /// Connections whose protocol panicked or returned an error.
    pub failed: u64,
    /// Failed `accept` calls (e.g. `EMFILE`), each followed by a back-off.
    pub accept_errors: u64,
    /// The largest write buffer any connection held, in bytes.
    pub peak_write_buffer: usize,
    /// Whether the listener is paused at its connection limit.
    pub at_limit: bool,
}

/// State shared by a listener and its connections.
pub(crate) struct Shared {
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicUsize,
    pub(crate) closed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) peak_write_buffer: AtomicUsize,
    /// The listener waits for a connection to end (limit, or draining).
    pub(crate) paused: AtomicBool,
    /// Wakes the listener (its "a connection ended" message).
    pub(crate) listener: OnceLock<Recipient<()>>,
    pub(crate) local: OnceLock<crate::addr::Address>,
    pub(crate) done: Mutex<bool>,
    pub(crate) done_cond: Condvar,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Shared {
            accepted: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            closed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            peak_write_buffer: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            listener: OnceLock::new(),
            local: OnceLock::new(),
            done: Mutex::new(false),
            done_cond: Condvar::new(),
        })
    }

    pub(crate) fn note_buffered(&self, bytes: usize) {
        if bytes > self.peak_write_buffer.load(Ordering::Relaxed) {
            self.peak_write_buffer.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// A connection actor exited (`failed`: its protocol panicked or
    /// returned an error).
    pub(crate) fn connection_ended(&self, failed: bool) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.paused.load(Ordering::SeqCst) && self.paused.swap(false, Ordering::SeqCst) {
            if let Some(listener) = self.listener.get() {
                let _ = listener.send(());
            }
        }
    }

    fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::SeqCst),
            closed: self.closed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            peak_write_buffer: self.peak_write_buffer.load(Ordering::Relaxed),
            at_limit: self.paused.load(Ordering::Relaxed),
        }
    }
}

/// A view of a listener for any thread: its address, its counters, and
/// waiting for it to end.
#[derive(Clone)]
pub struct ListenerInfo {
    pub(crate) shared: Vec<Arc<Shared>>,
}

impl std::fmt::Debug for ListenerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerInfo")
            .field("address", &self.address())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ListenerInfo {
    /// The bound internet address (with the port the OS chose), once
    /// listening; `None` for a UNIX listener (see [`address`](Self::address)).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.address().and_then(|a| a.inet())
    }

    /// The bound address, internet or UNIX, once listening.
    pub fn address(&self) -> Option<crate::addr::Address> {
        self.shared.iter().find_map(|s| s.local.get().cloned())
    }

    /// The counters now (summed over the listening sockets).
    pub fn stats(&self) -> ListenerStats {
        let mut all = ListenerStats::default();
        for s in self.shared.iter().map(|s| s.stats()) {
            all.accepted += s.accepted;
            all.active += s.active;
            all.closed += s.closed;
            all.failed += s.failed;
            all.accept_errors += s.accept_errors;
            all.peak_write_buffer = all.peak_write_buffer.max(s.peak_write_buffer);
            all.at_limit |= s.at_limit;
        }
        all
    }

    /// Blocks this (non-worker) thread until the listener has exited (its
    /// connections closed or drained), or `timeout`; whether it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared.iter().all(|shared| {
            let mut done = shared.done.lock();
            while !*done {
                if shared.done_cond.wait_until(&mut done, deadline).timed_out() {
                    break;
                }
            }
            *done
        })
    }
}

/// The listeners of one runtime (a per-runtime extension), for
/// [`listeners`]. Entries are weak: a listener that ended and was dropped
/// leaves nothing behind but a dead entry, swept on the next registration.
#[derive(Default)]
struct Registry(Mutex<Vec<Weak<Shared>>>);

/// Records a starting listener in its runtime's registry.
pub(crate) fn register(handle: &Handle, shared: &Arc<Shared>) {
    let registry = weft_actors::extension(handle, Registry::default);
    let mut all = registry.0.lock();
    all.retain(|w| w.upgrade().is_some_and(|s| !*s.done.lock()));
    if !all
        .iter()
        .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(shared)))
    {
        all.push(Arc::downgrade(shared));
    }
}

/// Every listener running on `handle`'s runtime (TCP, TLS, UNIX, adopted),
/// in the order they started: for a metrics endpoint or a console.
pub fn listeners(handle: &Handle) -> Vec<ListenerInfo> {
    let registry = weft_actors::extension(handle, Registry::default);
    let all = registry.0.lock();
    all.iter()
        .filter_map(Weak::upgrade)
        .filter(|s| !*s.done.lock())
        .map(|shared| ListenerInfo {
            shared: vec![shared],
        })
        .collect()
}
