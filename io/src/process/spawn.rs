//! Starting a child: everything built before `fork`, only
//! async-signal-safe system calls between `fork` and `execve`, an error
//! pipe for what failed in the child, a pidfd to learn when it exits.
//!
//! Must not touch: anything that allocates or locks in the child (the
//! parent is multithreaded: a lock another thread held at `fork` stays
//! held forever in the child).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::libc;

use super::{FdSpec, ProcessSpec, Session, SpawnError, SpawnStep};

/// Which way a pipe goes, seen from the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The parent reads what the child writes.
    Read,
    /// The parent writes what the child reads.
    Write,
}

/// The parent's end of one pipe to the child.
pub(crate) struct ParentEnd {
    pub(crate) child_fd: i32,
    pub(crate) dir: Dir,
    pub(crate) fd: OwnedFd,
}

/// A started child: its pid, a pidfd, and the parent's pipe ends.
pub(crate) struct Started {
    pub(crate) pid: libc::pid_t,
    /// None: learn of the exit from SIGCHLD (no pidfd on this kernel, or
    /// the spec asked for it).
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) pipes: Vec<ParentEnd>,
    /// The PTY's master side (for resizing), when the child has one.
    pub(crate) pty: Option<OwnedFd>,
}

/// Sets a terminal's window size.
pub(crate) fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which lives
    // for the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new PTY: its master (close-on-exec, non-blocking) and its slave
/// (close-on-exec; the child gets it as 0, 1 and 2).
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned by the kernel, owned by nothing else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: grantpt and unlockpt take the master descriptor only.
    if unsafe { libc::grantpt(master.as_raw_fd()) } != 0
        || unsafe { libc::unlockpt(master.as_raw_fd()) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most
    // `name.len()` bytes into the local buffer.
    let r = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: `name` is NUL-terminated (ptsname_r succeeded).
    let slave = unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned by the kernel, owned by nothing else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_window_size(master.as_raw_fd(), rows, cols)?;
    set_nonblocking(&master)?;
    Ok((master, slave))
}

fn cstring(bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::InvalidInput("a string contains a NUL byte"))
}

/// Finds `program` as `execvp` would, in the parent: a name with a `/`
/// is used as given; otherwise the first executable file of that name
/// in `path` (the child's `PATH`).
fn resolve(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    if program.is_empty() {
        return Err(SpawnError::NotFound {
            program: program.to_owned(),
        });
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut not_executable = None;
    for dir in std::env::split_paths(path) {
        let candidate = if dir.as_os_str().is_empty() {
            Path::new(".").join(program)
        } else {
            dir.join(program)
        };
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            if meta.is_file() && not_executable.is_none() {
                not_executable = Some(candidate);
            }
        }
    }
    match not_executable {
        Some(path) => Err(SpawnError::Os {
            program: program.to_owned(),
            step: SpawnStep::Exec,
            source: io::Error::from_raw_os_error(libc::EACCES),
            path: Some(path),
        }),
        None => Err(SpawnError::NotFound {
            program: program.to_owned(),
        }),
    }
}

/// The environment the child gets, as `NAME=value` strings.
fn environment(spec: &ProcessSpec) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = if spec.env_clear {
        Vec::new()
    } else {
        std::env::vars_os().collect()
    };
    for (key, value) in &spec.env {
        env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            env.push((key.clone(), value.clone()));
        }
    }
    env
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this function borrows; no memory is
    // passed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor (close-on-exec by definition), or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reaps `pid` (blocking; used after a failed exec and on kill).
pub(crate) fn reap_blocking(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on a child of ours, writing into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Reaps `pid` if it has exited.
pub(crate) fn try_reap(pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on a child of ours, writing into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(Some(status));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Err(e);
    }
}

