//! Two actors bounce a counter back and forth, then report the rate.
//!
//! Run:   cargo run --release --example ping_pong -- [ROUND_TRIPS]
//!
//! Prints how many round trips per second two weft actors manage on this
//! machine (default 1,000,000 round trips), e.g.
//! `1000000 round trips in 0.09 s: 11.1 M round trips/s`.

use std::time::{Duration, Instant};

use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Answers every ball by sending it back to its partner.
struct Player {
    partner: Option<Addr<Player>>,
    done: Option<ReplyTo<u64>>,
}

enum Ball {
    /// The partner's address, sent once before the game.
    Meet(Addr<Player>),
    /// A ball with the number of round trips still to play.
    Hit(u64),
    /// Start the game and report when it ends.
    Serve(u64, ReplyTo<u64>),
}

impl Actor for Player {
    type Msg = Ball;
    fn handle(&mut self, msg: Ball, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let partner = match msg {
            Ball::Meet(p) => {
                self.partner = Some(p);
                return Ok(());
            }
            Ball::Serve(n, done) => {
                self.done = Some(done);
                (n - 1, self.partner.clone().ok_or("no partner")?)
            }
            Ball::Hit(0) => {
                if let Some(done) = self.done.take() {
                    done.send(0);
                }
                return Ok(());
            }
            Ball::Hit(n) => (n - 1, self.partner.clone().ok_or("no partner")?),
        };
        ctx.send(&partner.1, Ball::Hit(partner.0))
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = cli::Cli::new(
        "ping_pong",
        "[ROUND_TRIPS]",
        "Two actors bounce a counter back and forth, then report the rate.",
    );
    let round_trips: u64 = match cli.args_at_most(1).first() {
        Some(n) => n
            .parse()
            .unwrap_or_else(|_| cli.fail(format!("ROUND_TRIPS must be a whole number, not {n:?}"))),
        None => 1_000_000,
    };
    let rt = Runtime::builder().workers(1).build()?;
    let ping = rt.handle().spawn(Player {
        partner: None,
        done: None,
    });
    let pong = rt.handle().spawn(Player {
        partner: None,
        done: None,
    });
    ping.send(Ball::Meet(pong.clone())).ok().ok_or("send")?;
    pong.send(Ball::Meet(ping.clone())).ok().ok_or("send")?;
    let start = Instant::now();
    // Each hop decrements the count: 2 hops per round trip.
    ping.ask_wait(
        |r| Ball::Serve(round_trips * 2, r),
        Duration::from_secs(600),
    )?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{round_trips} round trips in {secs:.2} s: {:.1} M round trips/s",
        round_trips as f64 / secs / 1e6
    );
    Ok(())
}
