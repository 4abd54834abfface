//! Raw descriptor readiness (Twisted's `addReader`, `addWriter`,
//! `removeReader`, `removeWriter`, `removeAll`, `getReaders`,
//! `getWriters`): an actor watches any pollable descriptor (a pipe, an
//! eventfd, inotify, a terminal, a socket made by another library) and
//! receives its readiness as messages.
//!
//! * [`watch_fd`] registers the descriptor for reading and/or writing and
//!   returns an [`FdWatch`]; dropping it (or [`FdWatch::unwatch`]) stops
//!   watching. Events already queued then say so
//!   ([`FdReady::is_current`] is false).
//! * [`Trigger::Edge`] (mio's way, the default): one event per change; read
//!   until `WouldBlock`. [`Trigger::Level`] (Twisted's way): after each
//!   event is handled, weft asks the kernel again (`poll` with no wait)
//!   and sends another while the descriptor is still ready, so a handler
//!   that reads a little at a time gets called again. At most one event
//!   per watch is queued at a time.
//! * A descriptor closed behind the runtime's back (or closed and its
//!   number reused by another file: weft compares the device and inode it
//!   saw at `watch_fd`) is reported once, as [`FdEvent::Closed`], and the
//!   watch ends; it is never spun on, and the new file is never mistaken
//!   for the old. It is found at the next look at the descriptor (an
//!   event, or a level re-check): the kernel says nothing when a quiet
//!   descriptor is closed.
//! * [`watched`] lists a runtime's watches. At shutdown the watching actor
//!   is stopped like every actor (its `stopping` tells it), and its
//!   watches end with it.
//!
//! Owns: the registration, the level re-check, the identity check and the
//! list of watches. Must not touch: reading or writing the descriptor
//! (the watcher does that).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use nix::libc;
use parking_lot::Mutex;
use weft_actors::{Actor, ActorId, Ctx};
use weft_runtime::mio::event::Source;
use weft_runtime::mio::unix::SourceFd;
use weft_runtime::mio::{Interest, Registry, Token};
use weft_runtime::{Handle, IoToken, Readiness, ReadySink};

/// What to watch a descriptor for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFor {
    /// Readable (Twisted's `addReader`).
    Read,
    /// Writable (`addWriter`).
    Write,
    /// Both.
    ReadWrite,
}

impl WatchFor {
    fn read(self) -> bool {
        matches!(self, WatchFor::Read | WatchFor::ReadWrite)
    }
    fn write(self) -> bool {
        matches!(self, WatchFor::Write | WatchFor::ReadWrite)
    }
}

/// How readiness is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Trigger {
    /// One event per change of readiness (read or write until
    /// `WouldBlock` before expecting another).
    #[default]
    Edge,
    /// Events keep coming while the descriptor stays ready (as Twisted's
    /// reactor calls `doRead`): after each event is handled, weft checks
    /// again and sends another if it is still ready.
    Level,
}

/// Why a descriptor cannot be watched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// Not an open descriptor.
    #[error("descriptor {fd} is not open")]
    Invalid {
        /// The descriptor number.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A regular file or a directory: always ready, so the kernel's
    /// readiness interface refuses it (read it on the blocking pool).
    #[error("descriptor {fd} is a regular file or directory; it cannot be watched for readiness")]
    NotPollable {
        /// The descriptor number.
        fd: RawFd,
    },
    /// The reactor refused it for another reason.
    #[error("cannot watch descriptor {fd}")]
    Register {
        /// The descriptor number.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A watch's event, turned into the watcher's message by its `map`.
#[derive(Debug)]
pub enum FdEvent {
    /// The descriptor is ready.
    Ready(FdReady),
    /// The descriptor was closed behind the runtime's back (or its number
    /// now names another file); the watch has ended. Sent once.
    Closed {
        /// The watch.
        watch: u64,
    },
}

/// Readiness of a watched descriptor. In level mode, dropping it (when
/// the handler is done with it) makes weft check the descriptor again.
pub struct FdReady {
    watch: u64,
    readiness: Readiness,
    state: Option<Arc<State>>,
    /// Level mode: re-check on drop.
    rearm: bool,
}

impl FdReady {
    /// The watch this event belongs to ([`FdWatch::id`]).
    pub fn watch(&self) -> u64 {
        self.watch
    }
    /// Data (or an end, or an error) to read.
    pub fn is_readable(&self) -> bool {
        self.readiness.is_readable()
    }
    /// Room to write.
    pub fn is_writable(&self) -> bool {
        self.readiness.is_writable()
    }
    /// The other end hung up (a pipe's writers closed, a peer shut down).
    pub fn is_hangup(&self) -> bool {
        self.readiness.is_read_closed() || self.readiness.is_write_closed()
    }
    /// The descriptor reported an error.
    pub fn is_error(&self) -> bool {
        self.readiness.is_error()
    }
    /// Whether the watch is still on (false for an event that was queued
    /// before `unwatch`, or after the descriptor was found closed).
    pub fn is_current(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| s.active.load(Ordering::Acquire))
    }
}

impl std::fmt::Debug for FdReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdReady")
            .field("watch", &self.watch)
            .field("readiness", &self.readiness)
            .finish()
    }
}

