//! What protocols and other actors hold: [`Conn`] (the handle every
//! protocol callback gets), [`ConnRef`] (a connection's address) and
//! [`ConnMsg`] (a connection actor's message).
//!
//! Must not touch: the transport directly (writes go through `Core`'s
//! buffer; closing is carried out by the actor after the callback).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use weft_actors::{ActorId, Addr, Ctx, ExitReason, Recipient, SendError, TimerHandle};
use weft_runtime::{Handle, Readiness};

use super::core::{Closing, Core};
use super::options::WriteError;
use super::Connection;
use crate::addr::Address;
use crate::protocol::Protocol;
use crate::unix::PeerCred;

/// A connection actor's message: one of the protocol's own messages, or
/// one of weft's (readiness, timers, close requests).
pub struct ConnMsg<M>(pub(crate) Event<M>);

impl<M> ConnMsg<M> {
    /// Wraps a protocol message.
    pub fn user(msg: M) -> Self {
        ConnMsg(Event::User(msg))
    }
}

/// What a connection actor handles: the protocol's own messages, and
/// weft's own events (readiness, timers, close requests, the connect's
/// steps). `Connection::handle` dispatches them on the connection's phase.
pub(crate) enum Event<M> {
    /// One of the protocol's own messages.
    User(M),
    /// The reactor's readiness for the socket (or the in-memory pipe).
    Io(Readiness),
    /// Go on reading: the read budget was spent with the socket still
    /// readable, or reading resumed.
    ReadMore,
    /// The idle timer fired (for the given generation of the timeout).
    IdleCheck(u32),
    /// `ConnRef::close`: flush, then close.
    Close,
    /// `ConnRef::abort`: reset now.
    Abort,
    /// A closing connection did not flush within `drain_timeout`.
    DrainTimeout,
    /// The blocking pool resolved the connect target.
    Resolved(io::Result<Vec<SocketAddr>>),
    /// The connect did not complete within its timeout.
    ConnectTimeout,
    /// `connect_unix` found the listener's backlog full: try again.
    ConnectRetry,
    /// Settle again (a pull producer had more rounds than one turn gives).
    Settle,
    /// The TLS handshake did not complete within its timeout.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    HandshakeTimeout,
}

