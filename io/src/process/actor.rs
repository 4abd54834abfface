//! The process actor: the child's pipes and pidfd registered with the
//! reactor, output read with a budget and handed to the protocol, input
//! written from per-pipe buffers with watermarks, the exit reaped, and
//! `ended` once exited and every output pipe closed.
//!
//! Invariants:
//! * Only this actor reaps its child, and only by its pid.
//! * Readiness is edge-triggered: a pipe's `readable`/`writable` flag is
//!   cleared only by `WouldBlock`; a turn that stops reading with data
//!   left sends itself `ReadMore`.
//! * A paused or muted protocol reads nothing, so a fast child blocks on
//!   its full pipe.
//! * Every descriptor is deregistered and closed exactly once (when the
//!   pipe closes, or when the actor stops).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::libc;
use weft_actors::{Actor, ActorResult, Ctx, ExitReason};
use weft_runtime::mio::unix::SourceFd;
use weft_runtime::mio::Interest;
use weft_runtime::{IoToken, Readiness};

use super::spawn::{self, Dir, Started};
use super::{
    OnStop, Proc, ProcWriteError, ProcessProtocol, ProcessSpec, ProcessStatus, SignalError,
    SpawnError,
};

/// Rounds of write-then-callbacks in one settle.
const SETTLE_ROUNDS: usize = 16;

/// A process actor's message: one of the protocol's own, or weft's.
pub enum ProcMsg<M> {
    /// One of the protocol's own messages.
    User(M),
    #[doc(hidden)]
    Pipe(usize, Readiness),
    #[doc(hidden)]
    Exit(Readiness),
    #[doc(hidden)]
    ReadMore,
}

impl<M> ProcMsg<M> {
    pub(crate) fn into_user(self) -> M {
        match self {
            ProcMsg::User(m) => m,
            _ => unreachable!("only user messages are sent from outside"),
        }
    }
}

impl<M> std::fmt::Debug for ProcMsg<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcMsg::User(_) => "ProcMsg::User",
            ProcMsg::Pipe(..) => "ProcMsg::Pipe",
            ProcMsg::Exit(_) => "ProcMsg::Exit",
            ProcMsg::ReadMore => "ProcMsg::ReadMore",
        })
    }
}

/// The parent's end of one pipe.
pub(crate) struct Pipe {
    child_fd: i32,
    dir: Dir,
    fd: Option<OwnedFd>,
    token: Option<IoToken>,
    ready: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    close_after_flush: bool,
    /// The child's end closed (reported once).
    reported: bool,
}

impl Pipe {
    fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

/// The child as the protocol's handle sees it.
pub(crate) struct Child {
    pub(crate) pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    pidfd_token: Option<IoToken>,
    /// Without a pidfd: SIGCHLD, after which `waitpid(pid, WNOHANG)`.
    sigchld: Option<weft_runtime::SignalSubscription>,
    /// The PTY's master side, for resizing.
    pty: Option<OwnedFd>,
    pipes: Vec<Pipe>,
    pub(crate) status: Option<ProcessStatus>,
    pub(crate) read_paused: bool,
    write_paused: bool,
    /// A write was refused (`BufferFull`): the producer stopped and is
    /// owed `write_resumed`, even if the buffer drains before a
    /// `write_paused` would have been due.
    refused: bool,
    high_water: usize,
    low_water: usize,
    read_budget: usize,
    on_stop: OnStop,
    ended: bool,
    /// Reaping was handed to `stopped`'s policy (or done): `Drop` leaves
    /// the child alone.
    released: bool,
}

impl Child {
    fn new(spec: &ProcessSpec, started: Started) -> Child {
        Child {
            pid: started.pid,
            pidfd: started.pidfd,
            pidfd_token: None,
            sigchld: None,
            pty: started.pty,
            pipes: started
                .pipes
                .into_iter()
                .map(|p| Pipe {
                    child_fd: p.child_fd,
                    dir: p.dir,
                    fd: Some(p.fd),
                    token: None,
                    // A pipe the child reads takes writes until it says
                    // otherwise; output waits for its first edge.
                    ready: p.dir == Dir::Write,
                    wbuf: Vec::new(),
                    wpos: 0,
                    close_after_flush: false,
                    reported: false,
                })
                .collect(),
            status: None,
            read_paused: false,
            write_paused: false,
            refused: false,
            high_water: spec.high_water,
            low_water: spec.low_water,
            read_budget: spec.read_budget,
            on_stop: spec.on_stop,
            ended: false,
            released: false,
        }
    }

