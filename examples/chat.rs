//! A line-based chat server: every connection is an actor, and a room
//! actor broadcasts each line to everybody else.
//!
//! Run:   cargo run --release --example chat [ADDR]      (default 127.0.0.1:7002)
//! Talk:  nc 127.0.0.1 7002      (in two or more terminals; `/nick NAME`
//!        renames you, `/who` lists who is here, `/quit` leaves)
//! Stop:  Ctrl-C (or SIGTERM).
//!
//! A slow client never slows the others: the room sends without waiting,
//! and a client whose mailbox is full or whose socket is not draining
//! (its write buffer passed the high watermark) has lines dropped; after
//! 256 dropped in a row (it is not reading at all) it is disconnected,
//! and the room says so. Lines longer than 4 KiB are refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use weft::actors::ActorId;
use weft::prelude::*;

const MAX_LINE: usize = 4096;
const MAX_DROPPED: u64 = 256;

/// The room: who is here, and broadcasting.
struct Room {
    /// Name, connection, and lines dropped in a row because its mailbox
    /// was full.
    members: HashMap<ActorId, (String, ConnRef<Client>, u64)>,
}

enum RoomMsg {
    Join(ActorId, ConnRef<Client>),
    Line(ActorId, String),
    Nick(ActorId, String),
    Who(ActorId),
    Leave(ActorId, String),
}

impl Room {
    fn broadcast(&mut self, from: Option<ActorId>, text: &str) {
        let line: Arc<str> = Arc::from(format!("{text}\n"));
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        let mut ok = Vec::new();
        for (id, (_, conn, _)) in &self.members {
            if Some(*id) == from {
                continue;
            }
            // Never wait for one client: a full mailbox drops the line
            // for that client only (the client counts it).
            match conn.send(ClientMsg::Line(line.clone())) {
                Ok(()) => ok.push(*id),
                Err(e) if e.is_stopped() => gone.push(*id),
                Err(_) => slow.push(*id),
            }
        }
        for id in gone {
            self.members.remove(&id);
        }
        for id in ok {
            if let Some(member) = self.members.get_mut(&id) {
                member.2 = 0;
            }
        }
        for id in slow {
            let Some((name, conn, dropped)) = self.members.get_mut(&id) else {
                continue;
            };
            *dropped += 1;
            if *dropped == MAX_DROPPED {
                eprintln!("chat: {name} too slow ({dropped} lines dropped); disconnecting");
                conn.abort();
            }
        }
    }

    fn name(&self, id: ActorId) -> String {
        self.members
            .get(&id)
            .map_or_else(|| format!("guest{}", id.0), |(n, _, _)| n.clone())
    }
}

impl Actor for Room {
    type Msg = RoomMsg;

    fn handle(&mut self, msg: RoomMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            RoomMsg::Join(id, conn) => {
                let name = format!("guest{}", id.0);
                let _ = conn.send(ClientMsg::Line(Arc::from(format!(
                    "* welcome, {name}; {} others here\n",
                    self.members.len()
                ))));
                self.members.insert(id, (name.clone(), conn, 0));
                self.broadcast(Some(id), &format!("* {name} joined"));
            }
            RoomMsg::Line(id, text) => {
                let name = self.name(id);
                self.broadcast(Some(id), &format!("<{name}> {text}"));
            }
            RoomMsg::Nick(id, new) => {
                let old = self.name(id);
                if let Some(entry) = self.members.get_mut(&id) {
                    entry.0 = new.clone();
                }
                self.broadcast(None, &format!("* {old} is now {new}"));
            }
            RoomMsg::Who(id) => {
                let mut names: Vec<&str> =
                    self.members.values().map(|(n, _, _)| n.as_str()).collect();
                names.sort_unstable();
                if let Some((_, conn, _)) = self.members.get(&id) {
                    let _ = conn.send(ClientMsg::Line(Arc::from(format!(
                        "* here: {}\n",
                        names.join(", ")
                    ))));
                }
            }
            RoomMsg::Leave(id, why) => {
                if let Some((name, _, _)) = self.members.remove(&id) {
                    self.broadcast(None, &format!("* {name} left ({why})"));
                }
            }
        }
        Ok(())
    }
}

