//! Datagram sockets as actors (Twisted's `DatagramProtocol`, and
//! `listenUNIXDatagram` / `connectUNIXDatagram` / `adoptDatagramPort`):
//! one [`DatagramSocket`] actor per socket runs a user
//! [`DatagramProtocol`]. The protocol and its [`Dgram`] handle are the
//! same for UNIX datagram sockets and UDP.
//!
//! * Receiving: up to `read_budget` datagrams per turn, each with its
//!   sender's [`Address`]; a datagram longer than the receive size is
//!   never cut silently: it goes to [`DatagramProtocol::truncated`] with
//!   its real length (and is counted).
//! * Sending never blocks and never drops silently: a datagram the
//!   kernel cannot take now (the socket's buffer, or a UNIX receiver's
//!   queue, is full) is refused with [`DatagramError::WouldBlock`],
//!   counted, and the protocol is told [`send_ready`] when it can try
//!   again: on the next writable edge, or after a short back-off (a full
//!   UNIX receiver raises no readiness on an unconnected sender).
//! * Errors are values: too big (`EMSGSIZE`), an address of the wrong
//!   family, not connected, closed.
//!
//! Owns: the socket's registration, the receive loop, sending, the
//! counters. Must not touch: streams (`conn/`), binding policy (`unix/`).
//!
//! [`send_ready`]: DatagramProtocol::send_ready

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};
use weft_actors::{Actor, ActorResult, Addr, Ctx, ExitReason, SendError, Spawn};
use weft_runtime::mio::unix::SourceFd;
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, IoToken, Readiness};

use crate::addr::{Address, UnixAddr};
use crate::conn::{put_buf, take_buf};
use crate::listener::ListenError;
use crate::unix::SocketFile;

/// The first wait before telling a protocol it may send again after a
/// refused send, when no writable edge comes; it doubles while sends keep
/// being refused, up to `RETRY_MAX`.
const RETRY: Duration = Duration::from_millis(2);
const RETRY_MAX: Duration = Duration::from_millis(100);

/// A protocol for one datagram socket. Every callback gets the
/// [`Dgram`] handle (send, connect, addresses, counters, the context).
///
/// ```
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{DatagramProtocol, Dgram};
/// use weft_io::Address;
///
/// /// Answers every datagram with its upper-case copy.
/// struct Upper;
/// impl DatagramProtocol for Upper {
///     type Msg = ();
///     fn datagram(&mut self, sock: &mut Dgram<'_, '_, Self>, data: &[u8], from: &Address) -> ActorResult {
///         // A full receiver is a value; this protocol drops the reply then.
///         let _ = sock.send_to(&data.to_ascii_uppercase(), from);
///         Ok(())
///     }
/// }
/// ```
pub trait DatagramProtocol: Send + Sized + 'static {
    /// The protocol's own messages (from other actors and threads).
    type Msg: Send + 'static;

    /// The socket is open (its local address is `sock.local_addr()`).
    fn bound(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// A datagram arrived from `from` (`UnixAddr::Unnamed` for an
    /// unbound UNIX sender).
    fn datagram(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult;

    /// A datagram of `len` bytes arrived, longer than the receive size:
    /// `data` is its first part. The default logs it; either way it is
    /// counted in [`DatagramStats::truncated`].
    fn truncated(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        len: usize,
        from: &Address,
    ) -> ActorResult {
        let _ = (sock, data);
        tracing::warn!(%from, len, "a datagram longer than the receive size was cut");
        Ok(())
    }

    /// A connected socket's peer refused (nothing listens there: UDP's
    /// ICMP port unreachable, or a UNIX peer that went away).
    fn refused(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// A send was refused with `WouldBlock` since the last call: try
    /// again now.
    fn send_ready(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// One of the protocol's own messages.
    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, msg: Self::Msg) -> ActorResult {
        let _ = (sock, msg);
        Ok(())
    }

    /// The socket closed (asked, or the actor is stopping).
    fn closed(&mut self, sock: &mut Dgram<'_, '_, Self>) {
        let _ = sock;
    }
}

/// Why a datagram was not sent. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The kernel cannot take it now (the socket's buffer or the UNIX
    /// receiver's queue is full); `send_ready` follows.
    #[error("the datagram cannot be sent now (buffer or receiver full)")]
    WouldBlock,
    /// Larger than the socket can send (`EMSGSIZE`).
    #[error("a datagram of {len} bytes is too big for this socket")]
    TooBig {
        /// Its length.
        len: usize,
    },
    /// The address is not of this socket's family.
    #[error("{addr} is not an address for this socket's family")]
    WrongFamily {
        /// The address given.
        addr: String,
    },
    /// `send` on a socket that is not connected.
    #[error("the socket is not connected")]
    NotConnected,
    /// The peer refused (nothing receives there).
    #[error("refused: nothing receives at {0}")]
    Refused(String),
    /// The socket is closed.
    #[error("the socket is closed")]
    Closed,
    /// Another OS error.
    #[error("{kind:?}: {message}")]
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// Its text.
        message: String,
    },
}