impl Drop for FdReady {
    fn drop(&mut self) {
        if let (true, Some(state)) = (self.rearm, self.state.take()) {
            state.recheck();
        }
    }
}

/// What one watch shares between its handle, its sink and its events.
struct State {
    id: u64,
    fd: RawFd,
    /// (device, inode) of the file when the watch began.
    ident: (u64, u64),
    what: WatchFor,
    level: bool,
    /// The watch is on (cleared by unwatch or when found closed).
    active: AtomicBool,
    /// Level mode: an event is queued.
    pending: AtomicBool,
    /// Found closed; the `Closed` event is (being) sent.
    closed: AtomicBool,
    /// The watcher's mailbox (a forced push: readiness is never refused).
    sink: OnceLock<Arc<dyn ReadySink>>,
}

impl State {
    /// Whether `fd` still names the file the watch began with.
    fn same_file(&self) -> bool {
        identity(self.fd).is_ok_and(|id| id == self.ident)
    }

    /// The descriptor is gone: report it once and end the watch.
    fn report_closed(&self) {
        self.active.store(false, Ordering::Release);
        if !self.closed.swap(true, Ordering::AcqRel) {
            if let Some(sink) = self.sink.get() {
                // The map sees `closed` and makes it `FdEvent::Closed`.
                sink.ready(Readiness::EMPTY);
            }
        }
    }

    /// Level mode, after an event was handled: still ready? Then another.
    fn recheck(&self) {
        self.pending.store(false, Ordering::Release);
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut events = 0;
        if self.what.read() {
            events |= libc::POLLIN;
        }
        if self.what.write() {
            events |= libc::POLLOUT;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait; poll only reports on the
        // number (POLLNVAL if it is not open).
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        // The identity after the poll: a number replaced before or during
        // it is caught here (checked before, a replacement right after
        // the check would be polled as ours and, not ready, end the chain
        // unreported).
        if !self.same_file() || (n > 0 && pfd.revents & libc::POLLNVAL != 0) {
            return self.report_closed();
        }
        if n <= 0 {
            return;
        }
        let mut r = Readiness::EMPTY;
        if pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 && self.what.read() {
            r = r.union(Readiness::READ);
        }
        if pfd.revents & libc::POLLOUT != 0 && self.what.write() {
            r = r.union(Readiness::WRITE);
        }
        if pfd.revents & libc::POLLHUP != 0 {
            r = r.union(Readiness::READ_HUP);
        }
        if pfd.revents & libc::POLLERR != 0 {
            r = r.union(Readiness::FAILED);
        }
        if r != Readiness::EMPTY && !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(sink) = self.sink.get() {
                sink.ready(r);
            }
        }
    }
}

/// Between the reactor and the watcher: drops events of an ended watch,
/// checks the file is still the same one, keeps one event queued in level
/// mode.
struct FilterSink {
    state: Weak<State>,
}

impl ReadySink for FilterSink {
    fn ready(&self, readiness: Readiness) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        if !state.active.load(Ordering::Acquire) {
            return;
        }
        if !state.same_file() {
            return state.report_closed();
        }
        if state.level && state.pending.swap(true, Ordering::AcqRel) {
            // One is queued; its re-check will see this readiness.
            return;
        }
        if let Some(sink) = state.sink.get() {
            sink.ready(readiness);
        }
    }
}

/// A watch on a descriptor, held by the watching actor. Dropping it stops
/// watching (Twisted's `removeReader`/`removeWriter`).
#[must_use = "dropping the watch ends it at once"]
pub struct FdWatch {
    state: Arc<State>,
    token: Option<IoToken>,
    handle: Handle,
}

impl FdWatch {
    /// This watch's id (events carry it).
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// The watched descriptor's number.
    pub fn fd(&self) -> RawFd {
        self.state.fd
    }

    /// Whether it is still on (false once the descriptor was found
    /// closed).
    pub fn is_active(&self) -> bool {
        self.state.active.load(Ordering::Acquire)
    }

    /// Stops watching; events already queued report `is_current() ==
    /// false`.
    pub fn unwatch(self) {}
}

impl Drop for FdWatch {
    fn drop(&mut self) {
        self.state.active.store(false, Ordering::Release);
        REGISTRY.lock().retain(|e| e.info.id != self.state.id);
        if let Some(token) = self.token.take() {
            // The number may name another file by now (closed and
            // reused): then the kernel already forgot ours, and removing
            // "this number" would remove the other file's registration.
            let _ = if self.state.same_file() {
                self.handle.deregister(&mut SourceFd(&self.state.fd), token)
            } else {
                self.handle.deregister(&mut Forgotten, token)
            };
        }
    }
}

impl std::fmt::Debug for FdWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdWatch")
            .field("id", &self.state.id)
            .field("fd", &self.state.fd)
            .field("active", &self.is_active())
            .finish()
    }
}

