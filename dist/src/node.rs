//! A weft node: its name and cookie, its EPMD registration (held while the
//! [`Node`] lives), its distribution listener (a weft listener whose
//! connection actors run [`DistConn`]), the names it answers to, and the
//! connections to other nodes.
//!
//! Owns: routing between the distribution connections and weft actors
//! (registered names in, pids out), the node's counters. Must not touch:
//! the handshake's bytes (`handshake.rs`) or EPMD's (`epmd.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eetf::{Atom, FixInteger, Pid, Term, Tuple};
use parking_lot::Mutex;
use weft_actors::{ActorResult, Recipient};
use weft_io::{
    listen_tcp, CloseReason, Conn, ConnRef, ListenOptions, Listening, Protocol, StopMode,
};
use weft_runtime::Handle;

use crate::epmd::{self, Registration};
use crate::handshake::{Accepting, AuthError, Progress};

/// How often a connection sends a tick (a quarter of OTP's default
/// `net_ticktime` of 60 s).
const TICK: Duration = Duration::from_secs(15);
/// A peer heard nothing from for this long (four ticks) is dropped, as
/// `net_kernel` drops a node silent for `net_ticktime`.
const SILENT: Duration = Duration::from_secs(60);
/// How long an accepted connection may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pass-through message tag (no atom cache).
const PASS_THROUGH: u8 = 112;

/// Control message tags.
const SEND: i32 = 2;
const REG_SEND: i32 = 6;
const MONITOR_P: i32 = 19;
const DEMONITOR_P: i32 = 20;
const MONITOR_P_EXIT: i32 = 21;
const SEND_SENDER: i32 = 22;