/// A datagram socket's counters.
#[derive(Debug, Default)]
pub struct DatagramStats {
    /// Datagrams received whole.
    pub received: AtomicU64,
    /// Datagrams longer than the receive size.
    pub truncated: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Sends refused with `WouldBlock`.
    pub would_block: AtomicU64,
}

/// Options of a datagram socket.
#[derive(Clone, Debug)]
pub struct DatagramOptions {
    recv_size: usize,
    read_budget: usize,
    unix_mode: Option<u32>,
    capacity: usize,
}

impl Default for DatagramOptions {
    fn default() -> Self {
        DatagramOptions {
            recv_size: 64 * 1024,
            read_budget: 64,
            unix_mode: None,
            capacity: weft_actors::DEFAULT_CAPACITY,
        }
    }
}

impl DatagramOptions {
    /// Defaults: 64 KiB receive size, 64 datagrams per turn.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest datagram received whole (Twisted's `maxPacketSize`);
    /// longer ones go to `truncated`. At most 64 KiB.
    pub fn recv_size(mut self, bytes: usize) -> Self {
        self.recv_size = bytes.clamp(1, 64 * 1024);
        self
    }

    /// Datagrams handled per turn before other actors run.
    pub fn read_budget(mut self, n: usize) -> Self {
        self.read_budget = n.max(1);
        self
    }

    /// A UNIX socket bound to a path: the file's permission bits.
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.unix_mode = Some(mode & 0o7777);
        self
    }

    /// The actor's mailbox capacity.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
}

/// A datagram socket actor's message.
pub struct DgramMsg<M>(Event<M>);

enum Event<M> {
    User(M),
    Io(Readiness),
    ReadMore,
    Retry,
    Close,
}

impl<M> std::fmt::Debug for DgramMsg<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DgramMsg")
    }
}

/// Everything of a datagram socket but its protocol.
struct Core {
    fd: Option<OwnedFd>,
    token: Option<IoToken>,
    unix: bool,
    local: Address,
    peer: Option<Address>,
    opts: DatagramOptions,
    stats: Arc<DatagramStats>,
    /// A send was refused: `send_ready` is owed.
    owed_ready: bool,
    retry_armed: bool,
    retry_delay: Duration,
    readable: bool,
    closing: bool,
    file: Option<SocketFile>,
}

/// The handle a [`DatagramProtocol`] gets in every callback.
pub struct Dgram<'a, 'c, P: DatagramProtocol> {
    core: &'a mut Core,
    ctx: &'a mut Ctx<'c, DatagramSocket<P>>,
}