/// Starts the child `spec` describes. On error nothing is left behind:
/// no descriptor, no zombie.
pub(crate) fn start(spec: &mut ProcessSpec) -> Result<Started, SpawnError> {
    let env = environment(spec);
    let path_var = env
        .iter()
        .find(|(k, _)| k.as_bytes() == b"PATH")
        .map(|(_, v)| v.as_os_str());
    let program = resolve(&spec.program, path_var)?;
    let os = |step: SpawnStep| {
        let program = spec.program.clone();
        move |source: io::Error| SpawnError::Os {
            program,
            step,
            source,
            path: None,
        }
    };

    // Everything the child uses, allocated now.
    let path_c = cstring(program.as_os_str().as_bytes())?;
    let argv_c: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let env_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<Result<_, _>>()?;
    let mut env_p: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    env_p.push(std::ptr::null());
    let cwd_c = match &spec.cwd {
        Some(dir) => Some(cstring(dir.as_os_str().as_bytes())?),
        None => None,
    };
    let groups: Option<Vec<libc::gid_t>> = spec.groups.clone();

    // The descriptors: the child's end of each pipe, or a given one.
    let mut pipes = Vec::new();
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    let mut moves: Vec<(RawFd, libc::c_int)> = Vec::new();
    let mut pty_master = None;
    if let Some((rows, cols)) = spec.pty {
        // 0, 1 and 2 are the terminal; weft reads the child's output as
        // descriptor 1 and writes its input as descriptor 0.
        let (master, slave) = open_pty(rows, cols).map_err(os(SpawnStep::Terminal))?;
        let writer = master.try_clone().map_err(os(SpawnStep::Terminal))?;
        pty_master = Some(master.try_clone().map_err(os(SpawnStep::Terminal))?);
        for target in 0..3 {
            moves.push((slave.as_raw_fd(), target));
        }
        child_ends.push(slave);
        pipes.push(ParentEnd {
            child_fd: 1,
            dir: Dir::Read,
            fd: master,
        });
        pipes.push(ParentEnd {
            child_fd: 0,
            dir: Dir::Write,
            fd: writer,
        });
    }
    let pty = spec.pty.is_some();
    for (&target, what) in spec.fds.iter_mut() {
        if pty && target < 3 {
            continue;
        }
        match what {
            FdSpec::Output => {
                let (read, write) = pipe().map_err(os(SpawnStep::Pipes))?;
                set_nonblocking(&read).map_err(os(SpawnStep::Pipes))?;
                moves.push((write.as_raw_fd(), target));
                child_ends.push(write);
                pipes.push(ParentEnd {
                    child_fd: target,
                    dir: Dir::Read,
                    fd: read,
                });
            }
            FdSpec::Input => {
                let (read, write) = pipe().map_err(os(SpawnStep::Pipes))?;
                set_nonblocking(&write).map_err(os(SpawnStep::Pipes))?;
                moves.push((read.as_raw_fd(), target));
                child_ends.push(read);
                pipes.push(ParentEnd {
                    child_fd: target,
                    dir: Dir::Write,
                    fd: write,
                });
            }
            FdSpec::From(fd) => moves.push((fd.as_raw_fd(), target)),
            FdSpec::Closed => {}
        }
    }
    let max_target = spec.fds.keys().copied().max().unwrap_or(-1).max(2);
    let mapped: Vec<bool> = (0..=max_target)
        .map(|fd| moves.iter().any(|&(_, t)| t == fd))
        .collect();
    let mut moved: Vec<RawFd> = vec![-1; moves.len()];
    let fd_limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(1 << 20) as libc::c_int)
        .unwrap_or(1024);
    // SAFETY: a zeroed sigset is valid storage for sigemptyset to fill.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: fills the local set.
    unsafe { libc::sigemptyset(&mut empty) };
    let session = if pty {
        Session::NewSession
    } else {
        spec.session
    };
    let (uid, gid) = (spec.uid, spec.gid);

    // Without a user, group or terminal to set up, glibc's posix_spawn
    // (clone with a shared address space: no page tables copied) does it.
    if uid.is_none() && gid.is_none() && groups.is_none() && !pty {
        if let Some(fast) = Fast::get() {
            if let Some(dir) = &spec.cwd {
                // posix_spawn reports a failed chdir and a failed exec
                // alike: name the directory first.
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        let e = io::Error::from_raw_os_error(libc::ENOTDIR);
                        return Err(os(SpawnStep::Cwd)(e));
                    }
                    Err(e) => return Err(os(SpawnStep::Cwd)(e)),
                }
            }
            let plan = FastPlan {
                path: &path_c,
                argv: &argv_p,
                env: &env_p,
                cwd: cwd_c.as_ref(),
                moves: &moves,
                mapped: &mapped,
                max_target,
                session,
            };
            let pid = match fast.spawn(&plan) {
                Ok(pid) => pid,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    return Err(SpawnError::NotFound {
                        program: spec.program.clone(),
                    })
                }
                Err(e) => {
                    return Err(SpawnError::Os {
                        program: spec.program.clone(),
                        step: SpawnStep::Exec,
                        source: e,
                        path: Some(program),
                    })
                }
            };
            drop(child_ends);
            for what in spec.fds.values_mut() {
                if let FdSpec::From(_) = what {
                    *what = FdSpec::Closed;
                }
            }
            return finish(spec, pid, pipes, pty_master);
        }
    }

    // The fork path: the child reports a failed step on this pipe.
    let (err_read, err_write) = pipe().map_err(os(SpawnStep::Pipes))?;
    let err_fd = err_write.as_raw_fd();

    // SAFETY: fork in a multithreaded program: the child below makes only
    // async-signal-safe calls (sigprocmask, signal, setsid, setpgid,
    // setgroups, setgid, setuid, fcntl, dup2, close, syscall(close_range),
    // chdir, execve, write, _exit) on memory allocated before the fork,
    // and never returns into Rust code that could allocate or lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os(SpawnStep::Fork)(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the child; see above. `fail` ends it.
        unsafe {
            let fail = |step: u8| -> ! {
                let errno = *libc::__errno_location();
                let mut msg = [0u8; 5];
                msg[0] = step;
                msg[1..].copy_from_slice(&errno.to_ne_bytes());
                let _ = libc::write(err_fd, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            };
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // Rust programs ignore SIGPIPE; a child expects the default.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            match session {
                Session::Inherit => {}
                Session::NewSession => {
                    if libc::setsid() < 0 {
                        fail(SpawnStep::Session as u8);
                    }
                }
                Session::NewGroup => {
                    if libc::setpgid(0, 0) < 0 {
                        fail(SpawnStep::Session as u8);
                    }
                }
            }
            if let Some(groups) = &groups {
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                    fail(SpawnStep::Groups as u8);
                }
            }
            if let Some(gid) = gid {
                if libc::setgid(gid) < 0 {
                    fail(SpawnStep::Gid as u8);
                }
            }
            if let Some(uid) = uid {
                if libc::setuid(uid) < 0 {
                    fail(SpawnStep::Uid as u8);
                }
            }
            // The error pipe and every source above the targets first, so
            // no dup2 below overwrites a source still to be placed.
            let err = libc::fcntl(err_fd, libc::F_DUPFD_CLOEXEC, max_target + 1);
            if err < 0 {
                fail(SpawnStep::Descriptors as u8);
            }
            let fail = |step: u8| -> ! {
                let errno = *libc::__errno_location();
                let mut msg = [0u8; 5];
                msg[0] = step;
                msg[1..].copy_from_slice(&errno.to_ne_bytes());
                let _ = libc::write(err, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            };
            for (i, &(src, _)) in moves.iter().enumerate() {
                let fd = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, max_target + 1);
                if fd < 0 {
                    fail(SpawnStep::Descriptors as u8);
                }
                *moved.as_mut_ptr().add(i) = fd;
            }
            for (i, &(_, target)) in moves.iter().enumerate() {
                // dup2 leaves the new descriptor without close-on-exec.
                if libc::dup2(*moved.as_ptr().add(i), target) < 0 {
                    fail(SpawnStep::Descriptors as u8);
                }
            }
            for fd in 0..=max_target {
                if !*mapped.as_ptr().add(fd as usize) {
                    libc::close(fd);
                }
            }
            // Everything above the targets but the error pipe.
            let close_from = |lo: libc::c_int, hi: libc::c_int| {
                if lo > hi {
                    return;
                }
                let r = libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32);
                if r < 0 {
                    let top = hi.min(fd_limit);
                    let mut fd = lo;
                    while fd <= top {
                        libc::close(fd);
                        fd += 1;
                    }
                }
            };
            if pty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                fail(SpawnStep::Terminal as u8);
            }
            close_from(max_target + 1, err - 1);
            close_from(err + 1, libc::c_int::MAX);
            if let Some(dir) = &cwd_c {
                if libc::chdir(dir.as_ptr()) < 0 {
                    fail(SpawnStep::Cwd as u8);
                }
            }
            libc::execve(path_c.as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
            fail(SpawnStep::Exec as u8);
        }
    }

    // The parent: the child's ends are its own now.
    drop(child_ends);
    drop(err_write);
    for what in spec.fds.values_mut() {
        if let FdSpec::From(_) = what {
            *what = FdSpec::Closed;
        }
    }
    let mut msg = [0u8; 5];
    let mut got = 0;
    while got < msg.len() {
        match nix::unistd::read(err_read.as_raw_fd(), &mut msg[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if got > 0 {
        reap_blocking(pid);
        let errno = if got == msg.len() {
            i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]])
        } else {
            0
        };
        let step = SpawnStep::from_code(msg[0]);
        let source = io::Error::from_raw_os_error(errno);
        if step == SpawnStep::Exec && errno == libc::ENOENT {
            return Err(SpawnError::NotFound {
                program: spec.program.clone(),
            });
        }
        return Err(SpawnError::Os {
            program: spec.program.clone(),
            step,
            source,
            path: Some(program),
        });
    }
    finish(spec, pid, pipes, pty_master)
}

