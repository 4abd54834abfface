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
    node.register("echo", &echo);
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

/// A peer written from the protocol description, over a real socket:
/// completes the handshake with `cookie`; the stream after it.
fn fake_peer(port: u16, cookie: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    use weft::dist::handshake::{digest, FLAGS};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let name = b"fake@127.0.0.1";
    let mut m = vec![b'N'];
    m.extend_from_slice(&FLAGS.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&(name.len() as u16).to_be_bytes());
    m.extend_from_slice(name);
    let frame = |m: &[u8]| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(m);
        f
    };
    s.write_all(&frame(&m)).unwrap();
    let read_msg = |s: &mut std::net::TcpStream| {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut m).unwrap();
        m
    };
    assert_eq!(read_msg(&mut s), b"sok");
    let challenge = read_msg(&mut s);
    let theirs = u32::from_be_bytes(challenge[9..13].try_into().unwrap());
    let mut reply = vec![b'r'];
    reply.extend_from_slice(&77u32.to_be_bytes());
    reply.extend_from_slice(&digest(cookie, theirs));
    s.write_all(&frame(&reply)).unwrap();
    let ack = read_msg(&mut s);
    assert_eq!(&ack[1..], &digest(cookie, 77));
    s
}

/// The fake peer's `net_adm:ping`: a REG_SEND to `net_kernel`, then
/// packets read (answering nothing) until the node's non-tick answer.
/// Once it is back, the node has handled everything sent before it.
fn ping_round_trip(peer: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    use weft::dist::eetf::Pid;
    use weft::dist::IntoTerm;
    let me = Pid::new("fake@127.0.0.1", 1, 0, 1);
    let control = (6i32, me.clone(), Atom::from(""), Atom::from("net_kernel")).into_term();
    let call = (
        Atom::from("$gen_call"),
        (me, 7i32),
        (Atom::from("is_auth"), Atom::from("fake@127.0.0.1")),
    )
        .into_term();
    let mut body = vec![112u8];
    control.encode(&mut body).unwrap();
    call.encode(&mut body).unwrap();
    let mut packet = (body.len() as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    peer.write_all(&packet).unwrap();
    loop {
        let mut len = [0u8; 4];
        peer.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        peer.read_exact(&mut body).unwrap();
        if !body.is_empty() {
            return;
        }
    }
}

/// Reads one 4-byte tick, or `None` once the node has dropped the
/// connection (EOF or reset).
fn read_tick(peer: &mut std::net::TcpStream) -> Option<[u8; 4]> {
    use std::io::Read;
    let mut tick = [0u8; 4];
    match peer.read_exact(&mut tick) {
        Ok(()) => Some(tick),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => panic!("neither a tick nor a drop: {e}"),
    }
}

/// Ticks, on the manual clock (no sleeps: a ping round trip orders the
/// peer's bytes before each clock step, and the node arms each tick
/// before it sends the previous one): a peer heard from every 15 s stays
/// for two minutes; one silent from then on is dropped once 60 s pass;
/// a connection that never handshakes is dropped after 10 s.
#[test]
fn a_silent_peer_is_dropped_after_the_tick_time_and_a_ticking_one_stays() {
    use std::io::Read;
    let epmd = Epmd::start();
    let (rt, clock) = manual_runtime(2);
    let node = node(&rt, &epmd, "weft_tick");
    let mut peer = fake_peer(node.port(), "secret");
    for _ in 0..8 {
        ping_round_trip(&mut peer);
        clock.advance(Duration::from_secs(15));
        assert_eq!(read_tick(&mut peer), Some([0, 0, 0, 0]), "the node ticks");
    }
    assert_eq!(node.connected_nodes(), ["fake@127.0.0.1"]);
    // Silent from now: ticks for 45 s, dropped at 60 s.
    ping_round_trip(&mut peer);
    let mut ticks = 0;
    loop {
        clock.advance(Duration::from_secs(15));
        match read_tick(&mut peer) {
            Some(_) => ticks += 1,
            None => break,
        }
        assert!(
            ticks <= 4,
            "still connected after {} s of silence",
            ticks * 15
        );
    }
    assert!(
        ticks >= 3,
        "dropped after only {} s of silence",
        (ticks + 1) * 15
    );
    eventually("the silent peer is forgotten", || {
        node.connected_nodes().is_empty()
    });

    // A connection that never sends the handshake: kept for 9 s of the
    // manual clock, dropped by 30 s (stepped a second at a time: the
    // timer is armed when the node has accepted it).
    let mut mute = std::net::TcpStream::connect(("127.0.0.1", node.port())).unwrap();
    mute.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 1];
    let mut waited = 0;
    let dropped = loop {
        clock.advance(Duration::from_secs(1));
        waited += 1;
        match mute.read(&mut buf) {
            Ok(0) => break waited,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break waited,
            Err(_) => {} // the read timed out: still open
            Ok(n) => panic!("{n} bytes from a node that should say nothing"),
        }
        assert!(waited < 30, "a mute connection was kept 30 s");
    };
    assert!(
        dropped >= 10,
        "dropped after {dropped} s, before the 10 s timeout"
    );
}

