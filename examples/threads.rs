//! Plain threads talking to an actor: `send` from any thread, `ask` and
//! wait for the reply with a timeout (Twisted's `blockingCallFromThread`),
//! and blocking work handed to the pool with the result as a message
//! (Twisted's `deferToThread`).
//!
//! Run:   cargo run --release --example threads
//!
//! Prints one line per thread with the total it saw, then the final
//! total, e.g.:
//! ```text
//! thread 0 added 1000, total now 1000
//! ...
//! blocking pool computed 5000050000 (sum 1..=100000)
//! final total: 4000
//! ```

use std::time::Duration;

use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// A bank account: its state needs no lock, it is only touched by its
/// own actor.
struct Account {
    total: u64,
}

enum Msg {
    Deposit(u64),
    Balance(ReplyTo<u64>),
    SumInPool(u64, ReplyTo<u64>),
    Summed(Result<u64, weft::actors::JobPanicked>, ReplyTo<u64>),
}

impl Actor for Account {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            Msg::Deposit(n) => self.total += n,
            Msg::Balance(reply) => reply.send(self.total),
            Msg::SumInPool(n, reply) => {
                // Work that would block a worker goes to the blocking pool;
                // its result comes back as a message.
                ctx.spawn_blocking(move || (1..=n).sum::<u64>(), |r| Msg::Summed(r, reply))?;
            }
            Msg::Summed(result, reply) => reply.send(result?),
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = cli::Cli::new(
        "threads",
        "",
        "Plain threads talking to an actor: `send` from any thread, `ask` and wait for the reply with a timeout (Twisted's `blockingCallFromThread`), and blocking work handed to the pool with the result as a message (Twisted's `deferToThread`).",
    );
    cli.args_at_most(0);
    let rt = Runtime::builder().build()?;
    let account = rt.handle().spawn(Account { total: 0 });
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let account = account.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    // send_timeout waits for room if the mailbox is full.
                    account
                        .send_timeout(Msg::Deposit(1), Duration::from_secs(5))
                        .map_err(|e| e.to_string())?;
                }
                let total = account
                    .ask_wait(Msg::Balance, Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                println!("thread {i} added 1000, total now {total}");
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "thread panicked")??;
    }
    let sum = account.ask_wait(|r| Msg::SumInPool(100_000, r), Duration::from_secs(5))?;
    println!("blocking pool computed {sum} (sum 1..=100000)");
    let total = account.ask_wait(Msg::Balance, Duration::from_secs(5))?;
    println!("final total: {total}");
    Ok(())
}
