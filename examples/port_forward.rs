//! A TCP port forwarder: listens, connects each client to a target, and
//! pipes bytes both ways with back-pressure in both directions.
//!
//! Run:   cargo run --release --example port_forward -- [LISTEN] [TARGET]
//!        (defaults 127.0.0.1:7001 and 127.0.0.1:7000; with the echo
//!        example on 7000, `nc 127.0.0.1 7001` echoes through the proxy)
//! Stop:  Ctrl-C (or SIGTERM).
//!
//! Each client is a pair of connection actors, and bytes go between them
//! as messages under a credit window: a side stops reading once 16 of its
//! chunks are unacknowledged, and the other side acknowledges a chunk
//! only when its own write buffer is below the high watermark. So a fast
//! client behind a slow target (or the reverse) fills kernel windows, not
//! the proxy's memory (at most 16 reads in flight plus one write buffer
//! per direction), and since neither side ever waits on the other's
//! mailbox, the two directions cannot deadlock. An end of input is passed
//! on as a half-close; a failure on either side closes the other.

use std::net::SocketAddr;
use std::process::ExitCode;

use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Unacknowledged chunks after which a side stops reading.
const WINDOW: u32 = 16;

/// One side of a forwarded connection.
struct Pipe {
    /// The other side (for the inbound side: set at once, usable before
    /// the outbound connection opens).
    other: Option<ConnRef<Pipe>>,
    /// For the inbound side: where to connect (`None` once connected).
    target: Option<SocketAddr>,
    /// Chunks sent to the other side and not yet acknowledged.
    unacked: u32,
    /// Chunks received but not acknowledged (our writes are backed up).
    owed: u32,
    /// Waiting for the outbound connection to open.
    connecting: bool,
}

impl Pipe {
    fn new(other: Option<ConnRef<Pipe>>, target: Option<SocketAddr>) -> Self {
        Pipe {
            other,
            target,
            unacked: 0,
            owed: 0,
            connecting: false,
        }
    }

    /// Sends to the other side. Its mailbox never fills (at most WINDOW
    /// chunks and WINDOW acks wait there), so a refusal means it is gone:
    /// data that cannot be delivered ends this side too. (A control
    /// message to a side that is gone is moot: its `Gone` is on the way,
    /// behind the data it sent.)
    fn tell(&mut self, conn: &mut Conn<'_, '_, Self>, msg: PipeMsg) {
        let data = matches!(msg, PipeMsg::Data(_));
        if let Some(other) = &self.other {
            if other.send(msg).is_err() && data {
                self.other = None;
                conn.abort();
            }
        }
    }

    fn update_reading(&mut self, conn: &mut Conn<'_, '_, Self>) {
        if self.connecting || self.unacked >= WINDOW {
            conn.pause_reading();
        } else {
            conn.resume_reading();
        }
    }
}

enum PipeMsg {
    /// Bytes to write to our socket.
    Data(Vec<u8>),
    /// The other side wrote this many of our chunks.
    Ack(u32),
    /// The outbound side is connected.
    Connected,
    /// The other side's peer ended its input: end ours.
    Eof,
    /// The other side is gone (or never connected).
    Gone(String),
}

impl Protocol for Pipe {
    type Msg = PipeMsg;

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let Some(target) = self.target.take() else {
            return Ok(()); // the outbound side
        };
        // Read nothing until the target is connected.
        self.connecting = true;
        self.update_reading(conn);
        let outbound = Pipe::new(Some(conn.address()), None);
        let connecting = connect_tcp(conn.runtime(), target, ConnectOptions::new(), outbound);
        self.other = Some(connecting.conn());
        connecting.notify(conn.ctx(), |outcome| {
            ConnMsg::user(match outcome {
                Ok(_) => PipeMsg::Connected,
                Err(e) => PipeMsg::Gone(format!("cannot reach the target: {e}")),
            })
        });
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.unacked += 1;
        self.tell(conn, PipeMsg::Data(data.to_vec()));
        self.update_reading(conn);
        Ok(())
    }

    fn read_closed(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        self.tell(conn, PipeMsg::Eof);
        Ok(())
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: PipeMsg) -> ActorResult {
        match msg {
            PipeMsg::Data(bytes) => {
                if conn.write(&bytes).is_err() {
                    conn.abort();
                } else if conn.is_write_paused() {
                    self.owed += 1;
                } else {
                    self.tell(conn, PipeMsg::Ack(1));
                }
            }
            PipeMsg::Ack(n) => {
                self.unacked = self.unacked.saturating_sub(n);
                self.update_reading(conn);
            }
            PipeMsg::Connected => {
                self.connecting = false;
                self.update_reading(conn);
            }
            PipeMsg::Eof => conn.shutdown_write(),
            PipeMsg::Gone(why) => {
                if !why.is_empty() {
                    let _ = conn.write(format!("port_forward: {why}\n").as_bytes());
                }
                self.other = None;
                conn.close();
            }
        }
        Ok(())
    }

    // Our writes backed up: stop acknowledging (the other side stops
    // reading once its window is used up), rather than pausing our own
    // reading.
    fn write_paused(&mut self, _conn: &mut Conn<'_, '_, Self>) {}

    fn write_resumed(&mut self, conn: &mut Conn<'_, '_, Self>) {
        if self.owed > 0 {
            let owed = std::mem::take(&mut self.owed);
            self.tell(conn, PipeMsg::Ack(owed));
        }
    }

    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, _reason: &CloseReason) {
        self.tell(conn, PipeMsg::Gone(String::new()));
        self.other = None;
    }
}

fn parse(cli: &cli::Cli, arg: Option<String>, default: &str, what: &str) -> SocketAddr {
    let arg = arg.unwrap_or_else(|| default.into());
    arg.parse().unwrap_or_else(|e| {
        cli.fail(format!(
            "bad {what} address {arg:?} ({e}); expected IP:PORT"
        ))
    })
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "port_forward",
        "[LISTEN] [TARGET]",
        "A TCP port forwarder: listens, connects each client to a target, and pipes bytes both ways with back-pressure in both directions.",
    );
    let mut args = cli.args_at_most(2).iter().cloned();
    let listen = parse(&cli, args.next(), "127.0.0.1:7001", "listen");
    let target = parse(&cli, args.next(), "127.0.0.1:7000", "target");
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("port_forward: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let factory = move || Pipe::new(None, Some(target));
    let listening = match listen_tcp(rt.handle(), listen, ListenOptions::new(), factory) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("port_forward: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    // Printed once `run` has installed the signal handlers.
    let local = listening.local_addr();
    rt.handle()
        .on_startup(move || println!("port_forward: listening on {local}, forwarding to {target}"));
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("port_forward: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
