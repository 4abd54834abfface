//! actix: actors on Arbiters (one Arbiter per thread). `ask` from a plain
//! thread and timers have no fair actix form (there is no blocking ask,
//! and `run_later` costs grow with the square of the pending count), so
//! they report n/a.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{oneshot, Notify};

use crate::{emit, mem, sizes};

pub fn run(job: &str) -> bool {
    match job {
        "ping-pong" => System::new().block_on(ring(
            "ping-pong",
            2,
            sizes::PING_PONG * 2,
            sizes::PING_PONG,
            false,
        )),
        // Across two Arbiters actix manages about 20 k round trips/s: the
        // full million took 50 s a run (four minutes of the group). The
        // figure is a rate, so a twentieth of the round trips measures it.
        "ping-pong-2w" => System::new().block_on(ring(
            "ping-pong-2w",
            2,
            sizes::PING_PONG / 10,
            sizes::PING_PONG / 20,
            true,
        )),
        "thread-ring" => System::new().block_on(ring(
            "thread-ring",
            sizes::RING_ACTORS,
            sizes::RING_HOPS,
            sizes::RING_HOPS,
            false,
        )),
        "counting" => System::new().block_on(count(1, sizes::COUNTING, "counting")),
        "fan-in" => {
            System::new().block_on(count(crate::cores(), sizes::FAN_IN_PER_SENDER, "fan-in"))
        }
        "spawn" => System::new().block_on(spawn()),
        "ask-actor" => System::new().block_on(ask_actor()),
        _ => return false,
    }
    true
}

struct Hop {
    next: Option<Addr<Hop>>,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for Hop {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Token(u64);

#[derive(Message)]
#[rtype(result = "()")]
struct Next(Addr<Hop>, Option<oneshot::Sender<()>>);

impl Handler<Next> for Hop {
    type Result = ();
    fn handle(&mut self, Next(a, done): Next, _ctx: &mut Context<Self>) {
        self.next = Some(a);
        if done.is_some() {
            self.done = done;
        }
    }
}

impl Handler<Token> for Hop {
    type Result = ();
    fn handle(&mut self, Token(n): Token, _ctx: &mut Context<Self>) {
        if n == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
            return;
        }
        if let Some(next) = &self.next {
            next.do_send(Token(n - 1));
        }
    }
}

async fn ring(name: &str, n: usize, hops: u64, count: u64, two_arbiters: bool) {
    let other = Arbiter::new();
    let actors: Vec<Addr<Hop>> = (0..n)
        .map(|i| {
            let make = |_: &mut Context<Hop>| Hop {
                next: None,
                done: None,
            };
            if two_arbiters && i % 2 == 1 {
                Hop::start_in_arbiter(&other.handle(), make)
            } else {
                Hop::create(make)
            }
        })
        .collect();
    let (done_tx, done_rx) = oneshot::channel();
    // The token reaches 0 at actor `hops % n`.
    let last = (hops as usize) % n;
    let mut done_tx = Some(done_tx);
    for (i, a) in actors.iter().enumerate() {
        let d = if i == last { done_tx.take() } else { None };
        a.send(Next(actors[(i + 1) % n].clone(), d)).await.unwrap();
    }
    let start = Instant::now();
    actors[0].do_send(Token(hops));
    done_rx.await.unwrap();
    emit(name, "per_s", count as f64 / start.elapsed().as_secs_f64());
    other.stop();
}

struct Counter(u64);
impl Actor for Counter {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "()")]
struct Add(u64);
#[derive(Message)]
#[rtype(result = "u64")]
struct Get;
impl Handler<Add> for Counter {
    type Result = ();
    fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) {
        self.0 += n & 1;
    }
}
impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _g: Get, _ctx: &mut Context<Self>) -> u64 {
        self.0
    }
}

async fn count(senders: usize, per_sender: u64, name: &str) {
    let counter = Counter(0).start();
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let c = counter.clone();
            std::thread::spawn(move || {
                for i in 0..per_sender {
                    c.do_send(Add(i | 1));
                }
            })
        })
        .collect();
    while !threads.iter().all(|t| t.is_finished()) {
        actix_rt::task::yield_now().await;
    }
    let n = counter.send(Get).await.unwrap();
    assert_eq!(n, per_sender * senders as u64);
    emit(name, "per_s", n as f64 / start.elapsed().as_secs_f64());
}

struct Acker {
    acks: Arc<AtomicUsize>,
    all: Arc<Notify>,
    stops: Arc<AtomicUsize>,
    stopped_all: Arc<Notify>,
}
impl Actor for Acker {
    type Context = Context<Self>;
    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if self.stops.fetch_add(1, Ordering::AcqRel) + 1 == sizes::SPAWN {
            self.stopped_all.notify_one();
        }
    }
}
#[derive(Message)]
#[rtype(result = "()")]
enum Ping {
    Ack,
    Stop,
}
impl Handler<Ping> for Acker {
    type Result = ();
    fn handle(&mut self, p: Ping, ctx: &mut Context<Self>) {
        match p {
            Ping::Ack => {
                if self.acks.fetch_add(1, Ordering::AcqRel) + 1 == sizes::SPAWN {
                    self.all.notify_one();
                }
            }
            Ping::Stop => ctx.stop(),
        }
    }
}

async fn spawn() {
    let acks = Arc::new(AtomicUsize::new(0));
    let stops = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let stopped_all = Arc::new(Notify::new());
    let base = mem::rss();
    let start = Instant::now();
    let mut addrs = Vec::with_capacity(sizes::SPAWN);
    for _ in 0..sizes::SPAWN {
        let a = Acker {
            acks: acks.clone(),
            all: all.clone(),
            stops: stops.clone(),
            stopped_all: stopped_all.clone(),
        }
        .start();
        a.do_send(Ping::Ack);
        addrs.push(a);
    }
    all.notified().await;
    let peak = mem::peak_rss();
    for a in &addrs {
        a.do_send(Ping::Stop);
    }
    stopped_all.notified().await;
    crate::emit_spawn(start, base, peak, std::mem::size_of::<Addr<Acker>>());
}

struct Echo;
impl Actor for Echo {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "u64")]
struct Req(u64);
impl Handler<Req> for Echo {
    type Result = u64;
    fn handle(&mut self, Req(n): Req, _ctx: &mut Context<Self>) -> u64 {
        n + 1
    }
}

async fn ask_actor() {
    let echo = Echo.start();
    let start = Instant::now();
    for i in 0..sizes::ASK {
        assert_eq!(echo.send(Req(i)).await.unwrap(), i + 1);
    }
    emit(
        "ask-actor",
        "per_s",
        sizes::ASK as f64 / start.elapsed().as_secs_f64(),
    );
}
