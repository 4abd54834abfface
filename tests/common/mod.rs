//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "tls")]
pub mod certs;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use weft::prelude::*;

/// The bound on every wait in the tests: generous, so a slow CI machine
/// never fails a test, but a hang becomes a failure instead of a stall.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .shutdown_timeout(WAIT)
        .build()
        .expect("runtime builds")
}

pub fn manual_runtime(workers: usize) -> (Runtime, ManualClock) {
    let clock = ManualClock::new();
    let rt = Runtime::builder()
        .workers(workers)
        .manual_clock(clock.clone())
        .shutdown_timeout(WAIT)
        .build()
        .expect("runtime builds");
    (rt, clock)
}

/// Receives one value or fails the test after `WAIT`.
pub fn recv<T>(rx: &Receiver<T>) -> T {
    match rx.recv_timeout(WAIT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for a message"),
        Err(RecvTimeoutError::Disconnected) => panic!("sender dropped"),
    }
}

/// Waits until `check` holds, polling, failing the test after `WAIT`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts nothing arrives within a short grace period.
pub fn assert_silent<T: std::fmt::Debug>(rx: &Receiver<T>) {
    if let Ok(v) = rx.recv_timeout(Duration::from_millis(50)) {
        panic!("unexpected message: {v:?}");
    }
}

/// An actor that records what it is sent and answers with the record.
pub struct Recorder<T> {
    pub seen: Vec<T>,
}

pub enum RecMsg<T> {
    Record(T),
    Get(ReplyTo<Vec<T>>),
}

impl<T: Send + Clone + 'static> Actor for Recorder<T> {
    type Msg = RecMsg<T>;
    fn handle(&mut self, msg: RecMsg<T>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            RecMsg::Record(v) => self.seen.push(v),
            RecMsg::Get(r) => r.send(self.seen.clone()),
        }
        Ok(())
    }
}

pub fn recorder<T: Send + Clone + 'static>(rt: &Runtime) -> Addr<Recorder<T>> {
    rt.handle().spawn(Recorder { seen: Vec::new() })
}

pub fn recorded<T: Send + Clone + 'static>(addr: &Addr<Recorder<T>>) -> Vec<T> {
    addr.ask_wait(RecMsg::Get, WAIT).expect("recorder answers")
}

/// The plainest protocol: writes back what it reads.
pub struct Echo;

