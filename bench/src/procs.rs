//! The process rows of the `net` group: `proc-spawn` (start `true`, wait
//! until it ended, four in flight; children per second) and `proc-stream`
//! (MB/s through `cat`: 64 KiB writes at most 1 MiB ahead of what came
//! back). weft's `spawn_process`, tokio's `process` module (one worker per
//! core: one, pinned) and Twisted's `spawnProcess`
//! (`bench/twisted/proc_bench.py`), each pinned to the load core with its
//! children.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use weft::io::process::{spawn_process, Proc, ProcessProtocol, ProcessSpec, ProcessStatus};
use weft::prelude::*;

use tokio::io::AsyncReadExt;

use crate::emit;
use crate::net::secs;

const IN_FLIGHT: usize = 4;
const CHUNK: usize = 64 * 1024;
const AHEAD: u64 = 1 << 20;

/// Runs one process (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    let dur = Duration::from_secs(secs());
    match (job, system) {
        ("proc-spawn", "weft") => weft_spawn(dur),
        ("proc-spawn", "tokio") => tokio_spawn(dur),
        ("proc-stream", "weft") => weft_stream(dur),
        ("proc-stream", "tokio") => tokio_stream(dur),
        (_, "twisted") => return twisted(job, dur),
        _ => return false,
    }
    true
}

/// Ends, counts, and starts the next child from inside the runtime (as a
/// weft program would: no hop through another thread).
struct Relay {
    count: Arc<AtomicU64>,
    end: Instant,
    done: mpsc::Sender<()>,
}

impl ProcessProtocol for Relay {
    type Msg = ();
    fn data(&mut self, _p: &mut Proc<'_, '_, Self>, _fd: i32, _data: &[u8]) -> ActorResult {
        Ok(())
    }
    fn ended(&mut self, p: &mut Proc<'_, '_, Self>, _status: ProcessStatus) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if Instant::now() < self.end {
            let next = Relay {
                count: self.count.clone(),
                end: self.end,
                done: self.done.clone(),
            };
            spawn_process(p.ctx().runtime(), ProcessSpec::new("true"), next).expect("true starts");
        } else {
            let _ = self.done.send(());
        }
    }
}

fn weft_spawn(dur: Duration) {
    let rt = Runtime::builder().build().expect("runtime");
    let (done, rx) = mpsc::channel();
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    for _ in 0..IN_FLIGHT {
        let relay = Relay {
            count: count.clone(),
            end: start + dur,
            done: done.clone(),
        };
        spawn_process(rt.handle(), ProcessSpec::new("true"), relay).expect("true starts");
    }
    for _ in 0..IN_FLIGHT {
        rx.recv_timeout(dur + Duration::from_secs(30))
            .expect("a relay ended");
    }
    emit(
        "proc-spawn",
        "per_s",
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
    );
}

fn tokio_spawn(dur: Duration) {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    crate::tokio_multi(crate::cores()).block_on(async {
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let count = count.clone();
                tokio::spawn(async move {
                    while start.elapsed() < dur {
                        let mut child = tokio::process::Command::new("true")
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()
                            .expect("true starts");
                        // Ended as weft's `ended` and Twisted's
                        // `processEnded` mean it: reaped, and its output
                        // read to the end.
                        drop(child.stdin.take());
                        let mut out = child.stdout.take().expect("piped");
                        let mut err = child.stderr.take().expect("piped");
                        let (mut a, mut b) = (Vec::new(), Vec::new());
                        let (o, e, w) = tokio::join!(
                            out.read_to_end(&mut a),
                            err.read_to_end(&mut b),
                            child.wait()
                        );
                        o.and(e).expect("output read");
                        w.expect("true ends");
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    emit(
        "proc-spawn",
        "per_s",
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
    );
}

/// Streams through `cat` until `end`, then closes its input.
struct Stream {
    chunk: Vec<u8>,
    sent: u64,
    got: u64,
    start: Instant,
    end: Instant,
    closed: bool,
    done: mpsc::Sender<(u64, Duration)>,
}

impl Stream {
    fn pump(&mut self, p: &mut Proc<'_, '_, Self>) {
        if self.closed {
            return;
        }
        if Instant::now() >= self.end {
            self.closed = true;
            p.close_fd(0);
            return;
        }
        while self.sent - self.got < AHEAD {
            if p.write(0, &self.chunk).is_err() {
                return;
            }
            self.sent += CHUNK as u64;
        }
    }
}

impl ProcessProtocol for Stream {
    type Msg = ();
    fn started(&mut self, p: &mut Proc<'_, '_, Self>) -> ActorResult {
        self.start = Instant::now();
        self.pump(p);
        Ok(())
    }
    fn write_paused(&mut self, _p: &mut Proc<'_, '_, Self>, _fd: i32) {}
    fn write_resumed(&mut self, p: &mut Proc<'_, '_, Self>) {
        self.pump(p);
    }
    fn data(&mut self, p: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
        self.got += data.len() as u64;
        self.pump(p);
        Ok(())
    }
    fn ended(&mut self, _p: &mut Proc<'_, '_, Self>, _status: ProcessStatus) {
        let _ = self.done.send((self.got, self.start.elapsed()));
    }
}

fn weft_stream(dur: Duration) {
    let rt = Runtime::builder().build().expect("runtime");
    let (done, rx) = mpsc::channel();
    let now = Instant::now();
    let stream = Stream {
        chunk: vec![b's'; CHUNK],
        sent: 0,
        got: 0,
        start: now,
        end: now + dur,
        closed: false,
        done,
    };
    spawn_process(rt.handle(), ProcessSpec::new("cat"), stream).expect("cat starts");
    let (got, elapsed) = rx
        .recv_timeout(dur + Duration::from_secs(30))
        .expect("cat ended");
    emit(
        "proc-stream",
        "mb_per_s",
        got as f64 / 1e6 / elapsed.as_secs_f64(),
    );
}

fn tokio_stream(dur: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let got = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    crate::tokio_multi(crate::cores()).block_on(async {
        let mut child = tokio::process::Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cat starts");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let notify = Arc::new(tokio::sync::Notify::new());
        let (got_w, notify_w) = (got.clone(), notify.clone());
        let writer = tokio::spawn(async move {
            let chunk = vec![b's'; CHUNK];
            let mut sent = 0u64;
            while start.elapsed() < dur {
                if sent - got_w.load(Ordering::Relaxed) >= AHEAD {
                    notify_w.notified().await;
                    continue;
                }
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += CHUNK as u64;
            }
            drop(stdin);
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.fetch_add(n as u64, Ordering::Relaxed);
                    notify.notify_one();
                }
            }
        }
        let _ = writer.await;
        let _ = child.wait().await;
    });
    emit(
        "proc-stream",
        "mb_per_s",
        got.load(Ordering::Relaxed) as f64 / 1e6 / start.elapsed().as_secs_f64(),
    );
}

fn twisted(job: &str, dur: Duration) -> bool {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return false;
    }
    let out = Command::new(python)
        .arg(root.join("twisted/proc_bench.py"))
        .arg(job)
        .arg(dur.as_secs().to_string())
        .stderr(Stdio::inherit())
        .output();
    let Ok(out) = out else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut any = false;
    for line in text.lines() {
        if line.starts_with("RESULT ") {
            println!("{line}");
            any = true;
        }
    }
    any
}
