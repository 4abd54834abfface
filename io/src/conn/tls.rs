//! The connection actor's TLS parts: the handshake phase of `listen_tls`
//! and `connect_tls` (the protocol is called only once it completes),
//! reading through TLS, a handshake completing or failing, and the
//! close_notify sent before the FIN.
//!
//! Invariants:
//! * Plaintext is handed to the protocol before more ciphertext is read
//!   (rustls never holds more than one read's worth), and a paused or
//!   muted protocol stops both.
//! * Reading stops at `WouldBlock`, or (TCP on Linux, as for plain TCP)
//!   once the socket gave rustls less than it asked for, but only after
//!   the plaintext rustls holds went to the protocol: a short socket read
//!   says the socket is drained, not that rustls is. The short read is
//!   only trusted within the loop that saw it (a later turn may follow a
//!   new edge), and only for a small read (under 2 KiB).
//! * Writes made during a read loop gather in the write buffer (below
//!   64 KiB and the high watermark, `Core::coalesce`) and are flushed when
//!   the loop ends, so the replies to several records leave together.
//! * A failed handshake never reaches the protocol: `connect_tls` gets a
//!   [`ConnectError`], an accepted connection just ends; after the
//!   handshake, a TLS failure is the [`CloseReason`] given to `closed`.
//!
//! Must not touch: rustls' record handling (`tls/layer.rs` wraps it).

use std::io;

use weft_actors::{ActorResult, Ctx, ExitReason, ReplyTo, TimerHandle};

use super::{put_buf, take_buf, Closing, Conn, ConnMsg, ConnRef, Connection, Ending, Event, Phase};
use crate::connect::ConnectError;
use crate::protocol::{CloseReason, Protocol};
use crate::tls::TlsError;

type Reply<P> = ReplyTo<Result<ConnRef<P>, ConnectError>>;

/// A connection whose protocol waits for the TLS handshake.
pub(crate) struct Handshake<P: Protocol> {
    /// `connect_tls`'s waiter, told when the handshake completes or fails.
    pub(crate) reply: Option<Reply<P>>,
    /// Protocol messages that arrived before the protocol was connected.
    pub(crate) held: Vec<P::Msg>,
    /// The handshake (or connect) timeout.
    pub(crate) timer: Option<TimerHandle>,
    /// The peer, for error values.
    pub(crate) peer: Option<crate::addr::Address>,
}

impl<P: Protocol> Handshake<P> {
    /// An accepted connection's handshake (nobody waits for it).
    pub(crate) fn accepted() -> Self {
        Handshake {
            reply: None,
            held: Vec::new(),
            timer: None,
            peer: None,
        }
    }
}

fn eof_in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the connection during the TLS handshake",
    )
}

impl<P: Protocol> Connection<P> {
    /// An accepted TLS connection starts: register, arm the handshake
    /// timeout, and read the ClientHello if it is already there.
    pub(crate) fn handshake_start(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.attach(ctx)?;
        if let Phase::Handshaking(h) = &mut self.phase {
            if h.timer.is_none() {
                h.timer = Some(ctx.send_later(
                    self.core.opts.handshake_timeout,
                    ConnMsg(Event::HandshakeTimeout),
                ));
            }
        }
        self.core.readable = true;
        self.read_some(ctx)
    }

    /// A message during the handshake: drive the I/O, hold the protocol's
    /// messages, give up on a close, an abort or the timeout.
    pub(crate) fn handle_handshaking(
        &mut self,
        msg: Event<P::Msg>,
        ctx: &mut Ctx<'_, Self>,
    ) -> ActorResult {
        match msg {
            Event::Io(r) => self.on_ready(r, ctx)?,
            Event::ReadMore => {
                if self.core.can_read() {
                    self.read_some(ctx)?;
                }
            }
            Event::Settle => self.settle(ctx)?,
            Event::User(m) => {
                if let Phase::Handshaking(h) = &mut self.phase {
                    h.held.push(m);
                }
            }
            Event::Close | Event::Abort | Event::DrainTimeout => {
                self.handshake_fail(ConnectError::Aborted, Ending::Abort, ctx)
            }
            Event::HandshakeTimeout | Event::ConnectTimeout => {
                self.handshake_fail(ConnectError::TimedOut, Ending::Abort, ctx)
            }
            Event::IdleCheck(_) | Event::Resolved(_) | Event::ConnectRetry => {}
        }
        Ok(())
    }

