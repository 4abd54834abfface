//! A connection's options ([`ConnOptions`]) and why a write is refused
//! ([`WriteError`]).
//!
//! Must not touch: the connection's state; these are plain values.

use std::time::Duration;

use super::READ_CHUNK;

/// Options of a connection: TCP options, the idle timeout, write
/// watermarks, the read budget and how long a shutdown waits to flush.
///
/// ```
/// use std::time::Duration;
/// use weft_io::{ConnOptions, ListenOptions};
///
/// // Pause the protocol (push producer) past 256 KiB buffered, resume
/// // below 64 KiB; close a connection idle for 5 minutes; refuse to buffer
/// // more than 16 MiB for a peer that never reads.
/// let conn = ConnOptions::new()
///     .watermarks(256 * 1024, 64 * 1024)
///     .idle_timeout(Some(Duration::from_secs(300)))
///     .max_write_buffer(16 << 20)
///     .nodelay(true);
/// let _listen = ListenOptions::new().conn(conn);
/// ```
#[must_use = "options do nothing until passed on"]
#[derive(Clone, Debug)]
pub struct ConnOptions {
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    pub(crate) max_write_buffer: usize,
    pub(crate) read_budget: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) mailbox_bytes: Option<usize>,
    pub(crate) handshake_timeout: Duration,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            nodelay: true,
            keepalive: None,
            idle_timeout: None,
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            max_write_buffer: 4 * 1024 * 1024,
            read_budget: 4 * READ_CHUNK,
            drain_timeout: Duration::from_secs(5),
            mailbox_bytes: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnOptions {
    /// Defaults: `TCP_NODELAY` on, no keep-alive, no idle timeout, write
    /// watermarks 64 KiB / 16 KiB, at most 4 MiB buffered, 256 KiB read
    /// per turn, 5 s to flush on shutdown.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a TLS handshake may take (`listen_tls`, `start_tls`;
    /// `connect_tls` is bounded by its connect timeout instead): a peer
    /// that connects and never finishes it is closed. Default 10 s.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Bounds the connection's mailbox by bytes too: once the protocol's
    /// messages waiting there weigh `bytes` or more (each as
    /// [`Protocol::weigh`](crate::Protocol::weigh) says, e.g. the length of
    /// a chunk to write), the mailbox is full, and an actor sending to it
    /// with `Ctx::send` is muted until it drains. Default: only the count
    /// of messages bounds it. A value of 0 counts as 1.
    pub fn mailbox_bytes(mut self, bytes: usize) -> Self {
        self.mailbox_bytes = Some(bytes.max(1));
        self
    }

    /// The spawn options of a connection actor with `capacity` messages.
    pub(crate) fn spawn_options(&self, capacity: usize) -> weft_actors::SpawnOptions {
        let options = weft_actors::SpawnOptions::new().capacity(capacity);
        match self.mailbox_bytes {
            Some(bytes) => options.max_weight(bytes),
            None => options,
        }
    }

    /// `TCP_NODELAY` (default on: weft flushes once per turn, so Nagle's
    /// batching only adds latency).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// TCP keep-alive probes after `idle` without traffic (default off).
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// Close a connection on which nothing was read or written for `d`
    /// (reason [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout)). Default: none.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Write watermarks: past `high` buffered bytes the protocol is told
    /// to pause ([`Protocol::write_paused`](crate::Protocol::write_paused)), at or below `low` to resume.
    /// `low` is clamped to at most `high`.
    pub fn watermarks(mut self, high: usize, low: usize) -> Self {
        self.high_water = high;
        self.low_water = low.min(high);
        self
    }

    /// The most bytes the write buffer holds; a write past it fails with
    /// [`WriteError::BufferFull`] (a protocol that ignores pauses). At
    /// least the high watermark.
    pub fn max_write_buffer(mut self, bytes: usize) -> Self {
        self.max_write_buffer = bytes;
        self
    }

    /// How many bytes one turn reads before the actor yields to others
    /// (fairness between connections). At least one read.
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.read_budget = bytes.max(1);
        self
    }

    /// How long a connection asked to shut down (listener stop,
    /// supervisor, runtime shutdown) may take to flush before it is
    /// aborted.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }
}

/// Why a write was refused. The data was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The write buffer would pass `max_write_buffer`: the peer is not
    /// reading and the protocol did not pause.
    #[error("write buffer full ({buffered} bytes buffered, limit {limit})")]
    BufferFull {
        /// Bytes buffered now.
        buffered: usize,
        /// The limit.
        limit: usize,
    },
    /// The connection is closing or closed, or its write side was shut.
    #[error("the connection is closed for writing")]
    Closed,
    /// Descriptors can be sent only over a UNIX socket without TLS.
    #[error("descriptors travel only over a UNIX socket (and not under TLS)")]
    FdsUnsupported,
    /// Fewer bytes than descriptors: each descriptor travels with a byte.
    #[error("{fds} descriptors need at least as many bytes, got {bytes}")]
    FdsExceedBytes {
        /// Descriptors given.
        fds: usize,
        /// Bytes given.
        bytes: usize,
    },
    /// A descriptor could not be duplicated (at the descriptor limit, or
    /// not a descriptor).
    #[error("cannot duplicate a descriptor to send: {0}")]
    FdDup(String),
    /// More descriptors than one message carries.
    #[error("{0} descriptors at once; at most {max}", max = crate::unix::MAX_FDS_PER_MESSAGE)]
    TooManyFds(usize),
}
