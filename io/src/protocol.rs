//! What a user implements for one connection: the [`Protocol`] trait
//! (Twisted's `Protocol` plus `IPushProducer`), and why a connection ended.
//!
//! Must not touch: sockets (a protocol sees only its [`Conn`] handle).

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;

use weft_actors::{ActorResult, ExitReason};

use crate::conn::Conn;
#[cfg(feature = "tls")]
use crate::tls::{TlsError, TlsInfo};

/// The behaviour of one connection, run inside its own connection actor:
/// every callback runs on that actor's turn, never two at once, so the
/// protocol's state needs no lock. A callback that returns `Err` or panics
/// ends the connection (the socket is reset) and nothing else.
///
/// ```
/// use weft_io::{Conn, Protocol};
/// use weft_actors::ActorResult;
///
/// /// Echoes every byte back.
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
/// ```
pub trait Protocol: Send + Sized + 'static {
    /// The protocol's own messages, sent by other actors or threads through
    /// [`ConnRef::send`](crate::ConnRef::send); handled by [`message`](Self::message).
    /// Use `()` when there are none.
    type Msg: Send + 'static;

    /// The connection is open (peer and local address in `conn`).
    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let _ = conn;
        Ok(())
    }

    /// A TLS handshake completed: `info` says what was negotiated (ALPN,
    /// server name, version, cipher suite, resumed or not, the peer's
    /// certificates). On a `listen_tls` or `connect_tls` connection this
    /// comes right before [`connected`](Self::connected); after
    /// [`Conn::start_tls`](crate::Conn::start_tls), when the upgrade is
    /// done. Returning `Err` (say, a client certificate this protocol does
    /// not accept) ends the connection. The default does nothing.
    #[cfg(feature = "tls")]
    fn tls_ready(&mut self, conn: &mut Conn<'_, '_, Self>, info: &TlsInfo) -> ActorResult {
        let _ = (conn, info);
        Ok(())
    }

    /// Bytes arrived. `data` is only valid during the call.
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult;

    /// The peer shut its write side (end of input). The default closes
    /// the connection once what was written is sent; a protocol that
    /// answers after the end of input (half-close) overrides this and
    /// closes later.
    fn read_closed(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        conn.close();
        Ok(())
    }

    /// How much one of this protocol's messages weighs against the
    /// connection's mailbox byte limit
    /// ([`ConnOptions::mailbox_bytes`](crate::ConnOptions::mailbox_bytes)):
    /// for a chunk to write, its length. The default weighs nothing.
    fn weigh(msg: &Self::Msg) -> usize {
        let _ = msg;
        0
    }

    /// One of this protocol's own messages arrived.
    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Self::Msg) -> ActorResult {
        let _ = (conn, msg);
        Ok(())
    }

    /// The write buffer passed the high watermark: stop producing. The
    /// default pauses reading, so a protocol that writes what it reads
    /// (echo, proxy) slows its peer down instead of buffering.
    fn write_paused(&mut self, conn: &mut Conn<'_, '_, Self>) {
        conn.pause_reading();
    }

    /// The write buffer drained below the low watermark: produce again.
    /// The default resumes reading.
    fn write_resumed(&mut self, conn: &mut Conn<'_, '_, Self>) {
        conn.resume_reading();
    }

    /// Everything written so far was handed to the socket: produce more
    /// (Twisted's `IPullProducer.resumeProducing`). Called after a callback
    /// that wrote, once the buffer is empty; a protocol that sends a file
    /// or a generated stream writes its next chunk here, with no
    /// watermarks to watch. The default does nothing. Not called once the
    /// connection is closing.
    fn write_drained(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = conn;
    }

    /// Whether this protocol takes descriptors sent over a UNIX
    /// connection (Twisted's `IFileDescriptorReceiver`): set it to `true`
    /// to have [`fds_received`](Self::fds_received) called. When false
    /// (the default), the connection reads without room for them, which
    /// is cheaper, and the kernel closes any that come (logged once per
    /// connection).
    const RECEIVES_FDS: bool = false;

    /// A UNIX connection received descriptors (close-on-exec, owned: keep
    /// them, hand them on, or drop them to close them); called only when
    /// [`RECEIVES_FDS`](Self::RECEIVES_FDS) is true. Called before
    /// [`data`](Self::data) gets the bytes read with them; the peer sent
    /// them with the first of those bytes or a later one. The default
    /// drops (closes) them.
    fn fds_received(&mut self, conn: &mut Conn<'_, '_, Self>, fds: Vec<OwnedFd>) -> ActorResult {
        let _ = (conn, fds);
        Ok(())
    }

    /// The kernel could not hand over every descriptor the peer sent
    /// (`MSG_CTRUNC`: typically this process is at its descriptor limit);
    /// the ones that did arrive were given to `fds_received` first (only
    /// when [`RECEIVES_FDS`](Self::RECEIVES_FDS) is true). The
    /// default fails the connection with an error, since descriptors the
    /// peer counts on were lost; override to carry on.
    fn fds_truncated(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let _ = conn;
        Err("descriptors from the peer were lost (MSG_CTRUNC: at the descriptor limit?)".into())
    }

    /// The connection ended, for `reason`. `conn` no longer writes, but
    /// its context still sends (in order after this protocol's earlier
    /// sends: tell a peer actor here). Not called when a callback of this
    /// protocol failed (panicked or returned `Err`): its state is
    /// suspect, and the connection's exit reason says what happened.
    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = (conn, reason);
    }
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed in order: by us (`close`) after what was written was sent,
    /// or after the peer's end of input.
    Clean,
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`).
    PeerReset,
    /// Nothing was read or written for the idle timeout.
    IdleTimeout,
    /// Closed at once with `abort` (what was buffered was discarded).
    Aborted,
    /// The listener, a supervisor or the runtime shut the connection down.
    Shutdown,
    /// An I/O error other than a reset.
    Error(io::ErrorKind, String),
    /// TLS failed: the peer's alert, or a record or certificate rustls
    /// refused (after `start_tls`, or after the handshake).
    #[cfg(feature = "tls")]
    Tls(TlsError),
    /// The peer ended a TLS connection without close_notify: what it sent
    /// may have been cut short (an attacker can forge a FIN).
    Truncated,
    /// The TLS handshake of `start_tls` did not complete in time.
    HandshakeTimeout,
}

impl CloseReason {
    pub(crate) fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => CloseReason::PeerReset,
            kind => CloseReason::Error(kind, e.to_string()),
        }
    }

    /// Whether the connection ended in order (clean close or end of input).
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::Clean)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Clean => f.write_str("closed cleanly"),
            CloseReason::PeerReset => f.write_str("reset by peer"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Aborted => f.write_str("aborted"),
            CloseReason::Shutdown => f.write_str("shut down"),
            CloseReason::Error(_, msg) => write!(f, "I/O error: {msg}"),
            #[cfg(feature = "tls")]
            CloseReason::Tls(e) => write!(f, "TLS error: {e}"),
            CloseReason::Truncated => {
                f.write_str("the peer closed without TLS close_notify (possible truncation)")
            }
            CloseReason::HandshakeTimeout => f.write_str("TLS handshake timed out"),
        }
    }
}

/// The exit reason of a connection actor that closed for `reason`.
pub(crate) fn exit_reason(reason: &CloseReason) -> ExitReason {
    match reason {
        CloseReason::Shutdown => ExitReason::Shutdown,
        _ => ExitReason::Normal,
    }
}