    pub(crate) fn write(&mut self, fd: i32, data: &[u8]) -> Result<(), ProcWriteError> {
        let limit = self.high_water.saturating_mul(4);
        let pipe = self
            .pipes
            .iter_mut()
            .find(|p| p.child_fd == fd && p.dir == Dir::Write)
            .ok_or(ProcWriteError::NotAnInput(fd))?;
        if pipe.fd.is_none() || pipe.close_after_flush {
            return Err(ProcWriteError::Closed(fd));
        }
        if pipe.buffered() + data.len() > limit.max(data.len()) && pipe.buffered() > 0 {
            self.refused = true;
            return Err(ProcWriteError::BufferFull {
                fd,
                buffered: pipe.buffered(),
            });
        }
        pipe.wbuf.extend_from_slice(data);
        Ok(())
    }

    pub(crate) fn close_fd(&mut self, fd: i32) {
        for pipe in self.pipes.iter_mut().filter(|p| p.child_fd == fd) {
            match pipe.dir {
                Dir::Write => pipe.close_after_flush = true,
                Dir::Read => {
                    // Closed at the next settle; no `fd_closed` for a close
                    // the protocol asked for.
                    pipe.close_after_flush = true;
                    pipe.reported = true;
                }
            }
        }
    }

    pub(crate) fn resize(&mut self, rows: u16, cols: u16) -> std::io::Result<()> {
        match &self.pty {
            Some(fd) => spawn::set_window_size(fd.as_raw_fd(), rows, cols),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the child has no terminal",
            )),
        }
    }

    pub(crate) fn signal(&mut self, signal: nix::sys::signal::Signal) -> Result<(), SignalError> {
        if self.status.is_some() {
            return Err(SignalError::Exited);
        }
        // The child is not reaped yet (only this actor reaps it), so its
        // pid is still its own.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal)
            .map_err(SignalError::Os)
    }

    fn buffered(&self) -> usize {
        self.pipes
            .iter()
            .filter(|p| p.dir == Dir::Write)
            .map(Pipe::buffered)
            .sum()
    }

    fn outputs_open(&self) -> bool {
        self.pipes
            .iter()
            .any(|p| p.dir == Dir::Read && p.fd.is_some())
    }
}

/// The actor running one child process and its [`ProcessProtocol`]. Made
/// by [`spawn_process`](super::spawn_process), or by [`ProcessActor::new`]
/// in a supervision tree (the child starts when the actor starts; a spawn
/// failure is a start failure).
pub struct ProcessActor<P: ProcessProtocol> {
    spec: ProcessSpec,
    child: Option<Child>,
    protocol: P,
}

impl<P: ProcessProtocol> ProcessActor<P> {
    /// An actor that starts the child `spec` describes when it starts.
    pub fn new(spec: ProcessSpec, protocol: P) -> Self {
        ProcessActor {
            spec,
            child: None,
            protocol,
        }
    }

    pub(crate) fn running(spec: ProcessSpec, started: Started, protocol: P) -> Self {
        let child = Child::new(&spec, started);
        ProcessActor {
            spec,
            child: Some(child),
            protocol,
        }
    }

    fn proc<'a, 'c>(child: &'a mut Child, ctx: &'a mut Ctx<'c, Self>) -> Proc<'a, 'c, P> {
        Proc { child, ctx }
    }

    /// Writes what the protocol queued and runs the watermark callbacks,
    /// again while a callback queued more for a pipe that takes it (a
    /// producer resumed by `write_resumed` writes at once: no readiness
    /// edge would come for a pipe that never filled).
    fn settle(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        for _ in 0..SETTLE_ROUNDS {
            self.settle_once(ctx)?;
            let Some(child) = self.child.as_ref() else {
                return Ok(());
            };
            let more = child
                .pipes
                .iter()
                .any(|p| p.dir == Dir::Write && p.fd.is_some() && p.ready && p.buffered() > 0);
            if !more {
                return Ok(());
            }
        }
        // A producer the pipe keeps up with: let other actors run first.
        ctx.send_self(ProcMsg::ReadMore);
        Ok(())
    }

