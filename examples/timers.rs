//! Timers as messages: a one-shot, an interval, and a timer cancelled and
//! reset from another thread.
//!
//! Run:   cargo run --release --example timers
//!
//! Prints, over about one second:
//! ```text
//! tick 1 at ~100 ms
//! tick 2 at ~200 ms
//! ...
//! once: fired at ~350 ms
//! reset timer: fired at ~600 ms (it was due at 300 ms, reset from a thread)
//! ...
//! done after 10 ticks
//! ```

use std::time::{Duration, Instant};

use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

struct Clockwork {
    start: Instant,
    ticks: u32,
    done: Option<ReplyTo<u32>>,
}

enum Msg {
    Tick,
    Once,
    Reset,
    Arm(ReplyTo<TimerHandle>),
    WaitDone(ReplyTo<u32>),
}

impl Actor for Clockwork {
    type Msg = Msg;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_interval(Duration::from_millis(100), MissedTicks::Skip, || Msg::Tick);
        ctx.send_later(Duration::from_millis(350), Msg::Once);
        Ok(())
    }

    fn handle(&mut self, msg: Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let ms = self.start.elapsed().as_millis();
        match msg {
            Msg::Tick => {
                self.ticks += 1;
                println!("tick {} at ~{ms} ms", self.ticks);
                if self.ticks == 10 {
                    if let Some(done) = self.done.take() {
                        done.send(self.ticks);
                    }
                    ctx.stop();
                }
            }
            Msg::Once => println!("once: fired at ~{ms} ms"),
            Msg::Reset => println!(
                "reset timer: fired at ~{ms} ms (it was due at 300 ms, reset from a thread)"
            ),
            Msg::Arm(reply) => reply.send(ctx.send_later(Duration::from_millis(300), Msg::Reset)),
            Msg::WaitDone(reply) => self.done = Some(reply),
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = cli::Cli::new(
        "timers",
        "",
        "Timers as messages: a one-shot, an interval, and a timer cancelled and reset from another thread.",
    );
    cli.args_at_most(0);
    let rt = Runtime::builder().build()?;
    let actor = rt.handle().spawn(Clockwork {
        start: Instant::now(),
        ticks: 0,
        done: None,
    });
    let timer = actor.ask_wait(Msg::Arm, Duration::from_secs(5))?;
    // Any thread may cancel, reset or delay a timer through its handle.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        timer.reset(Duration::from_millis(500));
    });
    let ticks = actor.ask_wait(Msg::WaitDone, Duration::from_secs(10))?;
    println!("done after {ticks} ticks");
    Ok(())
}
