//! tokio: tasks and mpsc channels (an "actor" is a task draining a
//! channel), on the current-thread runtime for one worker and the
//! multi-thread runtime (one worker per core) otherwise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::{emit, mem, sizes};

pub fn run(job: &str) -> bool {
    match job {
        "ping-pong" => crate::tokio_current().block_on(ring(
            "ping-pong",
            2,
            sizes::PING_PONG * 2,
            sizes::PING_PONG,
        )),
        "ping-pong-2w" => crate::tokio_multi(2).block_on(ring(
            "ping-pong-2w",
            2,
            sizes::PING_PONG * 2,
            sizes::PING_PONG,
        )),
        "thread-ring" => crate::tokio_multi(crate::cores()).block_on(ring(
            "thread-ring",
            sizes::RING_ACTORS,
            sizes::RING_HOPS,
            sizes::RING_HOPS,
        )),
        "counting" => crate::tokio_multi(crate::cores()).block_on(counting()),
        "fan-in" => crate::tokio_multi(crate::cores()).block_on(fan_in()),
        "spawn" => crate::tokio_multi(crate::cores()).block_on(spawn()),
        "ask" => ask_thread(),
        "ask-actor" => crate::tokio_multi(crate::cores()).block_on(ask_task()),
        "timers" => crate::tokio_multi(crate::cores()).block_on(timers(sizes::TIMERS)),
        "timers-10k" => crate::tokio_multi(crate::cores()).block_on(timers(sizes::TIMERS_SMALL)),
        _ => return false,
    }
    true
}

async fn ring(name: &str, n: usize, hops: u64, count: u64) {
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded_channel::<u64>();
        txs.push(tx);
        rxs.push(rx);
    }
    let (done_tx, done_rx) = oneshot::channel();
    let done_tx = Arc::new(std::sync::Mutex::new(Some(done_tx)));
    for (i, mut rx) in rxs.into_iter().enumerate() {
        let next = txs[(i + 1) % n].clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            while let Some(left) = rx.recv().await {
                if left == 0 {
                    if let Some(d) = done.lock().unwrap().take() {
                        let _ = d.send(());
                    }
                    return;
                }
                let _ = next.send(left - 1);
            }
        });
    }
    let start = Instant::now();
    txs[0].send(hops).unwrap();
    done_rx.await.unwrap();
    emit(name, "per_s", count as f64 / start.elapsed().as_secs_f64());
}

fn counter() -> (mpsc::UnboundedSender<u64>, oneshot::Receiver<u64>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let (done, result) = oneshot::channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(v) = rx.recv().await {
            n += v & 1;
        }
        let _ = done.send(n);
    });
    (tx, result)
}

async fn counting() {
    let (tx, result) = counter();
    let start = Instant::now();
    tokio::spawn(async move {
        for i in 0..sizes::COUNTING {
            tx.send(i | 1).unwrap();
        }
    });
    let n = result.await.unwrap();
    assert_eq!(n, sizes::COUNTING);
    emit(
        "counting",
        "per_s",
        n as f64 / start.elapsed().as_secs_f64(),
    );
}

async fn fan_in() {
    let (tx, result) = counter();
    let start = Instant::now();
    for _ in 0..crate::cores() {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..sizes::FAN_IN_PER_SENDER {
                tx.send(i | 1).unwrap();
            }
        });
    }
    drop(tx);
    let n = result.await.unwrap();
    assert_eq!(n, sizes::FAN_IN_PER_SENDER * crate::cores() as u64);
    emit("fan-in", "per_s", n as f64 / start.elapsed().as_secs_f64());
}

async fn spawn() {
    let acks = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(tokio::sync::Notify::new());
    let base = mem::rss();
    let start = Instant::now();
    let mut senders = Vec::with_capacity(sizes::SPAWN);
    for _ in 0..sizes::SPAWN {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let (acks, all) = (acks.clone(), all.clone());
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                if acks.fetch_add(1, Ordering::AcqRel) + 1 == sizes::SPAWN {
                    all.notify_one();
                }
            }
        });
        tx.send(()).unwrap();
        senders.push(tx);
    }
    all.notified().await;
    let peak = mem::peak_rss();
    drop(senders); // each task ends when its channel closes
    while tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        > 0
    {
        tokio::task::yield_now().await;
    }
    crate::emit_spawn(
        start,
        base,
        peak,
        std::mem::size_of::<mpsc::UnboundedSender<()>>(),
    );
}

fn echo_server() -> mpsc::UnboundedSender<(u64, oneshot::Sender<u64>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    tokio::spawn(async move {
        while let Some((n, reply)) = rx.recv().await {
            let _ = reply.send(n + 1);
        }
    });
    tx
}

fn ask_thread() {
    let rt = crate::tokio_multi(crate::cores());
    let server = rt.block_on(async { echo_server() });
    let start = Instant::now();
    for i in 0..sizes::ASK {
        let (tx, rx) = oneshot::channel();
        server.send((i, tx)).unwrap();
        assert_eq!(rx.blocking_recv().unwrap(), i + 1);
    }
    emit(
        "ask",
        "per_s",
        sizes::ASK as f64 / start.elapsed().as_secs_f64(),
    );
}

async fn ask_task() {
    let server = echo_server();
    let start = Instant::now();
    tokio::spawn(async move {
        for i in 0..sizes::ASK {
            let (tx, rx) = oneshot::channel();
            server.send((i, tx)).unwrap();
            assert_eq!(rx.await.unwrap(), i + 1);
        }
    })
    .await
    .unwrap();
    emit(
        "ask-actor",
        "per_s",
        sizes::ASK as f64 / start.elapsed().as_secs_f64(),
    );
}

async fn timers(n: usize) {
    let fired = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(tokio::sync::Notify::new());
    let expected = n - n / 2;
    let base = mem::rss();
    let start = Instant::now();
    let mut spread = crate::TimerSpread::new(start, n);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (fired, all) = (fired.clone(), all.clone());
        let delay = spread.delay(i);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // Even timers are the cancelled half; one that fired before its
            // abort does not count.
            if i % 2 == 1 && fired.fetch_add(1, Ordering::AcqRel) + 1 == expected {
                all.notify_one();
            }
        }));
    }
    let bytes = mem::rss().saturating_sub(base)
        - (n * std::mem::size_of::<tokio::task::JoinHandle<()>>()) as u64;
    for h in handles.iter().step_by(2) {
        h.abort();
    }
    let ops = (n + n / 2) as f64 / start.elapsed().as_secs_f64();
    all.notified().await;
    let last = start.elapsed().as_secs_f64();
    let (name, last_name) = crate::timer_names(n);
    emit(name, "per_s", ops);
    emit(last_name, "us", last * 1e6);
    if n == sizes::TIMERS {
        emit("timer-bytes", "bytes", (bytes / n as u64) as f64);
    }
}
