//! A chat over IP multicast: run two or three in different terminals;
//! each line typed in one appears in the others. No server: every copy
//! joins the group 239.255.77.77 on the loopback interface and sends its
//! lines there.
//!
//! Run:   cargo run --release --example multicast_chat -- [NAME] [GROUP:PORT]
//!        (default: your pid as the name, 239.255.77.77:7007)
//! Talk:  type a line and press Enter; Ctrl-D leaves.
//!
//! Shows: `listen_udp` with `reuse_addr` (several programs on one port,
//! Twisted's `listenMultiple`), joining a group on an interface, the
//! outgoing interface, and a plain thread (standard input) handing lines
//! to the socket's actor as messages.

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;

use weft::io::datagram::{listen_udp, DatagramOptions, DatagramProtocol, Dgram};
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Sends typed lines to the group, prints the others' lines.
struct Chat {
    /// Tags this copy's datagrams (they come back to it too).
    id: u32,
    name: String,
    group: SocketAddrV4,
}

impl DatagramProtocol for Chat {
    /// A line typed here.
    type Msg = String;

    fn bound(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        sock.join_multicast_v4(*self.group.ip(), Ipv4Addr::LOCALHOST)?;
        sock.set_multicast_interface_v4(Ipv4Addr::LOCALHOST)?;
        // Said once the group is joined: from now on this copy hears it.
        println!(
            "multicast_chat: listening on {}, group {}",
            sock.local_addr(),
            self.group
        );
        Ok(())
    }

    fn datagram(
        &mut self,
        _sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        _from: &Address,
    ) -> ActorResult {
        let text = String::from_utf8_lossy(data);
        // "<id> <name>: <line>"; our own come back and are not shown.
        let Some((id, said)) = text.split_once(' ') else {
            return Ok(());
        };
        if id != self.id.to_string() {
            println!("{said}");
        }
        Ok(())
    }

    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, line: String) -> ActorResult {
        let datagram = format!("{} {}: {line}", self.id, self.name);
        let to = Address::Inet(SocketAddr::V4(self.group));
        if let Err(e) = sock.send_to(datagram.as_bytes(), &to) {
            eprintln!("multicast_chat: not sent: {e}");
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "multicast_chat",
        "[NAME] [GROUP:PORT]",
        "A chat over IP multicast: run two or three in different terminals; each line typed in one appears in the others. No server: every copy joins the group 239.255.77.77 on the loopback interface and sends its lines there.",
    );
    let mut args = cli.args_at_most(2).iter().cloned();
    let name = args
        .next()
        .unwrap_or_else(|| std::process::id().to_string());
    let group_arg = args.next().unwrap_or_else(|| "239.255.77.77:7007".into());
    let group: SocketAddrV4 = match group_arg.parse() {
        Ok(g) if SocketAddrV4::ip(&g).is_multicast() => g,
        _ => {
            cli.fail(format!(
                "{group_arg:?} is not an IPv4 multicast GROUP:PORT (224.0.0.0/4)"
            ));
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "multicast_chat: cannot start the runtime: {}",
                cli::chain(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, group.port()));
    let chat = Chat {
        id: std::process::id(),
        name,
        group,
    };
    let sock = match listen_udp(
        rt.handle(),
        bind,
        DatagramOptions::new().reuse_addr(true),
        chat,
    ) {
        Ok(sock) => sock,
        Err(e) => {
            eprintln!("multicast_chat: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let handle = rt.handle().clone();
    rt.handle().on_startup(move || {
        // Standard input on a plain thread: each line becomes a message
        // to the socket's actor; the end of input ends the program.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if sock.send(line).is_err() {
                    break;
                }
            }
            handle.shutdown();
        });
    });
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multicast_chat: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
