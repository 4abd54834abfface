//! Child processes as actors (Twisted's `IReactorProcess`): a child runs
//! under a [`ProcessActor`] driving the user's [`ProcessProtocol`]; its
//! output arrives as [`data`](ProcessProtocol::data) with the descriptor
//! it came on, its input is written with the same watermarks as a TCP
//! connection, and its exit is a callback: first
//! [`exited`](ProcessProtocol::exited) (reaped), then
//! [`ended`](ProcessProtocol::ended) (exited and every pipe closed).
//!
//! Owns: the spawn specification ([`ProcessSpec`], [`FdSpec`]), starting
//! the child (`spawn.rs`: fork and exec with nothing allocated in
//! between), reaping it through a pidfd, and the process actor.
//! Must not touch: children it did not start (it never waits for any
//! pid but its own child's).

mod actor;
mod spawn;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::libc;
use weft_actors::{ActorResult, Addr, Ctx, SendError, Spawn};
use weft_runtime::Handle;

pub use actor::{ProcMsg, ProcessActor};

/// What the child gets at one descriptor number (Twisted's `childFDs`).
#[derive(Debug)]
pub enum FdSpec {
    /// A pipe the child writes and weft reads (its output), delivered to
    /// [`ProcessProtocol::data`] with this number.
    Output,
    /// A pipe weft writes ([`Proc::write`]) and the child reads.
    Input,
    /// A descriptor of this program handed to the child at this number
    /// (weft's duplicate is closed once the child has it).
    From(OwnedFd),
    /// Nothing: the number is closed in the child.
    Closed,
}

/// The child's session and process group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Session {
    /// This program's session and group (the default).
    #[default]
    Inherit,
    /// A new session (`setsid`): no controlling terminal, its own group.
    NewSession,
    /// A new process group in this session (`setpgid(0, 0)`).
    NewGroup,
}

/// What happens to a live child when its actor stops (a crash, a kill,
/// the runtime's shutdown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnStop {
    /// SIGKILL, then reap (the default: nothing outlives its actor).
    #[default]
    Kill,
    /// SIGTERM; after `grace`, SIGKILL; reaped on the blocking pool.
    Terminate(Duration),
    /// Leave it running; the blocking pool reaps it when it exits.
    Leave,
}

/// How to start a child: the program, its exact argv, environment,
/// working directory, user, session and descriptors.
///
/// By default the child inherits the environment (as
/// `std::process::Command` does) and gets three pipes: 0 is
/// [`FdSpec::Input`], 1 and 2 are [`FdSpec::Output`]. Nothing else of
/// this program is open in it.
///
/// ```
/// use weft_io::process::{FdSpec, ProcessSpec};
/// let spec = ProcessSpec::new("sh")
///     .args(["-c", "echo $GREETING >&3"])
///     .env("GREETING", "hello")
///     .fd(3, FdSpec::Output);
/// ```
#[must_use = "a spec does nothing until passed to `spawn_process`"]
#[derive(Debug)]
pub struct ProcessSpec {
    pub(crate) program: OsString,
    pub(crate) argv: Vec<OsString>,
    pub(crate) env_clear: bool,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) fds: BTreeMap<i32, FdSpec>,
    pub(crate) session: Session,
    pub(crate) uid: Option<libc::uid_t>,
    pub(crate) gid: Option<libc::gid_t>,
    pub(crate) groups: Option<Vec<libc::gid_t>>,
    pub(crate) on_stop: OnStop,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    pub(crate) read_budget: usize,
    pub(crate) use_sigchld: bool,
    pub(crate) pty: Option<(u16, u16)>,
}

impl ProcessSpec {
    /// Runs `program` (a path, or a name looked up in the child's `PATH`)
    /// with `argv[0]` set to `program` and no other arguments.
    pub fn new(program: impl Into<OsString>) -> Self {
        let program = program.into();
        let mut fds = BTreeMap::new();
        fds.insert(0, FdSpec::Input);
        fds.insert(1, FdSpec::Output);
        fds.insert(2, FdSpec::Output);
        ProcessSpec {
            argv: vec![program.clone()],
            program,
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            fds,
            session: Session::Inherit,
            uid: None,
            gid: None,
            groups: None,
            on_stop: OnStop::Kill,
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            read_budget: 256 * 1024,
            use_sigchld: false,
            pty: None,
        }
    }

