//! Ask always ends: with the reply, a timeout, or an error.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use weft::prelude::*;

/// Answers, hoards, or drops reply handles as told.
struct Oracle {
    hoard: Vec<ReplyTo<u32>>,
}
enum OracleMsg {
    Answer(u32, ReplyTo<u32>),
    Hoard(ReplyTo<u32>),
    DropAndStop(ReplyTo<u32>),
    AskFromInside(Addr<Oracle>, ReplyTo<u32>),
}
impl Actor for Oracle {
    type Msg = OracleMsg;
    fn handle(&mut self, msg: OracleMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            OracleMsg::Answer(n, r) => r.send(n),
            OracleMsg::Hoard(r) => self.hoard.push(r),
            OracleMsg::DropAndStop(r) => {
                drop(r);
                ctx.stop();
            }
            OracleMsg::AskFromInside(other, r) => {
                // A worker must not block: waiting here is refused at once.
                let res = other.ask_wait(|x| OracleMsg::Answer(1, x), WAIT);
                r.send(if res == Err(AskError::WouldBlockWorker) {
                    1
                } else {
                    0
                });
            }
        }
        Ok(())
    }
}

fn oracle(rt: &Runtime) -> Addr<Oracle> {
    rt.handle().spawn(Oracle { hoard: Vec::new() })
}

#[test]
fn ask_from_a_plain_thread() {
    let rt = runtime(2);
    let o = oracle(&rt);
    for n in 0..100 {
        assert_eq!(o.ask_wait(|r| OracleMsg::Answer(n, r), WAIT), Ok(n));
    }
}

#[test]
fn ask_times_out_when_no_reply_comes() {
    let rt = runtime(1);
    let o = oracle(&rt);
    assert_eq!(
        o.ask_wait(OracleMsg::Hoard, Duration::from_millis(30)),
        Err(AskError::Timeout)
    );
}

#[test]
fn ask_ends_with_an_error_when_the_actor_drops_the_handle_or_stops() {
    let rt = runtime(1);
    let o = oracle(&rt);
    assert_eq!(
        o.ask_wait(OracleMsg::DropAndStop, WAIT),
        Err(AskError::Dropped)
    );
    // The handle is dropped before the actor has finished exiting; once it
    // has, asks fail at once.
    let deadline = std::time::Instant::now() + WAIT;
    while !o.is_stopped() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        o.ask_wait(|r| OracleMsg::Answer(1, r), WAIT),
        Err(AskError::Stopped)
    );
    // A request still queued when the actor is killed is dropped with it.
    let o = oracle(&rt);
    let pending = o.ask(OracleMsg::Hoard).unwrap();
    o.kill();
    assert_eq!(pending.wait(WAIT), Err(AskError::Dropped));
}

#[test]
fn waiting_on_a_worker_thread_is_refused() {
    let rt = runtime(2);
    let a = oracle(&rt);
    let b = oracle(&rt);
    assert_eq!(a.ask_wait(|r| OracleMsg::AskFromInside(b, r), WAIT), Ok(1));
}

/// Asks another actor from inside an actor; reports each outcome.
struct Asker {
    tx: mpsc::Sender<Result<u32, AskError>>,
}
enum AskerMsg {
    Go(Addr<Oracle>, bool),
    Got(Result<u32, AskError>),
}
impl Actor for Asker {
    type Msg = AskerMsg;
    fn handle(&mut self, msg: AskerMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            AskerMsg::Go(o, answer) => {
                if answer {
                    ctx.ask(&o, |r| OracleMsg::Answer(7, r), WAIT, AskerMsg::Got);
                } else {
                    ctx.ask(&o, OracleMsg::Hoard, Duration::from_secs(5), AskerMsg::Got);
                }
            }
            AskerMsg::Got(r) => self.tx.send(r)?,
        }
        Ok(())
    }
}

#[test]
fn ask_between_actors_replies_and_times_out_on_the_manual_clock() {
    let (rt, clock) = manual_runtime(2);
    let o = oracle(&rt);
    let (tx, rx) = mpsc::channel();
    let asker = rt.handle().spawn(Asker { tx });
    asker.send(AskerMsg::Go(o.clone(), true)).unwrap();
    assert_eq!(recv(&rx), Ok(7));
    asker.send(AskerMsg::Go(o.clone(), false)).unwrap();
    // Nothing happens until the clock passes the timeout.
    assert_silent(&rx);
    clock.advance(Duration::from_millis(4_999));
    assert_silent(&rx);
    clock.advance(Duration::from_millis(1));
    assert_eq!(recv(&rx), Err(AskError::Timeout));
    // Asking a stopped actor ends with Stopped, as a message.
    o.kill();
    while !o.is_stopped() {
        std::thread::yield_now();
    }
    asker.send(AskerMsg::Go(o, true)).unwrap();
    assert_eq!(recv(&rx), Err(AskError::Stopped));
}
