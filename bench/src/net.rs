//! The `net` group: echo and HTTP servers measured with the server pinned
//! to core 0 and the load generator (this child process, and wrk) to core
//! 1 (on a 2-core machine the two never share a core; see BENCHMARKS.md).
//!
//! Servers: weft's own examples (`echo`, `http_hello`, built by the
//! harness in the main workspace), a tokio echo server and a hyper server
//! (multi-thread runtime, one worker per core: one, when pinned), a raw
//! single-threaded mio echo loop (the ceiling of a readiness loop), and
//! Twisted (`bench/twisted/*.py` in the venv `bench/setup.sh` makes).
//!
//! Figures: `echo-rr` requests/s with `-p50`/`-p99` latency and `-cpu`
//! (server CPU per request, from /proc/PID/stat); `echo-stream` MB/s;
//! `idle-bytes` server RSS growth per idle connection; `connect-rate`
//! connections/s; `flood-rss` server peak RSS growth while one client
//! writes without reading, with `flood-p99` the latency another client
//! sees meanwhile; `http-plaintext` requests/s and `http-p99` from wrk,
//! with `http-cpu` the server's CPU per request (wrk, on one core, can be
//! the limit; the CPU figure still compares the servers). The `tls-*`
//! jobs (TLS servers and a rustls load generator) are in `tls.rs`, the
//! `proc-*` jobs (child processes) in `procs.rs`, the UNIX socket jobs
//! (`unix-echo-rr`, `fd-pass`) in `unix.rs`, `udp-echo-rr` in `udp.rs`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::emit;

/// The jobs of the group, in table order.
pub const JOBS: [&str; 17] = [
    "echo-rr",
    "echo-stream",
    "idle",
    "connect-rate",
    "flood",
    "http-plaintext",
    "tls-handshake",
    "tls-echo-rr",
    "tls-stream",
    "tls-idle",
    "proc-spawn",
    "proc-stream",
    "unix-echo-rr",
    "fd-pass",
    "udp-echo-rr",
    "udp-flood",
    "udp-flood-gso",
];

/// The systems of the group.
pub const SYSTEMS: [&str; 4] = ["weft", "tokio", "mio", "twisted"];

const SERVER_CORE: &str = "0";
const LOAD_CORE: &str = "1";

/// Seconds per timed workload (10 by default; `WEFT_BENCH_SECS` overrides
/// for a quick look).
pub(crate) fn secs() -> u64 {
    std::env::var("WEFT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds weft's examples and checks the tools; run once by the parent.
pub fn prepare() -> Result<(), String> {
    let status = Command::new("cargo")
        .args(["build", "--release", "--examples", "--manifest-path"])
        .arg(repo().join("Cargo.toml"))
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err("building weft's examples failed".into());
    }
    let have_wrk = Command::new("wrk").arg("--version").output().is_ok();
    let venv = repo().join("bench/.venv/bin/python");
    let have_twisted = Command::new(&venv)
        .args(["-c", "import twisted, OpenSSL"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_wrk || !have_twisted {
        let setup = repo().join("bench/setup.sh");
        let ok = Command::new("sh")
            .arg(setup)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("bench/setup.sh failed: wrk or Twisted rows will be n/a");
        }
    }
    Ok(())
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(1 << 20), hard);
    }
}

fn pin_self(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Echo,
    Http,
    /// A TLS echo server; its certificate chain and key files follow.
    Tls,
    /// A UDP echo server.
    Udp,
    /// A UDP sink that counts (and answers `count?`).
    UdpSink,
}