    /// The handshake failed before the protocol was connected: whoever
    /// waits gets `error`, the connection ends, the protocol never runs.
    pub(crate) fn handshake_fail(
        &mut self,
        error: ConnectError,
        how: Ending,
        ctx: &mut Ctx<'_, Self>,
    ) {
        let Phase::Handshaking(mut h) = std::mem::replace(&mut self.phase, Phase::Open) else {
            return;
        };
        if let Some(timer) = h.timer.take() {
            timer.cancel();
        }
        tracing::debug!(conn = %ctx.id(), %error, "TLS handshake failed");
        // The alert (if any) goes out before the close, best effort.
        let _ = self.core.flush();
        self.release(how, ctx);
        if let Some(reply) = h.reply.take() {
            reply.send(Err(error));
        }
        ctx.stop_with(ExitReason::Normal);
    }

    /// The peer of a connection still handshaking, for an error value:
    /// known for `connect_tls`, asked of the socket (only on failure) for
    /// an accepted one.
    pub(crate) fn handshake_peer(&self) -> Option<crate::addr::Address> {
        match &self.phase {
            Phase::Handshaking(h) => h.peer.clone().or_else(|| self.core.io.peer_addr().ok()),
            _ => None,
        }
    }

    /// rustls refused what the peer sent (or the peer's alert).
    fn tls_failed(&mut self, e: rustls::Error, ctx: &mut Ctx<'_, Self>) {
        self.core.pump_tls();
        if matches!(self.phase, Phase::Handshaking(_)) {
            let error = ConnectError::Tls {
                addr: self.handshake_peer(),
                error: TlsError(e),
            };
            return self.handshake_fail(error, Ending::Close, ctx);
        }
        let _ = self.core.flush();
        self.finish(CloseReason::Tls(TlsError(e)), Ending::Close, ctx);
    }

    /// The handshake timeout of a `start_tls` fired.
    pub(crate) fn tls_timed_out(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.finish(CloseReason::HandshakeTimeout, Ending::Abort, ctx);
    }

    /// The handshake completed: report it; for `listen_tls`/`connect_tls`
    /// the protocol is connected now and the held messages follow.
    fn tls_complete(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let info = {
            let core = &mut self.core;
            let Some(tls) = core.tls.as_mut() else {
                return Ok(());
            };
            tls.complete(&mut core.wbuf)
        };
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Handshaking(mut h) => {
                if let Some(timer) = h.timer.take() {
                    timer.cancel();
                }
                let conn = &mut Self::conn(&mut self.core, ctx);
                self.protocol.tls_ready(conn, &info)?;
                self.protocol.connected(conn)?;
                for msg in std::mem::take(&mut h.held) {
                    self.deliver(msg, ctx)?;
                }
                if let Some(reply) = h.reply.take() {
                    reply.send(Ok(ConnRef::new(ctx.address())));
                }
            }
            other => {
                self.phase = other;
                self.protocol
                    .tls_ready(&mut Self::conn(&mut self.core, ctx), &info)?;
            }
        }
        Ok(())
    }

    /// The end of input arrived before the handshake completed.
    fn tls_eof_in_handshake(&mut self, ctx: &mut Ctx<'_, Self>) {
        let e = eof_in_handshake();
        if matches!(self.phase, Phase::Handshaking(_)) {
            return self.handshake_fail(
                ConnectError::Io {
                    addr: self.handshake_peer(),
                    kind: e.kind(),
                    message: e.to_string(),
                },
                Ending::Drop,
                ctx,
            );
        }
        self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
    }

    /// Queues close_notify if this is a TLS connection closing in order
    /// that has not sent it; true if it queued it.
    pub(crate) fn send_tls_close(&mut self) -> bool {
        let closing = self.core.closing != Closing::No && self.core.closing != Closing::Abort;
        let half = self.core.shut_pending && !self.core.write_shut;
        let core = &mut self.core;
        match core.tls.as_mut() {
            Some(tls) if tls.is_ready() && !tls.close_sent && (closing || half) => {
                tls.send_close(&mut core.wbuf);
                true
            }
            _ => false,
        }
    }

    /// Reads through TLS up to the budget: plaintext to the protocol
    /// first, then more ciphertext, until `WouldBlock`.
    pub(crate) fn read_some_tls(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let mut buf = take_buf();
        self.core.coalesce = true;
        let result = self.tls_read_loop(&mut buf, ctx);
        self.core.coalesce = false;
        put_buf(buf);
        result?;
        self.settle(ctx)
    }

    fn tls_read_loop(&mut self, buf: &mut [u8], ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let mut budget = self.core.opts.read_budget;
        // The socket gave less than asked in this loop: drained.
        let mut drained = false;
        loop {
            if !self.core.can_read() {
                return Ok(());
            }
            let Some(tls) = self.core.tls.as_mut() else {
                return Ok(());
            };
            let open = matches!(self.phase, Phase::Open);
            match io::Read::read(&mut tls.conn.reader(), buf) {
                Ok(0) => {
                    // The peer's close_notify: a clean end of input.
                    self.core.read_eof = true;
                    self.core.readable = false;
                    if !open {
                        self.tls_eof_in_handshake(ctx);
                        return Ok(());
                    }
                    self.touch(ctx);
                    self.protocol
                        .read_closed(&mut Self::conn(&mut self.core, ctx))?;
                    if self.core.write_shut && self.core.closing == Closing::No {
                        self.finish(CloseReason::Clean, Ending::Close, ctx);
                    }
                    return Ok(());
                }
                Ok(n) => {
                    self.touch(ctx);
                    self.protocol
                        .data(&mut Self::conn(&mut self.core, ctx), &buf[..n])?;
                    self.settle(ctx)?;
                    budget = budget.saturating_sub(n);
                    if ctx.is_muted() || budget == 0 {
                        if self.core.can_read() {
                            ctx.send_self(ConnMsg(Event::ReadMore));
                        }
                        return Ok(());
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // A FIN without close_notify: the data may be cut.
                    self.finish(CloseReason::Truncated, Ending::Close, ctx);
                    return Ok(());
                }
                Err(e) => {
                    self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
                    return Ok(());
                }
            }
            // No plaintext waits: more ciphertext.
            let core = &mut self.core;
            let Some(tls) = core.tls.as_mut() else {
                return Ok(());
            };
            if tls.eof {
                // The reader reports the end once the handshake is done.
                self.tls_eof_in_handshake(ctx);
                return Ok(());
            }
            if drained {
                // Everything rustls held was delivered (above); the next
                // arrival raises a new edge.
                core.readable = false;
                return Ok(());
            }
            match tls.read_tls(&mut core.io) {
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    drained = tls.short_read && !core.hup_seen && core.io.short_read_drains();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    core.readable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.finish(CloseReason::from_io(&e), Ending::Drop, ctx);
                    return Ok(());
                }
            }
            if let Err(e) = tls.conn.process_new_packets() {
                self.tls_failed(e, ctx);
                return Ok(());
            }
            if tls.just_completed() {
                self.tls_complete(ctx)?;
                self.settle(ctx)?;
            } else if tls.eof && tls.conn.is_handshaking() {
                self.tls_eof_in_handshake(ctx);
                return Ok(());
            }
            if budget == 0 {
                if self.core.can_read() {
                    ctx.send_self(ConnMsg(Event::ReadMore));
                }
                return Ok(());
            }
        }
    }
}

