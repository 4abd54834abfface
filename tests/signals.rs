//! Signals other than SIGINT/SIGTERM as messages to the actors that
//! subscribe (its own test binary: it signals its own process).

mod common;

use std::sync::mpsc::{self, Sender};

use common::*;
use weft::prelude::*;
use weft::runtime::{Signal, SignalSubscription};

struct Hup {
    subscription: Option<SignalSubscription>,
    tx: Sender<String>,
}

impl Actor for Hup {
    type Msg = &'static str;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.subscription = Some(ctx.on_signal(Signal::SIGHUP, || "hup")?);
        // A signal nobody may catch is an error value.
        let kill = ctx.on_signal(Signal::SIGKILL, || "never");
        self.tx
            .send(format!("subscribed, SIGKILL refused: {}", kill.is_err()))?;
        Ok(())
    }
    fn handle(&mut self, msg: &'static str, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if msg == "unsubscribe" {
            self.subscription = None;
            self.tx.send("unsubscribed".into())?;
            return Ok(());
        }
        let _ = ctx;
        self.tx.send(msg.into())?;
        Ok(())
    }
}

#[test]
fn sighup_reaches_a_subscribed_actor_as_a_message_until_it_unsubscribes() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let (tx2, rx2) = mpsc::channel();
    let one = rt.handle().spawn(Hup {
        subscription: None,
        tx,
    });
    let two = rt.handle().spawn(Hup {
        subscription: None,
        tx: tx2,
    });
    assert_eq!(recv(&rx), "subscribed, SIGKILL refused: true");
    assert_eq!(recv(&rx2), "subscribed, SIGKILL refused: true");
    let me = nix::unistd::getpid();
    nix::sys::signal::kill(me, Signal::SIGHUP).unwrap();
    assert_eq!(recv(&rx), "hup");
    assert_eq!(recv(&rx2), "hup");
    // Again: each arrival (or a coalesced few) is one message.
    nix::sys::signal::kill(me, Signal::SIGHUP).unwrap();
    assert_eq!(recv(&rx), "hup");
    assert_eq!(recv(&rx2), "hup");
    // One unsubscribes: only the other hears the next one.
    one.send("unsubscribe").unwrap();
    assert_eq!(recv(&rx), "unsubscribed");
    nix::sys::signal::kill(me, Signal::SIGHUP).unwrap();
    assert_eq!(recv(&rx2), "hup");
    assert_silent(&rx);
    drop(two);
}
