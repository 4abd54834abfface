//! An in-memory connection (Twisted's `StringTransport`): a protocol runs
//! in a real connection actor, with the same buffering, flow control and
//! close handling as over TCP, but its bytes go to a [`MemoryPeer`] that a
//! test drives by hand. With a runtime on the manual clock, idle timeouts
//! and timers are deterministic too.
//!
//! Owns: the pipe between the connection and the test's peer, the peer's
//! receive window (to play a slow reader), and reporting readiness to the
//! connection through a `ReadySink`. Must not touch: the connection's
//! state (it only sees a non-blocking byte stream).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use weft_runtime::{Readiness, ReadySink};

/// The address a memory connection reports for its peer.
pub const MEMORY_PEER_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    40000,
));
/// The address a memory connection reports as its own.
pub const MEMORY_LOCAL_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7000,
));

/// How the connection side of a memory pipe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryClose {
    /// It closed in order (what it wrote, then the end).
    Closed,
    /// It aborted (a TCP peer would see a reset).
    Aborted,
}

#[derive(Default)]
struct State {
    /// Peer to connection.
    inbound: VecDeque<u8>,
    /// Connection to peer.
    outbound: VecDeque<u8>,
    /// How many bytes the peer lets wait in `outbound` (its receive window).
    window: usize,
    peer_shut_write: bool,
    conn_shut_write: bool,
    reset_by_peer: bool,
    error_reported: bool,
    closed: Option<MemoryClose>,
    sink: Option<Arc<dyn ReadySink>>,
    /// The connection saw `WouldBlock` on a write: tell it when room comes.
    write_blocked: bool,
}

struct Pipe {
    state: Mutex<State>,
    changed: Condvar,
}

impl Pipe {
    fn notify(&self, st: &State, readiness: Readiness) {
        self.changed.notify_all();
        if let Some(sink) = &st.sink {
            sink.ready(readiness);
        }
    }
}

/// A fresh pipe: the connection's end and the test's peer.
pub(crate) fn pipe() -> (MemoryEnd, MemoryPeer) {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(State {
            window: usize::MAX,
            ..State::default()
        }),
        changed: Condvar::new(),
    });
    (MemoryEnd { pipe: pipe.clone() }, MemoryPeer { pipe })
}

/// The connection's end of a memory pipe.
pub(crate) struct MemoryEnd {
    pipe: Arc<Pipe>,
}