    /// Appends one argument, passed exactly (no shell, no splitting).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `argv[0]` (what the child sees as its name).
    pub fn argv0(mut self, name: impl Into<OsString>) -> Self {
        self.argv[0] = name.into();
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes one environment variable.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Starts from an empty environment (then [`env`](Self::env) adds).
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// The child's working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// What the child gets at descriptor `number`.
    pub fn fd(mut self, number: i32, what: FdSpec) -> Self {
        self.fds.insert(number, what);
        self
    }

    /// The child's session and process group.
    pub fn session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// Runs the child as this user (needs the privilege to switch).
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Runs the child with this group.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Sets the child's supplementary groups.
    pub fn groups(mut self, groups: Vec<u32>) -> Self {
        self.groups = Some(groups);
        self
    }

    /// What happens to a live child when its actor stops.
    pub fn on_stop(mut self, on_stop: OnStop) -> Self {
        self.on_stop = on_stop;
        self
    }

    /// Runs the child on a new pseudo-terminal of `rows` by `cols`
    /// instead of pipes for 0, 1 and 2 (Twisted's `usePTY`): the child is
    /// a session leader with the terminal as its controlling terminal;
    /// what it writes arrives as descriptor 1, [`Proc::write`] to 0 is
    /// typed into it (Ctrl-C, `\x03`, interrupts it), and
    /// [`Proc::resize`] changes the size. The end of a PTY (`EIO` once the
    /// child closed it) is a clean end. Other descriptors (3 and up) are
    /// as [`fd`](Self::fd) says.
    pub fn pty(mut self, rows: u16, cols: u16) -> Self {
        self.pty = Some((rows, cols));
        self
    }

    /// Learns of the child's exit from SIGCHLD instead of a pidfd: what
    /// weft does by itself where the kernel has no `pidfd_open` (before
    /// Linux 5.3). Either way only this child's pid is waited for.
    pub fn use_sigchld(mut self, on: bool) -> Self {
        self.use_sigchld = on;
        self
    }

    /// Write watermarks for each input pipe (bytes): past `high` the
    /// protocol is told [`write_paused`](ProcessProtocol::write_paused),
    /// below `low` again [`write_resumed`](ProcessProtocol::write_resumed).
    pub fn watermarks(mut self, high: usize, low: usize) -> Self {
        self.high_water = high.max(1);
        self.low_water = low.min(self.high_water);
        self
    }
}

/// A step of starting a child, named in [`SpawnError::Os`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SpawnStep {
    /// Opening the pipes.
    Pipes = 1,
    /// `fork`.
    Fork,
    /// `setsid` or `setpgid`.
    Session,
    /// `setgroups`.
    Groups,
    /// `setgid`.
    Gid,
    /// `setuid`.
    Uid,
    /// Placing the descriptors.
    Descriptors,
    /// `chdir` to the working directory.
    Cwd,
    /// `execve`.
    Exec,
    /// Opening the pidfd that reports the child's exit.
    Pidfd,
    /// Opening the PTY or making it the controlling terminal.
    Terminal,
}

impl SpawnStep {
    fn from_code(code: u8) -> SpawnStep {
        use SpawnStep::*;
        match code {
            1 => Pipes,
            2 => Fork,
            3 => Session,
            4 => Groups,
            5 => Gid,
            6 => Uid,
            7 => Descriptors,
            8 => Cwd,
            10 => Pidfd,
            11 => Terminal,
            _ => Exec,
        }
    }
}