impl<P: Protocol> Conn<'_, '_, P> {
    /// Upgrades this plaintext connection to TLS (Twisted's `startTLS`),
    /// taking `role` (either role on either kind of connection: a TCP
    /// client may act as the TLS server). Bytes written before this call
    /// go out in plaintext first; bytes written after it wait for the
    /// handshake and go out encrypted. `already_read` is what this
    /// protocol has read past the upgrade point and not consumed (the
    /// rest of the chunk that held the `STARTTLS` line): it is fed to
    /// TLS before anything else the socket delivers. The protocol is told
    /// [`tls_ready`](Protocol::tls_ready) when the handshake completes; a
    /// failure closes the connection with [`CloseReason::Tls`], and no
    /// completion within
    /// [`handshake_timeout`](crate::ConnOptions::handshake_timeout) with
    /// [`CloseReason::HandshakeTimeout`].
    pub fn start_tls(
        &mut self,
        role: crate::tls::TlsRole,
        already_read: &[u8],
    ) -> Result<(), crate::tls::StartTlsError> {
        use crate::tls::{layer::TlsLayer, StartTlsError, TlsRole};
        if self.core.tls.is_some() {
            return Err(StartTlsError::AlreadyTls);
        }
        if !self.core.can_write() || self.core.read_eof {
            return Err(StartTlsError::Closing);
        }
        let layer = match role {
            TlsRole::Server(config) => TlsLayer::server(config)?,
            TlsRole::Client {
                config,
                server_name,
            } => TlsLayer::client(config, server_name)?,
        };
        self.core.tls = Some(Box::new(layer.with_pending_input(already_read)));
        // Process `already_read` (and whatever the socket holds) once this
        // callback returns; a client's hello goes out with the flush.
        self.core.readable = true;
        self.core.kick_read = true;
        self.ctx.send_later(
            self.core.opts.handshake_timeout,
            ConnMsg(Event::HandshakeTimeout),
        );
        Ok(())
    }

    /// What the TLS handshake negotiated, once it completed (`None` on a
    /// plaintext connection or during the handshake).
    pub fn tls(&self) -> Option<&crate::tls::TlsInfo> {
        self.core.tls.as_ref()?.info.as_deref()
    }
}
