//! A line-based chat server: every connection is an actor, and a room
//! actor broadcasts each line to everybody else.
//!
//! Run:   cargo run --release --example chat -- [ADDR]      (default 127.0.0.1:7002)
//! Talk:  cargo run --release --example client -- 127.0.0.1:7002
//!        (or `nc 127.0.0.1 7002`; in two or more terminals; `/nick NAME`
//!        renames you, `/who` lists who is here, `/quit` leaves)
//! Stop:  Ctrl-C (or SIGTERM).
//!
//! Every line reaches every member, in order, and memory stays bounded,
//! as with Twisted's producers but without dropping anything:
//! * The room counts the bytes it sent each member that the member's
//!   socket has not yet taken (members acknowledge as their sockets
//!   drain). While any member owes more than `WINDOW`, the room pauses the
//!   reading of whoever sends it lines: a client that floods the room is
//!   slowed down by TCP itself, and the room never queues more than a few
//!   read chunks' worth of lines.
//! * A member is disconnected only when it really does not read: it owes
//!   more than `WINDOW` and its socket has taken nothing for `STALL`.
//!   Then the others carry on at full speed.
//! * Lines longer than 4 KiB are refused.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use weft::actors::ActorId;
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

const MAX_LINE: usize = 4096;
/// Bytes a member may owe before senders are slowed down.
const WINDOW: usize = 256 * 1024;
/// A member that owes more than `WINDOW` and whose socket took nothing
/// for this long is not reading.
const STALL: Duration = Duration::from_secs(3);
/// A member acknowledges what its socket took in steps of this much.
const ACK_EVERY: usize = 16 * 1024;

/// One member of the room.
struct Member {
    name: String,
    conn: ConnRef<Client>,
    /// Bytes sent to it that its socket has not taken (as far as the room
    /// knows).
    owed: usize,
    /// When its socket last took something (or it joined).
    progress: Duration,
}

/// The room: who is here, broadcasting, and flow control.
struct Room {
    members: HashMap<ActorId, Member>,
    /// Members owing more than `WINDOW`.
    behind: HashSet<ActorId>,
    /// Senders whose reading is paused until nobody is behind.
    throttled: HashSet<ActorId>,
}

enum RoomMsg {
    Join(ActorId, ConnRef<Client>),
    Line(ActorId, String),
    Nick(ActorId, String),
    Who(ActorId),
    /// A member's socket took this many more bytes.
    Ack(ActorId, usize),
    Leave(ActorId, String),
    /// Look for members that stopped reading.
    Check,
}

impl Room {
    /// Sends `text` to every member but `from` (with back-pressure on the
    /// members' mailboxes: held, never dropped).
    fn broadcast(&mut self, ctx: &mut Ctx<'_, Self>, from: Option<ActorId>, text: &str) {
        let line: Arc<str> = Arc::from(format!("{text}\n"));
        let ids: Vec<ActorId> = self.members.keys().copied().collect();
        for id in ids {
            if Some(id) != from {
                self.send(ctx, id, line.clone());
            }
        }
    }

    fn send(&mut self, ctx: &mut Ctx<'_, Self>, to: ActorId, line: Arc<str>) {
        let Some(m) = self.members.get_mut(&to) else {
            return;
        };
        m.owed += line.len();
        let msg = ConnMsg::user(ClientMsg::Line(line));
        if ctx.send(m.conn.addr(), msg).is_err() {
            self.members.remove(&to);
            self.behind.remove(&to);
            return;
        }
        if m.owed > WINDOW && self.behind.insert(to) {
            // It fell behind: stall detection starts from now.
            m.progress = ctx.runtime().now();
        }
    }

    fn ack(&mut self, ctx: &mut Ctx<'_, Self>, id: ActorId, n: usize) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        m.owed = m.owed.saturating_sub(n);
        m.progress = ctx.runtime().now();
        if m.owed <= WINDOW && self.behind.remove(&id) {
            self.release(ctx);
        }
    }

    /// Nobody is behind any more: the throttled senders read again.
    fn release(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.behind.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.throttled) {
            if let Some(m) = self.members.get(&id) {
                let _ = ctx.send(m.conn.addr(), ConnMsg::user(ClientMsg::Throttle(false)));
            }
        }
    }

    fn leave(&mut self, ctx: &mut Ctx<'_, Self>, id: ActorId, why: &str) {
        self.throttled.remove(&id);
        let was_behind = self.behind.remove(&id);
        if let Some(m) = self.members.remove(&id) {
            self.broadcast(ctx, None, &format!("* {} left ({why})", m.name));
        }
        if was_behind {
            self.release(ctx);
        }
    }

    fn name(&self, id: ActorId) -> String {
        self.members
            .get(&id)
            .map_or_else(|| format!("guest{}", id.0), |m| m.name.clone())
    }
}

