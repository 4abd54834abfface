//! SIGINT and SIGTERM as a graceful-shutdown request.
//!
//! Owns: each runtime's self-pipe for those two signals, and the
//! process-wide fallback that keeps their default meaning when no runtime
//! is running. The handlers are installed through `signal-hook-registry`
//! (the field's well-kept registry: it chains handlers, so several runtimes
//! and other libraries can each have their own, and it saves and restores
//! `errno` around them, so a signal never corrupts the `errno` of the code
//! it interrupts).
//!
//! Lifecycle: the pipe is opened when the runtime is built (a program at
//! its descriptor limit fails in `build`, not in `run`) and registered with
//! the reactor under `SIGNAL_TOKEN`; the handlers are installed when `run`
//! starts and removed when it returns. A handler only writes one byte to
//! its pipe (async-signal-safe); the driving worker sees the pipe readable,
//! drains it and asks the runtime to shut down. While no runtime runs, the
//! fallback gives SIGINT/SIGTERM the meaning they had before weft (the
//! default: terminate; ignored stays ignored; a previous handler is
//! chained by the registry).
//! Must not touch: anything but the pipe from inside a signal handler.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use mio::unix::SourceFd;
use mio::Interest;
use nix::fcntl::OFlag;
use nix::libc;
use signal_hook_registry::SigId;

use crate::reactor::{Reactor, SIGNAL_TOKEN};

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Runtimes whose `run` currently handles the signals.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A runtime's self-pipe (opened at build time).
pub(crate) struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SignalPipe {
    /// Opens the pipe and registers its read end with the reactor.
    pub(crate) fn open(reactor: &Reactor) -> io::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let raw: RawFd = read.as_raw_fd();
        reactor
            .registry()
            .register(&mut SourceFd(&raw), SIGNAL_TOKEN, Interest::READABLE)?;
        Ok(SignalPipe { read, write })
    }

    /// Empties the pipe after the reactor reported it readable.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(self.read.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// Installs this runtime's handlers (for the duration of `run`).
    pub(crate) fn install(&self) -> io::Result<Installed> {
        install_fallback_once()?;
        let fd = self.write.as_raw_fd();
        let mut ids = Vec::with_capacity(SIGNALS.len());
        RUNNING.fetch_add(1, Ordering::SeqCst);
        for signal in SIGNALS {
            // SAFETY: the action only calls write(2) on a descriptor that
            // outlives the registration (`Installed` unregisters before the
            // pipe can close, and the registry waits for running actions),
            // which is async-signal-safe; the registry saves `errno`.
            let registered = unsafe {
                signal_hook_registry::register(signal, move || {
                    let byte = 1u8;
                    // A full pipe already has a byte pending: enough.
                    libc::write(fd, (&byte as *const u8).cast(), 1);
                })
            };
            match registered {
                Ok(id) => ids.push(id),
                Err(e) => {
                    drop(Installed { ids });
                    return Err(e);
                }
            }
        }
        Ok(Installed { ids })
    }
}

/// A runtime's installed handlers; dropping it removes them.
pub(crate) struct Installed {
    ids: Vec<SigId>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook_registry::unregister(id);
        }
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Once per process: for each signal whose disposition was the default,
/// an action that restores the default meaning (terminate) while no
/// runtime is running. The registry replaces the default disposition with
/// its own handler, so without this a SIGTERM after `run` returned would
/// do nothing.
fn install_fallback_once() -> io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for signal in SIGNALS {
            // SAFETY: a null new action only reads the current one.
            let was_default = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_DFL
            };
            if !was_default {
                continue;
            }
            // SAFETY: the action reads an atomic and, when no runtime runs,
            // resets the disposition and re-raises the signal: signal(2),
            // raise(3) and pthread_sigmask(3) are async-signal-safe.
            let registered = unsafe {
                signal_hook_registry::register(signal, move || {
                    if RUNNING.load(Ordering::SeqCst) == 0 {
                        libc::signal(signal, libc::SIG_DFL);
                        let mut set: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut set);
                        libc::sigaddset(&mut set, signal);
                        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                        libc::raise(signal);
                    }
                })
            };
            if let Err(e) = registered {
                result = Err(e);
                return;
            }
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handler's write fails (the pipe is full: EAGAIN), which is what
    /// used to overwrite the `errno` of the interrupted code; the registry
    /// restores it.
    #[test]
    fn a_signal_never_changes_the_errno_of_the_code_it_interrupts() {
        let reactor = Reactor::new().expect("reactor");
        let pipe = SignalPipe::open(&reactor).expect("pipe");
        let installed = pipe.install().expect("handlers");
        while nix::unistd::write(&pipe.write, &[0u8; 4096]).is_ok() {}
        for _ in 0..3 {
            // SAFETY: errno is this thread's; raise(3) delivers SIGTERM to
            // this thread, whose handler (ours, installed above) only
            // writes to the pipe.
            let after = unsafe {
                *libc::__errno_location() = 4242;
                libc::raise(libc::SIGTERM);
                *libc::__errno_location()
            };
            assert_eq!(after, 4242);
        }
        drop(installed);
        pipe.drain();
    }
}