impl fmt::Display for SpawnStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpawnStep::Pipes => "open pipes",
            SpawnStep::Fork => "fork",
            SpawnStep::Session => "start a session or process group",
            SpawnStep::Groups => "set the supplementary groups",
            SpawnStep::Gid => "set the group",
            SpawnStep::Uid => "set the user",
            SpawnStep::Descriptors => "place the descriptors",
            SpawnStep::Cwd => "change to the working directory",
            SpawnStep::Exec => "execute the program",
            SpawnStep::Pidfd => "open a pidfd",
            SpawnStep::Terminal => "set up the terminal",
        })
    }
}

/// Why a child could not be started. Nothing is left behind: no
/// descriptor, no zombie.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No such program (not in `PATH`, or the path does not exist).
    #[error("program {program:?} not found")]
    NotFound {
        /// The program as given.
        program: OsString,
    },
    /// A step failed with an OS error (a directory that does not exist, a
    /// file that is not executable, a user that cannot be switched to).
    #[error("cannot {step} for {program:?}")]
    Os {
        /// The program as given.
        program: OsString,
        /// What failed.
        step: SpawnStep,
        /// The OS error.
        source: io::Error,
        /// The resolved path, when it was resolved.
        path: Option<PathBuf>,
    },
    /// An argument, variable or path holds a NUL byte.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The runtime refused the process actor (it is shutting down).
    #[error("the runtime refused the process actor")]
    Runtime,
}

impl SpawnError {
    /// The OS error behind this failure, if there is one.
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            SpawnError::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How a child ended: an exit code, or the signal that killed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled {
        /// The signal's number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

impl ProcessStatus {
    pub(crate) fn from_wait(status: libc::c_int) -> ProcessStatus {
        if libc::WIFEXITED(status) {
            ProcessStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ProcessStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        }
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ProcessStatus::Exited(code) => Some(code),
            ProcessStatus::Signaled { .. } => None,
        }
    }

    /// The signal, if one ended it.
    pub fn signal(self) -> Option<i32> {
        match self {
            ProcessStatus::Signaled { signal, .. } => Some(signal),
            ProcessStatus::Exited(_) => None,
        }
    }

    /// The status as a shell reports it in `$?`: the exit code, or 128
    /// plus the signal's number.
    pub fn shell_code(self) -> i32 {
        match self {
            ProcessStatus::Exited(code) => code,
            ProcessStatus::Signaled { signal, .. } => 128 + signal,
        }
    }

    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == ProcessStatus::Exited(0)
    }
}

impl fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessStatus::Exited(code) => write!(f, "exited with code {code}"),
            ProcessStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|s| s.as_str())
                    .unwrap_or("?");
                write!(f, "killed by signal {signal} ({name})")?;
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a write to the child was refused (nothing was taken).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcWriteError {
    /// No input pipe at this descriptor number.
    #[error("descriptor {0} is not an input pipe of the child")]
    NotAnInput(i32),
    /// That pipe is closed (by [`Proc::close_fd`], or the child closed it).
    #[error("descriptor {0} is closed")]
    Closed(i32),
    /// The pipe's buffer would pass four times its high watermark: the
    /// protocol ignored `write_paused`.
    #[error("descriptor {fd}: {buffered} bytes are waiting for the child")]
    BufferFull {
        /// The descriptor.
        fd: i32,
        /// What is buffered.
        buffered: usize,
    },
}

/// Why a signal was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The child has exited (its pid may already be someone else's).
    #[error("the child has exited")]
    Exited,
    /// The OS refused (`kill` failed).
    #[error("kill: {0}")]
    Os(nix::errno::Errno),
}

