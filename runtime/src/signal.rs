//! SIGINT and SIGTERM as a graceful-shutdown request, and other signals
//! (SIGHUP, SIGUSR1, SIGCHLD...) delivered to subscribers ([`SignalHub`]).
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
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use mio::unix::SourceFd;
use mio::Interest;
use nix::fcntl::OFlag;
use nix::libc;
use signal_hook_registry::SigId;

use crate::reactor::{Reactor, Readiness, ReadySink, SIGNAL_TOKEN};

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

/// Signals delivered to subscribers as readiness (SIGHUP to reload, SIGUSR1,
/// SIGWINCH, SIGCHLD...): one per runtime, made on the first subscription.
/// A handler counts its signal in an atomic and writes one byte to the
/// hub's pipe; the pipe is an ordinary reactor source whose sink drains
/// it and tells each subscriber of a signal that came (once per drain,
/// however many times it came: signals coalesce, as in the kernel).
pub(crate) struct SignalHub {
    read: OwnedFd,
    write: OwnedFd,
    counts: Arc<[AtomicU32; MAX_SIGNAL]>,
    state: parking_lot::Mutex<HubState>,
}

const MAX_SIGNAL: usize = 65;

#[derive(Default)]
struct HubState {
    next: u64,
    subscribers: Vec<(u64, libc::c_int, Arc<dyn ReadySink>)>,
    installed: Vec<(libc::c_int, SigId)>,
}

impl SignalHub {
    /// The hub of `reactor`, made (and its pipe registered) on first use.
    pub(crate) fn get(reactor: &Reactor) -> io::Result<Arc<SignalHub>> {
        if let Some(hub) = reactor.signal_hub.get() {
            return Ok(hub.clone());
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let hub = Arc::new(SignalHub {
            read,
            write,
            counts: Arc::new(std::array::from_fn(|_| AtomicU32::new(0))),
            state: parking_lot::Mutex::new(HubState::default()),
        });
        // Two threads may race here: the loser's hub is dropped unused.
        if reactor.signal_hub.set(hub.clone()).is_err() {
            return Ok(reactor.signal_hub.get().expect("set").clone());
        }
        let raw: RawFd = hub.read.as_raw_fd();
        let sink = Arc::new(HubSink {
            hub: Arc::downgrade(&hub),
        });
        reactor.register(&mut SourceFd(&raw), Interest::READABLE, sink)?;
        Ok(hub)
    }

    /// Tells `sink` of every `signal` from now on, until the subscription
    /// is dropped.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        signal: libc::c_int,
        sink: Arc<dyn ReadySink>,
    ) -> io::Result<SignalSubscription> {
        if signal <= 0 || signal as usize >= MAX_SIGNAL {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no signal {signal}"),
            ));
        }
        // The registry panics on these; they cannot be caught anyway.
        const FORBIDDEN: [libc::c_int; 5] = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGSEGV,
        ];
        if FORBIDDEN.contains(&signal) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {signal} cannot be caught"),
            ));
        }
        let mut state = self.state.lock();
        if !state.installed.iter().any(|(s, _)| *s == signal) {
            let fd = self.write.as_raw_fd();
            let counts = self.counts.clone();
            // SAFETY: the action increments an atomic and calls write(2) on
            // a descriptor that outlives the registration (the hub
            // unregisters before its pipe closes, and the registry waits
            // for running actions): async-signal-safe. signal-hook refuses
            // the signals that must not be caught (SIGKILL, SIGSEGV...).
            let id = unsafe {
                signal_hook_registry::register(signal, move || {
                    counts[signal as usize].fetch_add(1, Ordering::SeqCst);
                    let byte = 1u8;
                    libc::write(fd, (&byte as *const u8).cast(), 1);
                })
            }?;
            state.installed.push((signal, id));
        }
        state.next += 1;
        let id = state.next;
        state.subscribers.push((id, signal, sink));
        Ok(SignalSubscription {
            hub: Arc::downgrade(self),
            id,
        })
    }

    fn unsubscribe(&self, id: u64) {
        let mut state = self.state.lock();
        let Some(at) = state.subscribers.iter().position(|(i, _, _)| *i == id) else {
            return;
        };
        let (_, signal, _) = state.subscribers.swap_remove(at);
        if !state.subscribers.iter().any(|(_, s, _)| *s == signal) {
            if let Some(at) = state.installed.iter().position(|(s, _)| *s == signal) {
                let (_, sig_id) = state.installed.swap_remove(at);
                signal_hook_registry::unregister(sig_id);
            }
        }
    }

    fn deliver(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(self.read.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
        }
        let mut due = Vec::new();
        {
            let state = self.state.lock();
            for (signal, count) in self.counts.iter().enumerate() {
                if count.swap(0, Ordering::SeqCst) == 0 {
                    continue;
                }
                due.extend(
                    state
                        .subscribers
                        .iter()
                        .filter(|(_, s, _)| *s as usize == signal)
                        .map(|(_, _, sink)| sink.clone()),
                );
            }
        }
        for sink in due {
            sink.ready(Readiness::READ);
        }
    }
}

impl Drop for SignalHub {
    fn drop(&mut self) {
        // The handlers first: they write to the pipe closed after this.
        for (_, id) in self.state.get_mut().installed.drain(..) {
            signal_hook_registry::unregister(id);
        }
    }
}

struct HubSink {
    hub: std::sync::Weak<SignalHub>,
}

impl ReadySink for HubSink {
    fn ready(&self, _readiness: Readiness) {
        if let Some(hub) = self.hub.upgrade() {
            hub.deliver();
        }
    }
}

/// A signal subscription ([`Handle::subscribe_signal`](crate::Handle::subscribe_signal)):
/// dropping it stops the deliveries (and, with the last subscriber of a
/// signal, removes weft's handler for it).
#[must_use = "dropping the subscription stops the deliveries"]
pub struct SignalSubscription {
    hub: std::sync::Weak<SignalHub>,
    id: u64,
}

impl Drop for SignalSubscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.id);
        }
    }
}

impl std::fmt::Debug for SignalSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSubscription").finish_non_exhaustive()
    }
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
