//! Back-pressure between actors (muting) and thread-worker actors.

mod common;

use std::sync::mpsc;

use common::*;
use weft::prelude::*;

/// Slow consumer with a tiny mailbox; checks its own queue never exceeds
/// the capacity and that items arrive in order.
struct Sink {
    next: u32,
    max_queued: usize,
    tx: mpsc::Sender<(u32, usize)>,
    total: u32,
}
impl Actor for Sink {
    type Msg = u32;
    fn handle(&mut self, item: u32, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if item != self.next {
            return Err(format!("out of order: {item} after {}", self.next).into());
        }
        self.next += 1;
        self.max_queued = self.max_queued.max(ctx.address().queued());
        // Simulate slow work without blocking the worker for long.
        std::hint::black_box((0..200).sum::<u64>());
        if self.next == self.total {
            self.tx.send((self.next, self.max_queued))?;
        }
        Ok(())
    }
}

/// Forwards each `Produce` as one item to the sink, via `Ctx::send`.
struct Producer {
    sink: Addr<Sink>,
    sent: u32,
}
impl Actor for Producer {
    type Msg = ();
    fn handle(&mut self, _m: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send(&self.sink, self.sent)
            .map_err(|e| format!("sink gone: {e}"))?;
        self.sent += 1;
        Ok(())
    }
}

#[test]
fn an_overloaded_actor_mutes_its_sender_and_nothing_is_lost() {
    let rt = runtime(2);
    let total = 20_000;
    let (tx, rx) = mpsc::channel();
    let sink = rt
        .handle()
        .spawn_with(
            Sink {
                next: 0,
                max_queued: 0,
                tx,
                total,
            },
            SpawnOptions::new().capacity(4),
        )
        .unwrap();
    let producer = rt
        .handle()
        .spawn_with(
            Producer {
                sink: sink.clone(),
                sent: 0,
            },
            SpawnOptions::new().capacity(64),
        )
        .unwrap();
    let mut refused_full = 0;
    for _ in 0..total {
        // The producer's own mailbox fills while it is muted: the test
        // thread is slowed down in turn (back-pressure end to end).
        match producer.send_timeout((), WAIT) {
            Ok(()) => {}
            Err(SendError::Timeout(_)) => panic!("producer never drained"),
            Err(_) => refused_full += 1,
        }
    }
    assert_eq!(refused_full, 0);
    let (received, max_queued) = recv(&rx);
    assert_eq!(received, total);
    assert!(max_queued <= 4, "sink queue grew to {max_queued}");
}

#[test]
fn sending_to_a_stopped_actor_from_an_actor_is_an_error() {
    let rt = runtime(1);
    let (tx, _rx) = mpsc::channel();
    let sink = rt.handle().spawn(Sink {
        next: 0,
        max_queued: 0,
        tx,
        total: 1,
    });
    sink.stop();
    while !sink.is_stopped() {
        std::thread::yield_now();
    }
    let producer = rt.handle().spawn(Producer { sink, sent: 0 });
    let (otx, orx) = mpsc::channel();
    let obs = rt.handle().spawn(DownReporter { tx: otx });
    obs.send(DownMsg::Watch(producer.clone())).unwrap();
    obs.ask_wait(DownMsg::Sync, WAIT).unwrap();
    producer.send(()).unwrap();
    assert_eq!(recv(&orx), "error: sink gone: the actor has stopped");
}

struct DownReporter {
    tx: mpsc::Sender<String>,
}
enum DownMsg {
    Watch(Addr<Producer>),
    Down(Down),
    Sync(ReplyTo<()>),
}
impl Actor for DownReporter {
    type Msg = DownMsg;
    fn handle(&mut self, msg: DownMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            DownMsg::Watch(a) => {
                ctx.monitor(&a, DownMsg::Down);
            }
            DownMsg::Down(d) => self.tx.send(d.reason.to_string())?,
            DownMsg::Sync(r) => r.send(()),
        }
        Ok(())
    }
}

/// Runs on its own thread and may block there.
struct Blocker;
impl Actor for Blocker {
    type Msg = ReplyTo<String>;
    fn handle(&mut self, reply: ReplyTo<String>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        std::thread::sleep(std::time::Duration::from_millis(1));
        reply.send(std::thread::current().name().unwrap_or("").to_string());
        Ok(())
    }
}