/// Collects what reaches a node's inbox.
struct Inbox(mpsc::Sender<Incoming>);

impl Actor for Inbox {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let _ = self.0.send(msg);
        Ok(())
    }
}

fn inbox(rt: &Runtime, node: &Node) -> mpsc::Receiver<Incoming> {
    let (tx, rx) = mpsc::channel();
    node.set_inbox(rt.handle().spawn(Inbox(tx)).recipient());
    rx
}

#[test]
fn weft_connects_to_erl_and_sends_to_a_registered_process() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_dial");
    let answers = inbox(&rt, &node);
    // An erl node with a process registered as `doubler`: it answers
    // {From, N} with {doubled, 2N} to From, then halts.
    let (_erl, lines) = spawn_with_lines(
        Command::new("erl")
            .args([
                "-name",
                "target@127.0.0.1",
                "-setcookie",
                "secret",
                "-noshell",
                "-eval",
                "register(doubler, self()), io:format(\"ready~n\"), \
                 receive {From, N} -> From ! {doubled, 2 * N} after 10000 -> ok end, \
                 timer:sleep(500), halt().",
            ])
            .env("ERL_EPMD_PORT", epmd.port.to_string()),
    );
    assert_eq!(recv(&lines), "ready");
    node.connect("target@127.0.0.1", WAIT)
        .expect("connects to erl");
    assert_eq!(node.connected_nodes(), ["target@127.0.0.1"]);
    let msg = Term::Tuple(Tuple::from(vec![
        Term::Pid(node.pid()),
        Term::FixInteger(21.into()),
    ]));
    node.send_named("doubler", "target@127.0.0.1", msg).unwrap();
    let got = recv(&answers);
    assert_eq!(got.message.to_string(), "{'doubled',42}");
    // Unknown nodes and hosts are values, not hangs.
    assert!(matches!(
        node.connect("nobody@127.0.0.1", WAIT),
        Err(weft::dist::ConnectNodeError::NoSuchNode { .. })
    ));
    assert!(matches!(
        node.connect("no-at-sign", WAIT),
        Err(weft::dist::ConnectNodeError::BadName(_))
    ));
}

