//! The connection actor: one actor per connection, running one
//! [`Protocol`], with its socket, its write buffer and its flow control.
//!
//! Owns: turning readiness into reads (on the worker that runs the actor,
//! up to a byte budget per turn), the write buffer with its watermarks,
//! pausing and resuming reads, half-close, close, abort, the idle timeout,
//! and the connection's share of its listener's statistics.
//!
//! Invariants:
//! * Edge-triggered readiness: `readable` / `writable` are cleared only by
//!   `WouldBlock` (or, for TCP on Linux, a short read, after which the
//!   kernel raises a new edge for any new data); a turn that stops reading
//!   with `readable` still set sends itself `ReadMore`, so no edge is lost.
//! * Nothing unbounded: a paused connection does not read (the kernel
//!   window closes and the peer slows down); the write buffer is bounded by
//!   `max_write_buffer` (a write past it is refused with an error value,
//!   never dropped silently); reads go through one per-thread buffer.
//! * The socket is closed and deregistered exactly once: in `finish`, or
//!   in `stopped` when the actor exits for any other reason (a panic).
//!
//! Must not touch: the listener's accept loop or the supervisor's state.

use std::cell::Cell as StdCell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weft_actors::{
    Actor, ActorId, ActorResult, Addr, Ctx, ExitReason, Recipient, SendError, Stopping, TimerHandle,
};
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, IoToken, Readiness};

use crate::connect::ConnectState;
use crate::listener::Shared;
use crate::protocol::{exit_reason, CloseReason, Protocol};
use crate::transport::Transport;

/// Size of the per-thread read buffer (one read's most).
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// A write of at least this many bytes goes straight to an empty socket
/// buffer instead of being copied into the write buffer first.
const DIRECT_WRITE: usize = 16 * 1024;
/// An empty write buffer whose capacity is above this gives it back.
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    static READ_BUF: StdCell<Option<Box<[u8]>>> = const { StdCell::new(None) };
}

fn take_buf() -> Box<[u8]> {
    READ_BUF
        .with(|b| b.take())
        .unwrap_or_else(|| vec![0u8; READ_CHUNK].into_boxed_slice())
}

fn put_buf(buf: Box<[u8]>) {
    READ_BUF.with(|b| b.set(Some(buf)));
}

/// Options of a connection: TCP options, the idle timeout, write
/// watermarks, the read budget and how long a shutdown waits to flush.
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
    /// (reason [`CloseReason::IdleTimeout`]). Default: none.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Write watermarks: past `high` buffered bytes the protocol is told
    /// to pause ([`Protocol::write_paused`]), at or below `low` to resume.
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
}

/// A connection actor's message: one of the protocol's own messages, or
/// one of weft's (readiness, timers, close requests).
pub struct ConnMsg<M>(pub(crate) Inner<M>);

impl<M> ConnMsg<M> {
    /// Wraps a protocol message.
    pub fn user(msg: M) -> Self {
        ConnMsg(Inner::User(msg))
    }
}

pub(crate) enum Inner<M> {
    User(M),
    Io(Readiness),
    ReadMore,
    IdleCheck(u32),
    Close,
    Abort,
    DrainTimeout,
    Resolved(io::Result<Vec<SocketAddr>>),
    ConnectTimeout,
    Stop(ExitReason),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Closing {
    No,
    Clean,
    Idle,
    Shutdown,
    Abort,
}

impl Closing {
    fn reason(self) -> CloseReason {
        match self {
            Closing::Idle => CloseReason::IdleTimeout,
            Closing::Shutdown => CloseReason::Shutdown,
            Closing::Abort => CloseReason::Aborted,
            Closing::No | Closing::Clean => CloseReason::Clean,
        }
    }
}

/// Everything of a connection but its protocol (so both can be borrowed
/// at once).
pub(crate) struct Core {
    pub(crate) io: Transport,
    pub(crate) token: Option<IoToken>,
    wbuf: Vec<u8>,
    wpos: usize,
    pub(crate) opts: Arc<ConnOptions>,
    pub(crate) shared: Option<Arc<Shared>>,
    idle: Option<Duration>,
    last_active: Duration,
    idle_gen: u32,
    readable: bool,
    writable: bool,
    read_paused: bool,
    write_paused: bool,
    read_eof: bool,
    /// The reactor reported the read side closed (or an error): a short
    /// read no longer means drained, the end is still to be read.
    hup_seen: bool,
    shut_pending: bool,
    write_shut: bool,
    kick_read: bool,
    closing: Closing,
}

impl Core {
    pub(crate) fn new(io: Transport, opts: Arc<ConnOptions>, shared: Option<Arc<Shared>>) -> Self {
        Core {
            io,
            token: None,
            wbuf: Vec::new(),
            wpos: 0,
            idle: opts.idle_timeout,
            opts,
            shared,
            last_active: Duration::ZERO,
            idle_gen: 0,
            readable: false,
            writable: false,
            read_paused: false,
            write_paused: false,
            read_eof: false,
            hup_seen: false,
            shut_pending: false,
            write_shut: false,
            kick_read: false,
            closing: Closing::No,
        }
    }

    fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn can_read(&self) -> bool {
        self.readable
            && !self.read_paused
            && !self.read_eof
            && self.closing == Closing::No
            && !self.io.is_closed()
    }

    fn can_write(&self) -> bool {
        !self.io.is_closed() && self.closing == Closing::No && !self.shut_pending
    }

    /// Writes what is buffered until done or `WouldBlock`.
    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() && self.writable {
            match self.io.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wpos = 0;
            if self.wbuf.capacity() > KEEP_CAPACITY {
                self.wbuf = Vec::new();
            } else {
                self.wbuf.clear();
            }
        } else if self.wpos >= 4096 && self.wpos * 2 >= self.wbuf.len() {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    fn buffer(&mut self, parts: &[&[u8]]) -> Result<(), WriteError> {
        if !self.can_write() {
            return Err(WriteError::Closed);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let limit = self.opts.max_write_buffer.max(self.opts.high_water);
        let mut skip = 0;
        if self.buffered() == 0 && self.writable && len >= DIRECT_WRITE {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            match self.io.write_vectored(&slices) {
                Ok(n) => skip = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                // The error shows again on the next flush, where it closes
                // the connection; here the data is buffered as usual.
                Err(_) => {}
            }
        }
        if self.buffered() + len - skip > limit {
            if self.writable {
                let _ = self.flush();
            }
            if self.buffered() + len - skip > limit {
                return Err(WriteError::BufferFull {
                    buffered: self.buffered(),
                    limit,
                });
            }
        }
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.wbuf.extend_from_slice(&part[skip..]);
            skip = 0;
        }
        if let Some(shared) = &self.shared {
            shared.note_buffered(self.buffered());
        }
        Ok(())
    }
}

/// The handle a protocol uses for its connection, passed to every
/// callback: write, close, flow control, options, addresses, and the
/// actor context for everything else.
pub struct Conn<'a, 'c, P: Protocol> {
    pub(crate) core: &'a mut Core,
    pub(crate) ctx: &'a mut Ctx<'c, Connection<P>>,
}

impl<'c, P: Protocol> Conn<'_, 'c, P> {
    /// Queues `data`; it is sent when the callback returns (one write per
    /// turn, however many calls). Refused (nothing taken) when the write
    /// buffer would pass `max_write_buffer` or the connection is closing.
    pub fn write(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.core.buffer(&[data])
    }

    /// Queues several buffers at once (a header and a body without
    /// joining them first); large ones go to the socket in one `writev`.
    pub fn write_vectored(&mut self, parts: &[&[u8]]) -> Result<(), WriteError> {
        self.core.buffer(parts)
    }

    /// Bytes written but not yet accepted by the socket.
    pub fn buffered(&self) -> usize {
        self.core.buffered()
    }

    /// Whether the protocol should stop producing: the buffer is past the
    /// high watermark, or the protocol was told to pause and not yet to
    /// resume. A producer writing in a loop checks this between writes.
    pub fn is_write_paused(&self) -> bool {
        self.core.write_paused || self.core.buffered() > self.core.opts.high_water
    }

    /// Closes in order: what is buffered is sent, then the connection
    /// closes (Twisted's `loseConnection`). Reading stops now.
    pub fn close(&mut self) {
        if self.core.closing == Closing::No {
            self.core.closing = Closing::Clean;
        }
    }

    /// Closes now and discards what is buffered; the peer sees a reset.
    /// (Carried out when the callback returns.)
    pub fn abort(&mut self) {
        self.core.closing = Closing::Abort;
        self.core.wbuf = Vec::new();
        self.core.wpos = 0;
    }