/// One chat client's connection.
struct Client {
    room: Addr<Room>,
    me: Option<ActorId>,
    line: Vec<u8>,
    dropped: u64,
}

enum ClientMsg {
    /// A line for this client.
    Line(Arc<str>),
}

impl Client {
    fn drop_line(&mut self, conn: &mut Conn<'_, '_, Self>) {
        self.dropped += 1;
        if self.dropped == MAX_DROPPED {
            eprintln!(
                "chat: {:?} not reading, {} lines dropped in a row; disconnecting",
                conn.peer_addr(),
                self.dropped
            );
            conn.abort();
        }
    }

    fn command(&mut self, conn: &mut Conn<'_, '_, Self>, line: &str) -> ActorResult {
        let me = conn.ctx().id();
        if let Some(nick) = line.strip_prefix("/nick ") {
            let nick = nick.trim();
            if nick.is_empty() || nick.len() > 32 || nick.contains(char::is_whitespace) {
                conn.write(b"* a nick is 1 to 32 characters without spaces\n")?;
            } else {
                let _ = conn
                    .ctx()
                    .send(&self.room, RoomMsg::Nick(me, nick.to_string()));
            }
        } else if line == "/who" {
            let _ = conn.ctx().send(&self.room, RoomMsg::Who(me));
        } else if line == "/quit" {
            conn.write(b"* bye\n")?;
            conn.close();
        } else if !line.is_empty() {
            // Sent with back-pressure: if the room is swamped, this
            // connection stops reading until it catches up.
            let _ = conn
                .ctx()
                .send(&self.room, RoomMsg::Line(me, line.to_string()));
        }
        Ok(())
    }
}

impl Protocol for Client {
    type Msg = ClientMsg;

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let me = conn.ctx().id();
        self.me = Some(me);
        let address = conn.address();
        let _ = conn.ctx().send(&self.room, RoomMsg::Join(me, address));
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        for &b in data {
            if b == b'\n' {
                let raw = std::mem::take(&mut self.line);
                let text = String::from_utf8_lossy(&raw);
                self.command(conn, text.trim_end_matches('\r'))?;
                if conn.is_reading_paused() {
                    break;
                }
            } else if self.line.len() == MAX_LINE {
                conn.write(b"* line too long; bye\n")?;
                conn.close();
                return Ok(());
            } else {
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: ClientMsg) -> ActorResult {
        match msg {
            ClientMsg::Line(line) => {
                if conn.is_write_paused() {
                    // Our reader is not keeping up: drop, do not buffer.
                    self.drop_line(conn);
                } else {
                    conn.write(line.as_bytes())?;
                    self.dropped = 0;
                }
            }
        }
        Ok(())
    }

    // A chat client keeps reading (and talking) while its own output is
    // slow: lines for it are dropped instead (see `message`).
    fn write_paused(&mut self, _conn: &mut Conn<'_, '_, Self>) {}
    fn write_resumed(&mut self, _conn: &mut Conn<'_, '_, Self>) {}

    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        if let Some(me) = self.me {
            // Addr::send never blocks. (A client whose handler failed is
            // not told `closed`; the room drops it at its next send.)
            let _ = self.room.send(RoomMsg::Leave(me, reason.to_string()));
        }
    }
}

fn main() -> ExitCode {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7002".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("chat: bad address {arg:?} ({e}); expected IP:PORT");
            return ExitCode::from(2);
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let room = rt.handle().spawn(Room {
        members: HashMap::new(),
    });
    let factory = move || Client {
        room: room.clone(),
        me: None,
        line: Vec::new(),
        dropped: 0,
    };
    let listening = match listen_tcp(rt.handle(), addr, ListenOptions::new(), factory) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Printed once `run` has installed the signal handlers.
    let local = listening.local_addr();
    rt.handle()
        .on_startup(move || println!("chat: listening on {local}"));
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}
