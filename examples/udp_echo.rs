//! A UDP echo server: every datagram comes back to its sender, whole.
//!
//! Run:   cargo run --release --example udp_echo -- [ADDR] [--batch]
//!        (default 127.0.0.1:7005)
//! Talk:  cargo run --release --example client -- --udp 127.0.0.1:7005
//!        (or `nc -u 127.0.0.1 7005`; each line you type is one datagram;
//!        it comes back)
//! Stop:  Ctrl-C (or SIGTERM); it prints its counters.
//!
//! The socket is one actor running a `DatagramProtocol`. A reply the
//! kernel cannot take at once (its send buffer is full) is not queued:
//! it is dropped and counted (`would_block` in the counters), which is
//! what an echo under overload should do.
//!
//! With `--batch` it receives up to 16 datagrams per system call
//! (`recvmmsg`) and sends the replies of each burst together
//! (`sendmmsg`, from `read_done`): fewer system calls under load, the
//! same datagrams on the wire.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use weft::io::datagram::{listen_udp, DatagramOptions, DatagramProtocol, Dgram};
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Sends every datagram back to where it came from: at once, or (with
/// `--batch`) gathered and sent together when the burst ends.
struct Echo {
    gathered: Option<Gathered>,
}

/// Replies waiting for the end of the burst: their bytes end to end, and
/// each one's end offset and destination.
#[derive(Default)]
struct Gathered {
    bytes: Vec<u8>,
    replies: Vec<(usize, Address)>,
}

impl DatagramProtocol for Echo {
    type Msg = ();

    fn datagram(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult {
        match &mut self.gathered {
            Some(g) => {
                g.bytes.extend_from_slice(data);
                g.replies.push((g.bytes.len(), from.clone()));
            }
            // A refusal (the send buffer is full) is counted by the socket.
            None => {
                let _ = sock.send_to(data, from);
            }
        }
        Ok(())
    }

    fn read_done(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let Some(g) = &mut self.gathered else {
            return Ok(());
        };
        let mut start = 0;
        let batch: Vec<(&[u8], &Address)> = g
            .replies
            .iter()
            .map(|(end, to)| {
                let reply = &g.bytes[start..*end];
                start = *end;
                (reply, to)
            })
            .collect();
        // Replies after a refused one are dropped too (and it is counted),
        // as the unbatched echo drops what the kernel cannot take.
        let _ = sock.send_batch_to(&batch);
        g.bytes.clear();
        g.replies.clear();
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "udp_echo",
        "[ADDR] [--batch]",
        "A UDP echo server: every datagram comes back to its sender, whole.",
    );
    let mut addr = "127.0.0.1:7005".to_string();
    let mut batch = false;
    for arg in cli.args_at_most(2).iter().cloned() {
        match arg.as_str() {
            "--batch" => batch = true,
            _ => addr = arg,
        }
    }
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        cli.fail(format!(
            "bad address {addr:?}; expected IP:PORT, e.g. 127.0.0.1:7005"
        ));
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("udp_echo: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let (options, gathered) = if batch {
        (DatagramOptions::new().batch(16), Some(Gathered::default()))
    } else {
        (DatagramOptions::new(), None)
    };
    let sock = match listen_udp(rt.handle(), addr, options, Echo { gathered }) {
        Ok(sock) => sock,
        Err(e) => {
            eprintln!("udp_echo: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let local = sock.local_addr().clone();
    rt.handle()
        .on_startup(move || println!("udp_echo: listening on {local}"));
    if let Err(e) = rt.run() {
        eprintln!("udp_echo: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    let stats = sock.stats();
    println!(
        "udp_echo: stopped; {} datagrams echoed, {} replies dropped (send buffer full), {} truncated",
        stats.sent.load(Ordering::Relaxed),
        stats.would_block.load(Ordering::Relaxed),
        stats.truncated.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}