/// The child runs: its pidfd (or SIGCHLD, when asked or when the kernel
/// has no pidfd).
fn finish(
    spec: &ProcessSpec,
    pid: libc::pid_t,
    pipes: Vec<ParentEnd>,
    pty_master: Option<OwnedFd>,
) -> Result<Started, SpawnError> {
    if spec.use_sigchld {
        return Ok(Started {
            pid,
            pidfd: None,
            pipes,
            pty: pty_master,
        });
    }
    match pidfd_open(pid) {
        Ok(pidfd) => Ok(Started {
            pid,
            pidfd: Some(pidfd),
            pipes,
            pty: pty_master,
        }),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(Started {
            pid,
            pidfd: None,
            pipes,
            pty: pty_master,
        }),
        Err(e) => {
            // SAFETY: signals our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap_blocking(pid);
            Err(SpawnError::Os {
                program: spec.program.clone(),
                step: SpawnStep::Pidfd,
                source: e,
                path: None,
            })
        }
    }
}

/// What posix_spawn needs, all built before.
struct FastPlan<'a> {
    path: &'a CString,
    argv: &'a [*const libc::c_char],
    env: &'a [*const libc::c_char],
    cwd: Option<&'a CString>,
    moves: &'a [(RawFd, libc::c_int)],
    mapped: &'a [bool],
    max_target: libc::c_int,
    session: Session,
}

