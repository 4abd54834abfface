//! A UDP echo server: every datagram comes back to its sender, whole.
//!
//! Run:   cargo run --release --example udp_echo [ADDR]     (default 127.0.0.1:7005)
//! Talk:  nc -u 127.0.0.1 7005      (each line you type is one datagram;
//!        it comes back)
//! Stop:  Ctrl-C (or SIGTERM); it prints its counters.
//!
//! The socket is one actor running a `DatagramProtocol`. A reply the
//! kernel cannot take at once (its send buffer is full) is not queued:
//! it is dropped and counted (`would_block` in the counters), which is
//! what an echo under overload should do.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use weft::io::datagram::{listen_udp, DatagramOptions, DatagramProtocol, Dgram};
use weft::prelude::*;

/// Sends every datagram back to where it came from.
struct Echo;

impl DatagramProtocol for Echo {
    type Msg = ();

    fn datagram(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult {
        // A refusal (the send buffer is full) is counted by the socket.
        let _ = sock.send_to(data, from);
        Ok(())
    }
}

fn main() -> ExitCode {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7005".into());
    let Ok(addr) = arg.parse::<SocketAddr>() else {
        eprintln!("udp_echo: bad address {arg:?}; expected IP:PORT, e.g. 127.0.0.1:7005");
        return ExitCode::from(2);
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("udp_echo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sock = match listen_udp(rt.handle(), addr, DatagramOptions::new(), Echo) {
        Ok(sock) => sock,
        Err(e) => {
            eprintln!("udp_echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = sock.local_addr().clone();
    rt.handle()
        .on_startup(move || println!("udp_echo: listening on {local}"));
    if let Err(e) = rt.run() {
        eprintln!("udp_echo: {e}");
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