/// A server under load, in its own process pinned to the server core;
/// killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Starts `system`'s server of this kind; `extra` are appended to its
    /// command line (the certificate and key files for [`Kind::Tls`]).
    pub(crate) fn start(system: &str, kind: Kind, extra: &[String]) -> Option<Server> {
        let me = std::env::current_exe().ok()?;
        let examples = repo().join("target/release/examples");
        let venv = repo().join("bench/.venv/bin/python");
        let twisted = repo().join("bench/twisted");
        let any = "127.0.0.1:0";
        let cmd: Vec<String> = match (system, kind) {
            ("weft", Kind::Echo) => vec![examples.join("echo").display().to_string(), any.into()],
            ("weft", Kind::Http) => {
                vec![
                    examples.join("http_hello").display().to_string(),
                    any.into(),
                ]
            }
            ("tokio", Kind::Echo) => {
                vec![
                    me.display().to_string(),
                    "--serve".into(),
                    "tokio-echo".into(),
                ]
            }
            ("tokio", Kind::Http) => {
                vec![me.display().to_string(), "--serve".into(), "hyper".into()]
            }
            ("mio", Kind::Echo) => {
                vec![
                    me.display().to_string(),
                    "--serve".into(),
                    "mio-echo".into(),
                ]
            }
            ("twisted", Kind::Echo) if venv.exists() => vec![
                venv.display().to_string(),
                twisted.join("echo_server.py").display().to_string(),
                any.into(),
            ],
            ("twisted", Kind::Http) if venv.exists() => vec![
                venv.display().to_string(),
                twisted.join("web_server.py").display().to_string(),
                any.into(),
            ],
            ("weft", Kind::Tls) => vec![
                examples.join("tls_echo").display().to_string(),
                "--quiet".into(),
                any.into(),
            ],
            ("tokio", Kind::Tls) => vec![
                me.display().to_string(),
                "--serve".into(),
                "tokio-rustls-echo".into(),
            ],
            ("weft", Kind::Udp) => {
                vec![examples.join("udp_echo").display().to_string(), any.into()]
            }
            ("tokio", Kind::Udp) => vec![
                me.display().to_string(),
                "--serve".into(),
                "tokio-udp-echo".into(),
            ],
            ("mio", Kind::Udp) => vec![
                me.display().to_string(),
                "--serve".into(),
                "mio-udp-echo".into(),
            ],
            ("weft", Kind::UdpSink) => vec![
                me.display().to_string(),
                "--serve".into(),
                "weft-udp-sink".into(),
            ],
            ("tokio", Kind::UdpSink) => vec![
                me.display().to_string(),
                "--serve".into(),
                "tokio-udp-sink".into(),
            ],
            ("mio", Kind::UdpSink) => vec![
                me.display().to_string(),
                "--serve".into(),
                "mio-udp-sink".into(),
            ],
            ("twisted", Kind::UdpSink) if venv.exists() => vec![
                venv.display().to_string(),
                twisted.join("udp_sink.py").display().to_string(),
                any.into(),
            ],
            ("twisted", Kind::Udp) if venv.exists() => vec![
                venv.display().to_string(),
                twisted.join("udp_echo_server.py").display().to_string(),
                any.into(),
            ],
            ("twisted", Kind::Tls) if venv.exists() => vec![
                venv.display().to_string(),
                twisted.join("tls_echo_server.py").display().to_string(),
                any.into(),
            ],
            _ => return None,
        };
        let cmd: Vec<String> = cmd.into_iter().chain(extra.iter().cloned()).collect();
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CORE])
            .args(&cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        let addr = loop {
            let line = lines.next()?.ok()?;
            if let Some((_, rest)) = line.split_once("listening on ") {
                let rest = rest
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let rest = rest.split(',').next().unwrap_or(rest);
                break rest.parse().ok()?;
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let server = Server { child, addr };
        std::thread::sleep(Duration::from_millis(200));
        Some(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the server has used (user + system).
    pub(crate) fn cpu_secs(&self) -> f64 {
        cpu_secs_of(self.pid())
    }

    fn status_bytes(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024
    }

    pub(crate) fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds process `pid` has used (user + system), from
/// /proc/PID/stat.
pub(crate) fn cpu_secs_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_nodelay(true).ok();
    s
}

/// `conns` connections each send `size` bytes and wait for the echo, for
/// `dur`; returns the requests completed and every latency in µs.
fn request_reply(addr: SocketAddr, conns: usize, size: usize, dur: Duration) -> (u64, Vec<u32>) {
    request_reply_over(conns, size, dur, || {
        let s = connect(addr);
        s.set_nonblocking(true).unwrap();
        MioStream::from_std(s)
    })
}

/// `request_reply` over any non-blocking stream `connect` opens (TCP
/// here, UNIX in `unix.rs`).
pub(crate) fn request_reply_over<S>(
    conns: usize,
    size: usize,
    dur: Duration,
    mut connect: impl FnMut() -> S,
) -> (u64, Vec<u32>)
where
    S: Read + Write + mio::event::Source,
{
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(256);
    let msg = vec![b'r'; size];
    let mut state = Vec::new();
    for i in 0..conns {
        let mut s = connect();
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .unwrap();
        state.push((s, Instant::now(), 0usize));
    }
    let mut lat = Vec::with_capacity(1 << 20);
    let mut done = 0u64;
    for (s, at, _) in state.iter_mut() {
        s.write_all(&msg).unwrap();
        *at = Instant::now();
    }
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + dur;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let (s, at, got) = &mut state[ev.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => panic!("the server closed an echo-rr connection"),
                    Ok(n) => {
                        *got += n;
                        while *got >= size {
                            *got -= size;
                            lat.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            done += 1;
                            s.write_all(&msg).unwrap();
                            *at = Instant::now();
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("echo-rr read: {e}"),
                }
            }
        }
    }
    (done, lat)
}

fn echo_rr(server: &Server) {
    let dur = Duration::from_secs(secs());
    let cpu0 = server.cpu_secs();
    let (n, mut lat) = request_reply(server.addr, 50, 64, dur);
    let cpu = server.cpu_secs() - cpu0;
    lat.sort_unstable();
    emit("echo-rr", "per_s", n as f64 / dur.as_secs_f64());
    emit("echo-rr-p50", "us", percentile(&lat, 0.50));
    emit("echo-rr-p99", "us", percentile(&lat, 0.99));
    emit("echo-rr-cpu", "us", cpu * 1e6 / n.max(1) as f64);
}

fn echo_stream(server: &Server) {
    const CONNS: usize = 8;
    const AHEAD: usize = 1 << 20;
    let dur = Duration::from_secs(secs());
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let chunk = vec![b's'; 64 * 1024];
    let mut conns: Vec<(MioStream, usize, usize)> = (0..CONNS)
        .map(|i| {
            let s = connect(server.addr);
            s.set_nonblocking(true).unwrap();
            let mut s = MioStream::from_std(s);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .unwrap();
            (s, 0, 0)
        })
        .collect();
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let end = start + dur;
    let mut total = 0u64;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let (s, written, read) = &mut conns[ev.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => panic!("the server closed an echo-stream connection"),
                    Ok(n) => {
                        *read += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("echo-stream read: {e}"),
                }
            }
            while *written - *read < AHEAD {
                match s.write(&chunk) {
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("echo-stream write: {e}"),
                }
            }
        }
    }
    emit(
        "echo-stream",
        "mb_per_s",
        total as f64 / 1e6 / start.elapsed().as_secs_f64(),
    );
}