/// Nothing connected first: sending to a node dials it (EPMD, then the
/// handshake) and the message goes once connected; a weft actor known
/// only by its pid (no name) gets erl's answer, is monitored from erl by
/// that pid (`DOWN` with its exit reason), and once gone its pid answers
/// `noproc`. A node that does not exist: what was sent is dropped and a
/// monitor of it fires with `noconnection`.
#[test]
fn sending_connects_on_first_use_and_unnamed_actors_have_pids() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_first");
    let (tx, seen) = mpsc::channel();
    let worker = rt.handle().spawn(Collect(tx));
    let worker_pid = node.pid_for(&worker);
    let (_erl, lines) = spawn_with_lines(
        Command::new("erl")
            .args([
                "-name",
                "asker@127.0.0.1",
                "-setcookie",
                "secret",
                "-noshell",
                "-eval",
                "register(asker, self()), io:format(\"ready~n\"), \
                 receive {ask, Pid} -> \
                     R = erlang:monitor(process, Pid), Pid ! {answer, 42}, Pid ! fail, \
                     receive {'DOWN', R, process, Pid, Why} -> io:format(\"~p~n\", [Why]) \
                     after 5000 -> io:format(\"timeout~n\") end, \
                     R2 = erlang:monitor(process, Pid), \
                     receive {'DOWN', R2, process, Pid, Why2} -> io:format(\"~p~n\", [Why2]) \
                     after 5000 -> io:format(\"timeout~n\") end \
                 after 10000 -> io:format(\"no ask~n\") end, \
                 receive stop -> ok after 10000 -> ok end, halt().",
            ])
            .env("ERL_EPMD_PORT", epmd.port.to_string()),
    );
    assert_eq!(recv(&lines), "ready");
    assert!(node.connected_nodes().is_empty());
    let ask = Term::Tuple(Tuple::from(vec![
        Term::Atom(Atom::from("ask")),
        Term::Pid(worker_pid.clone()),
    ]));
    node.send_named("asker", "asker@127.0.0.1", ask)
        .expect("queued while the node is dialed");
    let answer = recv(&seen);
    assert_eq!(answer.message.to_string(), "{'answer',42}");
    assert_eq!(answer.to, "", "sent to a pid without a name");
    assert_eq!(node.connected_nodes(), ["asker@127.0.0.1"]);
    assert_eq!(recv(&lines), "{error,<<\"told to fail\">>}");
    // Released with the actor: erl's new monitor of it finds nobody.
    assert_eq!(recv(&lines), "noproc");

    // A node nobody registered: the dial fails; the monitor fires.
    let (tx, downs) = mpsc::channel();
    let to = rt.handle().spawn(Downs(tx)).recipient();
    node.send_named("x", "ghost@127.0.0.1", Term::Atom(Atom::from("lost")))
        .expect("queued for the dial");
    let reference = node.monitor_named("x", "ghost@127.0.0.1", to).unwrap();
    let down = recv(&downs);
    assert_eq!(
        (down.reference, down.reason.to_string()),
        (reference, "'noconnection'".to_string())
    );
    assert_eq!(
        node.send_named("x", "no-at-sign", Term::Atom(Atom::from("x"))),
        Err(weft::dist::DistSendError::BadNode("no-at-sign".into()))
    );
    eventually("the failed dial is forgotten", || {
        node.connected_nodes() == ["asker@127.0.0.1"]
    });
}

/// Two weft nodes that first send to each other at the same moment (a
/// simultaneous connect: each dials the other): both messages arrive and
/// each ends with one connection to the other, every round.
#[test]
fn two_weft_nodes_dialing_each_other_at_once_settle_on_one_connection() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    for round in 0..5 {
        let a = node(&rt, &epmd, &format!("sim_a{round}"));
        let b = node(&rt, &epmd, &format!("sim_b{round}"));
        let (a_name, b_name) = (a.name().to_string(), b.name().to_string());
        let a_in = inbox(&rt, &a);
        let b_in = inbox(&rt, &b);
        let a_pid = a.pid();
        let b_pid = b.pid();
        let (sa, sb) = (a.sender(), b.sender());
        let t = std::thread::spawn(move || sa.send(&b_pid, Term::Atom(Atom::from("from_a"))));
        sb.send(&a_pid, Term::Atom(Atom::from("from_b"))).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(recv(&b_in).message.to_string(), "'from_a'", "round {round}");
        assert_eq!(recv(&a_in).message.to_string(), "'from_b'", "round {round}");
        eventually("one connection each way", || {
            a.connected_nodes() == [b_name.clone()] && b.connected_nodes() == [a_name.clone()]
        });
        // And it carries traffic both ways afterwards.
        a.send(&b.pid(), Term::Atom(Atom::from("again"))).unwrap();
        assert_eq!(recv(&b_in).message.to_string(), "'again'");
    }
}

#[test]
fn two_weft_nodes_talk_through_the_same_protocol_and_a_wrong_cookie_is_named() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let a = node(&rt, &epmd, "weft_a");
    let b = node(&rt, &epmd, "weft_b");
    let a_inbox = inbox(&rt, &a);
    let (tx, seen) = mpsc::channel();
    let echo = rt.handle().spawn(Echo {
        node: b.sender(),
        seen: tx,
    });
    b.register("echo", &echo);
    a.connect("weft_b@127.0.0.1", WAIT).expect("a reaches b");
    eventually("b sees a", || b.connected_nodes() == ["weft_a@127.0.0.1"]);
    let msg = Term::Tuple(Tuple::from(vec![
        Term::Pid(a.pid()),
        Term::Atom(Atom::from("hi")),
    ]));
    a.send_named("echo", "weft_b@127.0.0.1", msg).unwrap();
    recv(&seen);
    assert_eq!(recv(&a_inbox).message.to_string(), "{'echoed','hi'}");

    // A third node with another cookie: refused, and told why by name.
    let c = Node::start(
        rt.handle(),
        "weft_c@127.0.0.1",
        "other",
        NodeOptions::new().epmd_port(epmd.port),
    )
    .unwrap();
    let err = c.connect("weft_b@127.0.0.1", WAIT).unwrap_err();
    assert!(
        matches!(err, weft::dist::ConnectNodeError::Failed { .. }),
        "{err:?}"
    );
    eventually("b counted the refusal", || b.auth_failures() == 1);
}

