//! What a supervisor needs from the actor layer: start notices, and
//! managing actors of any type through `AnyAddr`.

mod common;

use std::sync::mpsc;

use common::*;
use weft::actors::AnyAddr;
use weft::prelude::*;

enum Child {
    Fine,
    Fails,
    Panics,
}
impl Actor for Child {
    type Msg = ReplyTo<()>;
    fn started(&mut self, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match self {
            Child::Fine => Ok(()),
            Child::Fails => Err("port busy".into()),
            Child::Panics => panic!("bad config"),
        }
    }
    fn handle(&mut self, reply: ReplyTo<()>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        reply.send(());
        Ok(())
    }
}

/// Starts children and reports, in order, every notice it gets.
struct Parent {
    log: mpsc::Sender<String>,
}
enum ParentMsg {
    Start(Child, ReplyTo<AnyAddr>),
    Started(Result<(), ExitReason>),
    Down(Down),
}
impl Actor for Parent {
    type Msg = ParentMsg;
    fn handle(&mut self, msg: ParentMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            ParentMsg::Start(child, reply) => {
                let addr = ctx.spawn_notify(child, SpawnOptions::new(), ParentMsg::Started)?;
                let any = AnyAddr::from(addr);
                ctx.monitor_any(&any, ParentMsg::Down);
                reply.send(any);
            }
            ParentMsg::Started(Ok(())) => self.log.send("started".into())?,
            ParentMsg::Started(Err(reason)) => self.log.send(format!("start failed: {reason}"))?,
            ParentMsg::Down(d) => self.log.send(format!("down: {}", d.reason))?,
        }
        Ok(())
    }
}

fn parent(rt: &Runtime) -> (Addr<Parent>, mpsc::Receiver<String>) {
    let (log, rx) = mpsc::channel();
    (rt.handle().spawn(Parent { log }), rx)
}

#[test]
fn a_parent_learns_that_its_child_started_then_that_it_stopped() {
    let rt = runtime(2);
    let (p, log) = parent(&rt);
    let child = p
        .ask_wait(|r| ParentMsg::Start(Child::Fine, r), WAIT)
        .unwrap();
    assert_eq!(recv(&log), "started");
    assert!(child.describe().contains("Child"), "{}", child.describe());
    assert!(!child.is_stopped());
    assert!(child.kill(ExitReason::Shutdown));
    assert_eq!(recv(&log), "down: shutdown");
    assert!(child.is_stopped());
    assert!(!child.kill(ExitReason::Killed), "already gone");
}

#[test]
fn a_failed_start_is_reported_before_the_down() {
    let rt = runtime(2);
    let (p, log) = parent(&rt);
    let child = p
        .ask_wait(|r| ParentMsg::Start(Child::Fails, r), WAIT)
        .unwrap();
    assert_eq!(recv(&log), "start failed: error: port busy");
    assert_eq!(recv(&log), "down: error: port busy");
    assert!(child.is_stopped());
    let _ = p
        .ask_wait(|r| ParentMsg::Start(Child::Panics, r), WAIT)
        .unwrap();
    assert_eq!(recv(&log), "start failed: panic: bad config");
    assert_eq!(recv(&log), "down: panic: bad config");
}

/// Holds a gate so a graceful stop is seen to wait for queued messages.
struct Queue {
    log: mpsc::Sender<u32>,
}
impl Actor for Queue {
    type Msg = u32;
    fn handle(&mut self, n: u32, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.log.send(n)?;
        Ok(())
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        let _ = self.log.send(if matches!(reason, ExitReason::Normal) {
            100
        } else {
            200
        });
    }
}

#[test]
fn any_addr_stops_gracefully_or_kills() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let q = rt.handle().spawn(Queue { log: tx });
    let any = AnyAddr::from(&q);
    assert_eq!(any, AnyAddr::from(q.clone()));
    assert_eq!(any.id(), q.id());
    for n in 0..3 {
        q.send(n).unwrap();
    }
    assert!(any.stop(ExitReason::Normal));
    // Graceful: the three queued messages first, then `stopped`.
    let got: Vec<u32> = (0..4).map(|_| recv(&rx)).collect();
    assert_eq!(got, vec![0, 1, 2, 100]);
    let deadline = std::time::Instant::now() + WAIT;
    while !any.is_stopped() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(any.is_stopped());
    assert!(!any.stop(ExitReason::Normal));
}

/// Holds its start until told; then reports success or failure.
struct SlowStarter;
enum SlowMsg {
    Finish(bool),
}
impl Actor for SlowStarter {
    type Msg = SlowMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.hold_start();
        Ok(())
    }
    fn handle(&mut self, SlowMsg::Finish(ok): SlowMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if ok {
            ctx.start_complete(Ok(()));
        } else {
            let reason = ExitReason::error(std::io::Error::other("child 3 failed"));
            ctx.start_complete(Err(reason.clone()));
            ctx.stop_with(reason);
        }
        Ok(())
    }
}

struct Holder {
    log: mpsc::Sender<String>,
}
enum HolderMsg {
    Start(ReplyTo<Addr<SlowStarter>>),
    Started(Result<(), ExitReason>),
}
impl Actor for Holder {
    type Msg = HolderMsg;
    fn handle(&mut self, msg: HolderMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            HolderMsg::Start(r) => {
                r.send(ctx.spawn_notify(SlowStarter, SpawnOptions::new(), HolderMsg::Started)?)
            }
            HolderMsg::Started(Ok(())) => self.log.send("started".into())?,
            HolderMsg::Started(Err(e)) => self.log.send(format!("failed: {e}"))?,
        }
        Ok(())
    }
}

#[test]
fn a_held_start_is_reported_when_completed() {
    let rt = runtime(2);
    let (log, rx) = mpsc::channel();
    let holder = rt.handle().spawn(Holder { log });
    let slow = holder.ask_wait(HolderMsg::Start, WAIT).unwrap();
    assert_silent(&rx);
    slow.send(SlowMsg::Finish(true)).ok().unwrap();
    assert_eq!(recv(&rx), "started");
    // Completing twice sends nothing more.
    slow.send(SlowMsg::Finish(true)).ok().unwrap();
    assert_silent(&rx);

    let slow = holder.ask_wait(HolderMsg::Start, WAIT).unwrap();
    slow.send(SlowMsg::Finish(false)).ok().unwrap();
    assert_eq!(recv(&rx), "failed: error: child 3 failed");

    // Exiting while the start is held reports the exit reason.
    let slow = holder.ask_wait(HolderMsg::Start, WAIT).unwrap();
    slow.kill();
    assert_eq!(recv(&rx), "failed: killed");
}