impl<'c, P: DatagramProtocol> Dgram<'_, 'c, P> {
    /// Sends `data` to `to` (an address of this socket's family).
    pub fn send_to(&mut self, data: &[u8], to: &Address) -> Result<(), DatagramError> {
        let addr = match (to, self.core.unix) {
            (Address::Unix(u), true) => u.to_sockaddr(),
            (Address::Inet(a), false) => Ok(socket2::SockAddr::from(*a)),
            _ => {
                return Err(DatagramError::WrongFamily {
                    addr: to.to_string(),
                })
            }
        }
        .map_err(|e| DatagramError::Io {
            kind: e.kind(),
            message: e.to_string(),
        })?;
        let fd = self.core.fd.as_ref().ok_or(DatagramError::Closed)?;
        let result = SockRef::from(fd).send_to(data, &addr);
        self.core.sent(result, data.len(), Some(to), self.ctx)
    }

    /// Sends `data` to the connected peer.
    pub fn send(&mut self, data: &[u8]) -> Result<(), DatagramError> {
        if self.core.peer.is_none() {
            return Err(DatagramError::NotConnected);
        }
        let fd = self.core.fd.as_ref().ok_or(DatagramError::Closed)?;
        let result = SockRef::from(fd).send(data);
        let peer = self.core.peer.clone();
        self.core.sent(result, data.len(), peer.as_ref(), self.ctx)
    }

    /// Connects to `to`: `send` goes there, and only its datagrams are
    /// received.
    pub fn connect(&mut self, to: &Address) -> io::Result<()> {
        let addr = match (to, self.core.unix) {
            (Address::Unix(u), true) => u.to_sockaddr()?,
            (Address::Inet(a), false) => socket2::SockAddr::from(*a),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{to} is not an address for this socket's family"),
                ))
            }
        };
        let fd = self.core.fd.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        SockRef::from(fd).connect(&addr)?;
        self.core.peer = Some(to.clone());
        Ok(())
    }

    /// This socket's address.
    pub fn local_addr(&self) -> &Address {
        &self.core.local
    }

    /// The connected peer, if connected.
    pub fn peer_addr(&self) -> Option<&Address> {
        self.core.peer.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> &DatagramStats {
        &self.core.stats
    }

    /// Closes the socket once this callback returns.
    pub fn close(&mut self) {
        self.core.closing = true;
    }

    /// The actor context (timers, sends, spawning).
    pub fn ctx(&mut self) -> &mut Ctx<'c, DatagramSocket<P>> {
        self.ctx
    }
}

impl Core {
    fn sent<A: Actor>(
        &mut self,
        result: io::Result<usize>,
        len: usize,
        to: Option<&Address>,
        ctx: &mut Ctx<'_, A>,
    ) -> Result<(), DatagramError>
    where
        A::Msg: From<Retry>,
    {
        match result {
            Ok(_) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                self.retry_delay = RETRY;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.would_block.fetch_add(1, Ordering::Relaxed);
                self.owed_ready = true;
                if !self.retry_armed {
                    self.retry_armed = true;
                    ctx.send_later(self.retry_delay, A::Msg::from(Retry));
                    self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
                }
                Err(DatagramError::WouldBlock)
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                Err(DatagramError::TooBig { len })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(DatagramError::Refused(
                to.map(|a| a.to_string()).unwrap_or_default(),
            )),
            Err(e) => Err(DatagramError::Io {
                kind: e.kind(),
                message: e.to_string(),
            }),
        }
    }
}

/// The retry timer's message (internal).
#[doc(hidden)]
pub struct Retry;

impl<M> From<Retry> for DgramMsg<M> {
    fn from(_: Retry) -> Self {
        DgramMsg(Event::Retry)
    }
}

/// The actor that runs one datagram socket's [`DatagramProtocol`].
pub struct DatagramSocket<P: DatagramProtocol> {
    protocol: P,
    core: Core,
}

impl<P: DatagramProtocol> DatagramSocket<P> {
    fn dgram<'a, 'c>(core: &'a mut Core, ctx: &'a mut Ctx<'c, Self>) -> Dgram<'a, 'c, P> {
        Dgram { core, ctx }
    }

