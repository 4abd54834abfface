//! The workloads on weft.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use weft::prelude::*;

use crate::{emit, mem, sizes};

const LONG: Duration = Duration::from_secs(600);

pub fn run(job: &str) -> bool {
    match job {
        "ping-pong" => ping_pong(1, "ping-pong"),
        "ping-pong-2w" => ping_pong(2, "ping-pong-2w"),
        "thread-ring" => thread_ring(),
        "counting" => counting(),
        "fan-in" => fan_in(),
        "spawn" => spawn(),
        "ask" => ask_thread(),
        "ask-actor" => ask_actor(),
        "timers" => timers(sizes::TIMERS),
        "timers-10k" => timers(sizes::TIMERS_SMALL),
        "churn" => churn(false),
        "churn-bytes" => churn(true),
        _ => return false,
    }
    true
}

fn rt(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime builds")
}

// ---- ping-pong and thread-ring: a token passed along actors ----

struct Hop {
    next: Option<Addr<Hop>>,
    done: Option<ReplyTo<()>>,
}

enum HopMsg {
    Next(Addr<Hop>),
    Start(u64, ReplyTo<()>),
    Token(u64),
}

impl Actor for Hop {
    type Msg = HopMsg;
    fn handle(&mut self, msg: HopMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let left = match msg {
            HopMsg::Next(n) => {
                self.next = Some(n);
                return Ok(());
            }
            HopMsg::Start(n, done) => {
                self.done = Some(done);
                n
            }
            HopMsg::Token(0) => {
                // The token ended here; tell whoever started it.
                let next = self.next.as_ref().ok_or("no next")?;
                ctx.send(next, HopMsg::Token(u64::MAX))
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            HopMsg::Token(u64::MAX) => {
                if let Some(done) = self.done.take() {
                    done.send(());
                } else if let Some(next) = self.next.as_ref() {
                    ctx.send(next, HopMsg::Token(u64::MAX))
                        .map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
            HopMsg::Token(n) => n,
        };
        let next = self.next.as_ref().ok_or("no next")?;
        ctx.send(next, HopMsg::Token(left - 1))
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Builds a ring of `n` actors and passes a token `hops` times; returns
/// the elapsed time of the hops.
fn ring(rt: &Runtime, n: usize, hops: u64) -> f64 {
    let actors: Vec<Addr<Hop>> = (0..n)
        .map(|_| {
            rt.handle().spawn(Hop {
                next: None,
                done: None,
            })
        })
        .collect();
    for (i, a) in actors.iter().enumerate() {
        a.send(HopMsg::Next(actors[(i + 1) % n].clone()))
            .ok()
            .unwrap();
    }
    let start = Instant::now();
    actors[0]
        .ask_wait(|r| HopMsg::Start(hops, r), LONG)
        .expect("ring completes");
    start.elapsed().as_secs_f64()
}

fn ping_pong(workers: usize, name: &str) {
    let rt = rt(workers);
    // A round trip is two hops.
    let secs = ring(&rt, 2, sizes::PING_PONG * 2);
    emit(name, "per_s", sizes::PING_PONG as f64 / secs);
}

fn thread_ring() {
    let rt = rt(crate::cores());
    let secs = ring(&rt, sizes::RING_ACTORS, sizes::RING_HOPS);
    emit("thread-ring", "per_s", sizes::RING_HOPS as f64 / secs);
}

// ---- counting and fan-in ----

struct Count(u64);
enum CountMsg {
    Add(u64),
    Get(ReplyTo<u64>),
}
impl Actor for Count {
    type Msg = CountMsg;
    fn handle(&mut self, msg: CountMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            CountMsg::Add(n) => self.0 += n & 1,
            CountMsg::Get(r) => r.send(self.0),
        }
        Ok(())
    }
}

fn send_all(addr: &Addr<Count>, n: u64) {
    for i in 0..n {
        let mut msg = CountMsg::Add(i | 1);
        loop {
            match addr.send_timeout(msg, LONG) {
                Ok(()) => break,
                Err(e) => msg = e.into_inner(),
            }
        }
    }
}

fn counting() {
    let rt = rt(crate::cores());
    let counter = rt.handle().spawn(Count(0));
    let start = Instant::now();
    send_all(&counter, sizes::COUNTING);
    let n = counter.ask_wait(CountMsg::Get, LONG).expect("count");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, sizes::COUNTING);
    emit("counting", "per_s", n as f64 / secs);
}

fn fan_in() {
    let rt = rt(crate::cores());
    let counter = rt.handle().spawn(Count(0));
    let start = Instant::now();
    let senders: Vec<_> = (0..crate::cores())
        .map(|_| {
            let c = counter.clone();
            std::thread::spawn(move || send_all(&c, sizes::FAN_IN_PER_SENDER))
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let n = counter.ask_wait(CountMsg::Get, LONG).expect("count");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, sizes::FAN_IN_PER_SENDER * crate::cores() as u64);
    emit("fan-in", "per_s", n as f64 / secs);
}

// ---- spawn ----

struct Acker {
    acks: Arc<AtomicUsize>,
    all: mpsc::Sender<()>,
}
impl Actor for Acker {
    type Msg = ();
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.acks.fetch_add(1, Ordering::AcqRel) + 1 == sizes::SPAWN {
            self.all.send(())?;
        }
        Ok(())
    }
}

fn spawn() {
    let rt = rt(crate::cores());
    let acks = Arc::new(AtomicUsize::new(0));
    let (all, done) = mpsc::channel();
    let mut addrs = Vec::with_capacity(sizes::SPAWN);
    let base = mem::rss();
    let start = Instant::now();
    for _ in 0..sizes::SPAWN {
        let a = rt.handle().spawn(Acker {
            acks: acks.clone(),
            all: all.clone(),
        });
        a.send(()).ok().unwrap();
        addrs.push(a);
    }
    done.recv_timeout(LONG).expect("all acked");
    let peak = mem::peak_rss();
    for a in &addrs {
        a.stop();
    }
    while weft::actors::live_actors(rt.handle()) > 0 {
        std::thread::sleep(Duration::from_micros(100));
    }
    crate::emit_spawn(start, base, peak, std::mem::size_of::<Addr<Acker>>());
}

// ---- ask ----

struct Echo;
impl Actor for Echo {
    type Msg = (u64, ReplyTo<u64>);
    fn handle(&mut self, (n, r): Self::Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        r.send(n + 1);
        Ok(())
    }
}

fn ask_thread() {
    let rt = rt(crate::cores());
    let echo = rt.handle().spawn(Echo);
    let start = Instant::now();
    for i in 0..sizes::ASK {
        let got = echo.ask_wait(|r| (i, r), LONG).expect("reply");
        debug_assert_eq!(got, i + 1);
    }
    emit(
        "ask",
        "per_s",
        sizes::ASK as f64 / start.elapsed().as_secs_f64(),
    );
}

struct Asker {
    echo: Addr<Echo>,
    left: u64,
    done: Option<ReplyTo<()>>,
}
enum AskerMsg {
    Go(ReplyTo<()>),
    Reply(Result<u64, AskError>),
}
impl Actor for Asker {
    type Msg = AskerMsg;
    fn handle(&mut self, msg: AskerMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            AskerMsg::Go(done) => self.done = Some(done),
            AskerMsg::Reply(r) => {
                r?;
                self.left -= 1;
                if self.left == 0 {
                    if let Some(done) = self.done.take() {
                        done.send(());
                    }
                    return Ok(());
                }
            }
        }
        ctx.ask(
            &self.echo,
            |r| (1, r),
            Duration::from_secs(60),
            AskerMsg::Reply,
        );
        Ok(())
    }
}

fn ask_actor() {
    let rt = rt(crate::cores());
    let echo = rt.handle().spawn(Echo);
    let asker = rt.handle().spawn(Asker {
        echo,
        left: sizes::ASK,
        done: None,
    });
    let start = Instant::now();
    asker.ask_wait(AskerMsg::Go, LONG).expect("asks complete");
    emit(
        "ask-actor",
        "per_s",
        sizes::ASK as f64 / start.elapsed().as_secs_f64(),
    );
}

// ---- timers ----

struct Timed {
    fired: usize,
    expected: usize,
    start: Option<Instant>,
    done: Option<ReplyTo<f64>>,
    report: Option<ReplyTo<(f64, u64)>>,
}
enum TimedMsg {
    /// Arm this many timers.
    Arm(usize, ReplyTo<(f64, u64)>),
    Wait(ReplyTo<f64>),
    /// Whether this timer is one that was not cancelled (a cancelled one
    /// may fire before its cancel runs; it does not count).
    Fired(bool),
}
impl Actor for Timed {
    type Msg = TimedMsg;
    fn handle(&mut self, msg: TimedMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            TimedMsg::Arm(n, r) => {
                let base = mem::rss();
                let start = Instant::now();
                let mut spread = crate::TimerSpread::new(start, n);
                let mut handles = Vec::with_capacity(n);
                for i in 0..n {
                    let delay = spread.delay(i);
                    handles.push(ctx.send_later(delay, TimedMsg::Fired(i % 2 == 1)));
                }
                let bytes = mem::rss().saturating_sub(base)
                    - (n * std::mem::size_of::<TimerHandle>()) as u64;
                for h in handles.iter().step_by(2) {
                    h.cancel();
                }
                let ops = (n + n / 2) as f64 / start.elapsed().as_secs_f64();
                self.expected = n - n / 2;
                self.start = Some(start);
                self.report = Some(r);
                if let Some(r) = self.report.take() {
                    r.send((ops, bytes / n as u64));
                }
            }
            TimedMsg::Wait(r) => {
                if self.fired == self.expected {
                    r.send(self.start.map_or(0.0, |s| s.elapsed().as_secs_f64()));
                } else {
                    self.done = Some(r);
                }
            }
            TimedMsg::Fired(counts) => {
                self.fired += usize::from(counts);
                if self.fired == self.expected {
                    let secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
                    if let Some(d) = self.done.take() {
                        d.send(secs);
                    }
                }
            }
        }
        Ok(())
    }
}

fn timers(n: usize) {
    let rt = rt(crate::cores());
    let t = rt.handle().spawn(Timed {
        fired: 0,
        expected: usize::MAX,
        start: None,
        done: None,
        report: None,
    });
    let (ops, bytes) = t.ask_wait(|r| TimedMsg::Arm(n, r), LONG).expect("armed");
    let last = t.ask_wait(TimedMsg::Wait, LONG).expect("all fired");
    let (name, last_name) = crate::timer_names(n);
    emit(name, "per_s", ops);
    emit(last_name, "us", last * 1e6);
    if n == sizes::TIMERS {
        emit("timer-bytes", "bytes", bytes as f64);
    }
}

// ---- supervised churn ----

/// A supervised child: handles the one message it is started with, then
/// exits normally (or stays, to weigh the bookkeeping).
struct Churner {
    stay: bool,
    exits: Arc<AtomicUsize>,
    all: mpsc::Sender<()>,
    target: usize,
}
impl Actor for Churner {
    type Msg = u64;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_self(1);
        Ok(())
    }
    fn handle(&mut self, _m: u64, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.exits.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.all.send(())?;
        }
        if !self.stay {
            ctx.stop();
        }
        Ok(())
    }
}

