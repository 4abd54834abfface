//! weft-io: network I/O as actors. Every connection is an actor running a
//! [`Protocol`]; every listener is an actor supervising its connections.
//!
//! Owns: TCP listening ([`listen_tcp`], [`Listener`]) and connecting
//! ([`connect_tcp`]), TLS over both ([`listen_tls`], [`connect_tls`],
//! [`Conn::start_tls`], configurations in [`tls`]), the connection actor ([`Connection`]) with its
//! read budget, write buffer, watermarks, half-close, idle timeout and
//! close handling, and the in-memory transport for testing protocols
//! without sockets ([`connect_memory`], [`MemoryPeer`]), and child
//! processes as actors ([`process`]), UNIX stream sockets with
//! descriptor passing ([`listen_unix`], [`connect_unix`]), and adopting
//! sockets made elsewhere ([`adopt_listener`], [`adopt_stream`]) and
//! from systemd's socket activation ([`activation`]), and raw descriptor
//! readiness for any actor ([`watch`]), and datagram sockets as actors
//! ([`datagram`]: UNIX datagram sockets, adopted UNIX or UDP ones).
//!
//! Built on `weft-supervisor` (connection pools are dynamic supervisors),
//! `weft-actors` (`Ctx::register_io` delivers readiness as messages) and
//! `weft-runtime`. Must not touch: actor cells, the scheduler or the
//! reactor's internals.
//!
//! Flow control, end to end: a connection reads only while its protocol
//! keeps up (a paused or muted connection leaves data in the kernel, whose
//! window then slows the peer); writes are buffered with high and low
//! watermarks that pause and resume the protocol (by default, its
//! reading), and a hard limit refuses writes past it with an error.
//!
//! Features (both on by default): `tls` (rustls: [`tls`], `listen_tls`,
//! `connect_tls`, `Conn::start_tls`, `Protocol::tls_ready`,
//! `CloseReason::Tls`, `ConnectError::Tls`) and `process` (child
//! processes: `process`). Without `tls`, rustls and ring are not built
//! and the connection carries no TLS code.

#![deny(missing_docs)]

pub mod activation;
mod addr;
mod adopt;
mod conn;
mod connect;
pub mod datagram;
mod listener;
mod memory;
#[cfg(feature = "process")]
pub mod process;
mod protocol;
pub mod sim;
mod stats;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
pub mod unix;
pub mod watch;

use std::sync::Arc;

pub use addr::{Address, UnixAddr};
pub use adopt::{adopt_listener, adopt_stream, AdoptError};
pub use conn::{Conn, ConnMsg, ConnOptions, ConnRef, Connection, WriteError};
#[cfg(feature = "tls")]
pub use connect::connect_tls;
pub use connect::{connect_tcp, ConnectError, ConnectOptions, Connecting, Resolver, Target};
pub use listener::{
    listen_tcp, ListenError, ListenOptions, Listener, ListenerInfo, ListenerMsg, ListenerStats,
    Listening, StopMode,
};
#[cfg(feature = "tls")]
pub use listener::{listen_tls, TlsConfigSlot};
pub use memory::{MemoryClose, MemoryPeer, MEMORY_LOCAL_ADDR, MEMORY_PEER_ADDR};
pub use protocol::{CloseReason, Protocol};
pub use stats::listeners;
pub use unix::{connect_unix, listen_unix, PeerCred};

use weft_actors::Spawn;

/// Runs `protocol` on an in-memory connection (Twisted's
/// `StringTransport`): the same connection actor as over TCP, with the
/// returned [`MemoryPeer`] in place of the remote end. With a runtime on
/// the manual clock, a protocol's tests are deterministic.
///
/// ```
/// use std::time::Duration;
/// use weft_io::{connect_memory, Conn, ConnOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Upper;
/// impl Protocol for Upper {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(&data.to_ascii_uppercase())?;
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().workers(1).build().unwrap();
/// let (_conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Upper);
/// peer.write(b"hello");
/// assert_eq!(peer.read_at_least(5, Duration::from_secs(5)), b"HELLO");
/// ```
pub fn connect_memory<P: Protocol>(
    handle: &weft_runtime::Handle,
    options: ConnOptions,
    protocol: P,
) -> (ConnRef<P>, MemoryPeer) {
    let (end, peer) = memory::pipe();
    let spawn = options.spawn_options(weft_actors::DEFAULT_CAPACITY);
    let conn = Connection::new(
        protocol,
        conn::Core::new(transport::Transport::Memory(end), Arc::new(options), None),
    );
    let addr = handle
        .spawn_with(conn, spawn)
        .expect("the default capacity and a weight limit of at least 1 are valid");
    (ConnRef::new(addr), peer)
}
