//! A supervision tree as the application: a worker that crashes every few
//! seconds is restarted with fresh state, a dynamic pool keeps serving, and
//! the tree is printed as it changes.
//!
//! Run:   cargo run --release --example supervision      (Ctrl-C to stop)
//!
//! What to watch for:
//! * every 3 seconds `flaky` panics (the panic message is printed by Rust's
//!   panic hook); the next dump shows it running again as a *new* actor
//!   (a new id) with its `restarts` count up by one, while `pool` and its
//!   jobs are untouched (one-for-one);
//! * the pool starts a short job every second; each job logs and ends, so
//!   the pool's child count stays small;
//! * on Ctrl-C the tree stops in reverse start order (`feeder`, `pool`,
//!   then `flaky`), then `run` returns the root's exit reason (`shutdown`).
//!
//! ```text
//! [flaky] started fresh (ticks = 0)
//! [pool] job 1 ran
//! weft_supervisor::supervisor::Supervisor<1> (root)
//!   flaky [Worker, Permanent, restarts 1] supervision::Flaky<9>
//!   pool [Worker, Permanent, restarts 0] weft_supervisor::dynamic::DynamicSupervisor<supervision::Job, u64><4>
//!   feeder [Worker, Permanent, restarts 0] supervision::Feeder<5>
//! ...
//! application ended: shutdown
//! ```

use std::time::Duration;

use weft::prelude::*;
use weft::supervisor::{
    tree_dump, Application, ChildSpec, DynamicMsg, DynamicSpec, DynamicSupervisor, Intensity,
    Strategy, SupervisorSpec,
};

#[path = "shared/cli.rs"]
mod cli;

/// Crashes 3 seconds after every start; counts its ticks meanwhile.
struct Flaky {
    ticks: u32,
}

enum FlakyMsg {
    Tick,
    Crash,
}

impl Actor for Flaky {
    type Msg = FlakyMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        println!("[flaky] started fresh (ticks = {})", self.ticks);
        ctx.send_interval(Duration::from_secs(1), MissedTicks::Skip, || FlakyMsg::Tick);
        ctx.send_later(Duration::from_secs(3), FlakyMsg::Crash);
        Ok(())
    }
    fn handle(&mut self, msg: FlakyMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            FlakyMsg::Tick => self.ticks += 1,
            FlakyMsg::Crash => panic!("flaky gives up after {} ticks", self.ticks),
        }
        Ok(())
    }
}

/// A short job of the pool: logs and ends.
struct Job {
    n: u64,
}

impl Actor for Job {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        println!("[pool] job {} ran", self.n);
        ctx.stop();
        Ok(())
    }
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

/// Feeds the pool a job a second (it finds the pool by name).
struct Feeder {
    n: u64,
}

impl Actor for Feeder {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_interval(Duration::from_secs(1), MissedTicks::Skip, || ());
        Ok(())
    }
    fn handle(&mut self, _tick: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let names = weft::actors::Registry::of(ctx.runtime());
        if let Some(pool) = names.lookup::<DynamicSupervisor<Job, u64>>("pool") {
            self.n += 1;
            ctx.send(&pool, DynamicMsg::StartChildQuiet(self.n))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = cli::Cli::new(
        "supervision",
        "",
        "A supervision tree as the application: a worker that crashes every few seconds is restarted with fresh state, a dynamic pool keeps serving, and the tree is printed as it changes.",
    );
    cli.args_at_most(0);
    let rt = Runtime::builder().build()?;
    let pool = DynamicSpec::new(|n| Job { n }).name("pool");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 5,
            within: Duration::from_secs(10),
        })
        .child(ChildSpec::worker("flaky", || Flaky { ticks: 0 }))
        .child(ChildSpec::worker("pool", move || {
            DynamicSupervisor::new(pool.clone())
        }))
        .child(ChildSpec::worker("feeder", || Feeder { n: 0 }));
    let app = Application::start(&rt, spec);

    // A plain thread prints the tree every 2 s.
    let root = app.root().clone();
    std::thread::spawn(move || {
        while !root.is_stopped() {
            std::thread::sleep(Duration::from_secs(2));
            println!("{}", tree_dump(&root, Duration::from_secs(1)));
        }
    });
    let reason = app.run(&rt)?;
    println!("application ended: {reason}");
    Ok(())
}