    /// Shuts the write side once what is buffered is sent, and keeps
    /// reading (half-close). The connection ends when the peer ends too.
    pub fn shutdown_write(&mut self) {
        self.core.shut_pending = true;
    }

    /// Stops reading: the kernel's buffer fills and the peer slows down.
    pub fn pause_reading(&mut self) {
        self.core.read_paused = true;
    }

    /// Reads again after `pause_reading`.
    pub fn resume_reading(&mut self) {
        if self.core.read_paused {
            self.core.read_paused = false;
            self.core.kick_read = true;
        }
    }

    /// Whether reading is paused.
    pub fn is_reading_paused(&self) -> bool {
        self.core.read_paused
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&mut self, on: bool) -> io::Result<()> {
        self.core.io.set_nodelay(on)
    }

    /// Turns TCP keep-alive on (probes after `idle`) or off.
    pub fn set_keepalive(&mut self, idle: Option<Duration>) -> io::Result<()> {
        self.core.io.set_keepalive(idle)
    }

    /// The peer's address (an error once the connection is closed).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.core.io.peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.core.io.local_addr()
    }

    /// The idle timeout now in force.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.core.idle
    }

    /// Changes the idle timeout (counted from the last activity).
    pub fn set_idle_timeout(&mut self, d: Option<Duration>) {
        self.core.idle = d;
        self.core.idle_gen = self.core.idle_gen.wrapping_add(1);
        if let Some(d) = d {
            self.core.last_active = self.ctx.runtime().now();
            let generation = self.core.idle_gen;
            self.ctx
                .send_later(d, ConnMsg(Inner::IdleCheck(generation)));
        }
    }

    /// This connection's address (to give to other actors).
    pub fn address(&self) -> ConnRef<P> {
        ConnRef {
            addr: self.ctx.address(),
        }
    }

    /// Sends this protocol `msg` after `delay` (a timer as a message).
    pub fn send_later(&mut self, delay: Duration, msg: P::Msg) -> TimerHandle {
        self.ctx.send_later(delay, ConnMsg(Inner::User(msg)))
    }

    /// The runtime this connection runs on.
    pub fn runtime(&self) -> &Handle {
        self.ctx.runtime()
    }

    /// The connection actor's context: spawn, send with back-pressure,
    /// monitor, blocking work, and the rest of what an actor can do.
    pub fn ctx(&mut self) -> &mut Ctx<'c, Connection<P>> {
        self.ctx
    }
}

/// The address of a connection actor, for other actors and threads: send
/// the protocol its own messages, close or abort the connection.
pub struct ConnRef<P: Protocol> {
    addr: Addr<Connection<P>>,
}

impl<P: Protocol> Clone for ConnRef<P> {
    fn clone(&self) -> Self {
        ConnRef {
            addr: self.addr.clone(),
        }
    }
}

impl<P: Protocol> std::fmt::Debug for ConnRef<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnRef({:?})", self.addr.id())
    }
}

impl<P: Protocol> ConnRef<P> {
    pub(crate) fn new(addr: Addr<Connection<P>>) -> Self {
        ConnRef { addr }
    }

    /// Sends the protocol one of its messages. Never blocks: a full
    /// mailbox or a closed connection hands the message back.
    pub fn send(&self, msg: P::Msg) -> Result<(), SendError<P::Msg>> {
        self.addr
            .send(ConnMsg(Inner::User(msg)))
            .map_err(|e| match e {
                SendError::Full(m) => SendError::Full(user(m)),
                SendError::Stopped(m) => SendError::Stopped(user(m)),
                SendError::Timeout(m) => SendError::Timeout(user(m)),
            })
    }

    /// Asks the connection to close in order (flush, then close). False
    /// if it has already ended.
    pub fn close(&self) -> bool {
        match self.addr.send(ConnMsg(Inner::Close)) {
            Ok(()) => true,
            // A full mailbox: the stop request is never refused, and the
            // connection answers it by closing in order too.
            Err(SendError::Full(_)) => self.addr.stop_with(ExitReason::Shutdown),
            Err(_) => false,
        }
    }

