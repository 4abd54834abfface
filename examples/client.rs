//! A line client for the example servers, so that no `nc` is needed:
//! each line typed is sent, and what comes back is printed as it comes.
//!
//! Run:   cargo run --release --example client -- [ADDR]          (TCP; default 127.0.0.1:7000)
//!        cargo run --release --example client -- --unix PATH     (a UNIX stream socket)
//!        cargo run --release --example client -- --udp ADDR      (each line is one datagram)
//! Stop:  Ctrl-D (end of input): the client shuts its write side, prints
//!        what is still coming, and exits when the server closes (UDP:
//!        after half a second of quiet).
//!
//! With the echo server running (`cargo run --release --example echo`),
//! `cargo run --release --example client` talks to it: type a line and
//! it comes back. The connection is an actor running a `Protocol` (made
//! by `connect_tcp` or `connect_unix`); standard input is read on a plain
//! thread that sends each line to that actor as a message, as a Twisted
//! program would use `callFromThread`. The UDP mode is a
//! `DatagramProtocol` on a connected socket.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use weft::io::datagram::{listen_udp, DatagramOptions, DatagramProtocol, Dgram};
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// What the stdin thread tells the connection.
enum Input {
    Line(Vec<u8>),
    End,
    /// UDP: the wait after the end of input is over.
    Quit,
}

/// A stream connection: prints what arrives, writes what is typed.
struct Lines;

impl Protocol for Lines {
    type Msg = Input;

    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        let mut out = std::io::stdout().lock();
        out.write_all(data)?;
        out.flush()?;
        Ok(())
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Input) -> ActorResult {
        match msg {
            Input::Line(line) => conn.write(&line)?,
            // Half-close: the server still answers what it got.
            Input::End => conn.shutdown_write(),
            Input::Quit => conn.close(),
        }
        Ok(())
    }

    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        if !reason.is_clean() {
            eprintln!("client: connection closed: {reason}");
        }
        conn.runtime().shutdown();
    }
}

/// A connected UDP socket: each line one datagram, each datagram printed.
struct Datagrams {
    server: Address,
}

impl DatagramProtocol for Datagrams {
    type Msg = Input;

    fn bound(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let server = self.server.clone();
        sock.connect(&server)?;
        Ok(())
    }

    fn datagram(
        &mut self,
        _sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        _from: &Address,
    ) -> ActorResult {
        let mut out = std::io::stdout().lock();
        out.write_all(data)?;
        out.flush()?;
        Ok(())
    }

    fn refused(&mut self, _sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        eprintln!("client: nothing receives at {}", self.server);
        Ok(())
    }

    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, msg: Input) -> ActorResult {
        match msg {
            Input::Line(line) => {
                if let Err(e) = sock.send(&line) {
                    eprintln!("client: not sent: {e}");
                }
            }
            // Answers still on the way get half a second.
            Input::End => {
                sock.send_later(Duration::from_millis(500), Input::Quit);
            }
            Input::Quit => sock.runtime().shutdown(),
        }
        Ok(())
    }
}

/// Reads standard input on a plain thread, a message per line.
fn read_stdin(send: impl Fn(Input) -> bool + Send + 'static) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut line = Vec::new();
            match lock.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !send(Input::Line(line)) {
                        return;
                    }
                }
            }
        }
        send(Input::End);
    });
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "client",
        "[ADDR | --unix PATH | --udp ADDR]",
        "A line client for the example servers: each line typed is sent, and what comes back is printed.",
    );
    let args = cli.args_at_most(2);
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => return cli.error(e),
    };
    let parse = |arg: Option<&String>| -> SocketAddr {
        let arg = arg.map_or("127.0.0.1:7000", String::as_str);
        arg.parse()
            .unwrap_or_else(|e| cli.fail(format!("bad address {arg:?} ({e}); expected IP:PORT")))
    };
    let timeout = Duration::from_secs(10);
    match args.first().map(String::as_str) {
        Some("--udp") => {
            let server = parse(args.get(1));
            let local: SocketAddr = if server.is_ipv6() {
                "[::]:0".parse().unwrap()
            } else {
                "0.0.0.0:0".parse().unwrap()
            };
            let protocol = Datagrams {
                server: Address::Inet(server),
            };
            match listen_udp(rt.handle(), local, DatagramOptions::new(), protocol) {
                Ok(sock) => read_stdin(move |input| sock.send(input).is_ok()),
                Err(e) => return cli.error(e),
            }
        }
        Some("--unix") => {
            let Some(path) = args.get(1) else {
                cli.fail("--unix needs a PATH (or @NAME)");
            };
            // "@name" is an abstract address, anything else a path.
            let addr = UnixAddr::from(path.as_str());
            let connecting = connect_unix(rt.handle(), addr, ConnectOptions::new(), Lines);
            match connecting.wait(timeout) {
                Ok(conn) => read_stdin(move |input| conn.send(input).is_ok()),
                Err(e) => return cli.error(e),
            }
        }
        Some(other) if other.starts_with('-') => cli.fail(format!("unknown option {other:?}")),
        _ => {
            if args.len() > 1 {
                cli.fail(format!("unexpected argument {:?}", args[1]));
            }
            let target = parse(args.first());
            let connecting = connect_tcp(rt.handle(), target, ConnectOptions::new(), Lines);
            match connecting.wait(timeout) {
                Ok(conn) => read_stdin(move |input| conn.send(input).is_ok()),
                Err(e) => return cli.error(e),
            }
        }
    }
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli.error(e),
    }
}