/// The behaviour of one child process, run inside its [`ProcessActor`]:
/// every callback runs on the actor's turn. A callback that returns `Err`
/// or panics stops the actor, and the child gets the spec's
/// [`OnStop`] (by default SIGKILL).
///
/// The order: [`started`](Self::started); [`data`](Self::data) and
/// [`fd_closed`](Self::fd_closed) as output comes; [`exited`](Self::exited)
/// when the child is reaped; [`ended`](Self::ended) once it exited and
/// every output pipe closed.
///
/// ```
/// use weft_io::process::{Proc, ProcessProtocol, ProcessStatus};
/// use weft_actors::ActorResult;
///
/// /// Prints what the child writes, and how it ended.
/// struct Show;
/// impl ProcessProtocol for Show {
///     type Msg = ();
///     fn data(&mut self, _p: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult {
///         print!("[{fd}] {}", String::from_utf8_lossy(data));
///         Ok(())
///     }
///     fn ended(&mut self, _p: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
///         println!("{status}");
///     }
/// }
/// ```
pub trait ProcessProtocol: Send + Sized + 'static {
    /// The protocol's own messages ([`ProcessRef::send`]).
    type Msg: Send + 'static;

    /// The child runs (its pid is [`Proc::pid`]).
    fn started(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
        let _ = proc;
        Ok(())
    }

    /// The child wrote `data` on its descriptor `fd`.
    fn data(&mut self, proc: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult;

    /// The child's end of descriptor `fd` closed (end of its output, or
    /// for an input pipe, the child stopped reading).
    fn fd_closed(&mut self, proc: &mut Proc<'_, '_, Self>, fd: i32) -> ActorResult {
        let _ = (proc, fd);
        Ok(())
    }

    /// The child exited and was reaped (Twisted's `processExited`). Output
    /// may still come if a grandchild holds a pipe.
    fn exited(&mut self, proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) -> ActorResult {
        let _ = (proc, status);
        Ok(())
    }

    /// Exited and every output pipe closed (Twisted's `processEnded`):
    /// the last callback; the actor stops after it.
    fn ended(&mut self, proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
        let _ = (proc, status);
    }

    /// One of the protocol's own messages.
    fn message(&mut self, proc: &mut Proc<'_, '_, Self>, msg: Self::Msg) -> ActorResult {
        let _ = (proc, msg);
        Ok(())
    }

    /// An input pipe's buffer passed its high watermark. The default
    /// pauses reading the child's output.
    fn write_paused(&mut self, proc: &mut Proc<'_, '_, Self>, fd: i32) {
        let _ = fd;
        proc.pause_reading();
    }

    /// Every input pipe's buffer is below its low watermark again. The
    /// default resumes reading.
    fn write_resumed(&mut self, proc: &mut Proc<'_, '_, Self>) {
        proc.resume_reading();
    }
}

/// The handle a process protocol uses, passed to every callback.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::ActorResult;
/// use weft_io::process::{spawn_process, Proc, ProcessProtocol, ProcessSpec, ProcessStatus};
///
/// /// Feeds `cat` a line, closes its input, and reports what came back.
/// struct Cat {
///     out: Vec<u8>,
///     done: std::sync::mpsc::Sender<(Vec<u8>, ProcessStatus)>,
/// }
/// impl ProcessProtocol for Cat {
///     type Msg = ();
///     fn started(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
///         proc.write(0, b"through a pipe\n")?;
///         proc.close_fd(0); // end of input: cat exits
///         Ok(())
///     }
///     fn data(&mut self, _proc: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
///         self.out.extend_from_slice(data);
///         Ok(())
///     }
///     fn ended(&mut self, _proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
///         let _ = self.done.send((std::mem::take(&mut self.out), status));
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// spawn_process(rt.handle(), ProcessSpec::new("cat"), Cat { out: Vec::new(), done: tx }).unwrap();
/// let (out, status) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
/// assert_eq!(out, b"through a pipe\n");
/// assert!(status.success());
/// ```
pub struct Proc<'a, 'c, P: ProcessProtocol> {
    pub(crate) child: &'a mut actor::Child,
    pub(crate) ctx: &'a mut Ctx<'c, ProcessActor<P>>,
}

