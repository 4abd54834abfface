//! A chat server and three clients on four simulated hosts, for one
//! virtual hour, with a partition and a crash of the server's host: the
//! whole program runs on one thread, scheduled by a seed, on virtual time.
//!
//! Run:   cargo run --release --example sim_chat -- [SEED]
//!        (default: `WEFT_SEED`, else 1)
//! It prints `seed <n>`, `virtual <seconds>`, `trace <hex>`, how many
//! lines were delivered, and `in order: yes` if every client saw every
//! other client's lines in the order they were sent. Two runs with the
//! same seed print the same trace; another seed, another trace.
//!
//! The server (`chat:6667`) is an ordinary weft program: a room actor and
//! a supervised connection actor per client, relaying each line to the
//! others. Each client says a numbered line every 7 s and reconnects 2 s
//! after losing its connection. At 10 min `bob` is cut off from the
//! server until 20 min (his lines wait, then arrive); at 30 min the
//! server's host crashes (clients see resets and reconnect in vain) and
//! at 32 min it restarts and listens again.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use weft::prelude::*;
use weft::sim::SimNet;

#[path = "shared/cli.rs"]
mod cli;

const PORT: u16 = 6667;

/// The room: who is connected, and relaying.
struct Room {
    members: HashMap<u64, ConnRef<Member>>,
}

enum RoomMsg {
    Join(u64, ConnRef<Member>),
    Leave(u64),
    Say(u64, Vec<u8>),
}

impl Actor for Room {
    type Msg = RoomMsg;
    fn handle(&mut self, msg: RoomMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            RoomMsg::Join(id, conn) => {
                self.members.insert(id, conn);
            }
            RoomMsg::Leave(id) => {
                self.members.remove(&id);
            }
            RoomMsg::Say(from, line) => {
                // In id order, so the relay order is the program's, not
                // the hash map's.
                let mut ids: Vec<&u64> = self.members.keys().filter(|id| **id != from).collect();
                ids.sort();
                for id in ids {
                    let _ = self.members[id].send(line.clone());
                }
            }
        }
        Ok(())
    }
}

/// One client's connection on the server: lines in go to the room,
/// lines from the room go out.
struct Member {
    room: Addr<Room>,
    id: u64,
    input: Vec<u8>,
}

impl Protocol for Member {
    type Msg = Vec<u8>;
    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        self.id = conn.address().id().0;
        let _ = self.room.send(RoomMsg::Join(self.id, conn.address()));
        Ok(())
    }
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.input.extend_from_slice(data);
        while let Some(end) = self.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.input.drain(..=end).collect();
            let _ = self.room.send(RoomMsg::Say(self.id, line));
        }
        Ok(())
    }
    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, line: Vec<u8>) -> ActorResult {
        conn.write(&line)?;
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, _reason: &CloseReason) {
        let _ = self.room.send(RoomMsg::Leave(self.id));
    }
}

/// What the run found.
#[derive(Default)]
struct Tally {
    delivered: u64,
    out_of_order: u64,
}

/// A chat client: says a numbered line every 7 s while connected,
/// reconnects 2 s after losing its connection, and checks that each
/// other client's numbers only grow.
struct Person {
    name: String,
    handle: Handle,
    conn: Option<ConnRef<Line>>,
    said: u64,
    last: HashMap<String, u64>,
    tally: Arc<Mutex<Tally>>,
}

enum PersonMsg {
    Say,
    Connect,
    Heard(Vec<u8>),
    Lost,
}

