//! A weft node in an Erlang cluster: it registers with EPMD, answers
//! `net_adm:ping`, and runs an actor registered as `echo` that answers
//! `{echo, From, Term}` from any BEAM process with `Term`.
//!
//! Run:   cargo run --release --example cluster_ping -- [NAME [COOKIE [HOST]]]
//!        (default name `weft`, the cookie from `~/.erlang.cookie`, the
//!        machine's short host name; EPMD on `ERL_EPMD_PORT` or 4369,
//!        which `epmd -daemon` or any `erl -sname` starts)
//! Talk:  it prints the `erl` command that joins it; in that shell:
//!          net_adm:ping('weft@HOST').                     -> pong
//!          {echo, 'weft@HOST'} ! {echo, self(), hello}, flush().
//!                                            -> Shell got hello
//! Stop:  Ctrl-C (or SIGTERM): it unregisters from EPMD.
//!
//! The distribution listener is on 127.0.0.1, so the host name must
//! resolve to a loopback address (Debian's `/etc/hosts` maps it so);
//! `erl -sname` finds the node through EPMD there.

use std::process::ExitCode;

use weft::dist::eetf::Term;
use weft::dist::{DistSender, Incoming, Node, NodeOptions};
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Answers `{echo, From, Term}` with `Term`.
struct Echo {
    node: DistSender,
}

impl Actor for Echo {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match &msg.message {
            Term::Tuple(t) => match t.elements.as_slice() {
                [Term::Atom(tag), Term::Pid(from), term] if tag.name == "echo" => {
                    if let Err(e) = self.node.send(from, term.clone()) {
                        println!("cluster_ping: cannot answer {from}: {e}");
                    }
                }
                _ => println!("cluster_ping: ignored {}", msg.message),
            },
            other => println!("cluster_ping: ignored {other}"),
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "cluster_ping",
        "[NAME [COOKIE [HOST]]]",
        "A weft node in an Erlang cluster: answers net_adm:ping and {echo, From, Term}.",
    );
    let args = cli.args_at_most(3);
    let name = args.first().map_or("weft", String::as_str);
    if name.is_empty() || name.contains('@') {
        cli.fail(format!("NAME is the part before @, not {name:?}"));
    }
    let cookie = match args.get(1) {
        Some(c) => c.clone(),
        None => {
            let home = std::env::var("HOME").unwrap_or_default();
            let path = std::path::Path::new(&home).join(".erlang.cookie");
            match std::fs::read_to_string(&path) {
                Ok(c) => c.trim().to_string(),
                Err(e) => cli.fail(format!(
                    "no COOKIE given and {} cannot be read ({e})",
                    path.display()
                )),
            }
        }
    };
    let host = match args.get(2) {
        Some(h) => h.clone(),
        // The short host name, as `erl -sname` uses it.
        None => match std::fs::read_to_string("/proc/sys/kernel/hostname") {
            Ok(h) => h
                .trim()
                .split('.')
                .next()
                .unwrap_or("localhost")
                .to_string(),
            Err(e) => return cli.error(e),
        },
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => return cli.error(e),
    };
    let full = format!("{name}@{host}");
    let node = match Node::start(rt.handle(), &full, &cookie, NodeOptions::new()) {
        Ok(node) => node,
        Err(e) => return cli.error(e),
    };
    let echo = rt.handle().spawn(Echo {
        node: node.sender(),
    });
    node.register("echo", &echo);
    let flag = if host.contains('.') {
        "-name"
    } else {
        "-sname"
    };
    println!(
        "cluster_ping: node {full} listening on 127.0.0.1:{}",
        node.port()
    );
    println!("cluster_ping: join it with: erl {flag} probe -setcookie {cookie}");
    let result = rt.run();
    drop(node);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli.error(e),
    }
}