fn idle(server: &Server) {
    const N: usize = 10_000;
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss();
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = connect(server.addr);
        s.write_all(b"i").unwrap();
        conns.push(s);
    }
    // Every connection answered: the server holds them all.
    for s in conns.iter_mut() {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss();
    emit(
        "idle-bytes",
        "bytes",
        after.saturating_sub(before) as f64 / N as f64,
    );
}

fn connect_rate(server: &Server) {
    let dur = Duration::from_secs(secs());
    let end = Instant::now() + dur;
    let addr = server.addr;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut b = [0u8; 64];
                while Instant::now() < end {
                    let mut s = connect(addr);
                    s.write_all(&[b'c'; 64]).unwrap();
                    s.read_exact(&mut b).unwrap();
                    // Reset instead of TIME_WAIT: the client's ports last.
                    let _ = set_linger_zero(&s);
                    drop(s);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    emit("connect-rate", "per_s", total as f64 / dur.as_secs_f64());
}

pub(crate) fn set_linger_zero(s: &TcpStream) -> nix::Result<()> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger)
}

fn flood(server: &Server) {
    const TOTAL: usize = 100 * 1024 * 1024;
    let dur = Duration::from_secs(secs().min(10));
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss();
    let addr = server.addr;
    let flooder = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.set_nonblocking(true).unwrap();
        let chunk = vec![b'f'; 64 * 1024];
        let mut written = 0usize;
        let end = Instant::now() + dur;
        while written < TOTAL && Instant::now() < end {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(_) => break,
            }
        }
        (s, written)
    });
    let (_, mut lat) = request_reply(addr, 1, 64, dur);
    let (_s, _written) = flooder.join().unwrap();
    lat.sort_unstable();
    let peak = server.peak_rss();
    emit("flood-rss", "bytes", peak.saturating_sub(before) as f64);
    emit("flood-p99", "us", percentile(&lat, 0.99));
}