/// Forwards what it gets to a channel; fails when told `fail`.
struct Collect(mpsc::Sender<Incoming>);

impl Actor for Collect {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if msg.message.to_string() == "'fail'" {
            return Err("told to fail".into());
        }
        let _ = self.0.send(msg);
        Ok(())
    }
}

/// Stops when told `stop` (normally) or `fail` (with an error).
struct Stoppable;

impl Actor for Stoppable {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg.message.to_string().as_str() {
            "'stop'" => ctx.stop(),
            "'fail'" => return Err("told to fail".into()),
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn erl_monitors_weft_actors_and_gets_down_with_their_exit_reasons() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_mon");
    let calm = rt.handle().spawn(Stoppable);
    let angry = rt.handle().spawn(Stoppable);
    node.register("calm", &calm);
    node.register("angry", &angry);
    let calm_pid = node.pid_of("calm").unwrap();
    assert_eq!(calm_pid.node.name, "weft_mon@127.0.0.1");
    let out = epmd.erl(
        "watcher",
        "secret",
        "N = 'weft_mon@127.0.0.1', true = net_kernel:connect_node(N), \
         Down = fun(R) -> receive {'DOWN', R, process, _, Why} -> Why after 5000 -> timeout end end, \
         R1 = erlang:monitor(process, {calm, N}), {calm, N} ! stop, \
         R2 = erlang:monitor(process, {angry, N}), {angry, N} ! fail, \
         R3 = erlang:monitor(process, {nobody, N}), \
         io:format(\"~p~n~p~n~p~n\", [Down(R1), Down(R2), Down(R3)]), halt().",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["normal", "{error,<<\"told to fail\">>}", "noproc"],
        "{out}"
    );
    assert!(calm.is_stopped() && angry.is_stopped());
}

/// Collects the remote downs a node's monitors deliver.
struct Downs(mpsc::Sender<weft::dist::RemoteDown>);

impl Actor for Downs {
    type Msg = weft::dist::RemoteDown;
    fn handle(&mut self, msg: weft::dist::RemoteDown, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let _ = self.0.send(msg);
        Ok(())
    }
}

#[test]
fn weft_monitors_erl_processes_down_noproc_and_noconnection() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_watch");
    let (tx, downs) = mpsc::channel();
    let to = rt.handle().spawn(Downs(tx)).recipient();
    let (mut erl, lines) = spawn_with_lines(
        Command::new("erl")
            .args([
                "-name",
                "far@127.0.0.1",
                "-setcookie",
                "secret",
                "-noshell",
                "-eval",
                "register(target, spawn(fun() -> receive die -> exit(bye) end end)), \
                 register(other, spawn(fun() -> receive _ -> ok end end)), \
                 io:format(\"ready~n\"), timer:sleep(infinity).",
            ])
            .env("ERL_EPMD_PORT", epmd.port.to_string()),
    );
    assert_eq!(recv(&lines), "ready");
    let far = "far@127.0.0.1";
    node.connect(far, WAIT).unwrap();
    // An exit reason.
    let r1 = node.monitor_named("target", far, to.clone()).unwrap();
    node.send_named("target", far, Term::Atom(Atom::from("die")))
        .unwrap();
    let d = recv(&downs);
    assert_eq!(
        (d.reference.clone(), d.reason.to_string()),
        (r1, "'bye'".to_string())
    );
    // Nobody by that name.
    node.monitor_named("nobody", far, to.clone()).unwrap();
    assert_eq!(recv(&downs).reason.to_string(), "'noproc'");
    // The node is killed: the monitor fires with noconnection.
    let r3 = node.monitor_named("other", far, to).unwrap();
    let _ = erl.kill();
    let d = recv(&downs);
    assert_eq!(
        (d.reference, d.reason.to_string()),
        (r3, "'noconnection'".to_string())
    );
    eventually("the node is gone", || node.connected_nodes().is_empty());
}