impl Actor for Person {
    type Msg = PersonMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_interval(Duration::from_secs(7), MissedTicks::Skip, || PersonMsg::Say);
        ctx.send_self(PersonMsg::Connect);
        Ok(())
    }
    fn handle(&mut self, msg: PersonMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            PersonMsg::Connect => {
                let me = ctx.address();
                let line = Line {
                    to: me,
                    input: Vec::new(),
                };
                let connecting = connect_tcp(
                    &self.handle,
                    format!("chat:{PORT}").as_str(),
                    ConnectOptions::new().timeout(Duration::from_secs(5)),
                    line,
                );
                self.conn = Some(connecting.conn());
            }
            PersonMsg::Say => {
                if let Some(conn) = &self.conn {
                    self.said += 1;
                    let line = format!("{} {}\n", self.name, self.said);
                    let _ = conn.send(line.into_bytes());
                }
            }
            PersonMsg::Heard(line) => {
                let text = String::from_utf8_lossy(&line);
                let mut words = text.split_whitespace();
                if let (Some(who), Some(n)) = (words.next(), words.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    let mut tally = self.tally.lock();
                    tally.delivered += 1;
                    let last = self.last.entry(who.to_string()).or_insert(0);
                    if n <= *last {
                        tally.out_of_order += 1;
                    }
                    *last = n;
                }
            }
            PersonMsg::Lost => {
                self.conn = None;
                ctx.send_later(Duration::from_secs(2), PersonMsg::Connect);
            }
        }
        Ok(())
    }
}

/// A client's connection: lines to its person, and the loss of it.
struct Line {
    to: Addr<Person>,
    input: Vec<u8>,
}

impl Protocol for Line {
    type Msg = Vec<u8>;
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.input.extend_from_slice(data);
        while let Some(end) = self.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.input.drain(..=end).collect();
            let _ = self.to.send(PersonMsg::Heard(line));
        }
        Ok(())
    }
    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, line: Vec<u8>) -> ActorResult {
        conn.write(&line)?;
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, _reason: &CloseReason) {
        let _ = self.to.send(PersonMsg::Lost);
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "sim_chat",
        "[SEED]",
        "A chat server and three clients on simulated hosts for one virtual hour, \
         with a partition and a host crash; prints the seed, the virtual time, \
         the trace hash and whether every line arrived in order.",
    );
    let seed = match cli.args_at_most(1).first() {
        Some(s) => match s.parse::<u64>() {
            Ok(seed) => seed,
            Err(_) => cli.fail(format!("bad seed {s:?}; expected a number")),
        },
        None => weft::sim::seed_from_env(1),
    };
    let rt = match Runtime::builder().simulation(seed).build() {
        Ok(rt) => rt,
        Err(e) => return cli.error(e),
    };
    let sim = rt.handle().simulation().expect("a simulation");
    let net = match SimNet::install(rt.handle()) {
        Ok(net) => net,
        Err(e) => return cli.error(e),
    };
    let wall = std::time::Instant::now();

    let chat = net.host("chat");
    let handle = rt.handle().clone();
    chat.boot(move |host| {
        let room = handle.spawn(Room {
            members: HashMap::new(),
        });
        let made = listen_tcp(&handle, host.addr(PORT), ListenOptions::new(), move || {
            Member {
                room: room.clone(),
                id: 0,
                input: Vec::new(),
            }
        });
        if let Err(e) = made {
            eprintln!("sim_chat: {}", cli::chain(&e));
        }
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    for name in ["alice", "bob", "carol"] {
        let host = net.host(&format!("{name}-pc"));
        let (handle, tally) = (rt.handle().clone(), tally.clone());
        host.boot(move |_| {
            handle.spawn(Person {
                name: name.to_string(),
                handle: handle.clone(),
                conn: None,
                said: 0,
                last: HashMap::new(),
                tally: tally.clone(),
            });
        });
    }
    let bob = net.host("bob-pc");
    let minutes = |m: u64| Duration::from_secs(60 * m);
    sim.run_for(minutes(10));
    net.partition(&chat, &bob);
    sim.run_for(minutes(10));
    net.heal(&chat, &bob);
    sim.run_for(minutes(10));
    chat.crash();
    sim.run_for(minutes(2));
    chat.restart();
    sim.run_for(minutes(28));

    let tally = tally.lock();
    println!("seed {seed}");
    println!("virtual {}", sim.now().as_secs());
    println!("trace {:016x}", sim.trace_hash());
    println!(
        "delivered {} lines in {} turns",
        tally.delivered,
        sim.turns()
    );
    println!(
        "in order: {}",
        if tally.out_of_order == 0 { "yes" } else { "no" }
    );
    eprintln!("(wall time {:.2?})", wall.elapsed());
    if tally.out_of_order == 0 && tally.delivered > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