    fn settle_once(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        // Writes first: what the protocol queued.
        for i in 0..child.pipes.len() {
            let pipe = &mut child.pipes[i];
            if pipe.dir != Dir::Write || pipe.fd.is_none() {
                continue;
            }
            let mut broken = false;
            while pipe.ready && pipe.buffered() > 0 {
                let fd = pipe.fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
                match nix::unistd::write(
                    // SAFETY: the descriptor is open for this call's length
                    // (owned by the pipe, closed only below).
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                    &pipe.wbuf[pipe.wpos..],
                ) {
                    Ok(n) => pipe.wpos += n,
                    Err(nix::errno::Errno::EAGAIN) => pipe.ready = false,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if pipe.wpos == pipe.wbuf.len() {
                pipe.wbuf.clear();
                pipe.wpos = 0;
            } else if pipe.wpos >= 64 * 1024 && pipe.wpos * 2 >= pipe.wbuf.len() {
                // Keep the buffer from growing with what was written.
                pipe.wbuf.drain(..pipe.wpos);
                pipe.wpos = 0;
            }
            if broken || (pipe.close_after_flush && pipe.buffered() == 0) {
                let report = broken && !pipe.reported;
                pipe.reported = true;
                close_pipe(pipe, ctx);
                if report {
                    let fd = pipe.child_fd;
                    self.protocol.fd_closed(&mut Self::proc(child, ctx), fd)?;
                }
            }
        }
        // Read pipes the protocol closed.
        for pipe in child.pipes.iter_mut() {
            if pipe.dir == Dir::Read && pipe.close_after_flush && pipe.fd.is_some() {
                close_pipe(pipe, ctx);
            }
        }
        // Watermarks. A refused producer counts as paused.
        let buffered = child.buffered();
        if std::mem::take(&mut child.refused) {
            child.write_paused = true;
        }
        if !child.write_paused && buffered > child.high_water {
            child.write_paused = true;
            let fd = child
                .pipes
                .iter()
                .find(|p| p.dir == Dir::Write && p.buffered() > 0)
                .map_or(0, |p| p.child_fd);
            self.protocol.write_paused(&mut Self::proc(child, ctx), fd);
        } else if child.write_paused && buffered <= child.low_water {
            child.write_paused = false;
            self.protocol.write_resumed(&mut Self::proc(child, ctx));
        }
        Ok(())
    }

    fn read_pipes(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        // The worker thread's read buffer (shared with the connections).
        let mut buf = crate::conn::take_buf();
        let result = self.read_pipes_into(&mut buf, ctx);
        crate::conn::put_buf(buf);
        result
    }

    fn read_pipes_into(&mut self, buf: &mut [u8], ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let mut budget = child.read_budget;
        for i in 0..child.pipes.len() {
            loop {
                let pipe = &mut child.pipes[i];
                if pipe.dir != Dir::Read || !pipe.ready || pipe.fd.is_none() {
                    break;
                }
                if child.read_paused {
                    // `resume_reading` sends `ReadMore`.
                    return Ok(());
                }
                if ctx.is_muted() {
                    // Handled once the held send is delivered.
                    ctx.send_self(ProcMsg::ReadMore);
                    return Ok(());
                }
                if budget == 0 {
                    ctx.send_self(ProcMsg::ReadMore);
                    return Ok(());
                }
                let fd = pipe.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
                match nix::unistd::read(fd, buf) {
                    Ok(n) if n > 0 => {
                        budget = budget.saturating_sub(n);
                        let child_fd = pipe.child_fd;
                        self.protocol
                            .data(&mut Self::proc(child, ctx), child_fd, &buf[..n])?;
                    }
                    Err(nix::errno::Errno::EAGAIN) => pipe.ready = false,
                    Err(nix::errno::Errno::EINTR) => {}
                    // The end of its output (0; EIO: a PTY whose other
                    // side closed), or a pipe that failed.
                    Ok(_) | Err(_) => {
                        let child_fd = pipe.child_fd;
                        let report = !pipe.reported;
                        pipe.reported = true;
                        close_pipe(pipe, ctx);
                        if report {
                            self.protocol
                                .fd_closed(&mut Self::proc(child, ctx), child_fd)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn reap(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if child.status.is_some() {
            return Ok(());
        }
        match spawn::try_reap(child.pid) {
            Ok(Some(raw)) => {
                let status = ProcessStatus::from_wait(raw);
                child.status = Some(status);
                child.sigchld = None;
                if let Some(fd) = child.pidfd.take() {
                    if let Some(token) = child.pidfd_token.take() {
                        let raw: RawFd = fd.as_raw_fd();
                        let _ = ctx.deregister_io(&mut SourceFd(&raw), token);
                    }
                }
                self.protocol.exited(&mut Self::proc(child, ctx), status)?;
            }
            Ok(None) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// `ended` once exited and every output pipe closed; then stop.
    fn check_ended(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if child.ended || child.outputs_open() {
            return;
        }
        let Some(status) = child.status else {
            return;
        };
        child.ended = true;
        for pipe in child.pipes.iter_mut() {
            close_pipe(pipe, ctx);
        }
        self.protocol.ended(&mut Self::proc(child, ctx), status);
        ctx.stop();
    }

    fn turn(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.read_pipes(ctx)?;
        self.settle(ctx)?;
        self.check_ended(ctx);
        Ok(())
    }
}

fn close_pipe<P: ProcessProtocol>(pipe: &mut Pipe, ctx: &mut Ctx<'_, ProcessActor<P>>) {
    if let Some(fd) = pipe.fd.take() {
        if let Some(token) = pipe.token.take() {
            let raw: RawFd = fd.as_raw_fd();
            let _ = ctx.deregister_io(&mut SourceFd(&raw), token);
        }
        drop(fd);
    }
    pipe.ready = false;
    pipe.wbuf = Vec::new();
    pipe.wpos = 0;
}

impl<P: ProcessProtocol> Actor for ProcessActor<P> {
    type Msg = ProcMsg<P::Msg>;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.child.is_none() {
            let started = spawn::start(&mut self.spec)?;
            self.child = Some(Child::new(&self.spec, started));
        }
        let Some(child) = self.child.as_mut() else {
            return Err(SpawnError::Runtime.into());
        };
        for (i, pipe) in child.pipes.iter_mut().enumerate() {
            let Some(fd) = &pipe.fd else { continue };
            let raw: RawFd = fd.as_raw_fd();
            let interest = match pipe.dir {
                Dir::Read => Interest::READABLE,
                Dir::Write => Interest::WRITABLE,
            };
            pipe.token =
                Some(ctx.register_io(&mut SourceFd(&raw), interest, move |r| ProcMsg::Pipe(i, r))?);
        }
        if let Some(pidfd) = &child.pidfd {
            let raw: RawFd = pidfd.as_raw_fd();
            child.pidfd_token =
                Some(ctx.register_io(&mut SourceFd(&raw), Interest::READABLE, ProcMsg::Exit)?);
        } else {
            child.sigchld = Some(ctx.on_signal(weft_runtime::Signal::SIGCHLD, || {
                ProcMsg::Exit(Readiness::READ)
            })?);
            // It may have exited before the subscription: look once now
            // (`turn` below reaps it if so).
            ctx.send_self(ProcMsg::Exit(Readiness::READ));
        }
        self.protocol.started(&mut Self::proc(child, ctx))?;
        self.turn(ctx)
    }

    fn handle(&mut self, msg: ProcMsg<P::Msg>, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match msg {
            ProcMsg::User(m) => {
                self.protocol.message(&mut Self::proc(child, ctx), m)?;
            }
            ProcMsg::Pipe(i, readiness) => {
                if let Some(pipe) = child.pipes.get_mut(i) {
                    if readiness.is_readable()
                        || readiness.is_writable()
                        || readiness.is_read_closed()
                        || readiness.is_write_closed()
                        || readiness.is_error()
                    {
                        pipe.ready = true;
                    }
                }
            }
            ProcMsg::Exit(_) => self.reap(ctx)?,
            ProcMsg::ReadMore => {}
        }
        self.turn(ctx)
    }

    fn stopped(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        for pipe in child.pipes.iter_mut() {
            close_pipe(pipe, ctx);
        }
        if let (Some(fd), Some(token)) = (&child.pidfd, child.pidfd_token.take()) {
            let raw: RawFd = fd.as_raw_fd();
            let _ = ctx.deregister_io(&mut SourceFd(&raw), token);
        }
        if child.status.is_some() {
            return;
        }
        let pid = child.pid;
        child.released = true;
        match child.on_stop {
            OnStop::Kill => kill_and_reap(pid),
            OnStop::Terminate(grace) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let job = move || {
                    let deadline = std::time::Instant::now() + grace;
                    while std::time::Instant::now() < deadline {
                        if let Ok(Some(_)) = spawn::try_reap(pid) {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    kill_and_reap(pid);
                };
                if ctx.runtime().spawn_blocking(job).is_err() {
                    kill_and_reap(pid);
                }
            }
            OnStop::Leave => {
                if ctx
                    .runtime()
                    .spawn_blocking(move || {
                        spawn::reap_blocking(pid);
                    })
                    .is_err()
                {
                    // No pool to wait on it: a zombie would be left.
                    kill_and_reap(pid);
                }
            }
        }
    }
}

fn kill_and_reap(pid: libc::pid_t) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    spawn::reap_blocking(pid);
}

impl Drop for Child {
    fn drop(&mut self) {
        // An actor that never ran (the runtime refused it): nothing may be
        // left behind.
        if self.status.is_none() && !self.released {
            self.released = true;
            kill_and_reap(self.pid);
        }
    }
}

impl<P: ProcessProtocol> std::fmt::Debug for ProcessActor<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessActor")
            .field("program", &self.spec.program)
            .finish_non_exhaustive()
    }
}