fn churn(weigh: bool) {
    use weft::supervisor::{DynamicMsg, DynamicSpec, DynamicSupervisor};
    let rt = rt(crate::cores());
    let run = |n: usize, stay: bool| {
        let exits = Arc::new(AtomicUsize::new(0));
        let (all, done) = mpsc::channel();
        let spec = {
            let exits = exits.clone();
            DynamicSpec::new(move |_: ()| Churner {
                stay,
                exits: exits.clone(),
                all: all.clone(),
                target: n,
            })
        };
        let sup = rt.handle().spawn(DynamicSupervisor::new(spec));
        let start = Instant::now();
        for _ in 0..n {
            let mut msg = DynamicMsg::StartChildQuiet(());
            loop {
                match sup.send_timeout(msg, LONG) {
                    Ok(()) => break,
                    Err(e) => msg = e.into_inner(),
                }
            }
        }
        done.recv_timeout(LONG)
            .expect("all children handled their message");
        (sup, start)
    };
    if weigh {
        let base = mem::rss();
        let (_alive, _) = run(sizes::CHURN_ALIVE, true);
        let grown = mem::rss().saturating_sub(base);
        crate::emit_bytes_each("churn-bytes", grown, sizes::CHURN_ALIVE);
        return;
    }
    let (sup, start) = run(sizes::CHURN, false);
    // Done when the supervisor has taken every exit in.
    while sup.ask_wait(DynamicMsg::Count, LONG).unwrap_or(0) > 0 {
        std::thread::sleep(Duration::from_micros(100));
    }
    emit(
        "churn",
        "per_s",
        sizes::CHURN as f64 / start.elapsed().as_secs_f64(),
    );
}