#[test]
fn thread_worker_actors_run_on_their_own_thread() {
    let rt = runtime(1);
    let b = rt
        .handle()
        .spawn_thread(Blocker, SpawnOptions::new())
        .unwrap();
    let name = b.ask_wait(|r| r, WAIT).unwrap();
    assert!(name.starts_with("weft-actor"), "{name}");
    // A worker-pool actor can still talk to it while it blocks.
    for _ in 0..10 {
        assert_eq!(b.ask_wait(|r| r, WAIT).unwrap(), name);
    }
    b.stop();
    drop(rt); // joins the actor's thread
    assert!(b.is_stopped());
}

/// Floods its peer with `n` messages when told, counts what it receives,
/// and reports when it has received `n`.
struct Flooder {
    peer: Option<Addr<Flooder>>,
    n: u32,
    received: u32,
    done: mpsc::Sender<u32>,
}
enum FloodMsg {
    Peer(Addr<Flooder>),
    Go,
    Item(u32),
}
impl Actor for Flooder {
    type Msg = FloodMsg;
    fn handle(&mut self, msg: FloodMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            FloodMsg::Peer(p) => self.peer = Some(p),
            FloodMsg::Go => {
                let peer = self.peer.clone().ok_or("no peer")?;
                for i in 0..self.n {
                    ctx.send(&peer, FloodMsg::Item(i))
                        .map_err(|e| format!("peer gone: {e}"))?;
                }
            }
            FloodMsg::Item(i) => {
                if i != self.received {
                    return Err(format!("out of order: {i} after {}", self.received).into());
                }
                self.received += 1;
                // Every other original item is answered with one more, so
                // both mailboxes stay full while both are sending.
                if let Some(peer) = &self.peer {
                    if i < self.n && i % 2 == 0 {
                        ctx.send(peer, FloodMsg::Item(self.n + i / 2))
                            .map_err(|e| format!("peer gone: {e}"))?;
                    }
                }
                if self.received == self.n + self.n / 2 {
                    self.done.send(self.received)?;
                }
            }
        }
        Ok(())
    }
}

/// Two actors that fill each other's (small) mailboxes with `Ctx::send`
/// would mute each other forever if each waited for the other: muting
/// never closes a cycle, so both finish, in order, with nothing lost.
#[test]
fn actors_flooding_each_other_never_mute_each_other_forever() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let n = 20_000;
    let spawn = |done| {
        rt.handle()
            .spawn_with(
                Flooder {
                    peer: None,
                    n,
                    received: 0,
                    done,
                },
                SpawnOptions::new().capacity(8),
            )
            .unwrap()
    };
    let (a, b) = (spawn(tx.clone()), spawn(tx));
    a.send(FloodMsg::Peer(b.clone())).unwrap();
    b.send(FloodMsg::Peer(a.clone())).unwrap();
    a.send(FloodMsg::Go).unwrap();
    b.send(FloodMsg::Go).unwrap();
    assert_eq!(recv(&rx), n + n / 2);
    assert_eq!(recv(&rx), n + n / 2);
    assert!(!a.is_stopped() && !b.is_stopped());
}

/// Sends a burst to a slow sink (so most of it is held), then stops.
struct Burst {
    sink: Addr<Sink>,
    n: u32,
}
impl Actor for Burst {
    type Msg = ();
    fn handle(&mut self, _m: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        for i in 0..self.n {
            ctx.send(&self.sink, i)
                .map_err(|e| format!("sink gone: {e}"))?;
        }
        ctx.stop();
        Ok(())
    }
}

/// `Ctx::send` accepted every message, so an actor that stops while muted
/// delivers what it holds instead of dropping it.
#[test]
fn a_muted_actor_that_stops_delivers_what_it_holds() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let total = 5_000;
    let sink = rt
        .handle()
        .spawn_with(
            Sink {
                next: 0,
                max_queued: 0,
                tx,
                total,
            },
            SpawnOptions::new().capacity(2),
        )
        .unwrap();
    let burst = rt.handle().spawn(Burst { sink, n: total });
    burst.send(()).unwrap();
    let (received, _) = recv(&rx);
    assert_eq!(received, total);
    assert!(burst.is_stopped());
}

