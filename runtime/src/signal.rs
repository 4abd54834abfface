//! SIGINT and SIGTERM as a graceful-shutdown request.
//!
//! Owns: the process's self-pipe for those two signals. The handler only
//! writes one byte to the pipe (async-signal-safe); the pipe's read end is
//! registered with the reactor under `SIGNAL_TOKEN`, so the driving worker
//! sees the signal as an event and asks the runtime to shut down.
//! Invariants: at most one runtime owns the signals at a time (a second
//! `run` with signals enabled runs without them and logs it); the previous
//! dispositions are restored when the owner's `run` returns.
//! Must not touch: anything but the pipe from inside the signal handler.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use mio::unix::SourceFd;
use mio::Interest;
use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::reactor::{Reactor, SIGNAL_TOKEN};

static OWNED: AtomicBool = AtomicBool::new(false);
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static READ_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: nix::libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local
        // byte; a failed or short write (pipe full) loses nothing that
        // matters, because one byte already pending is enough.
        unsafe {
            nix::libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Owns the installed handlers; dropping it restores the old ones.
pub(crate) struct SignalGuard {
    read: OwnedFd,
    _write: OwnedFd,
    old: Vec<(Signal, SigAction)>,
}

pub(crate) fn install(reactor: &Reactor) -> io::Result<Option<SignalGuard>> {
    if OWNED.swap(true, Ordering::AcqRel) {
        tracing::warn!("another runtime owns SIGINT/SIGTERM; this one runs without them");
        return Ok(None);
    }
    let result = install_owned(reactor);
    if result.is_err() {
        OWNED.store(false, Ordering::Release);
    }
    result.map(Some)
}

fn install_owned(reactor: &Reactor) -> io::Result<SignalGuard> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let raw: RawFd = read.as_raw_fd();
    reactor
        .registry()
        .register(&mut SourceFd(&raw), SIGNAL_TOKEN, Interest::READABLE)?;
    READ_FD.store(raw, Ordering::Release);
    WRITE_FD.store(write.as_raw_fd(), Ordering::Release);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut old = Vec::new();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only calls write(2) on a descriptor read from
        // an atomic, which is async-signal-safe.
        match unsafe { sigaction(signal, &action) } {
            Ok(previous) => old.push((signal, previous)),
            Err(e) => {
                restore(&old);
                return Err(e.into());
            }
        }
    }
    Ok(SignalGuard {
        read,
        _write: write,
        old,
    })
}

fn restore(old: &[(Signal, SigAction)]) {
    for (signal, action) in old {
        // SAFETY: restoring a disposition that was installed before ours.
        let _ = unsafe { sigaction(*signal, action) };
    }
}

/// Empties the self-pipe after the reactor reported it readable.
pub(crate) fn drain() {
    let fd = READ_FD.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 64];
    while let Ok(n) = nix::unistd::read(fd, &mut buf) {
        if n == 0 {
            break;
        }
    }
}

impl SignalGuard {
    pub(crate) fn uninstall(self, reactor: &Reactor) {
        restore(&self.old);
        WRITE_FD.store(-1, Ordering::Release);
        READ_FD.store(-1, Ordering::Release);
        let raw = self.read.as_raw_fd();
        let _ = reactor.registry().deregister(&mut SourceFd(&raw));
        OWNED.store(false, Ordering::Release);
    }
}
