//! The floor: plain threads and crossbeam channels. Workloads that need
//! actors by the hundred thousand (spawn, timers, thread-ring) have no
//! thread equivalent and report n/a.

use std::time::Instant;

use crossbeam_channel::{bounded, unbounded};

use crate::{emit, sizes};

pub fn run(job: &str) -> bool {
    match job {
        "ping-pong" => ping_pong("ping-pong"),
        "ping-pong-2w" => ping_pong("ping-pong-2w"),
        "counting" => counting(),
        "fan-in" => fan_in(),
        "ask" => ask("ask"),
        "ask-actor" => ask("ask-actor"),
        _ => return false,
    }
    true
}

fn ping_pong(name: &str) {
    let (to_b, b_rx) = bounded::<u64>(1);
    let (to_a, a_rx) = bounded::<u64>(1);
    let b = std::thread::spawn(move || {
        while let Ok(n) = b_rx.recv() {
            if to_a.send(n).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    for i in 0..sizes::PING_PONG {
        to_b.send(i).unwrap();
        a_rx.recv().unwrap();
    }
    emit(
        name,
        "per_s",
        sizes::PING_PONG as f64 / start.elapsed().as_secs_f64(),
    );
    drop(to_b);
    b.join().unwrap();
}

fn counting() {
    let (tx, rx) = unbounded::<u64>();
    let counter = std::thread::spawn(move || rx.iter().map(|n| n & 1).sum::<u64>());
    let start = Instant::now();
    for i in 0..sizes::COUNTING {
        tx.send(i | 1).unwrap();
    }
    drop(tx);
    let n = counter.join().unwrap();
    assert_eq!(n, sizes::COUNTING);
    emit(
        "counting",
        "per_s",
        n as f64 / start.elapsed().as_secs_f64(),
    );
}

fn fan_in() {
    let (tx, rx) = unbounded::<u64>();
    let counter = std::thread::spawn(move || rx.iter().map(|n| n & 1).sum::<u64>());
    let start = Instant::now();
    let senders: Vec<_> = (0..crate::cores())
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..sizes::FAN_IN_PER_SENDER {
                    tx.send(i | 1).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        s.join().unwrap();
    }
    let n = counter.join().unwrap();
    assert_eq!(n, sizes::FAN_IN_PER_SENDER * crate::cores() as u64);
    emit("fan-in", "per_s", n as f64 / start.elapsed().as_secs_f64());
}

fn ask(name: &str) {
    let (req_tx, req_rx) = unbounded::<(u64, crossbeam_channel::Sender<u64>)>();
    let server = std::thread::spawn(move || {
        for (n, reply) in req_rx {
            let _ = reply.send(n + 1);
        }
    });
    let start = Instant::now();
    for i in 0..sizes::ASK {
        let (tx, rx) = bounded(1);
        req_tx.send((i, tx)).unwrap();
        assert_eq!(rx.recv().unwrap(), i + 1);
    }
    emit(
        name,
        "per_s",
        sizes::ASK as f64 / start.elapsed().as_secs_f64(),
    );
    drop(req_tx);
    server.join().unwrap();
}