    fn read_some(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let mut buf = take_buf();
        let size = self.core.opts.recv_size.min(buf.len());
        let mut left = self.core.opts.read_budget;
        let result = loop {
            if left == 0 {
                ctx.send_self(DgramMsg(Event::ReadMore));
                break Ok(());
            }
            if self.core.closing {
                break Ok(());
            }
            let Some(fd) = self.core.fd.as_ref() else {
                break Ok(());
            };
            match recv_from(fd.as_raw_fd(), &mut buf[..size]) {
                Ok((len, from)) => {
                    left -= 1;
                    let from = to_address(&from)
                        .or_else(|| self.core.peer.clone())
                        .unwrap_or(Address::Unix(UnixAddr::Unnamed));
                    let dgram = &mut Self::dgram(&mut self.core, ctx);
                    let step = if len > size {
                        dgram.core.stats.truncated.fetch_add(1, Ordering::Relaxed);
                        self.protocol.truncated(dgram, &buf[..size], len, &from)
                    } else {
                        dgram.core.stats.received.fetch_add(1, Ordering::Relaxed);
                        self.protocol.datagram(dgram, &buf[..len], &from)
                    };
                    if let Err(e) = step {
                        break Err(e);
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    self.core.readable = false;
                    break Ok(());
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ECONNREFUSED) => {
                    if let Err(e) = self.protocol.refused(&mut Self::dgram(&mut self.core, ctx)) {
                        break Err(e);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "datagram receive failed");
                    self.core.readable = false;
                    break Ok(());
                }
            }
        };
        put_buf(buf);
        result?;
        self.settle(ctx);
        Ok(())
    }

    /// After a callback: close if asked.
    fn settle(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.core.closing && self.core.fd.is_some() {
            self.release(ctx);
            self.protocol.closed(&mut Self::dgram(&mut self.core, ctx));
            ctx.stop();
        }
    }

    fn release(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let (Some(token), Some(fd)) = (self.core.token.take(), self.core.fd.as_ref()) {
            let raw = fd.as_raw_fd();
            let _ = ctx.deregister_io(&mut SourceFd(&raw), token);
        }
        self.core.fd = None;
        if let Some(file) = self.core.file.take() {
            file.remove();
        }
    }

    fn owe_ready(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if std::mem::take(&mut self.core.owed_ready) {
            self.protocol
                .send_ready(&mut Self::dgram(&mut self.core, ctx))?;
            self.settle(ctx);
        }
        Ok(())
    }
}

impl<P: DatagramProtocol> Actor for DatagramSocket<P> {
    type Msg = DgramMsg<P::Msg>;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let raw = self
            .core
            .fd
            .as_ref()
            .ok_or("a datagram socket without a descriptor")?
            .as_raw_fd();
        let token = ctx.register_io(
            &mut SourceFd(&raw),
            Interest::READABLE | Interest::WRITABLE,
            |r| DgramMsg(Event::Io(r)),
        )?;
        self.core.token = Some(token);
        self.protocol.bound(&mut Self::dgram(&mut self.core, ctx))?;
        self.settle(ctx);
        Ok(())
    }

    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.core.fd.is_none() {
            return Ok(());
        }
        match msg.0 {
            Event::Io(r) => {
                if r.is_writable() {
                    self.owe_ready(ctx)?;
                }
                if r.is_readable() || r.is_error() {
                    self.core.readable = true;
                    self.read_some(ctx)?;
                }
            }
            Event::ReadMore => {
                if self.core.readable {
                    self.read_some(ctx)?;
                }
            }
            Event::Retry => {
                self.core.retry_armed = false;
                self.owe_ready(ctx)?;
            }
            Event::User(m) => {
                self.protocol
                    .message(&mut Self::dgram(&mut self.core, ctx), m)?;
                self.settle(ctx);
            }
            Event::Close => {
                self.core.closing = true;
                self.settle(ctx);
            }
        }
        Ok(())
    }

    fn stopped(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) {
        if self.core.fd.is_some() {
            self.release(ctx);
            self.protocol.closed(&mut Self::dgram(&mut self.core, ctx));
        }
    }
}

impl<P: DatagramProtocol> std::fmt::Debug for DatagramSocket<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramSocket")
            .field("local", &self.core.local)
            .finish_non_exhaustive()
    }
}

/// A datagram socket's address for other actors and threads.
pub struct DatagramRef<P: DatagramProtocol> {
    addr: Addr<DatagramSocket<P>>,
    local: Address,
    stats: Arc<DatagramStats>,
}

