//! Adopting sockets made elsewhere (Twisted's `adoptStreamPort`,
//! `adoptStreamConnection` and `adoptDatagramPort`): a listening socket, a
//! connected stream socket or a datagram socket, TCP/UDP or UNIX, given as
//! a descriptor, becomes a weft listener, connection or datagram actor.
//!
//! weft takes its own duplicate (close-on-exec) and leaves the caller's
//! descriptor open; the two share the socket, so the socket is switched
//! to non-blocking mode for both. Stopping an adopted listener closes
//! weft's duplicate only: it never calls `shutdown()` (which would stop
//! the socket for every holder) and never removes a socket file.
//!
//! Owns: checking what a descriptor is and handing it to the listener or
//! connection machinery. Must not touch: how those run.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use socket2::{Domain, SockRef, Type};
use weft_actors::Spawn;
use weft_runtime::mio::net::{TcpStream, UnixStream};
use weft_runtime::Handle;

use crate::addr::{Address, UnixAddr};
use crate::conn::{ConnOptions, ConnRef, Connection, Core};
use crate::datagram::{spawn_socket, DatagramOptions, DatagramProtocol, DatagramRef};
use crate::listener::{spawn_bound, Bound, ListenOptions, Listening};
use crate::protocol::Protocol;
use crate::transport::Transport;
use crate::unix::UnixIo;

/// Why a descriptor could not be adopted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptError {
    /// Not an open descriptor (or it could not be duplicated: at the
    /// descriptor limit).
    #[error("descriptor {fd} cannot be adopted")]
    Invalid {
        /// The descriptor number.
        fd: i32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An open descriptor that is not a socket (a file, a pipe, ...).
    #[error("descriptor {fd} is not a socket")]
    NotSocket {
        /// The descriptor number.
        fd: i32,
    },
    /// A socket of another kind than asked for (a connected stream where a
    /// listener was expected, a datagram socket, another family).
    #[error("descriptor {fd} is {found}, not {expected}")]
    WrongKind {
        /// The descriptor number.
        fd: i32,
        /// What it is.
        found: String,
        /// What was asked for.
        expected: &'static str,
    },
}

/// What a descriptor is, as far as adopting cares.
struct Kind {
    unix: bool,
    stream: bool,
    listening: bool,
}

impl Kind {
    fn describe(&self) -> String {
        format!(
            "a {} {} socket{}",
            if self.unix { "UNIX" } else { "TCP/IP" },
            if self.stream { "stream" } else { "datagram" },
            if self.listening { " that listens" } else { "" }
        )
    }
}

fn inspect(fd: &impl AsFd) -> Result<Kind, AdoptError> {
    let raw = fd.as_fd().as_raw_fd();
    let sock = SockRef::from(fd);
    let ty = sock.r#type().map_err(|e| match e.raw_os_error() {
        Some(nix::libc::ENOTSOCK) => AdoptError::NotSocket { fd: raw },
        _ => AdoptError::Invalid { fd: raw, source: e },
    })?;
    let domain = sock
        .domain()
        .map_err(|e| AdoptError::Invalid { fd: raw, source: e })?;
    let unix = domain == Domain::UNIX;
    if !unix && domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(AdoptError::WrongKind {
            fd: raw,
            found: format!("a socket of family {domain:?}"),
            expected: "a TCP/IP or UNIX socket",
        });
    }
    let stream = ty == Type::STREAM;
    let listening = stream
        && sock
            .is_listener()
            .map_err(|e| AdoptError::Invalid { fd: raw, source: e })?;
    Ok(Kind {
        unix,
        stream,
        listening,
    })
}

/// weft's own duplicate, non-blocking.
fn duplicate(fd: &impl AsFd) -> Result<OwnedFd, AdoptError> {
    let raw = fd.as_fd().as_raw_fd();
    let invalid = |source| AdoptError::Invalid { fd: raw, source };
    let own = fd.as_fd().try_clone_to_owned().map_err(invalid)?;
    SockRef::from(&own).set_nonblocking(true).map_err(invalid)?;
    Ok(own)
}