    /// Closes the connection at once, discarding what is buffered.
    pub fn abort(&self) -> bool {
        match self.addr.send(ConnMsg(Inner::Abort)) {
            Ok(()) => true,
            Err(SendError::Full(_)) => self.addr.kill(),
            Err(_) => false,
        }
    }

    /// The connection actor's id.
    pub fn id(&self) -> ActorId {
        self.addr.id()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.addr.is_stopped()
    }

    /// The connection actor's address.
    pub fn addr(&self) -> &Addr<Connection<P>> {
        &self.addr
    }

    /// A type-erased address for the protocol's messages.
    pub fn recipient(&self) -> Recipient<P::Msg> {
        self.addr.recipient_map(ConnMsg::user)
    }
}

fn user<M>(m: ConnMsg<M>) -> M {
    match m.0 {
        Inner::User(m) => m,
        _ => unreachable!("only user messages are sent through ConnRef::send"),
    }
}

/// The actor that runs one connection's [`Protocol`]. Built by listeners
/// and `connect_tcp`; users see it only as the type behind [`ConnRef`].
pub struct Connection<P: Protocol> {
    pub(crate) protocol: P,
    pub(crate) core: Core,
    pub(crate) connecting: Option<Box<ConnectState<P>>>,
}

impl<P: Protocol> Connection<P> {
    pub(crate) fn new(protocol: P, core: Core) -> Self {
        Connection {
            protocol,
            core,
            connecting: None,
        }
    }

    /// Registers the transport and tells the protocol it is connected.
    pub(crate) fn open(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let core = &mut self.core;
        match &mut core.io {
            // Registered while connecting.
            Transport::Tcp(_) if core.token.is_some() => {}
            Transport::Tcp(stream) => {
                let token =
                    ctx.register_io(stream, Interest::READABLE | Interest::WRITABLE, |r| {
                        ConnMsg(Inner::Io(r))
                    })?;
                core.token = Some(token);
            }
            Transport::Memory(end) => {
                end.attach(ctx.ready_sink(|r| ConnMsg(Inner::Io(r))));
            }
            Transport::Closed => return Err("connection has no transport".into()),
        }
        let _ = core.io.set_nodelay(core.opts.nodelay);
        if let Some(idle) = core.opts.keepalive {
            let _ = core.io.set_keepalive(Some(idle));
        }
        core.writable = true;
        if let Some(idle) = core.idle {
            core.last_active = ctx.runtime().now();
            ctx.send_later(idle, ConnMsg(Inner::IdleCheck(core.idle_gen)));
        }
        self.protocol.connected(&mut Conn {
            core: &mut self.core,
            ctx,
        })?;
        self.settle(ctx)
    }

    fn conn<'a, 'c>(core: &'a mut Core, ctx: &'a mut Ctx<'c, Self>) -> Conn<'a, 'c, P> {
        Conn { core, ctx }
    }

    fn touch(&mut self, ctx: &Ctx<'_, Self>) {
        if self.core.idle.is_some() {
            self.core.last_active = ctx.runtime().now();
        }
    }

    /// After a callback: flush, tell the protocol about watermarks, carry
    /// out a requested half-close or close.
    fn settle(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.core.io.is_closed() {
            return Ok(());
        }
        if self.core.closing == Closing::Abort {
            self.finish(CloseReason::Aborted, Ending::Abort, ctx);
            return Ok(());
        }
        for _ in 0..4 {
            if self.core.buffered() > 0 && self.core.writable {
                let before = self.core.buffered();
                if let Err(e) = self.core.flush() {
                    self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
                    return Ok(());
                }
                if self.core.buffered() < before {
                    self.touch(ctx);
                }
            }
            let buffered = self.core.buffered();
            if !self.core.write_paused && buffered > self.core.opts.high_water {
                self.core.write_paused = true;
                self.protocol
                    .write_paused(&mut Self::conn(&mut self.core, ctx));
            } else if self.core.write_paused && buffered <= self.core.opts.low_water {
                self.core.write_paused = false;
                self.protocol
                    .write_resumed(&mut Self::conn(&mut self.core, ctx));
            } else {
                break;
            }
        }
        if self.core.kick_read {
            self.core.kick_read = false;
            if self.core.readable {
                ctx.send_self(ConnMsg(Inner::ReadMore));
            }
        }
        if self.core.buffered() == 0 {
            if self.core.closing != Closing::No {
                let reason = self.core.closing.reason();
                self.finish(reason, Ending::Close, ctx);
            } else if self.core.shut_pending && !self.core.write_shut {
                self.core.write_shut = true;
                if let Err(e) = self.core.io.shutdown_write() {
                    self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
                } else if self.core.read_eof {
                    self.finish(CloseReason::Clean, Ending::Close, ctx);
                }
            }
        }
        Ok(())
    }