impl<P: DatagramProtocol> Clone for DatagramRef<P> {
    fn clone(&self) -> Self {
        DatagramRef {
            addr: self.addr.clone(),
            local: self.local.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<P: DatagramProtocol> DatagramRef<P> {
    /// Sends the protocol one of its messages.
    pub fn send(&self, msg: P::Msg) -> Result<(), SendError<P::Msg>> {
        self.addr
            .send(DgramMsg(Event::User(msg)))
            .map_err(|e| match e {
                SendError::Full(DgramMsg(Event::User(m))) => SendError::Full(m),
                SendError::Stopped(DgramMsg(Event::User(m))) => SendError::Stopped(m),
                SendError::Timeout(DgramMsg(Event::User(m))) => SendError::Timeout(m),
                _ => unreachable!("only user messages are sent here"),
            })
    }

    /// Closes the socket (the protocol is told `closed`); false if it had
    /// already closed.
    pub fn close(&self) -> bool {
        self.addr.send(DgramMsg(Event::Close)).is_ok()
    }

    /// The socket's address.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// Its counters.
    pub fn stats(&self) -> &DatagramStats {
        &self.stats
    }

    /// The actor's address (to monitor or link it).
    pub fn addr(&self) -> &Addr<DatagramSocket<P>> {
        &self.addr
    }
}

impl<P: DatagramProtocol> std::fmt::Debug for DatagramRef<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramRef")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// `recvfrom` with `MSG_TRUNC`: the datagram's real length (more than
/// `buf` holds when it was cut) and its sender.
fn recv_from(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> Result<(usize, socket2::SockAddr), nix::errno::Errno> {
    // SAFETY: `try_init` hands a zeroed sockaddr_storage and its length;
    // `recvfrom` writes at most that much address and at most
    // `buf.len()` bytes into `buf`, which is exclusively borrowed.
    let got = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let n = nix::libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                nix::libc::MSG_TRUNC,
                storage.cast(),
                len,
            );
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    };
    got.map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// The OS's sender address as weft's (`None` when it gave none).
fn to_address(addr: &socket2::SockAddr) -> Option<Address> {
    if let Some(inet) = addr.as_socket() {
        return Some(Address::Inet(inet));
    }
    if addr.domain() == Domain::UNIX {
        if let Some(path) = addr.as_pathname() {
            return Some(Address::Unix(UnixAddr::Path(path.to_path_buf())));
        }
        if let Some(name) = addr.as_abstract_namespace() {
            return Some(Address::Unix(UnixAddr::Abstract(name.to_vec())));
        }
        return Some(Address::Unix(UnixAddr::Unnamed));
    }
    None
}

/// Spawns the actor for a bound (or adopted) socket.
pub(crate) fn spawn_socket<P: DatagramProtocol>(
    handle: &Handle,
    fd: OwnedFd,
    peer: Option<Address>,
    file: Option<SocketFile>,
    options: DatagramOptions,
    protocol: P,
) -> io::Result<DatagramRef<P>> {
    let sock = SockRef::from(&fd);
    sock.set_nonblocking(true)?;
    let local = sock.local_addr()?;
    let unix = local.domain() == Domain::UNIX;
    let local = if unix {
        Address::Unix(
            local
                .as_unix()
                .map(|a| UnixAddr::from_std(&a))
                .unwrap_or(UnixAddr::Unnamed),
        )
    } else {
        Address::Inet(local.as_socket().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an internet or UNIX socket",
            )
        })?)
    };
    let stats = Arc::new(DatagramStats::default());
    let capacity = options.capacity;
    let actor = DatagramSocket {
        protocol,
        core: Core {
            fd: Some(fd),
            token: None,
            unix,
            local: local.clone(),
            peer,
            opts: options,
            stats: stats.clone(),
            owed_ready: false,
            retry_armed: false,
            retry_delay: RETRY,
            readable: false,
            closing: false,
            file,
        },
    };
    let addr = handle
        .spawn_with(actor, weft_actors::SpawnOptions::new().capacity(capacity))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(DatagramRef { addr, local, stats })
}