type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;
type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// glibc's non-standard file actions weft needs (2.29 and 2.34), looked
/// up at run time so an older C library falls back to fork.
#[derive(Clone, Copy)]
struct Fast {
    closefrom: AddCloseFrom,
    chdir: AddChdir,
}

impl Fast {
    fn get() -> Option<Fast> {
        static FAST: std::sync::OnceLock<Option<Fast>> = std::sync::OnceLock::new();
        *FAST.get_or_init(|| {
            // SAFETY: dlsym with NUL-terminated names; a non-null result is
            // the function of that name, whose C signature the types above
            // state (glibc's posix_spawn_file_actions_addclosefrom_np and
            // posix_spawn_file_actions_addchdir_np).
            unsafe {
                let closefrom = libc::dlsym(
                    libc::RTLD_DEFAULT,
                    c"posix_spawn_file_actions_addclosefrom_np".as_ptr(),
                );
                let chdir = libc::dlsym(
                    libc::RTLD_DEFAULT,
                    c"posix_spawn_file_actions_addchdir_np".as_ptr(),
                );
                if closefrom.is_null() || chdir.is_null() {
                    return None;
                }
                Some(Fast {
                    closefrom: std::mem::transmute::<*mut libc::c_void, AddCloseFrom>(closefrom),
                    chdir: std::mem::transmute::<*mut libc::c_void, AddChdir>(chdir),
                })
            }
        })
    }