/// Links across nodes, with an erl process that traps exits: a weft
/// actor's failure reaches it as `{'EXIT', Pid, Reason}`; an erl process
/// exiting with `boom` takes its linked weft actor with it, one exiting
/// `normal` does not; the erl node going away takes the rest
/// (`noconnection`).
#[test]
fn links_cross_nodes_both_ways() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_link");
    let names = ["doomed", "victim", "survivor", "held"];
    let actors: Vec<_> = names
        .iter()
        .map(|name| {
            let a = rt.handle().spawn(Stoppable);
            node.register(name, &a);
            a
        })
        .collect();
    let (mut erl, lines) = spawn_with_lines(
        Command::new("erl")
            .args([
                "-name",
                "linker@127.0.0.1",
                "-setcookie",
                "secret",
                "-noshell",
                "-eval",
                "process_flag(trap_exit, true), register(linker, self()), io:format(\"ready~n\"), \
                 receive {pids, Doomed, Victim, Survivor, Held} -> ok end, \
                 link(Doomed), link(Held), \
                 Spawn = fun(P, Why) -> spawn(fun() -> link(P), receive go -> exit(Why) end end) end, \
                 V = Spawn(Victim, boom), S = Spawn(Survivor, normal), \
                 V ! go, S ! go, Doomed ! fail, \
                 receive {'EXIT', Doomed, R} -> io:format(\"~p~n\", [R]) \
                 after 5000 -> io:format(\"timeout~n\") end, \
                 receive stop -> halt() after 10000 -> halt() end.",
            ])
            .env("ERL_EPMD_PORT", epmd.port.to_string()),
    );
    assert_eq!(recv(&lines), "ready");
    node.connect("linker@127.0.0.1", WAIT).unwrap();
    let pids: Vec<Term> = names
        .iter()
        .map(|n| Term::Pid(node.pid_of(n).unwrap()))
        .collect();
    let mut msg = vec![Term::Atom(Atom::from("pids"))];
    msg.extend(pids);
    node.send_named("linker", "linker@127.0.0.1", Term::Tuple(Tuple::from(msg)))
        .unwrap();
    assert_eq!(recv(&lines), "{error,<<\"told to fail\">>}");
    eventually("the victim went with its linked process", || {
        actors[1].is_stopped()
    });
    assert!(!actors[2].is_stopped(), "a normal exit takes no one along");
    assert!(!actors[3].is_stopped());
    let _ = erl.kill();
    eventually("the held actor went with the connection", || {
        actors[3].is_stopped()
    });
    assert!(!actors[2].is_stopped());
}

/// Links made by weft: an erl process's exit stops the linked weft
/// actor, and a weft actor's failure reaches a linked erl process.
#[test]
fn weft_links_to_erl_processes() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_out");
    let answers = inbox(&rt, &node);
    let holder = rt.handle().spawn(Stoppable);
    let holder2 = rt.handle().spawn(Stoppable);
    // Pids without names.
    let holder_pid = node.pid_for(&holder);
    let holder2_pid = node.pid_for(&holder2);
    assert_eq!(node.pid_for(&holder), holder_pid, "one pid per actor");
    assert_ne!(holder_pid, holder2_pid);
    let (_erl, lines) = spawn_with_lines(
        Command::new("erl")
            .args([
                "-name",
                "peer@127.0.0.1",
                "-setcookie",
                "secret",
                "-noshell",
                "-eval",
                "process_flag(trap_exit, true), register(target, self()), \
                 Q = spawn(fun() -> receive go -> exit(gone) end end), \
                 io:format(\"ready~n\"), \
                 receive {hello, From} -> From ! {me, self(), Q} end, \
                 receive linked -> ok end, Q ! go, \
                 receive {'EXIT', _, R} -> io:format(\"~p~n\", [R]) \
                 after 5000 -> io:format(\"timeout~n\") end, \
                 receive stop -> ok after 10000 -> ok end, halt().",
            ])
            .env("ERL_EPMD_PORT", epmd.port.to_string()),
    );
    assert_eq!(recv(&lines), "ready");
    let peer = "peer@127.0.0.1";
    node.connect(peer, WAIT).unwrap();
    let hello = Term::Tuple(Tuple::from(vec![
        Term::Atom(Atom::from("hello")),
        Term::Pid(node.pid()),
    ]));
    node.send_named("target", peer, hello).unwrap();
    let me = recv(&answers).message;
    let Term::Tuple(t) = me else { panic!("{me:?}") };
    let (Term::Pid(target), Term::Pid(quitter)) = (&t.elements[1], &t.elements[2]) else {
        panic!("{t:?}")
    };
    node.link(&holder_pid, target).unwrap();
    node.link(&holder2_pid, quitter).unwrap();
    let stranger = weft::dist::eetf::Pid::new(node.name(), 4242, 0, holder_pid.creation);
    assert_eq!(
        node.link(&stranger, target),
        Err(weft::dist::DistSendError::NoSuchActor(stranger.to_string()))
    );
    node.send_named("target", peer, Term::Atom(Atom::from("linked")))
        .unwrap();
    eventually("holder2 went with the quitter", || holder2.is_stopped());
    holder
        .send(Incoming {
            from: None,
            to: String::new(),
            message: Term::Atom(Atom::from("fail")),
        })
        .unwrap();
    assert_eq!(recv(&lines), "{error,<<\"told to fail\">>}");
}