/// How a node starts.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    epmd_port: u16,
    listen: SocketAddr,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            epmd_port: epmd::port_from_env(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl NodeOptions {
    /// EPMD on its port from `ERL_EPMD_PORT` (as `erl` reads it) or 4369;
    /// the distribution listener on 127.0.0.1, a port the OS picks.
    pub fn new() -> Self {
        Self::default()
    }

    /// The EPMD port (on 127.0.0.1).
    pub fn epmd_port(mut self, port: u16) -> Self {
        self.epmd_port = port;
        self
    }

    /// Where the distribution listener binds.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The name is not `name@host`.
    #[error("{0:?} is not a node name (name@host)")]
    BadName(String),
    /// The distribution listener could not bind.
    #[error("cannot listen for other nodes")]
    Listen(#[source] weft_io::ListenError),
    /// EPMD refused or could not be reached.
    #[error("cannot register with EPMD on port {port}")]
    Epmd {
        /// EPMD's port.
        port: u16,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A message for a weft actor registered with [`Node::register`].
#[derive(Debug)]
pub struct Incoming {
    /// The sending process, when the peer said (`REG_SEND`, `SEND_SENDER`).
    pub from: Option<Pid>,
    /// The name it was sent to.
    pub to: String,
    /// The message.
    pub message: Term,
}

/// Why a message to another node was not sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DistSendError {
    /// No connection to that node (it never connected, or it went away).
    #[error("not connected to node {0}")]
    NotConnected(String),
    /// The term could not be encoded.
    #[error("the term cannot be encoded: {0}")]
    Encode(String),
}

/// What the node shares with its connection actors.
struct Shared {
    name: String,
    cookie: String,
    creation: Mutex<u32>,
    registered: Mutex<HashMap<String, Recipient<Incoming>>>,
    connections: Mutex<HashMap<String, ConnRef<DistConn>>>,
    auth_failures: AtomicU64,
}

/// A running weft node. Dropping it unregisters it from EPMD and stops
/// its listener (its open connections end).
pub struct Node {
    shared: Arc<Shared>,
    listening: Listening<DistConn>,
    _registration: Registration,
}

impl Node {
    /// Starts node `name` (`name@host`; the host is what other nodes use
    /// to reach this one's EPMD, e.g. `127.0.0.1` with `erl -name`) with
    /// `cookie`: binds the distribution listener and registers with EPMD.
    /// Blocks briefly on EPMD: call it from `main` or the blocking pool.
    pub fn start(
        handle: &Handle,
        name: &str,
        cookie: &str,
        options: NodeOptions,
    ) -> Result<Node, NodeError> {
        let Some((alive, host)) = name.split_once('@') else {
            return Err(NodeError::BadName(name.into()));
        };
        if alive.is_empty() || host.is_empty() {
            return Err(NodeError::BadName(name.into()));
        }
        let shared = Arc::new(Shared {
            name: name.to_string(),
            cookie: cookie.to_string(),
            creation: Mutex::new(0),
            registered: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            auth_failures: AtomicU64::new(0),
        });
        let for_conns = shared.clone();
        let listening = listen_tcp(handle, options.listen, ListenOptions::new(), move || {
            DistConn::accepting(for_conns.clone())
        })
        .map_err(NodeError::Listen)?;
        let epmd_at = SocketAddr::from(([127, 0, 0, 1], options.epmd_port));
        let registration =
            epmd::register(epmd_at, alive, listening.local_addr().port()).map_err(|source| {
                NodeError::Epmd {
                    port: options.epmd_port,
                    source,
                }
            })?;
        *shared.creation.lock() = registration.creation;
        Ok(Node {
            shared,
            listening,
            _registration: registration,
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The port other nodes connect to.
    pub fn port(&self) -> u16 {
        self.listening.local_addr().port()
    }

    /// Makes `to` reachable as `{Name, Node}` from other nodes (`erl`'s
    /// `{Name, 'weft@host'} ! Msg`); replaces an earlier registration.
    pub fn register(&self, name: &str, to: Recipient<Incoming>) {
        self.shared.registered.lock().insert(name.to_string(), to);
    }

    /// Sends `message` to process `to` on a connected node.
    pub fn send(&self, to: &Pid, message: Term) -> Result<(), DistSendError> {
        send_to_pid(&self.shared, to, message)
    }

    /// A cheap handle that sends as this node (for actors to keep).
    pub fn sender(&self) -> DistSender {
        DistSender {
            shared: self.shared.clone(),
        }
    }

    /// The nodes connected now.
    pub fn connected_nodes(&self) -> Vec<String> {
        self.shared.connections.lock().keys().cloned().collect()
    }

    /// Handshakes refused for a wrong cookie or missing flags so far.
    pub fn auth_failures(&self) -> u64 {
        self.shared.auth_failures.load(Ordering::Relaxed)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.listening.stop(StopMode::Close);
        for (_, conn) in self.shared.connections.lock().drain() {
            conn.close();
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.name)
            .finish()
    }
}

/// Sends to processes of connected nodes as its node (`Node::sender`);
/// `Send + Sync + Clone`.
#[derive(Clone)]
pub struct DistSender {
    shared: Arc<Shared>,
}

impl DistSender {
    /// Sends `message` to process `to` on a connected node.
    pub fn send(&self, to: &Pid, message: Term) -> Result<(), DistSendError> {
        send_to_pid(&self.shared, to, message)
    }
}

impl std::fmt::Debug for DistSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistSender")
            .field("node", &self.shared.name)
            .finish()
    }
}

fn send_to_pid(shared: &Shared, to: &Pid, message: Term) -> Result<(), DistSendError> {
    let node = to.node.name.clone();
    let conn = shared
        .connections
        .lock()
        .get(&node)
        .cloned()
        .ok_or_else(|| DistSendError::NotConnected(node.clone()))?;
    let control = tuple(vec![int(SEND), atom(""), Term::Pid(to.clone())]);
    let packet = encode_packet(&control, Some(&message))?;
    conn.send(Out::Packet(packet))
        .map_err(|_| DistSendError::NotConnected(node))
}

/// One distribution packet: length, pass-through tag, control, message.
fn encode_packet(control: &Term, message: Option<&Term>) -> Result<Vec<u8>, DistSendError> {
    let mut body = vec![PASS_THROUGH];
    let enc = |e: eetf::EncodeError| DistSendError::Encode(e.to_string());
    control.encode(&mut body).map_err(enc)?;
    if let Some(m) = message {
        m.encode(&mut body).map_err(enc)?;
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

fn int(n: i32) -> Term {
    Term::FixInteger(FixInteger::from(n))
}

fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

/// A fresh handshake challenge (per-process random keys and the clock).
fn challenge() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// What a distribution connection is told by the node (and by its own
/// timers).
#[derive(Debug)]
pub enum Out {
    /// A packet to write.
    Packet(Vec<u8>),
    /// Time to tick (and to check the peer was heard from).
    Tick,
    /// The handshake's time is up.
    HandshakeTimeout,
}

enum State {
    Handshake(Accepting),
    Connected { peer: String },
    Failed,
}

/// A distribution connection's protocol: the handshake, then packets.
pub struct DistConn {
    shared: Arc<Shared>,
    input: Vec<u8>,
    state: State,
    /// When the peer last sent anything, on the runtime's clock.
    heard: Duration,
}

impl DistConn {
    fn accepting(shared: Arc<Shared>) -> Self {
        let creation = *shared.creation.lock();
        let state = State::Handshake(Accepting::new(
            &shared.name,
            &shared.cookie,
            creation,
            challenge(),
        ));
        DistConn {
            shared,
            input: Vec::new(),
            state,
            heard: Duration::ZERO,
        }
    }

    fn handshake(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let State::Handshake(acc) = &mut self.state else {
            return Ok(());
        };
        let mut out = Vec::new();
        let progress = acc.feed(&mut self.input, &mut out);
        if !out.is_empty() {
            conn.write(&out)?;
        }
        match progress {
            Ok(Progress::More) => Ok(()),
            Ok(Progress::Done { peer, .. }) => {
                tracing::info!(%peer, "node connected");
                self.shared
                    .connections
                    .lock()
                    .insert(peer.clone(), conn.address());
                self.state = State::Connected { peer };
                conn.send_later(TICK, Out::Tick);
                self.packets(conn)
            }
            Err(e) => {
                if matches!(
                    e,
                    AuthError::WrongCookie { .. } | AuthError::MissingFlags { .. }
                ) {
                    self.shared.auth_failures.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(error = %e, "distribution handshake refused");
                self.state = State::Failed;
                conn.close();
                Ok(())
            }
        }
    }

    /// Every complete packet in the input.
    fn packets(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        loop {
            if self.input.len() < 4 {
                return Ok(());
            }
            let len =
                u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]])
                    as usize;
            if self.input.len() < 4 + len {
                return Ok(());
            }
            let packet: Vec<u8> = self.input.drain(..4 + len).skip(4).collect();
            if packet.is_empty() {
                continue; // a tick
            }
            if let Err(e) = self.packet(conn, &packet) {
                tracing::warn!(error = %e, "a distribution packet was not understood; closing");
                conn.close();
                return Ok(());
            }
        }
    }

    fn packet(&mut self, conn: &mut Conn<'_, '_, Self>, packet: &[u8]) -> Result<(), String> {
        if packet[0] != PASS_THROUGH {
            return Err(format!(
                "packet type {} (only pass-through is offered)",
                packet[0]
            ));
        }
        let mut cursor = Cursor::new(&packet[1..]);
        let control = Term::decode(&mut cursor).map_err(|e| e.to_string())?;
        let message = if (cursor.position() as usize) < packet.len() - 1 {
            Some(Term::decode(&mut cursor).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let Term::Tuple(control) = control else {
            return Err("a control message that is not a tuple".into());
        };
        let el = &control.elements;
        let tag = match el.first() {
            Some(Term::FixInteger(i)) => i.value,
            _ => return Err("a control message without a tag".into()),
        };
        match (tag, el.as_slice(), message) {
            (REG_SEND, [_, Term::Pid(from), _, Term::Atom(to)], Some(message)) => {
                self.reg_send(conn, Some(from.clone()), &to.name, message);
            }
            (SEND, [_, _, Term::Pid(_)], Some(_))
            | (SEND_SENDER, [_, _, Term::Pid(_)], Some(_)) => {
                // Pids of weft actors are not handed out yet: only
                // registered names receive.
                tracing::debug!("a message to a weft pid was dropped");
            }
            (MONITOR_P, [_, Term::Pid(from), target, reference], None) => {
                let known = match target {
                    Term::Atom(a) => {
                        a.name == "net_kernel"
                            || self.shared.registered.lock().contains_key(&a.name)
                    }
                    _ => false,
                };
                if !known {
                    // MONITOR_P_EXIT {21, FromProc, ToPid, Ref, Reason}.
                    let exit = tuple(vec![
                        int(MONITOR_P_EXIT),
                        target.clone(),
                        Term::Pid(from.clone()),
                        reference.clone(),
                        atom("noproc"),
                    ]);
                    let p = encode_packet(&exit, None).map_err(|e| e.to_string())?;
                    conn.write(&p).map_err(|e| e.to_string())?;
                }
            }
            (DEMONITOR_P, _, _) => {}
            (other, _, _) => {
                tracing::debug!(tag = other, "a control message weft does not handle yet");
            }
        }
        Ok(())
    }

    fn reg_send(
        &mut self,
        conn: &mut Conn<'_, '_, Self>,
        from: Option<Pid>,
        to: &str,
        message: Term,
    ) {
        if to == "net_kernel" {
            // `net_adm:ping`: {'$gen_call', {From, Tag}, {is_auth, Node}}
            // answered {Tag, yes} (sent to From: an alias tag still
            // matches in the caller's receive).
            if let Term::Tuple(call) = &message {
                if let [Term::Atom(label), Term::Tuple(from_tag), _] = call.elements.as_slice() {
                    if label.name == "$gen_call" {
                        if let [Term::Pid(caller), tag] = from_tag.elements.as_slice() {
                            let reply = tuple(vec![tag.clone(), atom("yes")]);
                            let control =
                                tuple(vec![int(SEND), atom(""), Term::Pid(caller.clone())]);
                            if let Ok(p) = encode_packet(&control, Some(&reply)) {
                                let _ = conn.write(&p);
                            }
                        }
                    }
                }
            }
            return;
        }
        let target = self.shared.registered.lock().get(to).cloned();
        match target {
            Some(r) => {
                let _ = r.send(Incoming {
                    from,
                    to: to.to_string(),
                    message,
                });
            }
            None => tracing::debug!(name = to, "a message to an unregistered name was dropped"),
        }
    }
}

impl Protocol for DistConn {
    type Msg = Out;

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        self.heard = conn.runtime().now();
        conn.send_later(HANDSHAKE_TIMEOUT, Out::HandshakeTimeout);
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.heard = conn.runtime().now();
        self.input.extend_from_slice(data);
        match self.state {
            State::Handshake(_) => self.handshake(conn),
            State::Connected { .. } => self.packets(conn),
            State::Failed => Ok(()),
        }
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Out) -> ActorResult {
        match msg {
            Out::Packet(p) => conn.write(&p)?,
            Out::Tick => {
                let silent = conn.runtime().now().saturating_sub(self.heard);
                if silent >= SILENT {
                    if let State::Connected { peer } = &self.state {
                        tracing::warn!(%peer, silent_s = silent.as_secs(), "node silent past the tick time; dropped");
                    }
                    conn.abort();
                    return Ok(());
                }
                conn.write(&[0, 0, 0, 0])?;
                conn.send_later(TICK, Out::Tick);
            }
            Out::HandshakeTimeout => {
                if matches!(self.state, State::Handshake(_)) {
                    tracing::warn!("a distribution handshake did not complete in time");
                    conn.abort();
                }
            }
        }
        Ok(())
    }

    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        if let State::Connected { peer } = &self.state {
            tracing::info!(%peer, %reason, "node disconnected");
            let mut conns = self.shared.connections.lock();
            if conns
                .get(peer)
                .is_some_and(|c| c.id() == conn.address().id())
            {
                conns.remove(peer);
            }
        }
    }
}
