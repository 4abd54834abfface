//! UNIX stream sockets (Twisted's `listenUNIX` / `connectUNIX`):
//! [`listen_unix`], [`connect_unix`], peer credentials ([`PeerCred`]) and
//! the descriptor passing underneath [`Conn::send_fds`](crate::Conn::send_fds)
//! and [`Protocol::fds_received`].
//!
//! A UNIX connection is the same connection actor, running the same
//! `Protocol`, as a TCP one; only its transport differs.
//!
//! Owns: binding a path or an abstract name (mode, stale-file
//! replacement, removal when the listener stops), the non-blocking UNIX
//! connect, and the system calls of descriptor passing (`fds.rs`).
//! Must not touch: the connection's buffering or the listener's accept
//! loop (they are shared with TCP, in `conn/` and `listener/`).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use socket2::{Domain, Socket, Type};
use weft_runtime::mio::net::UnixStream;
use weft_runtime::Handle;

use crate::addr::{Address, UnixAddr};
use crate::connect::{spawn_connect_unix, ConnectOptions, Connecting};
use crate::listener::{spawn_bound, Bound, ListenError, ListenOptions, Listening};
use crate::protocol::Protocol;

pub(crate) mod fds;

pub(crate) use fds::UnixIo;
pub use fds::MAX_FDS_PER_MESSAGE;

/// The credentials of the process at the other end of a UNIX connection,
/// as the kernel recorded them when it connected (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// The peer's process id (0 if the kernel could not tell, e.g. from
    /// another PID namespace).
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// A socket file this process created, removed when its listener closes,
/// but only if the path still names that file (another process may have
/// replaced it since).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    pub(crate) fn remove(self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds and listens on `addr`: the mode is set before `listen`, so no
/// client connects before it holds; a stale socket file (nobody answers)
/// is replaced; a live one is `AddrInUse`; a file that is not a socket is
/// never removed.
pub(crate) fn bind_listener(
    addr: &UnixAddr,
    opts: &ListenOptions,
) -> io::Result<(StdUnixListener, Option<SocketFile>)> {
    let sockaddr = addr.to_sockaddr()?;
    let bind = || -> io::Result<Socket> {
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        sock.bind(&sockaddr)?;
        Ok(sock)
    };
    let sock = match (bind(), addr.as_path()) {
        (Ok(sock), _) => sock,
        (Err(e), Some(path)) if e.kind() == io::ErrorKind::AddrInUse => {
            check_stale(path, &sockaddr, Type::STREAM)?;
            bind()?
        }
        (Err(e), _) => return Err(e),
    };
    let file = socket_file(addr, opts.unix_mode)?;
    let listen = sock
        .listen(opts.backlog)
        .and_then(|()| sock.set_nonblocking(true));
    if let Err(e) = listen {
        if let Some(file) = file {
            file.remove();
        }
        return Err(e);
    }
    Ok((sock.into(), file))
}

/// `path` is in use (`EADDRINUSE`): Ok (and removed) if it is a stale
/// socket file nobody answers on; `AddrInUse` if something listens there
/// or it is not a socket.
pub(crate) fn check_stale(
    path: &std::path::Path,
    addr: &socket2::SockAddr,
    ty: Type,
) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if is_live(addr, ty)? {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use (a process listens on it)", path.display()),
        ));
    }
    tracing::debug!(path = %path.display(), "replacing a stale socket file");
    std::fs::remove_file(path)
}

/// After binding `addr`: its mode set, and the file to remove later.
pub(crate) fn socket_file(addr: &UnixAddr, mode: Option<u32>) -> io::Result<Option<SocketFile>> {
    let Some(path) = addr.as_path() else {
        return Ok(None);
    };
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    let meta = std::fs::symlink_metadata(path)?;
    Ok(Some(SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    }))
}

/// Whether something accepts connections (or datagrams) at `addr` (a
/// non-blocking connect: refused means a stale file; a full backlog is
/// still live).
fn is_live(addr: &socket2::SockAddr, ty: Type) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, ty, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(addr) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(false),
        Err(e) => Err(e),
    }
}

/// A non-blocking connect to `addr`: connected at once, or an error
/// (`WouldBlock` when the listener's backlog is full: try again).
pub(crate) fn start_connect(addr: &UnixAddr) -> io::Result<UnixStream> {
    let sockaddr = addr.to_sockaddr()?;
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.connect(&sockaddr)?;
    Ok(UnixStream::from_std(sock.into()))
}

/// Listens on a UNIX socket and runs `factory()` on every accepted
/// connection, each in its own supervised connection actor (Twisted's
/// `listenUNIX`): the same listener as [`listen_tcp`](crate::listen_tcp),
/// with its options (connection limit, idle timeout, `EMFILE` back-off,
/// drain on stop) and [`ListenOptions::unix_mode`] for the file's mode.
///
/// `addr` is a path (a stale socket file there is replaced, a live one is
/// an error, the file is removed when the listener stops) or a Linux
/// abstract name (`UnixAddr::abstract_name`, or a string starting with
/// `@`). Binds before returning, so a bad directory or a busy address is
/// a [`ListenError`] here. One listening socket, whatever
/// `ListenOptions::listeners` says.
///
/// ```no_run
/// use weft_io::{listen_unix, Conn, ListenOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
///         let cred = conn.peer_cred()?;
///         println!("client pid {} uid {}", cred.pid, cred.uid);
///         Ok(())
///     }
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let listening = listen_unix(rt.handle(), "/tmp/echo.sock",
///                             ListenOptions::new().unix_mode(0o600), || Echo).unwrap();
/// println!("listening on {}", listening.local_addr());
/// rt.run().unwrap();
/// ```
pub fn listen_unix<P: Protocol>(
    handle: &Handle,
    addr: impl Into<UnixAddr>,
    options: ListenOptions,
    factory: impl Fn() -> P + Send + Sync + 'static,
) -> Result<Listening<P, UnixAddr>, ListenError> {
    let addr = addr.into();
    let bind_err = |source| ListenError::Bind {
        addr: Address::Unix(addr.clone()),
        source,
    };
    let bound = match crate::sim::net_of(handle) {
        Some(net) => Bound::Sim(net.bind_unix(&addr).map_err(bind_err)?),
        None => {
            let (sock, file) = bind_listener(&addr, &options).map_err(bind_err)?;
            Bound::Unix(sock, file)
        }
    };
    Ok(spawn_bound(
        handle,
        Address::Unix(addr.clone()),
        addr,
        vec![bound],
        options,
        None,
        Arc::new(factory),
    ))
}

/// Connects to a UNIX socket and runs `protocol` on the connection in its
/// own actor (Twisted's `connectUNIX`). Returns at once; a missing file
/// or nobody listening is a [`ConnectError`](crate::ConnectError); a
/// listener whose backlog is full is tried again until the options'
/// timeout.
///
/// ```no_run
/// use std::time::Duration;
/// use weft_io::{connect_unix, Conn, ConnectOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Status;
/// impl Protocol for Status {
///     type Msg = ();
///     fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
///         conn.write(b"status\n")?;
///         Ok(())
///     }
///     fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         print!("{}", String::from_utf8_lossy(data));
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let conn = connect_unix(rt.handle(), "/run/app/control.sock", ConnectOptions::new(), Status)
///     .wait(Duration::from_secs(5));
/// ```
pub fn connect_unix<P: Protocol>(
    handle: &Handle,
    addr: impl Into<UnixAddr>,
    options: ConnectOptions,
    protocol: P,
) -> Connecting<P> {
    spawn_connect_unix(handle, addr.into(), options, protocol)
}