/// A node that stops reading cannot make this one buffer without bound:
/// sends are refused as `Backlogged` once the connection is past its
/// high watermark, the connection stays, and sends go through again
/// once the peer reads.
#[test]
fn a_peer_that_does_not_read_makes_sends_backlogged_not_buffered() {
    use std::io::Read;
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_flow");
    let mut peer = fake_peer(node.port(), "secret");
    eventually("connected", || node.connected_nodes() == ["fake@127.0.0.1"]);
    let to = weft::dist::eetf::Pid::new("fake@127.0.0.1", 1, 0, 1);
    let chunk = Term::Binary(weft::dist::eetf::Binary::from(vec![7u8; 64 * 1024]));
    let mut sent = 0usize;
    let refused = loop {
        match node.send(&to, chunk.clone()) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 2000, "128 MiB taken without push-back");
    };
    assert_eq!(
        refused,
        weft::dist::DistSendError::Backlogged("fake@127.0.0.1".into())
    );
    // Well under the 64 MiB at which a stuck peer is dropped.
    assert!(sent * 64 < 32 * 1024, "{sent} chunks of 64 KiB taken");
    assert_eq!(node.connected_nodes(), ["fake@127.0.0.1"]);
    // The peer reads: sends resume.
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + WAIT;
    loop {
        while let Ok(n) = peer.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        if node.send(&to, chunk.clone()).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "sends never resumed");
    }
}

/// Answers `{From, Numbers, Label, Scale, Flag}` with `{Label, Sum * Scale}`
/// — typed on both sides of the wire.
struct Summer(DistSender);

impl Actor for Summer {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        type Question = (weft::dist::eetf::Pid, Vec<i64>, String, f64, bool);
        let (from, numbers, label, scale, flag): Question = msg.decode()?;
        let sum: i64 = numbers.iter().sum();
        let answer = if flag { sum as f64 * scale } else { 0.0 };
        self.0.send(&from, (label, answer))?;
        Ok(())
    }
}

#[test]
fn rust_values_cross_the_wire_as_erlang_terms() {
    let epmd = Epmd::start();
    let rt = runtime(2);
    let node = node(&rt, &epmd, "weft_typed");
    let summer = rt.handle().spawn(Summer(node.sender()));
    node.register("summer", &summer);
    let out = epmd.erl(
        "typist",
        "secret",
        "N = 'weft_typed@127.0.0.1', true = net_kernel:connect_node(N), \
         {summer, N} ! {self(), [1, 2, 3, 4], <<\"total\">>, 1.5, true}, \
         receive R -> io:format(\"~p~n\", [R]) after 5000 -> io:format(\"timeout~n\") end, \
         {summer, N} ! {self(), not_a_list, <<\"x\">>, 1.0, true}, \
         io:format(\"~p~n\", [net_adm:ping(N)]), halt().",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["{<<\"total\">>,15.0}", "pong"], "{out}");
    // The badly shaped question failed only the summer.
    eventually("the summer failed on the wrong shape", || {
        summer.is_stopped()
    });
}