/// Binds a UNIX datagram socket to `addr` (a path, an abstract name, or
/// `UnixAddr::Unnamed` for an unbound one that can only send and receive
/// replies to nothing) and runs `protocol` on it (Twisted's
/// `listenUNIXDatagram`). A stale socket file at the path is replaced, a
/// live one is an error; the file is removed when the socket closes.
///
/// ```no_run
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{listen_unix_datagram, DatagramOptions, DatagramProtocol, Dgram};
/// use weft_io::{Address, UnixAddr};
///
/// struct Log;
/// impl DatagramProtocol for Log {
///     type Msg = ();
///     fn datagram(&mut self, _sock: &mut Dgram<'_, '_, Self>, data: &[u8], from: &Address) -> ActorResult {
///         println!("{from}: {}", String::from_utf8_lossy(data));
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let sock = listen_unix_datagram(rt.handle(), UnixAddr::path("/tmp/log.sock"),
///                                 DatagramOptions::new(), Log).unwrap();
/// rt.run().unwrap();
/// ```
pub fn listen_unix_datagram<P: DatagramProtocol>(
    handle: &Handle,
    addr: impl Into<UnixAddr>,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, ListenError> {
    let addr = addr.into();
    let bind_err = |source| ListenError::Bind {
        addr: Address::Unix(addr.clone()),
        source,
    };
    let (fd, file) = bind_unix_datagram(&addr, options.unix_mode).map_err(bind_err)?;
    spawn_socket(handle, fd, None, file, options, protocol).map_err(bind_err)
}

/// A UNIX datagram socket connected to `peer` (bound to `local`, or
/// unbound with `UnixAddr::Unnamed`) running `protocol` (Twisted's
/// `connectUNIXDatagram`): `Dgram::send` goes to the peer. Nothing
/// receiving at `peer` is an error here.
pub fn connect_unix_datagram<P: DatagramProtocol>(
    handle: &Handle,
    peer: impl Into<UnixAddr>,
    local: impl Into<UnixAddr>,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, ListenError> {
    let peer = peer.into();
    let local = local.into();
    let err = |addr: &UnixAddr| {
        let addr = Address::Unix(addr.clone());
        move |source| ListenError::Bind { addr, source }
    };
    let (fd, file) = bind_unix_datagram(&local, options.unix_mode).map_err(err(&local))?;
    let target = peer.to_sockaddr().map_err(err(&peer))?;
    SockRef::from(&fd).connect(&target).map_err(err(&peer))?;
    spawn_socket(
        handle,
        fd,
        Some(Address::Unix(peer.clone())),
        file,
        options,
        protocol,
    )
    .map_err(err(&peer))
}

/// A UNIX datagram socket bound to `addr` (unbound for `Unnamed`), with
/// the stale-file and mode rules of stream listeners.
fn bind_unix_datagram(
    addr: &UnixAddr,
    mode: Option<u32>,
) -> io::Result<(OwnedFd, Option<SocketFile>)> {
    let sock = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    if *addr == UnixAddr::Unnamed {
        return Ok((sock.into(), None));
    }
    let sockaddr = addr.to_sockaddr()?;
    match (sock.bind(&sockaddr), addr.as_path()) {
        (Ok(()), _) => {}
        (Err(e), Some(path)) if e.kind() == io::ErrorKind::AddrInUse => {
            crate::unix::check_stale(path, &sockaddr, Type::DGRAM)?;
            sock.bind(&sockaddr)?;
        }
        (Err(e), _) => return Err(e),
    }
    let file = crate::unix::socket_file(addr, mode)?;
    Ok((sock.into(), file))
}

/// Adopts a datagram socket, UNIX or UDP (Twisted's
/// `adoptDatagramPort`): weft runs `protocol` on its own duplicate (the
/// caller keeps the descriptor); anything but a datagram socket is an
/// [`AdoptError`](crate::AdoptError).
pub fn adopt_datagram<P: DatagramProtocol>(
    handle: &Handle,
    fd: impl AsFd,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, crate::AdoptError> {
    let raw = fd.as_fd().as_raw_fd();
    let sock = SockRef::from(&fd);
    let ty = sock.r#type().map_err(|e| match e.raw_os_error() {
        Some(nix::libc::ENOTSOCK) => crate::AdoptError::NotSocket { fd: raw },
        _ => crate::AdoptError::Invalid { fd: raw, source: e },
    })?;
    if ty != Type::DGRAM {
        return Err(crate::AdoptError::WrongKind {
            fd: raw,
            found: "a stream socket".into(),
            expected: "a datagram socket",
        });
    }
    let own = fd
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| crate::AdoptError::Invalid { fd: raw, source })?;
    let peer = SockRef::from(&own).peer_addr().ok().and_then(|a| {
        a.as_socket()
            .map(Address::Inet)
            .or_else(|| a.as_unix().map(|u| Address::Unix(UnixAddr::from_std(&u))))
    });
    spawn_socket(handle, own, peer, None, options, protocol)
        .map_err(|source| crate::AdoptError::Invalid { fd: raw, source })
}