    /// Reads up to the budget, handing each chunk to the protocol.
    fn read_some(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let mut budget = self.core.opts.read_budget;
        let mut buf = take_buf();
        while self.core.can_read() {
            match self.core.io.read(&mut buf) {
                Ok(0) => {
                    self.core.read_eof = true;
                    self.core.readable = false;
                    self.touch(ctx);
                    self.protocol
                        .read_closed(&mut Self::conn(&mut self.core, ctx))?;
                    if self.core.write_shut && self.core.closing == Closing::No {
                        self.finish(CloseReason::Clean, Ending::Close, ctx);
                    }
                    break;
                }
                Ok(n) => {
                    if n < buf.len() && !self.core.hup_seen && self.core.io.short_read_drains() {
                        self.core.readable = false;
                    }
                    self.touch(ctx);
                    self.protocol
                        .data(&mut Self::conn(&mut self.core, ctx), &buf[..n])?;
                    self.settle(ctx)?;
                    budget = budget.saturating_sub(n);
                    if ctx.is_muted() {
                        // The protocol's consumer is full: read no more
                        // until it catches up (the actor is muted until
                        // then; this message waits behind the held send).
                        if self.core.can_read() {
                            ctx.send_self(ConnMsg(Inner::ReadMore));
                        }
                        break;
                    }
                    if budget == 0 {
                        if self.core.can_read() {
                            ctx.send_self(ConnMsg(Inner::ReadMore));
                        }
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.core.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
                    break;
                }
            }
        }
        put_buf(buf);
        self.settle(ctx)
    }

    fn on_ready(&mut self, r: Readiness, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.connecting.is_some() {
            return self.connect_ready(r, ctx);
        }
        if self.core.io.is_closed() {
            return Ok(());
        }
        if r.is_writable() || r.is_write_closed() || r.is_error() {
            self.core.writable = true;
            self.settle(ctx)?;
        }
        if r.is_readable() || r.is_read_closed() || r.is_error() {
            self.core.readable = true;
            if r.is_read_closed() || r.is_error() {
                self.core.hup_seen = true;
            }
            if self.core.can_read() {
                self.read_some(ctx)?;
            } else if r.is_error() {
                // Not reading (paused or closing): the error still ends
                // the connection now rather than when reading resumes.
                if let Ok(Some(e)) = self.core.io.take_error() {
                    self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
                }
            }
        }
        Ok(())
    }

    /// Hands the protocol one of its messages (dropped once closed).
    pub(crate) fn deliver(&mut self, msg: P::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.core.io.is_closed() {
            return Ok(());
        }
        self.protocol
            .message(&mut Self::conn(&mut self.core, ctx), msg)?;
        self.settle(ctx)
    }

    fn on_idle_check(&mut self, generation: u32, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if generation != self.core.idle_gen || self.core.io.is_closed() {
            return Ok(());
        }
        let Some(idle) = self.core.idle else {
            return Ok(());
        };
        let quiet = ctx.runtime().now().saturating_sub(self.core.last_active);
        if quiet >= idle {
            tracing::debug!(conn = %ctx.id(), "idle timeout");
            self.core.closing = Closing::Idle;
            self.core.read_paused = true;
            self.settle(ctx)?;
            if !self.core.io.is_closed() {
                ctx.send_later(self.core.opts.drain_timeout, ConnMsg(Inner::DrainTimeout));
            }
        } else {
            ctx.send_later(idle - quiet, ConnMsg(Inner::IdleCheck(generation)));
        }
        Ok(())
    }

    /// Ends the connection for `reason`: closes the transport as `how`
    /// says, tells the protocol, stops the actor.
    pub(crate) fn finish(&mut self, reason: CloseReason, how: Ending, ctx: &mut Ctx<'_, Self>) {
        if self.core.io.is_closed() {
            return;
        }
        self.release(how, ctx);
        self.protocol
            .closed(&mut Self::conn(&mut self.core, ctx), &reason);
        if ctx.is_muted() {
            // Sends are held for a full mailbox: stopping now would drop
            // them. A muted actor handles no message until they are
            // delivered, so this one stops it right after.
            ctx.send_self(ConnMsg(Inner::Stop(exit_reason(&reason))));
        } else {
            ctx.stop_with(exit_reason(&reason));
        }
    }

    /// Deregisters and closes the transport.
    fn release(&mut self, how: Ending, ctx: &mut Ctx<'_, Self>) {
        let core = &mut self.core;
        if let (Some(token), Transport::Tcp(stream)) = (core.token.take(), &mut core.io) {
            let _ = ctx.deregister_io(stream, token);
        }
        match how {
            Ending::Close => core.io.close(),
            Ending::Abort => core.io.abort(),
            Ending::Drop => core.io = Transport::Closed,
        }
        core.wbuf = Vec::new();
        core.wpos = 0;
    }
}

/// How `finish` closes the transport.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ending {
    /// In order (FIN after the data).
    Close,
    /// With a reset.
    Abort,
    /// It already failed: just drop it.
    Drop,
}