impl<'c, P: ProcessProtocol> Proc<'_, 'c, P> {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    /// Queues `data` for the child's descriptor `fd` (an input pipe); it
    /// is written when the callback returns, as the pipe takes it.
    pub fn write(&mut self, fd: i32, data: &[u8]) -> Result<(), ProcWriteError> {
        self.child.write(fd, data)
    }

    /// Closes weft's end of descriptor `fd`: for an input pipe, after what
    /// is queued was written (the child then reads end of file); for an
    /// output pipe, at once (the child gets `SIGPIPE` if it writes on).
    pub fn close_fd(&mut self, fd: i32) {
        self.child.close_fd(fd);
    }

    /// Sends `signal` to the child. An error once it has exited.
    pub fn signal(&mut self, signal: nix::sys::signal::Signal) -> Result<(), SignalError> {
        self.child.signal(signal)
    }

    /// Changes the child's terminal size (it gets SIGWINCH). An error
    /// when it has no PTY.
    pub fn resize(&mut self, rows: u16, cols: u16) -> io::Result<()> {
        self.child.resize(rows, cols)
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), SignalError> {
        self.child.signal(nix::sys::signal::Signal::SIGKILL)
    }

    /// Stops reading the child's output (it blocks once its pipes fill).
    pub fn pause_reading(&mut self) {
        self.child.read_paused = true;
    }

    /// Reads the child's output again.
    pub fn resume_reading(&mut self) {
        if self.child.read_paused {
            self.child.read_paused = false;
            self.ctx.send_self(ProcMsg::ReadMore);
        }
    }

    /// The process actor's context (spawn, send, timers).
    pub fn ctx(&mut self) -> &mut Ctx<'c, ProcessActor<P>> {
        self.ctx
    }
}

/// A running child's actor address: send the protocol messages, learn
/// its pid.
pub struct ProcessRef<P: ProcessProtocol> {
    addr: Addr<ProcessActor<P>>,
    pid: i32,
}

impl<P: ProcessProtocol> Clone for ProcessRef<P> {
    fn clone(&self) -> Self {
        ProcessRef {
            addr: self.addr.clone(),
            pid: self.pid,
        }
    }
}

impl<P: ProcessProtocol> fmt::Debug for ProcessRef<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRef")
            .field("pid", &self.pid)
            .finish()
    }
}

impl<P: ProcessProtocol> ProcessRef<P> {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The process actor's address (to monitor it, or stop it).
    pub fn addr(&self) -> &Addr<ProcessActor<P>> {
        &self.addr
    }

    /// Sends the protocol one of its messages.
    pub fn send(&self, msg: P::Msg) -> Result<(), SendError<P::Msg>> {
        self.addr.send(ProcMsg::User(msg)).map_err(|e| match e {
            SendError::Full(m) => SendError::Full(m.into_user()),
            SendError::Stopped(m) => SendError::Stopped(m.into_user()),
            SendError::Timeout(m) => SendError::Timeout(m.into_user()),
        })
    }
}

/// Starts the child `spec` describes and a [`ProcessActor`] running
/// `protocol` for it (Twisted's `spawnProcess`). The child is started
/// here, so a missing program, a file that is not executable or a bad
/// working directory is an error value from this call (and nothing is
/// left behind). In a supervision tree, put [`ProcessActor::new`] in a
/// child spec instead: it starts the child when the actor starts.
///
/// ```no_run
/// use weft_io::process::{spawn_process, Proc, ProcessProtocol, ProcessSpec, ProcessStatus};
/// use weft_actors::ActorResult;
///
/// struct Show;
/// impl ProcessProtocol for Show {
///     type Msg = ();
///     fn data(&mut self, _p: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult {
///         print!("[{fd}] {}", String::from_utf8_lossy(data));
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let child = spawn_process(rt.handle(), ProcessSpec::new("ls").arg("-l"), Show).unwrap();
/// println!("started {}", child.pid());
/// ```
pub fn spawn_process<P: ProcessProtocol>(
    handle: &Handle,
    spec: ProcessSpec,
    protocol: P,
) -> Result<ProcessRef<P>, SpawnError> {
    let mut spec = spec;
    let started = spawn::start(&mut spec)?;
    let pid = started.pid;
    let actor = ProcessActor::running(spec, started, protocol);
    match handle.spawn_with(actor, weft_actors::SpawnOptions::new()) {
        Ok(addr) => Ok(ProcessRef { addr, pid }),
        Err(_) => Err(SpawnError::Runtime),
    }
}