impl Protocol for Echo {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

/// A child process that ends with the test: killed and reaped when this
/// guard drops (a test that fails or panics still drops it), and killed by
/// the kernel when the thread that started it dies (`PR_SET_PDEATHSIG`),
/// which covers the test binary exiting without running destructors.
pub struct ChildGuard(Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `cmd` so that it cannot outlive the test (see [`ChildGuard`]).
pub fn spawn_guarded(cmd: &mut Command) -> ChildGuard {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: between fork and exec the closure only makes two system calls
    // (prctl, getppid) and may call `_exit`: all async-signal-safe, nothing
    // allocates or takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died before the death signal was armed.
            if nix::unistd::getppid() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
    ChildGuard(cmd.spawn().expect("the child process starts"))
}

/// Starts `cmd` (guarded, see [`spawn_guarded`]) with its standard output
/// piped (standard error dropped); its output arrives line by line on the
/// receiver (read with `recv`).
pub fn spawn_with_lines(cmd: &mut Command) -> (ChildGuard, Receiver<String>) {
    use std::io::BufRead;
    let mut child = spawn_guarded(cmd.stdout(Stdio::piped()).stderr(Stdio::null()));
    let out = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs this test binary again as a child: only the ignored test `name`,
/// with `env_var` set (the child test does nothing without it).
pub fn spawn_test_child(name: &str, env_var: &str) -> (ChildGuard, Receiver<String>) {
    spawn_with_lines(
        Command::new(std::env::current_exe().expect("the test binary's path"))
            .args(["--exact", name, "--ignored", "--nocapture"])
            .env(env_var, "1"),
    )
}

/// The child's stdout as chunks on a channel (read by a thread, so every
/// wait on it is bounded with `recv`); an empty chunk means end of file.
pub fn chunks(child: &mut ChildGuard) -> mpsc::Receiver<Vec<u8>> {
    let mut out = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = out.read(&mut buf).unwrap_or(0);
            if tx.send(buf[..n].to_vec()).is_err() || n == 0 {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a guarded child; returns (success, stdout, stderr).
pub fn wait_output(child: ChildGuard) -> (bool, String, String) {
    let (status, out, err) = collect(child);
    (status.success(), out, err)
}

/// Reads a guarded child's stdout and stderr to their ends and waits for
/// it to exit, all within `WAIT`; (exit status, stdout, stderr).
pub fn collect(mut child: ChildGuard) -> (std::process::ExitStatus, String, String) {
    let pid = child.id();
    let out = chunks(&mut child);
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = Vec::new();
    loop {
        let chunk = recv(&out);
        if chunk.is_empty() {
            break;
        }
        stdout.extend_from_slice(&chunk);
    }
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "child {pid} did not exit"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status,
        String::from_utf8_lossy(&stdout).into_owned(),
        err.join().unwrap_or_default(),
    )
}

/// Hands each chunk to a slow consumer actor (a small mailbox, so a
/// full one mutes the connection: it stops reading; over TLS, it stops
/// feeding rustls ciphertext too). The flood tests' server.
pub struct Forward {
    pub to: Addr<Slow>,
    pub in_flight: Arc<AtomicUsize>,
}

impl Protocol for Forward {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.in_flight.fetch_add(data.len(), Ordering::SeqCst);
        let _ = conn.ctx().send(&self.to, data.to_vec());
        Ok(())
    }
}

/// Counts and sums what it gets, slowly; records the peak of bytes in
/// flight between the connection and itself.
pub struct Slow {
    pub in_flight: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    pub total: Arc<AtomicU64>,
    pub sum: Arc<AtomicU64>,
}

impl Actor for Slow {
    type Msg = Vec<u8>;
    fn handle(&mut self, chunk: Vec<u8>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let now = self.in_flight.load(Ordering::SeqCst);
        self.peak.fetch_max(now, Ordering::SeqCst);
        let s: u64 = chunk.iter().map(|&b| b as u64).sum();
        self.sum.fetch_add(s, Ordering::SeqCst);
        self.total.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        self.in_flight.fetch_sub(chunk.len(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(100)); // slow work
        Ok(())
    }
}

/// A slow consumer (a mailbox of 8) and what it counts, for the flood
/// tests: every connection made by [`factory`](Self::factory) forwards to it.
pub struct SlowSink {
    to: Addr<Slow>,
    in_flight: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    pub total: Arc<AtomicU64>,
    pub sum: Arc<AtomicU64>,
}

impl SlowSink {
    pub fn start(rt: &Runtime) -> SlowSink {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let sum = Arc::new(AtomicU64::new(0));
        let to = rt
            .handle()
            .spawn_with(
                Slow {
                    in_flight: in_flight.clone(),
                    peak: peak.clone(),
                    total: total.clone(),
                    sum: sum.clone(),
                },
                SpawnOptions::new().capacity(8),
            )
            .unwrap();
        SlowSink {
            to,
            in_flight,
            peak,
            total,
            sum,
        }
    }

    /// The consumer's address and the in-flight counter to add to before
    /// each send (for a producer that is not a connection).
    pub fn target(&self) -> (Addr<Slow>, Arc<AtomicUsize>) {
        (self.to.clone(), self.in_flight.clone())
    }

    /// A protocol factory for a listener.
    pub fn factory(&self) -> impl Fn() -> Forward + Send + Sync + 'static {
        let (to, in_flight) = (self.to.clone(), self.in_flight.clone());
        move || Forward {
            to: to.clone(),
            in_flight: in_flight.clone(),
        }
    }
}

/// A fresh directory under the system's temporary one for one test's
/// files (socket files, data), removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// `weft-<pid>-<name>`, emptied first.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weft-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `python3 -c script args...` (guarded, bounded) and returns its
/// standard output; fails the test if it fails.
pub fn python(script: &str, args: &[&str]) -> String {
    let (ok, out, err) = wait_output(spawn_guarded(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(ok, "python failed: {err}");
    out
}