/// The handle a protocol uses for its connection, passed to every
/// callback: write, close, flow control, options, addresses, and the
/// actor context for everything else.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::ActorResult;
/// use weft_io::{connect_memory, Conn, ConnOptions, Protocol};
///
/// /// Answers each line with its length, and closes on "bye".
/// struct Lengths;
/// impl Protocol for Lengths {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
///             if line == b"bye" {
///                 conn.close(); // after what is written is sent
///                 return Ok(());
///             }
///             conn.write(format!("{}\n", line.len()).as_bytes())?;
///         }
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let (_conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Lengths);
/// peer.write(b"abc\nhello\nbye\n");
/// assert_eq!(peer.read_at_least(4, Duration::from_secs(5)), b"3\n5\n");
/// assert!(peer.wait_closed(Duration::from_secs(5)).is_some());
/// ```
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
    /// resume. A producer writing in a loop checks this between writes;
    /// once it was told `true`, it is told `write_resumed` when the buffer
    /// drains to the low watermark, whether or not `write_paused` came.
    pub fn is_write_paused(&self) -> bool {
        let paused = self.core.write_paused || self.core.buffered() > self.core.opts.high_water;
        if paused {
            self.core.paused_seen.set(true);
        }
        paused
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
        self.core.discard_output();
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

    /// The peer's address: internet, or UNIX (an error once the
    /// connection is closed). `peer_addr()?.inet()` for a TCP peer's
    /// `SocketAddr`.
    pub fn peer_addr(&self) -> io::Result<Address> {
        self.core.io.peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<Address> {
        self.core.io.local_addr()
    }

    /// A UNIX connection: the peer process's pid, uid and gid when it
    /// connected (`SO_PEERCRED`), from `connected` on. An `Unsupported`
    /// error for other transports.
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        self.core.io.peer_cred()
    }

    /// A UNIX connection: queues `data` with duplicates of `fds` attached
    /// to its first byte (Twisted's `sendFileDescriptor`, several at
    /// once). In order with the byte stream: the peer receives the
    /// descriptors with the read that holds that byte, after every byte
    /// written before. Yours stay yours (close them when you like); the
    /// duplicates are closed here once sent.
    ///
    /// Refused, with nothing taken, when: the transport is not a UNIX
    /// socket or runs TLS (`FdsUnsupported`); `data` is shorter than the
    /// number of descriptors (`FdsExceedBytes`: every descriptor travels
    /// with at least one byte, so a peer that reads one byte per
    /// descriptor never waits); more than [`MAX_FDS_PER_MESSAGE`] at once
    /// (`TooManyFds`); or as [`write`](Self::write) refuses. Each queued
    /// descriptor counts as 1 KiB toward the watermarks and the
    /// write-buffer limit.
    ///
    /// [`MAX_FDS_PER_MESSAGE`]: crate::unix::MAX_FDS_PER_MESSAGE
    pub fn send_fds<F: AsFd>(&mut self, data: &[u8], fds: &[F]) -> Result<(), WriteError> {
        self.core.buffer_fds(data, fds)
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
                .send_later(d, ConnMsg(Event::IdleCheck(generation)));
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
        self.ctx.send_later(delay, ConnMsg(Event::User(msg)))
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
///
/// ```
/// use std::time::Duration;
/// use weft_actors::ActorResult;
/// use weft_io::{connect_memory, Conn, ConnOptions, Protocol};
///
/// /// Writes what other actors or threads send it.
/// struct Announcer;
/// impl Protocol for Announcer {
///     type Msg = String;
///     fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
///         Ok(())
///     }
///     fn message(&mut self, conn: &mut Conn<'_, '_, Self>, text: String) -> ActorResult {
///         conn.write(text.as_bytes())?;
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let (conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Announcer);
/// conn.send("news\n".to_string()).unwrap(); // from any thread
/// assert_eq!(peer.read_at_least(5, Duration::from_secs(5)), b"news\n");
/// conn.close();
/// assert!(peer.wait_closed(Duration::from_secs(5)).is_some());
/// ```
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
            .send(ConnMsg(Event::User(msg)))
            .map_err(|e| match e {
                SendError::Full(m) => SendError::Full(user(m)),
                SendError::Stopped(m) => SendError::Stopped(user(m)),
                SendError::Timeout(m) => SendError::Timeout(user(m)),
            })
    }

    /// Asks the connection to close in order (flush, then close). False
    /// if it has already ended.
    pub fn close(&self) -> bool {
        match self.addr.send(ConnMsg(Event::Close)) {
            Ok(()) => true,
            // A full mailbox: the stop request is never refused, and the
            // connection answers it by closing in order too.
            Err(SendError::Full(_)) => self.addr.stop_with(ExitReason::Shutdown),
            Err(_) => false,
        }
    }

    /// Closes the connection at once, discarding what is buffered.
    pub fn abort(&self) -> bool {
        match self.addr.send(ConnMsg(Event::Abort)) {
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
        Event::User(m) => m,
        _ => unreachable!("only user messages are sent through ConnRef::send"),
    }
}

impl<M> std::fmt::Debug for ConnMsg<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.0 {
            Event::User(_) => "User",
            Event::Io(_) => "Io",
            Event::ReadMore => "ReadMore",
            Event::IdleCheck(_) => "IdleCheck",
            Event::Close => "Close",
            Event::Abort => "Abort",
            Event::DrainTimeout => "DrainTimeout",
            Event::Resolved(_) => "Resolved",
            Event::ConnectTimeout => "ConnectTimeout",
            Event::ConnectRetry => "ConnectRetry",
            Event::Settle => "Settle",
            Event::HandshakeTimeout => "HandshakeTimeout",
        };
        write!(f, "ConnMsg::{what}")
    }
}
