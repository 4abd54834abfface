//! A listener's options ([`ListenOptions`], [`StopMode`]) and why it could
//! not start ([`ListenError`]).
//!
//! Must not touch: sockets; these are plain values.

use std::io;
use std::time::Duration;

use crate::addr::Address;

use crate::conn::ConnOptions;

/// What stopping a listener does to its open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Each connection flushes what it has buffered and closes (within
    /// its drain timeout, then it is aborted).
    Close,
    /// Connections run on until they end by themselves; the listener
    /// exits when the last one has.
    Drain,
}

/// Options of `listen_tcp`, `listen_tls` and `listen_unix`.
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use weft_actors::ActorResult;
/// use weft_io::{listen_tcp, Conn, ConnOptions, ListenOptions, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let options = ListenOptions::new()
///     .backlog(256)
///     .max_connections(1000) // past it, accepting pauses until one ends
///     .conn(ConnOptions::new().idle_timeout(Some(Duration::from_secs(60))));
/// let listening = listen_tcp(rt.handle(), "127.0.0.1:0".parse().unwrap(), options, || Echo).unwrap();
/// let mut s = std::net::TcpStream::connect(listening.local_addr()).unwrap();
/// s.write_all(b"ping").unwrap();
/// let mut back = [0u8; 4];
/// s.read_exact(&mut back).unwrap();
/// assert_eq!(&back, b"ping");
/// ```
#[must_use = "options do nothing until passed to a listen call"]
#[derive(Clone, Debug)]
pub struct ListenOptions {
    pub(crate) backlog: i32,
    pub(crate) reuse_addr: bool,
    pub(crate) reuse_port: bool,
    pub(crate) max_connections: Option<usize>,
    pub(crate) conn: ConnOptions,
    pub(crate) stop_mode: StopMode,
    pub(crate) accept_batch: usize,
    pub(crate) max_backoff: Duration,
    pub(crate) capacity: usize,
    pub(crate) listeners: usize,
    pub(crate) unix_mode: Option<u32>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 1024,
            reuse_addr: true,
            reuse_port: false,
            max_connections: None,
            conn: ConnOptions::default(),
            stop_mode: StopMode::Close,
            accept_batch: 64,
            max_backoff: Duration::from_secs(1),
            capacity: weft_actors::DEFAULT_CAPACITY,
            listeners: 1,
            unix_mode: None,
        }
    }
}

impl ListenOptions {
    /// Defaults: backlog 1024, `SO_REUSEADDR` on, `SO_REUSEPORT` off, no
    /// connection limit, default connection options, stop closes the
    /// connections, 64 accepts per turn, back-off up to 1 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel's queue of connections not yet accepted.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// `SO_REUSEADDR`: rebind at once after a restart (default on).
    pub fn reuse_addr(mut self, on: bool) -> Self {
        self.reuse_addr = on;
        self
    }

    /// `SO_REUSEPORT`: several listening sockets (in this process or
    /// others) share the port and the kernel spreads connections.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// At most `n` connections at once; at the limit the listener stops
    /// accepting until one ends (the rest wait in the backlog).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Options of every accepted connection (nodelay, idle timeout,
    /// watermarks, ...).
    pub fn conn(mut self, conn: ConnOptions) -> Self {
        self.conn = conn;
        self
    }

    /// What stopping the listener does to its connections.
    pub fn stop_mode(mut self, mode: StopMode) -> Self {
        self.stop_mode = mode;
        self
    }

    /// Accepts per turn before the listener yields to other actors.
    pub fn accept_batch(mut self, n: usize) -> Self {
        self.accept_batch = n.max(1);
        self
    }

    /// The longest pause after `EMFILE`/`ENFILE` before trying again
    /// (the pause starts at 5 ms and doubles).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// `n` listening sockets on one port (`SO_REUSEPORT`, set for you),
    /// each with its own listener actor and connection supervisor: the
    /// kernel spreads new connections over them, so accepting and
    /// starting connections run on several workers at once. Worth it
    /// when connection setup, not traffic, is the load (many short
    /// connections on many cores); one (the default) otherwise. Counters
    /// are summed; `max_connections` applies to each.
    pub fn listeners(mut self, n: usize) -> Self {
        self.listeners = n.max(1);
        self
    }

    /// UNIX listeners: the socket file's permission bits (as `chmod`
    /// takes them, e.g. `0o660` for owner and group), set before the
    /// socket accepts anyone. Default: what the process's umask gives.
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.unix_mode = Some(mode & 0o7777);
        self
    }

    /// Mailbox capacity of each connection actor.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Binding or listening failed (address in use, not local, no
    /// permission, ...).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: Address,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Registering with the reactor failed.
    #[error("cannot register the listening socket")]
    Register(#[source] io::Error),
    /// The listener actor exited while starting.
    #[error("the listener stopped while starting: {0}")]
    Stopped(String),
}
