//! The demo: actors, timers and a foreign thread talking to an actor.
//!
//! Run:   cargo run --release --example tour
//!
//! A `Board` actor keeps a tally. A `Metronome` actor ticks every 250 ms
//! (an interval timer) and reports each tick to the board. A plain OS
//! thread, outside the runtime, sends visits to the board and asks it for
//! the tally (`ask_wait`, with a timeout). After two seconds the thread
//! asks the runtime to shut down; `run` returns once every actor's
//! `stopped` has run. Ctrl-C (SIGINT) shuts down the same way, earlier.
//!
//! Output (timings vary):
//! ```text
//! weft tour: 2 workers; Ctrl-C to stop early
//! [board] tick 1 (visits so far: 3)
//! [thread] round 0: the board says 1 ticks, 5 visits
//! ...
//! [board] stopped (shutdown) after 8 ticks and 40 visits
//! [metronome] stopped (shutdown)
//! bye
//! ```

use std::time::Duration;

use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

struct Board {
    ticks: u32,
    visits: u32,
}

enum BoardMsg {
    Tick,
    Visit,
    Tally(ReplyTo<(u32, u32)>),
}

impl Actor for Board {
    type Msg = BoardMsg;
    fn handle(&mut self, msg: BoardMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            BoardMsg::Tick => {
                self.ticks += 1;
                println!(
                    "[board] tick {} (visits so far: {})",
                    self.ticks, self.visits
                );
            }
            BoardMsg::Visit => self.visits += 1,
            BoardMsg::Tally(reply) => reply.send((self.ticks, self.visits)),
        }
        Ok(())
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        println!(
            "[board] stopped ({reason}) after {} ticks and {} visits",
            self.ticks, self.visits
        );
    }
}

struct Metronome {
    board: Addr<Board>,
}

impl Actor for Metronome {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_interval(Duration::from_millis(250), MissedTicks::Skip, || ());
        Ok(())
    }
    fn handle(&mut self, _tick: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        // Ctx::send: if the board were overloaded, the metronome would be
        // held back instead of piling messages up.
        ctx.send(&self.board, BoardMsg::Tick)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        println!("[metronome] stopped ({reason})");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = cli::Cli::new(
        "tour",
        "",
        "The demo: actors, timers and a foreign thread talking to an actor.",
    );
    cli.args_at_most(0);
    let rt = Runtime::builder().build()?;
    println!(
        "weft tour: {} workers; Ctrl-C to stop early",
        rt.handle().workers()
    );
    let board = rt.handle().spawn(Board {
        ticks: 0,
        visits: 0,
    });
    rt.handle().spawn(Metronome {
        board: board.clone(),
    });

    // A foreign thread: no runtime handle needed to talk to an actor.
    let handle = rt.handle().clone();
    let visitor = std::thread::spawn(move || {
        for round in 0..8 {
            for _ in 0..5 {
                if board.send(BoardMsg::Visit).is_err() {
                    return; // the board stopped: we are shutting down
                }
            }
            std::thread::sleep(Duration::from_millis(250));
            match board.ask_wait(BoardMsg::Tally, Duration::from_secs(1)) {
                Ok((ticks, visits)) => {
                    println!(
                        "[thread] round {round}: the board says {ticks} ticks, {visits} visits"
                    )
                }
                Err(e) => {
                    println!("[thread] no answer: {e}");
                    return;
                }
            }
        }
        handle.shutdown();
    });

    rt.run()?; // blocks until shutdown (the thread above, or Ctrl-C)
    let _ = visitor.join();
    println!("bye");
    Ok(())
}
