//! An echo server: every byte a client sends comes back. The README's
//! main demo.
//!
//! Run:   cargo run --release --example echo -- [ADDR]      (default 127.0.0.1:7000)
//! Talk:  cargo run --release --example client      (or `nc 127.0.0.1 7000`;
//!        type a line; it comes back)
//! Stop:  Ctrl-C (or SIGTERM): the listener stops accepting, every
//!        connection flushes what it owes and closes, then the program
//!        prints its counters and exits.
//!
//! Under systemd (or `systemd-socket-activate -l 127.0.0.1:7000 \
//! target/release/examples/echo`, which starts it on the first
//! connection), it serves the socket it is given instead of binding one,
//! and tells the service manager `READY=1` once serving and `STOPPING=1`
//! when it stops (`Type=notify` units).
//!
//! Each connection is its own actor, a temporary child of the listener's
//! connection supervisor; a client that sends faster than it reads is
//! slowed down by TCP (the echo pauses reading while its write buffer is
//! above the high watermark) rather than growing the server's memory.

use std::net::SocketAddr;
use std::process::ExitCode;

use weft::io::{activation, adopt_listener, Listening};
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Writes back what it reads.
struct Echo;

impl Protocol for Echo {
    type Msg = ();

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "echo",
        "[ADDR]",
        "An echo server: every byte a client sends comes back. The README's main demo.",
    );
    // Before any thread starts: takes the sockets a service manager
    // passed and clears its variables from the environment.
    let mut passed = match activation::listen_fds() {
        Ok(passed) => passed,
        Err(e) => {
            eprintln!("echo: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let arg = cli
        .args_at_most(1)
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            cli.fail(format!(
                "bad address {arg:?} ({e}); expected IP:PORT, e.g. 127.0.0.1:7000"
            ));
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let (info, local, from) = match passed.take_index(0) {
        Some(fd) => match adopt_listener(rt.handle(), fd, ListenOptions::new(), || Echo) {
            Ok(l) => (
                l.info(),
                l.local_addr().to_string(),
                ", from socket activation",
            ),
            Err(e) => {
                eprintln!("echo: the activated socket: {}", cli::chain(&e));
                return ExitCode::FAILURE;
            }
        },
        None => match listen_tcp(rt.handle(), addr, ListenOptions::new(), || Echo) {
            Ok(l) => {
                let l: Listening<Echo> = l;
                (l.info(), l.local_addr().to_string(), "")
            }
            Err(e) => {
                eprintln!("echo: {}", cli::chain(&e));
                return ExitCode::FAILURE;
            }
        },
    };
    // Printed once `run` has installed the SIGINT/SIGTERM handlers, so a
    // signal from whoever reads this line always stops us gracefully.
    rt.handle().on_startup(move || {
        println!("echo: listening on {local}{from}");
        let _ = activation::notify_ready();
    });
    rt.handle().on_shutdown(Phase::Before, || {
        let _ = activation::notify_stopping();
    });
    if let Err(e) = rt.run() {
        eprintln!("echo: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    let stats = info.stats();
    println!(
        "echo: stopped; {} connections served, {} failed",
        stats.accepted, stats.failed
    );
    ExitCode::SUCCESS
}
