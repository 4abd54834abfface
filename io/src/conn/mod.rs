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
//!
//! Files: `options.rs` (ConnOptions, WriteError), `core.rs` (transport,
//! flags, write buffer), `handle.rs` (Conn, ConnRef, ConnMsg), and here
//! the actor itself.

use std::cell::Cell as StdCell;
use std::io;

use weft_actors::{Actor, ActorResult, Ctx, ExitReason, Stopping};
use weft_runtime::mio::Interest;
use weft_runtime::Readiness;

use crate::connect::{ConnectError, ConnectState};
use crate::protocol::{exit_reason, CloseReason, Protocol};
use crate::transport::Transport;

mod core;
mod handle;
#[cfg(not(feature = "tls"))]
mod no_tls;
mod options;
#[cfg(feature = "tls")]
mod tls;

use self::core::Closing;
pub(crate) use self::core::Core;
pub(crate) use handle::Event;
pub use handle::{Conn, ConnMsg, ConnRef};
#[cfg(not(feature = "tls"))]
pub(crate) use no_tls::{Handshake, TlsLayer};
pub use options::{ConnOptions, WriteError};
#[cfg(feature = "tls")]
pub(crate) use tls::Handshake;

/// Protocol callbacks (paused, resumed, drained) one `settle` makes at
/// most; a pull producer that wants more continues on the next turn.
const SETTLE_ROUNDS: usize = 4;

/// Size of the per-thread read buffer (one read's most).
pub(crate) const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    static READ_BUF: StdCell<Option<Box<[u8]>>> = const { StdCell::new(None) };
}

/// The calling thread's read buffer (taken: a nested use gets a new one).
pub(crate) fn take_buf() -> Box<[u8]> {
    READ_BUF
        .with(|b| b.take())
        .unwrap_or_else(|| vec![0u8; READ_CHUNK].into_boxed_slice())
}

/// Gives the read buffer back for the thread's next read.
pub(crate) fn put_buf(buf: Box<[u8]>) {
    READ_BUF.with(|b| b.set(Some(buf)));
}

/// The actor that runs one connection's [`Protocol`]. Built by listeners
/// and `connect_tcp`; users see it only as the type behind [`ConnRef`].
pub struct Connection<P: Protocol> {
    pub(crate) protocol: P,
    pub(crate) core: Core,
    pub(crate) phase: Phase<P>,
}

/// Where a connection is in its life; every message is dispatched on it
/// once (`Actor::handle`), so no handler asks "still connecting?".
pub(crate) enum Phase<P: Protocol> {
    /// `connect_tcp` has not opened it yet (see `connect.rs`).
    Connecting(Box<ConnectState<P>>),
    /// Connected, with the TLS handshake of `listen_tls` or `connect_tls`
    /// under way: the protocol is not called yet (see `tls.rs`). Never
    /// without the `tls` feature.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Handshaking(Box<Handshake<P>>),
    /// Open (or closed and stopping): the protocol runs.
    Open,
}

impl<P: Protocol> Connection<P> {
    pub(crate) fn new(protocol: P, core: Core) -> Self {
        Connection {
            protocol,
            core,
            phase: Phase::Open,
        }
    }

    fn is_connecting(&self) -> bool {
        !matches!(self.phase, Phase::Open)
    }

    /// Registers the transport and tells the protocol it is connected.
    pub(crate) fn open(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.attach(ctx)?;
        self.protocol.connected(&mut Conn {
            core: &mut self.core,
            ctx,
        })?;
        self.settle(ctx)
    }

    /// Registers the transport, applies the socket options and arms the
    /// idle timeout; the protocol is not called.
    pub(crate) fn attach(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let core = &mut self.core;
        match &mut core.io {
            // Registered while connecting.
            Transport::Tcp(_) | Transport::Unix(_) if core.token.is_some() => {}
            io @ (Transport::Tcp(_) | Transport::Unix(_)) => {
                let source = io.source().expect("a socket");
                let token =
                    ctx.register_io(source, Interest::READABLE | Interest::WRITABLE, |r| {
                        ConnMsg(Event::Io(r))
                    })?;
                core.token = Some(token);
            }
            Transport::Memory(end) => {
                end.attach(ctx.ready_sink(|r| ConnMsg(Event::Io(r))));
            }
            Transport::Sim(end) => {
                end.attach(ctx.ready_sink(|r| ConnMsg(Event::Io(r))));
            }
            Transport::Closed => return Err("connection has no transport".into()),
        }
        if let Transport::Unix(u) = &mut core.io {
            u.take_fds = P::RECEIVES_FDS;
        }
        let _ = core.io.set_nodelay(core.opts.nodelay);
        if let Some(idle) = core.opts.keepalive {
            let _ = core.io.set_keepalive(Some(idle));
        }
        core.writable = true;
        if let Some(idle) = core.idle {
            core.last_active = ctx.runtime().now();
            ctx.send_later(idle, ConnMsg(Event::IdleCheck(core.idle_gen)));
        }
        Ok(())
    }

