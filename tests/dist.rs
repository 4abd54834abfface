//! Erlang distribution against a real BEAM (Debian's `erlang-base`,
//! installed by `.ci/run`): an EPMD of the test's own on a free port, a
//! weft node registered with it, and `erl -name ...@127.0.0.1` nodes
//! that ping it, send to an actor registered on it, and use a wrong
//! cookie. Every process is guarded (killed with the test) and every
//! wait bounded.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use weft::dist::eetf::{Atom, Term, Tuple};
use weft::dist::{DistSender, Incoming, Node, NodeOptions};
use weft::prelude::*;

/// An EPMD on a free loopback port, killed when dropped.
struct Epmd {
    _child: ChildGuard,
    port: u16,
}

impl Epmd {
    fn start() -> Epmd {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn_guarded(
            Command::new("epmd")
                .args(["-port", &port.to_string(), "-address", "127.0.0.1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "epmd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Epmd {
            _child: child,
            port,
        }
    }

    /// `epmd -names` for this EPMD.
    fn names(&self) -> String {
        let out = Command::new("epmd")
            .args(["-port", &self.port.to_string(), "-names"])
            .output()
            .expect("epmd -names runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `erl -name NAME@127.0.0.1 -setcookie COOKIE` with `script`
    /// (which must halt); its standard output.
    fn erl(&self, name: &str, cookie: &str, script: &str) -> String {
        let child = spawn_guarded(
            Command::new("erl")
                .args([
                    "-name",
                    &format!("{name}@127.0.0.1"),
                    "-setcookie",
                    cookie,
                    "-noshell",
                    "-eval",
                    script,
                ])
                .env("ERL_EPMD_PORT", self.port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let (_status, out, _err) = collect(child);
        out
    }
}

fn node(rt: &Runtime, epmd: &Epmd, name: &str) -> Node {
    Node::start(
        rt.handle(),
        &format!("{name}@127.0.0.1"),
        "secret",
        NodeOptions::new().epmd_port(epmd.port),
    )
    .expect("the node starts")
}

#[test]
fn erl_pings_a_weft_node_registered_with_epmd_until_it_stops() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_ping");
    let names = epmd.names();
    assert!(
        names.contains(&format!("name weft_ping at port {}", node.port())),
        "{names}"
    );
    let out = epmd.erl(
        "probe",
        "secret",
        "io:format(\"~p~n\", [net_adm:ping('weft_ping@127.0.0.1')]), halt().",
    );
    assert_eq!(out.trim(), "pong");
    assert_eq!(node.auth_failures(), 0);
    drop(node);
    let deadline = Instant::now() + WAIT;
    while epmd.names().contains("weft_ping") {
        assert!(
            Instant::now() < deadline,
            "still registered after the node stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_wrong_cookie_is_refused_and_counted() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_cookie");
    let out = epmd.erl(
        "intruder",
        "not-the-cookie",
        "io:format(\"~p~n\", [net_adm:ping('weft_cookie@127.0.0.1')]), halt().",
    );
    assert_eq!(out.trim(), "pang");
    eventually("the refusal is counted", || node.auth_failures() >= 1);
    assert!(node.connected_nodes().is_empty());
}

/// Answers `{From, Term}` with `{echoed, Term}` to `From`.
struct Echo {
    node: DistSender,
    seen: mpsc::Sender<Term>,
}

impl Actor for Echo {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let _ = self.seen.send(msg.message.clone());
        if let Term::Tuple(t) = msg.message {
            if let [Term::Pid(from), term] = t.elements.as_slice() {
                let reply = Term::Tuple(Tuple::from(vec![
                    Term::Atom(Atom::from("echoed")),
                    term.clone(),
                ]));
                self.node.send(from, reply)?;
            }
        }
        Ok(())
    }
}

#[test]
fn erl_sends_to_a_registered_weft_actor_and_gets_its_answer() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_echo");
    let (tx, seen) = mpsc::channel();
    let echo = rt.handle().spawn(Echo {
        node: node.sender(),
        seen: tx,
    });
    node.register("echo", echo.recipient());
    let out = epmd.erl(
        "asker",
        "secret",
        "true = net_kernel:connect_node('weft_echo@127.0.0.1'), \
         {echo, 'weft_echo@127.0.0.1'} ! {self(), {hello, [1,2,3], <<\"bin\">>}}, \
         receive R -> io:format(\"~p~n\", [R]) after 5000 -> io:format(\"timeout~n\") end, \
         halt().",
    );
    assert_eq!(out.trim(), "{echoed,{hello,[1,2,3],<<\"bin\">>}}");
    let got = recv(&seen);
    let Term::Tuple(t) = got else {
        panic!("{got:?}")
    };
    assert!(matches!(t.elements[0], Term::Pid(ref p) if p.node.name == "asker@127.0.0.1"));
    // A name nobody registered: dropped, as Erlang does, and the
    // connection stays.
    let out = epmd.erl(
        "asker2",
        "secret",
        "true = net_kernel:connect_node('weft_echo@127.0.0.1'), \
         {nobody, 'weft_echo@127.0.0.1'} ! hi, \
         io:format(\"~p~n\", [net_adm:ping('weft_echo@127.0.0.1')]), halt().",
    );
    assert_eq!(out.trim(), "pong");
}

/// The example as its doc comment says: it prints the `erl` command, and
/// an `erl` started that way pings it and gets its echo.
#[test]
fn cluster_ping_answers_ping_and_echo_as_its_doc_says() {
    let epmd = Epmd::start();
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/cluster_ping");
    assert!(example.exists(), "cargo test builds the examples first");
    let (_guard, lines) = spawn_with_lines(
        Command::new(example)
            .args(["weft_ex", "excookie", "127.0.0.1"])
            .env("ERL_EPMD_PORT", epmd.port.to_string()),
    );
    assert!(recv(&lines).starts_with("cluster_ping: node weft_ex@127.0.0.1 listening on"));
    let join = recv(&lines);
    assert!(
        join.ends_with("erl -name probe -setcookie excookie"),
        "{join}"
    );
    let out = epmd.erl(
        "probe",
        "excookie",
        "pong = net_adm:ping('weft_ex@127.0.0.1'), \
         {echo, 'weft_ex@127.0.0.1'} ! {echo, self(), hello}, \
         receive R -> io:format(\"~p~n\", [R]) after 5000 -> io:format(\"timeout~n\") end, \
         halt().",
    );
    assert_eq!(out.trim(), "hello");
}
