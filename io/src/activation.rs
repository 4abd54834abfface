//! systemd socket activation and readiness notification, without
//! libsystemd: the sockets a service manager opened for this process
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, descriptors from 3 on)
//! and the `READY=1` / `STOPPING=1` messages to `NOTIFY_SOCKET`.
//!
//! Call [`listen_fds`] at the top of `main`, before the runtime (or any
//! other thread) starts: it takes the descriptors (close-on-exec from
//! then on) and removes the three variables from the environment, so a
//! child process does not mistake them for its own; changing the
//! environment while other threads read it is a data race in C's
//! `setenv`. Hand a descriptor to [`adopt_listener`](crate::adopt_listener).
//!
//! Owns: reading those variables and claiming those descriptors once per
//! process. Must not touch: how the sockets are then served.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first descriptor a service manager passes.
const LISTEN_FDS_START: RawFd = 3;

/// The descriptors are claimed once per process.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The sockets passed by the service manager, by name and position.
#[derive(Debug, Default)]
pub struct ListenFds {
    fds: Vec<(String, Option<OwnedFd>)>,
}

impl ListenFds {
    /// How many were passed.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether none were passed (not socket-activated).
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Their names in order (`FileDescriptorName=` in the socket unit;
    /// `"unknown"` where the manager gave none).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fds.iter().map(|(name, _)| name.as_str())
    }

    /// Takes the first not yet taken descriptor named `name`.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        self.fds
            .iter_mut()
            .find(|(n, fd)| n == name && fd.is_some())
            .and_then(|(_, fd)| fd.take())
    }

    /// Takes the descriptor at `index` (0 is descriptor 3).
    pub fn take_index(&mut self, index: usize) -> Option<OwnedFd> {
        self.fds.get_mut(index).and_then(|(_, fd)| fd.take())
    }
}

/// Why the passed sockets could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// A variable is not what the protocol says (`LISTEN_PID` or
    /// `LISTEN_FDS` not a number, more names than descriptors).
    #[error("socket activation: {0}")]
    Malformed(String),
    /// A passed descriptor is not open.
    #[error("socket activation: descriptor {fd} is not open")]
    BadDescriptor {
        /// The descriptor number.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Takes the sockets the service manager passed to this process (as
/// `sd_listen_fds_with_names` with `unset_environment`): none when
/// `LISTEN_PID` is not this process or the variables are absent, and
/// none on a second call. The variables are removed from the environment
/// either way. See the module documentation for when to call it.
///
/// ```no_run
/// use weft_io::{activation, adopt_listener, listen_tcp, Conn, ListenOptions, Protocol};
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
/// let mut passed = activation::listen_fds().expect("well-formed LISTEN_* variables");
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// match passed.take_index(0) {
///     Some(fd) => { adopt_listener(rt.handle(), fd, ListenOptions::new(), || Echo).unwrap(); }
///     None => { listen_tcp(rt.handle(), "127.0.0.1:7000".parse().unwrap(),
///                          ListenOptions::new(), || Echo).unwrap(); }
/// }
/// rt.handle().on_startup(|| { let _ = activation::notify_ready(); });
/// rt.run().unwrap();
/// ```
pub fn listen_fds() -> Result<ListenFds, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(ListenFds::default());
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ActivationError::Malformed(format!("LISTEN_PID={pid:?} is not a pid")))?;
    if pid != std::process::id() {
        // Meant for another process (a parent's variables inherited).
        return Ok(ListenFds::default());
    }
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| ActivationError::Malformed(format!("LISTEN_FDS={count:?} is not a count")))?;
    let names: Vec<String> = match names {
        Some(n) if !n.is_empty() => n.split(':').map(str::to_string).collect(),
        _ => Vec::new(),
    };
    if names.len() > count {
        return Err(ActivationError::Malformed(format!(
            "LISTEN_FDNAMES has {} names for {count} descriptors",
            names.len()
        )));
    }
    let bad = |fd| {
        move |e: nix::errno::Errno| ActivationError::BadDescriptor {
            fd,
            source: io::Error::from(e),
        }
    };
    let fds_passed = || (0..count).map(|i| LISTEN_FDS_START + i as RawFd);
    // All open, or none is claimed.
    for fd in fds_passed() {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(bad(fd))?;
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(ListenFds::default());
    }
    let mut fds = Vec::with_capacity(count);
    for (i, fd) in fds_passed().enumerate() {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(bad(fd))?;
        let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) | nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags)).map_err(bad(fd))?;
        // SAFETY: the service manager passed descriptors 3..3+LISTEN_FDS
        // to this process (LISTEN_PID is ours) for it to own; `fd` is
        // open (checked above), and `TAKEN` makes this the only place
        // that ever claims it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = names.get(i).cloned().unwrap_or_else(|| "unknown".into());
        fds.push((name, Some(owned)));
    }
    Ok(ListenFds { fds })
}

/// Sends `state` (e.g. `"READY=1"`, `"STATUS=serving"`) to the service
/// manager's `NOTIFY_SOCKET` (a path, or `@name` for an abstract one).
/// `Ok(false)` when there is none (not run by a service manager).
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let addr = crate::addr::UnixAddr::from(target.as_str()).to_sockaddr()?;
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None)?;
    sock.send_to(state.as_bytes(), &addr)?;
    Ok(true)
}

/// Tells the service manager the service is ready (`READY=1`): call it
/// once listening (a start-up hook is the place).
pub fn notify_ready() -> io::Result<bool> {
    notify("READY=1")
}

/// Tells the service manager the service is stopping (`STOPPING=1`).
pub fn notify_stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}