    fn spawn(&self, plan: &FastPlan<'_>) -> io::Result<libc::pid_t> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(r))
            }
        };
        // Each source above every target first (in this process, close on
        // exec), so no dup2 in the child overwrites a source still to come.
        let mut temps = Vec::with_capacity(plan.moves.len());
        for &(src, _) in plan.moves {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor the caller keeps open;
            // the result is a new descriptor owned below.
            let fd = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, plan.max_target + 1) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: just made, owned by nothing else.
            temps.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        // SAFETY: the file actions and attributes are initialised before
        // use and destroyed on every path (the guards below); every
        // pointer handed to posix_spawn (path, argv, envp, cwd) points to
        // NUL-terminated data that outlives the call.
        unsafe {
            let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            check(libc::posix_spawn_file_actions_init(&mut actions))?;
            let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
            if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
                libc::posix_spawn_file_actions_destroy(&mut actions);
                return Err(e);
            }
            let result = (|| {
                for (tmp, &(_, target)) in temps.iter().zip(plan.moves) {
                    check(libc::posix_spawn_file_actions_adddup2(
                        &mut actions,
                        tmp.as_raw_fd(),
                        target,
                    ))?;
                }
                for fd in 0..=plan.max_target {
                    if !plan.mapped[fd as usize] {
                        // glibc ignores closing a descriptor that is not open.
                        check(libc::posix_spawn_file_actions_addclose(&mut actions, fd))?;
                    }
                }
                check((self.closefrom)(&mut actions, plan.max_target + 1))?;
                if let Some(dir) = plan.cwd {
                    check((self.chdir)(&mut actions, dir.as_ptr()))?;
                }
                let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
                match plan.session {
                    Session::Inherit => {}
                    Session::NewSession => flags |= libc::POSIX_SPAWN_SETSID as libc::c_int,
                    Session::NewGroup => {
                        flags |= libc::POSIX_SPAWN_SETPGROUP;
                        check(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
                    }
                }
                check(libc::posix_spawnattr_setflags(
                    &mut attr,
                    flags as libc::c_short,
                ))?;
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
                // Rust programs ignore SIGPIPE; a child expects the default.
                let mut default: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut default);
                libc::sigaddset(&mut default, libc::SIGPIPE);
                check(libc::posix_spawnattr_setsigdefault(&mut attr, &default))?;
                let mut pid: libc::pid_t = 0;
                check(libc::posix_spawn(
                    &mut pid,
                    plan.path.as_ptr(),
                    &actions,
                    &attr,
                    plan.argv.as_ptr() as *const *mut libc::c_char,
                    plan.env.as_ptr() as *const *mut libc::c_char,
                ))?;
                Ok(pid)
            })();
            libc::posix_spawnattr_destroy(&mut attr);
            libc::posix_spawn_file_actions_destroy(&mut actions);
            result
        }
    }
}