/// Adopts a listening TCP or UNIX socket (Twisted's `adoptStreamPort`):
/// as [`listen_tcp`](crate::listen_tcp) from there on (supervised
/// connections, limits, idle timeout, drain on stop). The caller keeps
/// its descriptor (weft listens on a duplicate); anything else than a
/// listening stream socket is an [`AdoptError`].
///
/// ```no_run
/// use weft_io::{adopt_listener, Conn, ListenOptions, Protocol};
/// use weft_actors::ActorResult;
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
/// // A socket bound by someone else (here: by std, before the runtime).
/// let socket = std::net::TcpListener::bind("127.0.0.1:7000").unwrap();
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let listening = adopt_listener(rt.handle(), &socket, ListenOptions::new(), || Echo).unwrap();
/// println!("serving {}", listening.local_addr());
/// rt.run().unwrap();
/// ```
pub fn adopt_listener<P: Protocol>(
    handle: &Handle,
    fd: impl AsFd,
    options: ListenOptions,
    factory: impl Fn() -> P + Send + Sync + 'static,
) -> Result<Listening<P, Address>, AdoptError> {
    let kind = inspect(&fd)?;
    if !kind.listening {
        return Err(AdoptError::WrongKind {
            fd: fd.as_fd().as_raw_fd(),
            found: kind.describe(),
            expected: "a listening stream socket",
        });
    }
    let own = duplicate(&fd)?;
    let raw = fd.as_fd().as_raw_fd();
    let invalid = |source| AdoptError::Invalid { fd: raw, source };
    let (addr, bound) = if kind.unix {
        let sock = std::os::unix::net::UnixListener::from(own);
        let addr = Address::Unix(UnixAddr::from_std(&sock.local_addr().map_err(invalid)?));
        (addr, Bound::Unix(sock, None))
    } else {
        let sock = std::net::TcpListener::from(own);
        (
            Address::Inet(sock.local_addr().map_err(invalid)?),
            Bound::Tcp(sock),
        )
    };
    Ok(spawn_bound(
        handle,
        addr.clone(),
        addr,
        vec![bound],
        options,
        None,
        Arc::new(factory),
    ))
}

/// Adopts a connected TCP or UNIX stream socket (Twisted's
/// `adoptStreamConnection`) and runs `protocol` on it in its own
/// connection actor, as if weft had accepted or connected it: `connected`
/// comes first, then everything else a connection does. The caller keeps
/// its descriptor (weft uses a duplicate; close yours to leave the socket
/// to weft alone, or the peer will not see the end when weft closes).
///
/// ```no_run
/// use weft_io::{adopt_stream, Conn, ConnOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Hello;
/// impl Protocol for Hello {
///     type Msg = ();
///     fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
///         conn.write(b"hello\n")?;
///         Ok(())
///     }
///     fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let conn = adopt_stream(rt.handle(), &mine, ConnOptions::new(), Hello).unwrap();
/// drop(mine); // weft holds its own duplicate
/// # let _ = (conn, theirs);
/// ```
pub fn adopt_stream<P: Protocol>(
    handle: &Handle,
    fd: impl AsFd,
    options: ConnOptions,
    protocol: P,
) -> Result<ConnRef<P>, AdoptError> {
    let kind = inspect(&fd)?;
    if !kind.stream || kind.listening {
        return Err(AdoptError::WrongKind {
            fd: fd.as_fd().as_raw_fd(),
            found: kind.describe(),
            expected: "a connected stream socket",
        });
    }
    let own = duplicate(&fd)?;
    let io = if kind.unix {
        Transport::Unix(Box::new(UnixIo::new(UnixStream::from_std(own.into()))))
    } else {
        Transport::Tcp(TcpStream::from_std(own.into()))
    };
    let spawn = options.spawn_options(weft_actors::DEFAULT_CAPACITY);
    let conn = Connection::new(protocol, Core::new(io, Arc::new(options), None));
    let addr = handle
        .spawn_with(conn, spawn)
        .expect("the default capacity and a weight limit of at least 1 are valid");
    Ok(ConnRef::new(addr))
}

/// Adopts a datagram socket, UNIX or UDP (Twisted's
/// `adoptDatagramPort`): weft runs `protocol` on its own duplicate (the
/// caller keeps the descriptor; a connected one stays connected);
/// anything but a datagram socket is an [`AdoptError`].
///
/// ```no_run
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{adopt_datagram, DatagramOptions, DatagramProtocol, Dgram};
/// use weft_io::Address;
///
/// struct Count(u64);
/// impl DatagramProtocol for Count {
///     type Msg = ();
///     fn datagram(&mut self, _sock: &mut Dgram<'_, '_, Self>, _data: &[u8], _from: &Address) -> ActorResult {
///         self.0 += 1;
///         Ok(())
///     }
/// }
///
/// let socket = std::net::UdpSocket::bind("127.0.0.1:8125").unwrap();
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let sock = adopt_datagram(rt.handle(), &socket, DatagramOptions::new(), Count(0)).unwrap();
/// # let _ = sock;
/// ```
pub fn adopt_datagram<P: DatagramProtocol>(
    handle: &Handle,
    fd: impl AsFd,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, AdoptError> {
    let raw = fd.as_fd().as_raw_fd();
    let kind = inspect(&fd)?;
    if kind.stream {
        return Err(AdoptError::WrongKind {
            fd: raw,
            found: kind.describe(),
            expected: "a datagram socket",
        });
    }
    let own = duplicate(&fd)?;
    let peer = SockRef::from(&own).peer_addr().ok().and_then(|a| {
        a.as_socket()
            .map(Address::Inet)
            .or_else(|| a.as_unix().map(|u| Address::Unix(UnixAddr::from_std(&u))))
    });
    spawn_socket(handle, own, peer, None, options, protocol)
        .map_err(|source| AdoptError::Invalid { fd: raw, source })
}