fn http(server: &Server) {
    let cpu0 = server.cpu_secs();
    let out = Command::new("taskset")
        .args(["-c", LOAD_CORE, "wrk", "-t1", "-c100"])
        .arg(format!("-d{}s", secs()))
        .arg("--latency")
        .arg(format!("http://{}/", server.addr))
        .output();
    let Ok(out) = out else {
        println!("NA");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = None;
    let mut p99 = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        }
        if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_wrk_time(v.trim());
        }
        if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            eprintln!("wrk: {line}");
        }
    }
    match rps {
        Some(rps) => {
            emit("http-plaintext", "per_s", rps);
            let cpu = server.cpu_secs() - cpu0;
            emit("http-cpu", "us", cpu * 1e6 / (rps * secs() as f64).max(1.0));
            if let Some(p) = p99 {
                emit("http-p99", "us", p);
            }
        }
        None => println!("NA"),
    }
}

/// wrk's "1.23ms" / "456.00us" / "1.20s" to µs.
fn parse_wrk_time(v: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * mul)
}

/// Runs one (job, system) in this child: starts the server, loads it.
pub fn run(job: &str, system: &str) -> bool {
    raise_fd_limit();
    pin_self(LOAD_CORE.parse().unwrap());
    if job.starts_with("tls-") {
        return crate::tls::run(job, system);
    }
    if job.starts_with("proc-") {
        return crate::procs::run(job, system);
    }
    if job.starts_with("unix-") || job == "fd-pass" {
        return crate::unix::run(job, system);
    }
    if job.starts_with("udp-") {
        return crate::udp::run(job, system);
    }
    let kind = if job == "http-plaintext" {
        Kind::Http
    } else {
        Kind::Echo
    };
    let Some(server) = Server::start(system, kind, &[]) else {
        return false;
    };
    match job {
        "echo-rr" => echo_rr(&server),
        "echo-stream" => echo_stream(&server),
        "idle" => idle(&server),
        "connect-rate" => connect_rate(&server),
        "flood" => flood(&server),
        "http-plaintext" => http(&server),
        _ => return false,
    }
    true
}

// ---- servers run by this binary (`--serve NAME`) ----

/// Runs a server named `name` on 127.0.0.1 (port from the OS) until
/// killed; `args` are its own (the TLS server's certificate and key files).
pub fn serve(name: &str, args: &[String]) {
    raise_fd_limit();
    match name {
        "tokio-echo" => tokio_echo(),
        "hyper" => hyper_hello(),
        "mio-echo" => mio_echo(),
        "tokio-rustls-echo" => crate::tls::tokio_rustls_echo(args),
        _ if crate::unix::serve(name, args.first().map_or("", String::as_str)) => {}
        _ if crate::udp::serve(name, args) => {}
        _ => eprintln!("unknown server {name}"),
    }
}

fn tokio_echo() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    crate::tokio_multi(crate::cores()).block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("tokio echo: listening on {}", l.local_addr().unwrap());
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
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

fn hyper_hello() {
    use http_body_util::Full;
    use hyper::body::Bytes;
    crate::tokio_multi(crate::cores()).block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("hyper: listening on {}", l.local_addr().unwrap());
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"Hello, World!"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
}

/// The practical ceiling of a readiness loop: one thread, edge-triggered,
/// read until `WouldBlock`, write back at once, buffer only what the
/// socket refused (and stop reading until it drains).
fn mio_echo() {
    use mio::net::TcpListener;
    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    poll.registry()
        .register(&mut l, LISTENER, Interest::READABLE)
        .unwrap();
    println!("mio echo: listening on {}", l.local_addr().unwrap());
    struct Conn {
        s: MioStream,
        pending: Vec<u8>,
    }
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None).unwrap();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut s, _)) = l.accept() {
                    let _ = s.set_nodelay(true);
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry()
                        .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                        .unwrap();
                    conns[i] = Some(Conn {
                        s,
                        pending: Vec::new(),
                    });
                }
                continue;
            }
            let i = ev.token().0;
            let Some(c) = conns[i].as_mut() else { continue };
            let mut close = false;
            // Drain what is owed first.
            while !c.pending.is_empty() {
                match c.s.write(&c.pending) {
                    Ok(n) => {
                        c.pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            while !close && c.pending.is_empty() {
                match c.s.read(&mut buf) {
                    Ok(0) => close = true,
                    Ok(n) => {
                        let mut at = 0;
                        while at < n {
                            match c.s.write(&buf[at..n]) {
                                Ok(k) => at += k,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    c.pending.extend_from_slice(&buf[at..n]);
                                    break;
                                }
                                Err(_) => {
                                    close = true;
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => close = true,
                }
            }
            if close {
                if let Some(mut c) = conns[i].take() {
                    let _ = poll.registry().deregister(&mut c.s);
                }
                free.push(i);
            }
        }
    }
}