    fn conn<'a, 'c>(core: &'a mut Core, ctx: &'a mut Ctx<'c, Self>) -> Conn<'a, 'c, P> {
        Conn { core, ctx }
    }

    /// Records activity for the idle timeout: one clock read per message
    /// at most (a read and the flush after it are one moment).
    fn touch(&mut self, ctx: &Ctx<'_, Self>) {
        if self.core.idle.is_some() && !self.core.touched {
            self.core.last_active = ctx.runtime().now();
            self.core.touched = true;
        }
    }

    /// After a callback: flush, tell the protocol about watermarks and a
    /// drained buffer, carry out a requested abort, half-close or close.
    ///
    /// An abort requested by any callback (including the ones called here)
    /// ends the connection with a reset at once, and no protocol callback
    /// but `closed` follows it.
    pub(crate) fn settle(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let mut rounds = 0;
        loop {
            if self.core.io.is_closed() {
                return Ok(());
            }
            if self.core.closing == Closing::Abort {
                self.finish(CloseReason::Aborted, Ending::Abort, ctx);
                return Ok(());
            }
            self.core.pump_tls();
            if self.core.buffered() > 0 && self.core.writable && !self.core.can_defer_flush() {
                let before = self.core.buffered();
                if let Err(e) = self.core.flush() {
                    let reason = self.core.write_failed(&e);
                    self.finish(reason, Ending::Drop, ctx);
                    return Ok(());
                }
                if self.core.buffered() < before {
                    self.touch(ctx);
                }
            }
            let buffered = self.core.buffered();
            if self.core.paused_seen.take() && buffered <= self.core.opts.high_water {
                // The producer saw "paused" and stopped, but the flush
                // drained the buffer before `write_paused` was due: it is
                // owed a "resumed", which the watermark logic below gives.
                self.core.write_paused = true;
            }
            let drained = buffered == 0
                && self.core.drain_wanted
                && self.core.closing == Closing::No
                && !self.core.shut_pending;
            if !matches!(self.phase, Phase::Open) {
                // Handshaking: the protocol is not told anything yet.
                break;
            }
            if rounds == SETTLE_ROUNDS {
                if drained {
                    // A pull producer that the socket keeps up with: give
                    // other actors a turn, then let it produce again.
                    ctx.send_self(ConnMsg(Event::Settle));
                }
                break;
            }
            rounds += 1;
            let conn = &mut Self::conn(&mut self.core, ctx);
            if !conn.core.write_paused && buffered > conn.core.opts.high_water {
                conn.core.write_paused = true;
                self.protocol.write_paused(conn);
            } else if conn.core.write_paused && buffered <= conn.core.opts.low_water {
                conn.core.write_paused = false;
                self.protocol.write_resumed(conn);
            } else if drained {
                conn.core.drain_wanted = false;
                self.protocol.write_drained(conn);
            } else {
                break;
            }
        }
        if self.core.kick_read {
            self.core.kick_read = false;
            if self.core.readable {
                ctx.send_self(ConnMsg(Event::ReadMore));
            }
        }
        if self.core.buffered() == 0 && self.send_tls_close() {
            // close_notify goes out before the FIN.
            return self.settle(ctx);
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
    pub(crate) fn read_some(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.core.tls.is_some() {
            return self.read_some_tls(ctx);
        }
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
                    if let Some((fds, truncated)) = self.core.io.take_fds() {
                        self.fds_received(fds, truncated, ctx)?;
                        if self.core.closing == Closing::Abort {
                            break;
                        }
                    }
                    self.protocol
                        .data(&mut Self::conn(&mut self.core, ctx), &buf[..n])?;
                    if self.core.tls.is_some() {
                        // `start_tls`: what follows is TLS (read by
                        // `read_some_tls` once settled).
                        break;
                    }
                    self.settle(ctx)?;
                    budget = budget.saturating_sub(n);
                    if ctx.is_muted() {
                        // The protocol's consumer is full: read no more
                        // until it catches up (the actor is muted until
                        // then; this message waits behind the held send).
                        if self.core.can_read() {
                            ctx.send_self(ConnMsg(Event::ReadMore));
                        }
                        break;
                    }
                    if budget == 0 {
                        if self.core.can_read() {
                            ctx.send_self(ConnMsg(Event::ReadMore));
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

    /// Hands descriptors that came with a read to the protocol, then
    /// reports a truncation.
    fn fds_received(
        &mut self,
        fds: Vec<std::os::fd::OwnedFd>,
        truncated: bool,
        ctx: &mut Ctx<'_, Self>,
    ) -> ActorResult {
        let conn = &mut Self::conn(&mut self.core, ctx);
        if !fds.is_empty() {
            self.protocol.fds_received(conn, fds)?;
        }
        if truncated {
            tracing::warn!(conn = %conn.ctx.id(), "descriptors from the peer were truncated (MSG_CTRUNC)");
            self.protocol.fds_truncated(conn)?;
        }
        Ok(())
    }

    fn on_ready(&mut self, r: Readiness, ctx: &mut Ctx<'_, Self>) -> ActorResult {
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
                    let reason = self.core.write_failed(&e);
                    self.finish(reason, Ending::Drop, ctx);
                }
            }
        }
        Ok(())
    }

    /// A message once open: readiness, the protocol's own messages, timers,
    /// close and abort requests.
    fn handle_open(&mut self, msg: Event<P::Msg>, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            Event::Io(r) => self.on_ready(r, ctx)?,
            Event::ReadMore => {
                if self.core.can_read() {
                    self.read_some(ctx)?;
                }
            }
            Event::User(m) => self.deliver(m, ctx)?,
            Event::IdleCheck(generation) => self.on_idle_check(generation, ctx)?,
            Event::Close => {
                if self.core.closing == Closing::No {
                    self.core.closing = Closing::Clean;
                    self.settle(ctx)?;
                }
            }
            Event::Abort => self.finish(CloseReason::Aborted, Ending::Abort, ctx),
            Event::DrainTimeout => {
                if !self.core.io.is_closed() {
                    tracing::debug!(conn = %ctx.id(), "could not flush in time; aborting");
                    let reason = self.core.closing.reason();
                    self.finish(reason, Ending::Abort, ctx);
                }
            }
            Event::Settle => self.settle(ctx)?,
            // Late connecting-phase messages (a resolution or a timeout
            // that raced the connect): nothing to do once open.
            Event::Resolved(_) | Event::ConnectTimeout | Event::ConnectRetry => {}
            Event::HandshakeTimeout => {
                if self.core.tls.as_ref().is_some_and(|t| !t.is_ready()) {
                    self.tls_timed_out(ctx);
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
                ctx.send_later(self.core.opts.drain_timeout, ConnMsg(Event::DrainTimeout));
            }
        } else {
            ctx.send_later(idle - quiet, ConnMsg(Event::IdleCheck(generation)));
        }
        Ok(())
    }

    /// Ends the connection for `reason`: closes the transport as `how`
    /// says, tells the protocol, stops the actor.
    pub(crate) fn finish(&mut self, reason: CloseReason, how: Ending, ctx: &mut Ctx<'_, Self>) {
        if self.core.io.is_closed() {
            return;
        }
        if matches!(self.phase, Phase::Handshaking(_)) {
            // The protocol was never connected: it is not told `closed`.
            let addr = self.handshake_peer();
            let error = match reason {
                #[cfg(feature = "tls")]
                CloseReason::Tls(error) => ConnectError::Tls { addr, error },
                CloseReason::Aborted | CloseReason::Shutdown => ConnectError::Aborted,
                other => ConnectError::Io {
                    addr,
                    kind: io::ErrorKind::ConnectionAborted,
                    message: other.to_string(),
                },
            };
            return self.handshake_fail(error, how, ctx);
        }
        self.release(how, ctx);
        self.protocol
            .closed(&mut Self::conn(&mut self.core, ctx), &reason);
        // Sends the protocol made that are still held for a full mailbox
        // are delivered by the actor's exit, not dropped.
        ctx.stop_with(exit_reason(&reason));
    }

    /// Deregisters and closes the transport.
    fn release(&mut self, how: Ending, ctx: &mut Ctx<'_, Self>) {
        let core = &mut self.core;
        if let Some(token) = core.token.take() {
            if let Some(source) = core.io.source() {
                let _ = ctx.deregister_io(source, token);
            }
        }
        match how {
            Ending::Close => core.io.close(),
            Ending::Abort => core.io.abort(),
            Ending::Drop => core.io = Transport::Closed,
        }
        core.discard_output();
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
        match self.phase {
            Phase::Connecting(_) => self.connect_start(ctx),
            Phase::Handshaking(_) => self.handshake_start(ctx),
            Phase::Open => self.open(ctx),
        }
    }

    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.core.touched = false;
        match self.phase {
            Phase::Connecting(_) => self.handle_connecting(msg.0, ctx),
            Phase::Handshaking(_) => self.handle_handshaking(msg.0, ctx),
            Phase::Open => self.handle_open(msg.0, ctx),
        }
    }
    fn weigh(msg: &Self::Msg) -> usize {
        match &msg.0 {
            Event::User(m) => P::weigh(m),
            _ => 0,
        }
    }

    fn stopping(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) -> Stopping {
        if self.is_connecting() || self.core.io.is_closed() {
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
            ctx.send_later(self.core.opts.drain_timeout, ConnMsg(Event::DrainTimeout));
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

impl<P: Protocol> std::fmt::Debug for Connection<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("connecting", &self.is_connecting())
            .field("buffered", &self.core.buffered())
            .finish_non_exhaustive()
    }
}