impl<P: Protocol> Actor for Connection<P> {
    type Msg = ConnMsg<P::Msg>;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.connecting.is_some() {
            return self.connect_start(ctx);
        }
        self.open(ctx)
    }

    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg.0 {
            Inner::Io(r) => self.on_ready(r, ctx)?,
            Inner::ReadMore => {
                if self.core.can_read() {
                    self.read_some(ctx)?;
                }
            }
            Inner::User(m) => {
                if let Some(connecting) = &mut self.connecting {
                    connecting.held.push(m);
                } else {
                    self.deliver(m, ctx)?;
                }
            }
            Inner::IdleCheck(generation) => self.on_idle_check(generation, ctx)?,
            Inner::Close => {
                if self.connecting.is_some() {
                    self.connect_fail(crate::ConnectError::Aborted, ctx);
                } else if self.core.closing == Closing::No {
                    self.core.closing = Closing::Clean;
                    self.settle(ctx)?;
                }
            }
            Inner::Abort => {
                if self.connecting.is_some() {
                    self.connect_fail(crate::ConnectError::Aborted, ctx);
                } else {
                    self.finish(CloseReason::Aborted, Ending::Abort, ctx);
                }
            }
            Inner::DrainTimeout => {
                if !self.core.io.is_closed() {
                    tracing::debug!(conn = %ctx.id(), "could not flush in time; aborting");
                    let reason = self.core.closing.reason();
                    self.finish(reason, Ending::Abort, ctx);
                }
            }
            Inner::Resolved(result) => self.connect_resolved(result, ctx),
            Inner::Stop(reason) => ctx.stop_with(reason),
            Inner::ConnectTimeout => {
                if self.connecting.is_some() {
                    self.connect_fail(crate::ConnectError::TimedOut, ctx);
                }
            }
        }
        Ok(())
    }

    fn stopping(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) -> Stopping {
        if self.connecting.is_some() || self.core.io.is_closed() {
            return Stopping::Stop;
        }
        if self.core.closing == Closing::Shutdown {
            return Stopping::Continue;
        }
        self.core.closing = Closing::Shutdown;
        self.core.read_paused = true;
        if self.settle(ctx).is_err() {
            return Stopping::Stop;
        }
        if !self.core.io.is_closed() {
            ctx.send_later(self.core.opts.drain_timeout, ConnMsg(Inner::DrainTimeout));
        }
        // `finish` (now or once flushed) stops the actor.
        Stopping::Continue
    }

    fn stopped(&mut self, reason: &ExitReason, ctx: &mut Ctx<'_, Self>) {
        if !self.core.io.is_closed() {
            // The protocol failed (or the actor was killed): no flush; the
            // peer sees a reset, which says the conversation broke off.
            if matches!(reason, ExitReason::Panic(_) | ExitReason::Error(_)) {
                tracing::warn!(conn = %ctx.id(), %reason, "connection handler failed; connection reset");
            }
            self.release(Ending::Abort, ctx);
        }
        if let Some(shared) = &self.core.shared {
            shared.connection_ended(matches!(
                reason,
                ExitReason::Panic(_) | ExitReason::Error(_)
            ));
        }
    }
}
