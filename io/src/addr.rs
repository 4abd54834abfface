//! Addresses of connections and listeners: [`Address`] is an internet
//! address or a UNIX one ([`UnixAddr`]: a filesystem path, a Linux
//! abstract name, or unnamed), as Twisted's `IPv4Address`/`UNIXAddress`.
//!
//! Owns: the address values, their display, and their conversion to and
//! from the OS's socket addresses. Must not touch: sockets.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The address of a UNIX socket.
///
/// ```
/// use weft_io::UnixAddr;
///
/// let path = UnixAddr::path("/run/app.sock");
/// assert_eq!(path.to_string(), "/run/app.sock");
/// let name = UnixAddr::abstract_name("app-control");
/// assert_eq!(name.to_string(), "@app-control");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// A socket file in the filesystem.
    Path(PathBuf),
    /// A name in Linux's abstract namespace (no file; it disappears with
    /// the last socket bound to it). Shown with a leading `@`, as `ss` does.
    Abstract(Vec<u8>),
    /// An unbound socket (a client that did not bind, a socketpair end).
    Unnamed,
}

impl UnixAddr {
    /// A filesystem path.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        UnixAddr::Path(path.into())
    }

    /// A Linux abstract name (without the leading NUL byte).
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Self {
        UnixAddr::Abstract(name.as_ref().to_vec())
    }

    /// The path, for a filesystem address.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            UnixAddr::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The OS's address for binding or connecting; an error for
    /// `Unnamed`, an empty path, or a name longer than `sun_path` allows.
    pub(crate) fn to_sockaddr(&self) -> std::io::Result<socket2::SockAddr> {
        let invalid = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        match self {
            UnixAddr::Path(p) if p.as_os_str().is_empty() => Err(invalid("an empty socket path")),
            UnixAddr::Path(p) if p.as_os_str().as_bytes().contains(&0) => {
                Err(invalid("a socket path with a NUL byte"))
            }
            UnixAddr::Path(p) => socket2::SockAddr::unix(p),
            UnixAddr::Abstract(name) => {
                let mut bytes = Vec::with_capacity(name.len() + 1);
                bytes.push(0);
                bytes.extend_from_slice(name);
                socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
            }
            UnixAddr::Unnamed => Err(invalid(
                "an unnamed UNIX address cannot be bound or reached",
            )),
        }
    }

    /// The address of the OS's `sockaddr_un`.
    pub(crate) fn from_std(addr: &std::os::unix::net::SocketAddr) -> Self {
        use std::os::linux::net::SocketAddrExt;
        if let Some(p) = addr.as_pathname() {
            UnixAddr::Path(p.to_path_buf())
        } else if let Some(name) = addr.as_abstract_name() {
            UnixAddr::Abstract(name.to_vec())
        } else {
            UnixAddr::Unnamed
        }
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Path(p) => write!(f, "{}", p.display()),
            UnixAddr::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            UnixAddr::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

impl From<&Path> for UnixAddr {
    fn from(p: &Path) -> Self {
        UnixAddr::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for UnixAddr {
    fn from(p: PathBuf) -> Self {
        UnixAddr::Path(p)
    }
}

impl From<&PathBuf> for UnixAddr {
    fn from(p: &PathBuf) -> Self {
        UnixAddr::Path(p.clone())
    }
}

/// A path given as text; a leading `@` names an abstract socket, as in
/// `ss` and systemd's `ListenStream=@name`.
impl From<&str> for UnixAddr {
    fn from(s: &str) -> Self {
        match s.strip_prefix('@') {
            Some(name) => UnixAddr::abstract_name(name),
            None => UnixAddr::path(s),
        }
    }
}

/// The address of a connection's end or of a listener: internet or UNIX.
///
/// ```
/// use weft_io::{Address, UnixAddr};
///
/// let tcp = Address::from("127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(tcp.inet().map(|a| a.port()), Some(80));
/// let unix = Address::from(UnixAddr::path("/tmp/s"));
/// assert!(unix.inet().is_none());
/// assert_eq!(unix.to_string(), "/tmp/s");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A UNIX socket's address.
    Unix(UnixAddr),
}

impl Address {
    /// The internet address, if this is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The UNIX address, if this is one.
    pub fn unix(&self) -> Option<&UnixAddr> {
        match self {
            Address::Unix(a) => Some(a),
            Address::Inet(_) => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Inet(a)
    }
}

impl From<UnixAddr> for Address {
    fn from(a: UnixAddr) -> Self {
        Address::Unix(a)
    }
}

impl PartialEq<SocketAddr> for Address {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.inet() == Some(*other)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(a) => a.fmt(f),
            Address::Unix(a) => a.fmt(f),
        }
    }
}