/// A source the kernel no longer has: deregistering it only frees the
/// runtime's slot.
struct Forgotten;

impl Source for Forgotten {
    fn register(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn reregister(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&mut self, _: &Registry) -> io::Result<()> {
        Ok(())
    }
}

/// One watch, as [`watched`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchInfo {
    /// The watch's id.
    pub id: u64,
    /// The descriptor.
    pub fd: RawFd,
    /// Watched for reading (Twisted's `getReaders`).
    pub read: bool,
    /// Watched for writing (`getWriters`).
    pub write: bool,
    /// Level-triggered.
    pub level: bool,
    /// The watching actor.
    pub actor: ActorId,
}

struct Entry {
    info: WatchInfo,
    handle: Handle,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The watches on `handle`'s runtime now.
pub fn watched(handle: &Handle) -> Vec<WatchInfo> {
    REGISTRY
        .lock()
        .iter()
        .filter(|e| e.handle.same_runtime(handle))
        .map(|e| e.info.clone())
        .collect()
}

fn identity(fd: RawFd) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}

/// Watches `fd` for what `what` says, delivering each event to this
/// actor as `map(event)` (Twisted's `addReader`/`addWriter`). The actor
/// keeps the returned [`FdWatch`]; dropping it stops watching. The
/// descriptor stays the caller's: close it only after the watch ends.
///
/// ```
/// use std::io::Read;
/// use std::os::fd::OwnedFd;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
/// use weft_io::watch::{watch_fd, FdEvent, FdWatch, Trigger, WatchFor};
///
/// /// Reads a pipe as data arrives.
/// struct PipeReader { pipe: std::fs::File, watch: Option<FdWatch> }
///
/// impl Actor for PipeReader {
///     type Msg = FdEvent;
///     fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         self.watch = Some(watch_fd(ctx, &self.pipe, WatchFor::Read, Trigger::Edge, |e| e)?);
///         Ok(())
///     }
///     fn handle(&mut self, event: FdEvent, ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         if let FdEvent::Ready(_) = event {
///             let mut buf = [0u8; 4096];
///             loop {
///                 match self.pipe.read(&mut buf) {
///                     Ok(0) => { ctx.stop(); break }
///                     Ok(n) => println!("{n} bytes"),
///                     Err(_) => break, // WouldBlock: wait for the next event
///                 }
///             }
///         }
///         Ok(())
///     }
/// }
///
/// let (r, w) = nix::unistd::pipe().unwrap();
/// nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&r),
///     nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// rt.handle().spawn(PipeReader { pipe: std::fs::File::from(OwnedFd::from(r)), watch: None });
/// drop(w);
/// ```
pub fn watch_fd<A: Actor>(
    ctx: &mut Ctx<'_, A>,
    fd: impl AsFd,
    what: WatchFor,
    trigger: Trigger,
    map: impl Fn(FdEvent) -> A::Msg + Send + Sync + 'static,
) -> Result<FdWatch, WatchError> {
    let raw = fd.as_fd().as_raw_fd();
    let ident = identity(raw).map_err(|source| WatchError::Invalid { fd: raw, source })?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let state = Arc::new(State {
        id,
        fd: raw,
        ident,
        what,
        level: trigger == Trigger::Level,
        active: AtomicBool::new(true),
        pending: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        sink: OnceLock::new(),
    });
    let weak = Arc::downgrade(&state);
    let inner = ctx.ready_sink(move |readiness| {
        let state = weak.upgrade();
        match &state {
            Some(s) if s.closed.load(Ordering::Acquire) && readiness == Readiness::EMPTY => {
                map(FdEvent::Closed { watch: id })
            }
            _ => {
                let rearm = state.as_ref().is_some_and(|s| s.level);
                map(FdEvent::Ready(FdReady {
                    watch: id,
                    readiness,
                    state,
                    rearm,
                }))
            }
        }
    });
    let _ = state.sink.set(inner);
    let interest = match what {
        WatchFor::Read => Interest::READABLE,
        WatchFor::Write => Interest::WRITABLE,
        WatchFor::ReadWrite => Interest::READABLE | Interest::WRITABLE,
    };
    let handle = ctx.runtime().clone();
    let filter = Arc::new(FilterSink {
        state: Arc::downgrade(&state),
    });
    let token = handle
        .register(&mut SourceFd(&raw), interest, filter)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM) => WatchError::NotPollable { fd: raw },
            Some(libc::EBADF) => WatchError::Invalid { fd: raw, source },
            _ => WatchError::Register { fd: raw, source },
        })?;
    REGISTRY.lock().push(Entry {
        info: WatchInfo {
            id,
            fd: raw,
            read: what.read(),
            write: what.write(),
            level: trigger == Trigger::Level,
            actor: ctx.id(),
        },
        handle: handle.clone(),
    });
    Ok(FdWatch {
        state,
        token: Some(token),
        handle,
    })
}