impl MemoryEnd {
    /// Starts reporting readiness to `sink` (and reports what is pending).
    pub(crate) fn attach(&self, sink: Arc<dyn ReadySink>) {
        let mut st = self.pipe.state.lock();
        let mut ready = Readiness::WRITE;
        if !st.inbound.is_empty() || st.peer_shut_write || st.reset_by_peer {
            ready = ready.union(Readiness::READ);
        }
        st.sink = Some(sink.clone());
        drop(st);
        sink.ready(ready);
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.pipe.state.lock();
        if st.reset_by_peer {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if st.inbound.is_empty() {
            if st.peer_shut_write {
                return Ok(0);
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(st.inbound.len());
        for (dst, src) in buf.iter_mut().zip(st.inbound.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut st = self.pipe.state.lock();
        if st.reset_by_peer {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if st.conn_shut_write {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut room = st.window.saturating_sub(st.outbound.len());
        if room == 0 {
            st.write_blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut written = 0;
        for buf in bufs {
            let n = buf.len().min(room);
            st.outbound.extend(&buf[..n]);
            written += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        self.pipe.changed.notify_all();
        Ok(written)
    }

    pub(crate) fn shutdown_write(&mut self) {
        let mut st = self.pipe.state.lock();
        st.conn_shut_write = true;
        self.pipe.changed.notify_all();
    }

    pub(crate) fn take_error(&self) -> Option<io::Error> {
        let mut st = self.pipe.state.lock();
        if st.reset_by_peer && !st.error_reported {
            st.error_reported = true;
            return Some(io::ErrorKind::ConnectionReset.into());
        }
        None
    }

    pub(crate) fn close(self, abort: bool) {
        let mut st = self.pipe.state.lock();
        st.conn_shut_write = true;
        st.sink = None;
        if abort {
            st.outbound.clear();
        }
        st.closed = Some(if abort {
            MemoryClose::Aborted
        } else {
            MemoryClose::Closed
        });
        self.pipe.changed.notify_all();
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        MEMORY_PEER_ADDR
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        MEMORY_LOCAL_ADDR
    }
}

impl Drop for MemoryEnd {
    fn drop(&mut self) {
        let mut st = self.pipe.state.lock();
        if st.closed.is_none() {
            st.closed = Some(MemoryClose::Aborted);
            st.outbound.clear();
        }
        st.sink = None;
        self.pipe.changed.notify_all();
    }
}

/// The test's side of an in-memory connection: write bytes to the
/// protocol, read what it wrote, close or reset, and play a slow reader.
/// Waiting calls take a timeout, so a test never hangs.
pub struct MemoryPeer {
    pipe: Arc<Pipe>,
}

impl std::fmt::Debug for MemoryPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryPeer")
    }
}

impl MemoryPeer {
    /// Sends `data` to the protocol. Ignored after `shutdown_write`/`reset`.
    pub fn write(&self, data: &[u8]) {
        let mut st = self.pipe.state.lock();
        if st.peer_shut_write || st.reset_by_peer || st.closed.is_some() {
            return;
        }
        st.inbound.extend(data);
        self.pipe.notify(&st, Readiness::READ);
    }

    /// Shuts the peer's write side: the protocol reads the end of input.
    pub fn shutdown_write(&self) {
        let mut st = self.pipe.state.lock();
        st.peer_shut_write = true;
        self.pipe
            .notify(&st, Readiness::READ.union(Readiness::READ_HUP));
    }

    /// Resets the connection: the protocol's side fails with
    /// `ConnectionReset` and what it wrote is lost.
    pub fn reset(&self) {
        let mut st = self.pipe.state.lock();
        st.reset_by_peer = true;
        st.outbound.clear();
        let all = Readiness::READ
            .union(Readiness::WRITE)
            .union(Readiness::FAILED);
        self.pipe.notify(&st, all);
    }

    /// Sets how many unread bytes the peer accepts from the protocol (its
    /// receive window): 0 plays a peer that never reads. Default: no limit.
    pub fn set_window(&self, bytes: usize) {
        let mut st = self.pipe.state.lock();
        st.window = bytes;
        self.wake_writer(&mut st);
    }

    fn wake_writer(&self, st: &mut State) {
        if st.write_blocked && st.outbound.len() < st.window {
            st.write_blocked = false;
            self.pipe.notify(st, Readiness::WRITE);
        }
    }

    /// Takes everything the protocol has written so far.
    pub fn read(&self) -> Vec<u8> {
        let mut st = self.pipe.state.lock();
        let out: Vec<u8> = st.outbound.drain(..).collect();
        self.wake_writer(&mut st);
        out
    }

    /// How many written bytes wait unread.
    pub fn unread(&self) -> usize {
        self.pipe.state.lock().outbound.len()
    }

    /// Waits until at least `n` bytes were written (or the connection
    /// ended, or `timeout`), then takes what is there.
    pub fn read_at_least(&self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut st = self.pipe.state.lock();
        while st.outbound.len() < n && st.closed.is_none() {
            if self.pipe.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let out: Vec<u8> = st.outbound.drain(..).collect();
        self.wake_writer(&mut st);
        out
    }

    /// Waits until the connection's side is closed (or `timeout`); then
    /// how it ended, `None` if it is still open.
    pub fn wait_closed(&self, timeout: Duration) -> Option<MemoryClose> {
        let deadline = Instant::now() + timeout;
        let mut st = self.pipe.state.lock();
        while st.closed.is_none() {
            if self.pipe.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.closed
    }

    /// Waits until the connection shut its write side (half-close or
    /// close), or `timeout`; whether it did.
    pub fn wait_write_shut(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.pipe.state.lock();
        while !st.conn_shut_write {
            if self.pipe.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.conn_shut_write
    }

    /// How the connection's side ended so far (`None`: still open).
    pub fn closed(&self) -> Option<MemoryClose> {
        self.pipe.state.lock().closed
    }
}
