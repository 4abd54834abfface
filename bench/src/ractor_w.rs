//! ractor: actors on tokio (current-thread runtime for one worker,
//! multi-thread with one worker per core otherwise).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{oneshot, Notify};

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
        "counting" => count(1, sizes::COUNTING, "counting"),
        "fan-in" => count(crate::cores(), sizes::FAN_IN_PER_SENDER, "fan-in"),
        "spawn" => crate::tokio_multi(crate::cores()).block_on(spawn()),
        "ask" => ask_thread(),
        "ask-actor" => crate::tokio_multi(crate::cores()).block_on(ask_actor()),
        "timers" => crate::tokio_multi(crate::cores()).block_on(timers(sizes::TIMERS)),
        "timers-10k" => crate::tokio_multi(crate::cores()).block_on(timers(sizes::TIMERS_SMALL)),
        "churn" => crate::tokio_multi(crate::cores()).block_on(churn(false)),
        "churn-bytes" => crate::tokio_multi(crate::cores()).block_on(churn(true)),
        _ => return false,
    }
    true
}

struct Hop;
enum HopMsg {
    Next(ActorRef<HopMsg>, Option<oneshot::Sender<()>>),
    Token(u64),
}
#[derive(Default)]
struct HopState {
    next: Option<ActorRef<HopMsg>>,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for Hop {
    type Msg = HopMsg;
    type State = HopState;
    type Arguments = ();
    async fn pre_start(
        &self,
        _me: ActorRef<HopMsg>,
        _a: (),
    ) -> Result<HopState, ActorProcessingErr> {
        Ok(HopState::default())
    }
    async fn handle(
        &self,
        _me: ActorRef<HopMsg>,
        msg: HopMsg,
        st: &mut HopState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HopMsg::Next(a, d) => {
                st.next = Some(a);
                if d.is_some() {
                    st.done = d;
                }
            }
            HopMsg::Token(0) => {
                if let Some(d) = st.done.take() {
                    let _ = d.send(());
                }
            }
            HopMsg::Token(n) => {
                if let Some(next) = &st.next {
                    next.cast(HopMsg::Token(n - 1))?;
                }
            }
        }
        Ok(())
    }
}

async fn ring(name: &str, n: usize, hops: u64, count: u64) {
    let mut actors = Vec::new();
    for _ in 0..n {
        actors.push(Actor::spawn(None, Hop, ()).await.unwrap().0);
    }
    let (done_tx, done_rx) = oneshot::channel();
    let last = (hops as usize) % n;
    let mut done_tx = Some(done_tx);
    for (i, a) in actors.iter().enumerate() {
        let d = if i == last { done_tx.take() } else { None };
        a.cast(HopMsg::Next(actors[(i + 1) % n].clone(), d))
            .unwrap();
    }
    let start = Instant::now();
    actors[0].cast(HopMsg::Token(hops)).unwrap();
    done_rx.await.unwrap();
    emit(name, "per_s", count as f64 / start.elapsed().as_secs_f64());
    for a in actors {
        a.stop(None);
    }
}

struct Counter;
enum CountMsg {
    Add(u64),
    Get(RpcReplyPort<u64>),
}
impl Actor for Counter {
    type Msg = CountMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(&self, _me: ActorRef<CountMsg>, _a: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _me: ActorRef<CountMsg>,
        msg: CountMsg,
        n: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CountMsg::Add(v) => *n += v & 1,
            CountMsg::Get(r) => {
                let _ = r.send(*n);
            }
        }
        Ok(())
    }
}

