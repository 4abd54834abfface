//! The UNIX socket rows of the `net` group, server pinned to core 0 and
//! load (this child) to core 1, as the TCP rows:
//!
//! * `unix-echo-rr`: 50 connections, 64 B request, wait for the echo,
//!   repeat (requests/s, p50/p99 latency, server CPU per request).
//!   Servers: weft's `unix_echo --quiet`, tokio's `UnixStream` (one worker
//!   per core: one, pinned) and a raw single-threaded mio loop.
//! * `fd-pass`: descriptors passed per second. 4 connections each keep 16
//!   messages in flight; a message is one byte carrying one descriptor
//!   (`/dev/null`, sent again and again); the server closes every
//!   descriptor it receives and answers each byte with one byte. Servers:
//!   weft (a protocol in this binary), a raw mio loop (`recvmsg` with
//!   nix), Twisted (`bench/twisted/fd_sink.py`).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::UnixStream as MioUnix;
use mio::{Events, Interest, Poll, Token};

use crate::emit;
use crate::net::{cpu_secs_of, percentile, request_reply_over, secs};

const SERVER_CORE: &str = "0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A server on a UNIX socket path, pinned to the server core; killed (and
/// its socket file removed) when dropped.
struct UnixServer {
    child: Child,
    path: PathBuf,
}