/// Takes chunks of bytes slowly and checks they arrive in order; its
/// mailbox is bounded by bytes.
struct ByteSink {
    next: u8,
    got: usize,
    total: usize,
    max_queued: usize,
    done: mpsc::Sender<(usize, usize)>,
}
impl Actor for ByteSink {
    type Msg = Vec<u8>;
    fn handle(&mut self, chunk: Vec<u8>, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if chunk.first() != Some(&self.next) {
            return Err("out of order".into());
        }
        self.next = self.next.wrapping_add(1);
        self.got += chunk.len();
        self.max_queued = self.max_queued.max(ctx.address().queued_weight());
        std::hint::black_box((0..2_000).sum::<u64>());
        if self.got == self.total {
            self.done.send((self.got, self.max_queued))?;
        }
        Ok(())
    }
    fn weigh(chunk: &Vec<u8>) -> usize {
        chunk.len()
    }
}

/// Sends `n` chunks of 64 KiB with back-pressure.
struct ChunkProducer {
    sink: Addr<ByteSink>,
    n: usize,
}
impl Actor for ChunkProducer {
    type Msg = ();
    fn handle(&mut self, _m: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        for i in 0..self.n {
            ctx.send(&self.sink, vec![i as u8; 64 * 1024])
                .map_err(|e| format!("sink gone: {e}"))?;
        }
        Ok(())
    }
}

/// A mailbox bounded by weight: 64 KiB chunks into a mailbox of 1,024
/// slots but 256 KiB: what waits there stays near 256 KiB (at most one
/// chunk over), where a count alone would have let 64 MB pile up; the
/// producer is muted meanwhile, and every chunk arrives in order.
#[test]
fn a_mailbox_bounded_by_bytes_holds_the_bytes_down() {
    let rt = runtime(2);
    let (done, rx) = mpsc::channel();
    let n = 200;
    let sink = rt
        .handle()
        .spawn_with(
            ByteSink {
                next: 0,
                got: 0,
                total: n * 64 * 1024,
                max_queued: 0,
                done,
            },
            SpawnOptions::new().capacity(1024).max_weight(256 * 1024),
        )
        .unwrap();
    let producer = rt.handle().spawn(ChunkProducer {
        sink: sink.clone(),
        n,
    });
    producer.send(()).unwrap();
    let (got, max_queued) = recv(&rx);
    assert_eq!(got, n * 64 * 1024);
    assert!(
        max_queued <= 256 * 1024 + 64 * 1024,
        "{max_queued} bytes waited"
    );
    assert!(matches!(
        rt.handle()
            .spawn_with(Gated { open: None }, SpawnOptions::new().max_weight(0)),
        Err(weft::actors::SpawnError::ZeroWeight)
    ));
    // From a plain thread the byte bound is a `Full` like the count's: the
    // gated actor holds its first message while the test fills its
    // mailbox (a message is taken while the total is below the bound).
    let (open, gate) = mpsc::channel();
    let gated = rt
        .handle()
        .spawn_with(
            Gated { open: Some(gate) },
            SpawnOptions::new().max_weight(1_000),
        )
        .unwrap();
    gated.send(vec![0]).unwrap();
    while gated.queued() > 0 {
        std::thread::yield_now();
    }
    gated.send(vec![1; 600]).unwrap();
    gated.send(vec![2; 600]).unwrap();
    assert_eq!(gated.queued_weight(), 1_200);
    assert!(matches!(gated.send(vec![3]), Err(SendError::Full(_))));
    open.send(()).unwrap();
    assert_eq!(
        gated.send_timeout(vec![3], WAIT).map_err(|e| e.to_string()),
        Ok(())
    );
}

/// Holds its first message until the test opens the gate.
struct Gated {
    open: Option<mpsc::Receiver<()>>,
}
impl Actor for Gated {
    type Msg = Vec<u8>;
    fn handle(&mut self, _chunk: Vec<u8>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if let Some(gate) = self.open.take() {
            gate.recv_timeout(WAIT)?;
        }
        Ok(())
    }
    fn weigh(chunk: &Vec<u8>) -> usize {
        chunk.len()
    }
}