impl Actor for Room {
    type Msg = RoomMsg;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_interval(STALL / 4, MissedTicks::Skip, || RoomMsg::Check);
        Ok(())
    }

    fn handle(&mut self, msg: RoomMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            RoomMsg::Join(id, conn) => {
                let name = format!("guest{}", id.0);
                let others = self.members.len();
                let progress = ctx.runtime().now();
                let member = Member {
                    name: name.clone(),
                    conn,
                    owed: 0,
                    progress,
                };
                self.members.insert(id, member);
                let welcome = format!("* welcome, {name}; {others} others here\n");
                self.send(ctx, id, Arc::from(welcome));
                self.broadcast(ctx, Some(id), &format!("* {name} joined"));
            }
            RoomMsg::Line(id, text) => {
                if !self.behind.is_empty() && self.throttled.insert(id) {
                    if let Some(m) = self.members.get(&id) {
                        let _ = ctx.send(m.conn.addr(), ConnMsg::user(ClientMsg::Throttle(true)));
                    }
                }
                let name = self.name(id);
                self.broadcast(ctx, Some(id), &format!("<{name}> {text}"));
            }
            RoomMsg::Nick(id, new) => {
                let old = self.name(id);
                if let Some(m) = self.members.get_mut(&id) {
                    m.name = new.clone();
                }
                self.broadcast(ctx, None, &format!("* {old} is now {new}"));
            }
            RoomMsg::Who(id) => {
                let mut names: Vec<&str> = self.members.values().map(|m| m.name.as_str()).collect();
                names.sort_unstable();
                let list = format!("* here: {}\n", names.join(", "));
                self.send(ctx, id, Arc::from(list));
            }
            RoomMsg::Ack(id, n) => self.ack(ctx, id, n),
            RoomMsg::Leave(id, why) => self.leave(ctx, id, &why),
            RoomMsg::Check => {
                let now = ctx.runtime().now();
                let stalled: Vec<ActorId> = self
                    .behind
                    .iter()
                    .filter(|id| {
                        self.members
                            .get(id)
                            .is_some_and(|m| now - m.progress >= STALL)
                    })
                    .copied()
                    .collect();
                for id in stalled {
                    if let Some(m) = self.members.get(&id) {
                        eprintln!(
                            "chat: {} not reading ({} bytes owed); disconnecting",
                            m.name, m.owed
                        );
                        m.conn.abort();
                    }
                    self.leave(ctx, id, "not reading");
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
    /// Bytes written for the room's lines that the room has not been told
    /// the socket took.
    unacked: usize,
}

enum ClientMsg {
    /// A line for this client.
    Line(Arc<str>),
    /// Pause (true) or resume (false) reading: the room is slowing senders.
    Throttle(bool),
}

impl Client {
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
                // Never refused: what this member may owe is bounded by the
                // room's window (see the module doc).
                conn.write(line.as_bytes())?;
                self.unacked += line.len();
            }
            ClientMsg::Throttle(true) => conn.pause_reading(),
            ClientMsg::Throttle(false) => conn.resume_reading(),
        }
        Ok(())
    }

    fn write_drained(&mut self, conn: &mut Conn<'_, '_, Self>) {
        // The socket took everything written so far.
        if self.unacked >= ACK_EVERY {
            if let Some(me) = self.me {
                let n = std::mem::take(&mut self.unacked);
                let _ = conn.ctx().send(&self.room, RoomMsg::Ack(me, n));
            }
        }
    }

    // A chat client keeps reading (and talking) while its own output is
    // slow: the room's window bounds what it owes instead.
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
    let cli = cli::Cli::new(
        "chat",
        "[ADDR]",
        "A line-based chat server: every connection is an actor, and a room actor broadcasts each line to everybody else.",
    );
    let arg = cli
        .args_at_most(1)
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7002".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            cli.fail(format!("bad address {arg:?} ({e}); expected IP:PORT"));
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let room = rt.handle().spawn(Room {
        members: HashMap::new(),
        behind: HashSet::new(),
        throttled: HashSet::new(),
    });
    let factory = move || Client {
        room: room.clone(),
        me: None,
        line: Vec::new(),
        unacked: 0,
    };
    // The room's window bounds what a member owes; the write buffer's
    // limit is only a backstop well above it.
    let conn = ConnOptions::new().max_write_buffer(64 * WINDOW);
    let options = ListenOptions::new().conn(conn);
    let listening = match listen_tcp(rt.handle(), addr, options, factory) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chat: {}", cli::chain(&e));
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
            eprintln!("chat: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