fn count(senders: usize, per_sender: u64, name: &str) {
    let rt = crate::tokio_multi(crate::cores());
    let counter = rt.block_on(async { Actor::spawn(None, Counter, ()).await.unwrap().0 });
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let c = counter.clone();
            std::thread::spawn(move || {
                for i in 0..per_sender {
                    c.cast(CountMsg::Add(i | 1)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = rt
        .block_on(counter.call(CountMsg::Get, None))
        .unwrap()
        .success_or(())
        .unwrap();
    assert_eq!(n, per_sender * senders as u64);
    emit(name, "per_s", n as f64 / start.elapsed().as_secs_f64());
}

struct Acker;
struct AckArgs {
    acks: Arc<AtomicUsize>,
    all: Arc<Notify>,
}
impl Actor for Acker {
    type Msg = ();
    type State = AckArgs;
    type Arguments = AckArgs;
    async fn pre_start(
        &self,
        _me: ActorRef<()>,
        a: AckArgs,
    ) -> Result<AckArgs, ActorProcessingErr> {
        Ok(a)
    }
    async fn handle(
        &self,
        _me: ActorRef<()>,
        _m: (),
        st: &mut AckArgs,
    ) -> Result<(), ActorProcessingErr> {
        if st.acks.fetch_add(1, Ordering::AcqRel) + 1 == sizes::SPAWN {
            st.all.notify_one();
        }
        Ok(())
    }
}

async fn spawn() {
    let acks = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let base = mem::rss();
    let start = Instant::now();
    let mut actors = Vec::with_capacity(sizes::SPAWN);
    for _ in 0..sizes::SPAWN {
        let (a, h) = Actor::spawn(
            None,
            Acker,
            AckArgs {
                acks: acks.clone(),
                all: all.clone(),
            },
        )
        .await
        .unwrap();
        a.cast(()).unwrap();
        actors.push((a, h));
    }
    all.notified().await;
    let peak = mem::peak_rss();
    let mut handles = Vec::with_capacity(sizes::SPAWN);
    for (a, h) in actors {
        a.stop(None);
        handles.push(h);
    }
    for h in handles {
        let _ = h.await;
    }
    crate::emit_spawn(
        start,
        base,
        peak,
        std::mem::size_of::<ActorRef<()>>() + std::mem::size_of::<tokio::task::JoinHandle<()>>(),
    );
}

struct Echo;
impl Actor for Echo {
    type Msg = (u64, RpcReplyPort<u64>);
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _me: ActorRef<Self::Msg>, _a: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        (n, r): Self::Msg,
        _st: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = r.send(n + 1);
        Ok(())
    }
}

/// A tenth of the asks: ractor answers a plain thread at about 55 k/s,
/// so the full million took 18 s a run; the figure is a rate.
const ASKS_FROM_THREAD: u64 = sizes::ASK / 10;

fn ask_thread() {
    let rt = crate::tokio_multi(crate::cores());
    let echo = rt.block_on(async { Actor::spawn(None, Echo, ()).await.unwrap().0 });
    let start = Instant::now();
    for i in 0..ASKS_FROM_THREAD {
        let got = rt
            .block_on(echo.call(|r| (i, r), None))
            .unwrap()
            .success_or(())
            .unwrap();
        assert_eq!(got, i + 1);
    }
    emit(
        "ask",
        "per_s",
        ASKS_FROM_THREAD as f64 / start.elapsed().as_secs_f64(),
    );
}

async fn ask_actor() {
    let echo = Actor::spawn(None, Echo, ()).await.unwrap().0;
    let start = Instant::now();
    tokio::spawn(async move {
        for i in 0..sizes::ASK {
            let got = echo
                .call(|r| (i, r), None)
                .await
                .unwrap()
                .success_or(())
                .unwrap();
            assert_eq!(got, i + 1);
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

struct Timed;
struct TimedState {
    fired: usize,
    expected: usize,
    all: Arc<Notify>,
}
impl Actor for Timed {
    type Msg = bool;
    type State = TimedState;
    type Arguments = TimedState;
    async fn pre_start(
        &self,
        _me: ActorRef<bool>,
        a: TimedState,
    ) -> Result<TimedState, ActorProcessingErr> {
        Ok(a)
    }
    async fn handle(
        &self,
        _me: ActorRef<bool>,
        counts: bool,
        st: &mut TimedState,
    ) -> Result<(), ActorProcessingErr> {
        st.fired += usize::from(counts);
        if st.fired == st.expected && counts {
            st.all.notify_one();
        }
        Ok(())
    }
}

async fn timers(n: usize) {
    let all = Arc::new(Notify::new());
    let actor = Actor::spawn(
        None,
        Timed,
        TimedState {
            fired: 0,
            expected: n - n / 2,
            all: all.clone(),
        },
    )
    .await
    .unwrap()
    .0;
    let base = mem::rss();
    let start = Instant::now();
    let mut spread = crate::TimerSpread::new(start, n);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let delay = spread.delay(i);
        handles.push(actor.send_after(delay, move || i % 2 == 1));
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

// ---- supervised churn: children linked to a supervisor actor ----

struct ChurnChild;
impl Actor for ChurnChild {
    type Msg = ();
    type State = bool;
    type Arguments = bool;
    async fn pre_start(&self, _me: ActorRef<()>, stay: bool) -> Result<bool, ActorProcessingErr> {
        Ok(stay)
    }
    async fn handle(
        &self,
        me: ActorRef<()>,
        _m: (),
        stay: &mut bool,
    ) -> Result<(), ActorProcessingErr> {
        if !*stay {
            me.stop(None);
        }
        Ok(())
    }
}

struct ChurnSup;
enum ChurnMsg {
    Start(usize, bool, oneshot::Sender<()>),
}
#[derive(Default)]
struct ChurnState {
    target: usize,
    ended: usize,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for ChurnSup {
    type Msg = ChurnMsg;
    type State = ChurnState;
    type Arguments = ();
    async fn pre_start(
        &self,
        _me: ActorRef<ChurnMsg>,
        _a: (),
    ) -> Result<ChurnState, ActorProcessingErr> {
        Ok(ChurnState::default())
    }
    async fn handle(
        &self,
        me: ActorRef<ChurnMsg>,
        msg: ChurnMsg,
        st: &mut ChurnState,
    ) -> Result<(), ActorProcessingErr> {
        let ChurnMsg::Start(n, stay, done) = msg;
        st.target = n;
        if stay {
            // Kept alive to weigh them: done once all are spawned.
            for _ in 0..n {
                let (c, _) = Actor::spawn_linked(None, ChurnChild, true, me.get_cell()).await?;
                c.cast(())?;
            }
            let _ = done.send(());
            return Ok(());
        }
        st.done = Some(done);
        for _ in 0..n {
            let (c, _) = Actor::spawn_linked(None, ChurnChild, false, me.get_cell()).await?;
            c.cast(())?;
        }
        Ok(())
    }
    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<ChurnMsg>,
        evt: SupervisionEvent,
        st: &mut ChurnState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorTerminated(..) = evt {
            st.ended += 1;
            if st.ended == st.target {
                if let Some(d) = st.done.take() {
                    let _ = d.send(());
                }
            }
        }
        Ok(())
    }
}

async fn churn(weigh: bool) {
    if weigh {
        let base = mem::rss();
        let sup = Actor::spawn(None, ChurnSup, ()).await.unwrap().0;
        let (tx, rx) = oneshot::channel();
        sup.cast(ChurnMsg::Start(sizes::CHURN_ALIVE, true, tx))
            .unwrap();
        rx.await.unwrap();
        let grown = mem::rss().saturating_sub(base);
        crate::emit_bytes_each("churn-bytes", grown, sizes::CHURN_ALIVE);
        return;
    }
    let sup = Actor::spawn(None, ChurnSup, ()).await.unwrap().0;
    let start = Instant::now();
    let (tx, rx) = oneshot::channel();
    sup.cast(ChurnMsg::Start(sizes::CHURN, false, tx)).unwrap();
    rx.await.unwrap();
    emit(
        "churn",
        "per_s",
        sizes::CHURN as f64 / start.elapsed().as_secs_f64(),
    );
}