impl UnixServer {
    fn start(job: &str, system: &str) -> Option<UnixServer> {
        let me = std::env::current_exe().ok()?;
        let path =
            std::env::temp_dir().join(format!("weft-bench-{}-{system}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let p = path.display().to_string();
        let venv = repo().join("bench/.venv/bin/python");
        let serve = |name: &str| {
            vec![
                me.display().to_string(),
                "--serve".into(),
                name.into(),
                p.clone(),
            ]
        };
        let cmd: Vec<String> = match (job, system) {
            ("unix-echo-rr", "weft") => vec![
                repo()
                    .join("target/release/examples/unix_echo")
                    .display()
                    .to_string(),
                "--quiet".into(),
                p.clone(),
            ],
            ("unix-echo-rr", "tokio") => serve("tokio-unix-echo"),
            ("unix-echo-rr", "mio") => serve("mio-unix-echo"),
            ("fd-pass", "weft") => serve("weft-fd-sink"),
            ("fd-pass", "mio") => serve("mio-fd-sink"),
            ("fd-pass", "twisted") if venv.exists() => vec![
                venv.display().to_string(),
                repo()
                    .join("bench/twisted/fd_sink.py")
                    .display()
                    .to_string(),
                p.clone(),
            ],
            _ => return None,
        };
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CORE])
            .args(&cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        loop {
            let line = lines.next()?.ok()?;
            if line.contains("listening on ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines.by_ref() {});
        std::thread::sleep(Duration::from_millis(200));
        Some(UnixServer { child, path })
    }

    fn cpu_secs(&self) -> f64 {
        cpu_secs_of(self.child.id())
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs one UNIX (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    let Some(server) = UnixServer::start(job, system) else {
        return false;
    };
    let dur = Duration::from_secs(secs());
    let cpu0 = server.cpu_secs();
    match job {
        "unix-echo-rr" => {
            let (n, mut lat) = request_reply_over(50, 64, dur, || connect(&server.path));
            let cpu = server.cpu_secs() - cpu0;
            lat.sort_unstable();
            emit("unix-echo-rr", "per_s", n as f64 / dur.as_secs_f64());
            emit("unix-echo-rr-p50", "us", percentile(&lat, 0.50));
            emit("unix-echo-rr-p99", "us", percentile(&lat, 0.99));
            emit("unix-echo-rr-cpu", "us", cpu * 1e6 / n.max(1) as f64);
        }
        "fd-pass" => {
            let n = fd_load(&server.path, 4, 16, dur);
            let cpu = server.cpu_secs() - cpu0;
            emit("fd-pass", "per_s", n as f64 / dur.as_secs_f64());
            emit("fd-pass-cpu", "us", cpu * 1e6 / n.max(1) as f64);
        }
        _ => return false,
    }
    true
}

fn connect(path: &Path) -> MioUnix {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect to the server");
    s.set_nonblocking(true).unwrap();
    MioUnix::from_std(s)
}

/// Sends one byte with `fd` attached.
fn send_fd(s: &MioUnix, fd: &OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let raw = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"x")];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    sendmsg::<UnixAddr>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// `conns` connections keep `window` descriptors in flight each; returns
/// how many were answered within `dur`.
fn fd_load(path: &Path, conns: usize, window: usize, dur: Duration) -> u64 {
    let devnull: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let mut socks = Vec::new();
    for i in 0..conns {
        let mut s = connect(path);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .unwrap();
        for _ in 0..window {
            send_fd(&s, &devnull).expect("send a descriptor");
        }
        socks.push(s);
    }
    let mut done = 0u64;
    let mut buf = vec![0u8; 4096];
    let end = Instant::now() + dur;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let s = &mut socks[ev.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => panic!("the server closed an fd-pass connection"),
                    Ok(n) => {
                        done += n as u64;
                        for _ in 0..n {
                            send_fd(s, &devnull).expect("send a descriptor");
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("fd-pass read: {e}"),
                }
            }
        }
    }
    done
}

// ---- servers run by this binary (`--serve NAME PATH`) ----

/// Runs the UNIX server `name` on `path` until killed; false if unknown.
pub fn serve(name: &str, path: &str) -> bool {
    match name {
        "tokio-unix-echo" => tokio_unix_echo(path),
        "mio-unix-echo" => mio_loop(path, false),
        "mio-fd-sink" => mio_loop(path, true),
        "weft-fd-sink" => weft_fd_sink(path),
        _ => return false,
    }
    true
}

fn tokio_unix_echo(path: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    crate::tokio_multi(crate::cores()).block_on(async {
        let l = tokio::net::UnixListener::bind(path).unwrap();
        println!("tokio unix echo: listening on {path}");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Closes every descriptor it receives; answers each byte with one.
struct FdSink;

impl weft::io::Protocol for FdSink {
    type Msg = ();
    const RECEIVES_FDS: bool = true;

    fn fds_received(
        &mut self,
        _conn: &mut weft::io::Conn<'_, '_, Self>,
        fds: Vec<OwnedFd>,
    ) -> weft::ActorResult {
        drop(fds);
        Ok(())
    }

    fn data(&mut self, conn: &mut weft::io::Conn<'_, '_, Self>, data: &[u8]) -> weft::ActorResult {
        conn.write(&vec![b'k'; data.len()])?;
        Ok(())
    }
}

fn weft_fd_sink(path: &str) {
    let rt = weft::Runtime::builder().build().expect("runtime");
    let _listening =
        weft::io::listen_unix(rt.handle(), path, weft::ListenOptions::new(), || FdSink)
            .expect("listen");
    println!("weft fd sink: listening on {path}");
    rt.run().expect("run");
}

/// The ceiling of a readiness loop over UNIX sockets: one thread,
/// edge-triggered, read until `WouldBlock` and write back at once (echo),
/// or (`fds`) `recvmsg` closing every descriptor and one byte back per
/// byte.
fn mio_loop(path: &str, fds: bool) {
    use mio::net::UnixListener;
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut l = UnixListener::bind(path).unwrap();
    poll.registry()
        .register(&mut l, LISTENER, Interest::READABLE)
        .unwrap();
    println!("mio unix: listening on {path}");
    let mut conns: Vec<Option<MioUnix>> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 253]);
    let acks = vec![b'k'; 64 * 1024];
    loop {
        poll.poll(&mut events, None).unwrap();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut s, _)) = l.accept() {
                    let i = conns.len();
                    poll.registry()
                        .register(&mut s, Token(i), Interest::READABLE)
                        .unwrap();
                    conns.push(Some(s));
                }
                continue;
            }
            let i = ev.token().0;
            let Some(s) = conns[i].as_mut() else { continue };
            let mut close = false;
            loop {
                let n = if fds {
                    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                    match recvmsg::<UnixAddr>(
                        s.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::MSG_CMSG_CLOEXEC,
                    ) {
                        Ok(msg) => {
                            if let Ok(cmsgs) = msg.cmsgs() {
                                for c in cmsgs {
                                    if let ControlMessageOwned::ScmRights(list) = c {
                                        for fd in list {
                                            let _ = nix::unistd::close(fd);
                                        }
                                    }
                                }
                            }
                            Ok(msg.bytes)
                        }
                        Err(e) => Err(std::io::Error::from(e)),
                    }
                } else {
                    s.read(&mut buf)
                };
                match n {
                    Ok(0) => {
                        close = true;
                        break;
                    }
                    Ok(n) => {
                        let out = if fds { &acks[..n] } else { &buf[..n] };
                        if s.write_all(out).is_err() {
                            close = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            if close {
                if let Some(mut s) = conns[i].take() {
                    let _ = poll.registry().deregister(&mut s);
                }
            }
        }
    }
}
