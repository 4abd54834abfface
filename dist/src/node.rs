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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eetf::{Atom, FixInteger, Pid, Term, Tuple};
use parking_lot::Mutex;
use weft_actors::{
    reply_slot, Actor, ActorResult, Addr, AnyAddr, Ctx, Down, ExitReason, MonitorRef, Recipient,
    ReplyTo, Spawn,
};
use weft_io::{
    connect_tcp, listen_tcp, CloseReason, Conn, ConnRef, ConnectOptions, ListenOptions, Listening,
    Protocol, StopMode,
};
use weft_runtime::Handle;

use crate::epmd::{self, Registration};
use crate::handshake::{Accepting, AuthError, Connecting, Progress};
use crate::typed::{FromTerm, IntoTerm, TypeError};

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
const LINK: i32 = 1;
const SEND: i32 = 2;
const EXIT: i32 = 3;
const REG_SEND: i32 = 6;
const MONITOR_P: i32 = 19;
const DEMONITOR_P: i32 = 20;
const MONITOR_P_EXIT: i32 = 21;
const SEND_SENDER: i32 = 22;
const UNLINK_ID: i32 = 35;
const UNLINK_ID_ACK: i32 = 36;

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

impl Incoming {
    /// The message as a Rust value (see [`FromTerm`]), or what was
    /// expected and what came.
    pub fn decode<T: FromTerm>(&self) -> Result<T, TypeError> {
        T::from_term(&self.message)
    }
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
    /// The connection to that node has too much queued (its mailbox is
    /// full): nothing was sent; try again later.
    #[error("the connection to node {0} is backlogged; nothing was sent")]
    Backlogged(String),
    /// No actor is registered under that name on this node.
    #[error("no actor is registered as {0:?} on this node")]
    NotRegistered(String),
}

/// Why [`Node::connect`] failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectNodeError {
    /// The name is not `name@host`.
    #[error("{0:?} is not a node name (name@host)")]
    BadName(String),
    /// EPMD on the node's host does not know it, or cannot be reached.
    #[error("no node {node} (EPMD on its host: {why})")]
    NoSuchNode {
        /// The node.
        node: String,
        /// What EPMD said.
        why: String,
    },
    /// The TCP connection or the handshake failed (a wrong cookie is
    /// reported with the peer's name).
    #[error("cannot connect to node {node}: {why}")]
    Failed {
        /// The node.
        node: String,
        /// Why.
        why: String,
    },
}

/// What the node shares with its connection actors.
struct Shared {
    name: String,
    cookie: String,
    epmd_port: u16,
    creation: Mutex<u32>,
    /// Where messages to this node's own pid go.
    inbox: Mutex<Option<Recipient<Incoming>>>,
    registered: Mutex<HashMap<String, Registered>>,
    /// Registered actors by the id of the pid handed out for them.
    by_pid: Mutex<HashMap<u32, String>>,
    /// Watches local actors that remote processes monitor.
    watch: Mutex<Option<Addr<NodeWatch>>>,
    /// This node's monitors of remote processes: (peer, who to tell) by
    /// reference.
    remote_monitors: Mutex<HashMap<Vec<u32>, RemoteMonitor>>,
    /// The next reference number.
    next_ref: AtomicU64,
    connections: Mutex<HashMap<String, Peer>>,
    auth_failures: AtomicU64,
}

/// A running weft node. Dropping it unregisters it from EPMD and stops
/// its listener (its open connections end).
pub struct Node {
    shared: Arc<Shared>,
    handle: Handle,
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
            epmd_port: options.epmd_port,
            creation: Mutex::new(0),
            inbox: Mutex::new(None),
            registered: Mutex::new(HashMap::new()),
            by_pid: Mutex::new(HashMap::new()),
            watch: Mutex::new(None),
            remote_monitors: Mutex::new(HashMap::new()),
            next_ref: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            auth_failures: AtomicU64::new(0),
        });
        let for_conns = shared.clone();
        let listening = listen_tcp(
            handle,
            options.listen,
            ListenOptions::new().conn(dist_conn_options()),
            move || DistConn::accepting(for_conns.clone()),
        )
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
        *shared.watch.lock() = Some(handle.spawn(NodeWatch {
            shared: Arc::downgrade(&shared),
            watches: HashMap::new(),
            links: Vec::new(),
        }));
        Ok(Node {
            shared,
            handle: handle.clone(),
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

    /// Makes actor `to` reachable as `{Name, Node}` from other nodes
    /// (`erl`'s `{Name, 'weft@host'} ! Msg`) and at a pid of its own
    /// ([`pid_of`](Self::pid_of)); other nodes may monitor it
    /// (`erlang:monitor(process, {Name, Node})`: `DOWN` with its exit
    /// reason). Replaces an earlier registration of `name`.
    pub fn register<A: Actor<Msg = Incoming>>(&self, name: &str, to: &Addr<A>) {
        let mut by_pid = self.shared.by_pid.lock();
        let id = by_pid.len() as u32 + 1;
        by_pid.insert(id, name.to_string());
        self.shared.registered.lock().insert(
            name.to_string(),
            Registered {
                to: to.recipient(),
                actor: AnyAddr::from(to),
                pid_id: id,
            },
        );
    }

    /// The pid other nodes see for the actor registered as `name`.
    pub fn pid_of(&self, name: &str) -> Option<Pid> {
        let id = self.shared.registered.lock().get(name)?.pid_id;
        Some(Pid::new(
            self.shared.name.as_str(),
            id,
            0,
            *self.shared.creation.lock(),
        ))
    }

    /// Sends `message` (a `Term`, or any [`IntoTerm`] value) to process
    /// `to` on a connected node.
    pub fn send(&self, to: &Pid, message: impl IntoTerm) -> Result<(), DistSendError> {
        send_to_pid(&self.shared, to, message.into_term())
    }

    /// A cheap handle that sends as this node (for actors to keep).
    pub fn sender(&self) -> DistSender {
        DistSender {
            shared: self.shared.clone(),
        }
    }

    /// This node's own process id: what other nodes see as the sender of
    /// [`send_named`](Self::send_named), and where their messages to it go
    /// ([`set_inbox`](Self::set_inbox)).
    pub fn pid(&self) -> Pid {
        node_pid(&self.shared)
    }

    /// Where messages sent to [`pid`](Self::pid) are delivered.
    pub fn set_inbox(&self, to: Recipient<Incoming>) {
        *self.shared.inbox.lock() = Some(to);
    }

    /// Sends `message` to the process registered as `name` on `node`
    /// (`{Name, Node} ! Msg`), from [`pid`](Self::pid); `node` must be
    /// connected.
    pub fn send_named(
        &self,
        name: &str,
        node: &str,
        message: impl IntoTerm,
    ) -> Result<(), DistSendError> {
        send_named(&self.shared, name, node, message.into_term())
    }

    /// Connects to `node` (`name@host`): asks EPMD on its host where it
    /// listens, then handshakes; returns once connected (at once if it
    /// is). Blocks up to `timeout`: call it from a plain thread or the
    /// blocking pool, not from an actor's handler.
    pub fn connect(&self, node: &str, timeout: Duration) -> Result<(), ConnectNodeError> {
        if self.shared.connections.lock().contains_key(node) {
            return Ok(());
        }
        let Some((alive, host)) = node.split_once('@') else {
            return Err(ConnectNodeError::BadName(node.into()));
        };
        let no_node = |why: String| ConnectNodeError::NoSuchNode {
            node: node.to_string(),
            why,
        };
        let ip = std::net::ToSocketAddrs::to_socket_addrs(&(host, self.shared.epmd_port))
            .map_err(|e| no_node(e.to_string()))?
            .next()
            .ok_or_else(|| no_node(format!("{host} has no address")))?;
        let port = epmd::port_please(ip, alive)
            .map_err(|e| no_node(e.to_string()))?
            .ok_or_else(|| no_node("not registered".into()))?;
        let (reply, pending) = reply_slot();
        let target = SocketAddr::new(ip.ip(), port);
        let options = ConnectOptions::new()
            .timeout(timeout)
            .conn(dist_conn_options());
        let _ = connect_tcp(
            &self.handle,
            target,
            options,
            DistConn::dialing(self.shared.clone(), reply),
        );
        let failed = |why: String| ConnectNodeError::Failed {
            node: node.to_string(),
            why,
        };
        match pending.wait(timeout) {
            Ok(Ok(peer)) if peer == node => Ok(()),
            Ok(Ok(peer)) => Err(failed(format!("the node there is {peer}"))),
            Ok(Err(why)) => Err(failed(why)),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Links the actor registered here as `name` with process `remote`
    /// on a connected node (`link/1`): the actor's exit reaches `remote`
    /// as an `EXIT` with its reason; `remote`'s non-normal exit, or the
    /// loss of its node (`noconnection`), stops the actor.
    pub fn link(&self, name: &str, remote: &Pid) -> Result<(), DistSendError> {
        let local = self
            .pid_of(name)
            .ok_or_else(|| DistSendError::NotRegistered(name.to_string()))?;
        let actor = self
            .shared
            .registered
            .lock()
            .get(name)
            .map(|r| r.actor.clone())
            .ok_or_else(|| DistSendError::NotRegistered(name.to_string()))?;
        let peer = remote.node.name.clone();
        let conn = sending_conn(&self.shared, &peer)?;
        if let Some(watch) = self.shared.watch.lock().clone() {
            let _ = watch.send(WatchMsg::Link {
                actor,
                link: RemoteLink {
                    peer: peer.clone(),
                    remote: remote.clone(),
                    local: local.clone(),
                },
            });
        }
        let control = tuple(vec![int(LINK), Term::Pid(local), Term::Pid(remote.clone())]);
        let packet = encode_packet(&control, None)?;
        conn.send(Out::Packet(packet)).map_err(|e| refused(e, peer))
    }

    /// Monitors process `target` on a connected node (`erlang:monitor`):
    /// `to` gets one [`RemoteDown`] when it exits (its exit reason), if it
    /// does not exist (`noproc`), or when the connection to its node is
    /// lost (`noconnection`). The reference names the monitor.
    pub fn monitor(&self, target: &Pid, to: Recipient<RemoteDown>) -> Result<Term, DistSendError> {
        self.monitor_term(&target.node.name, Term::Pid(target.clone()), to)
    }

    /// As [`monitor`](Self::monitor), for the process registered as
    /// `name` on `node` (`erlang:monitor(process, {Name, Node})`).
    pub fn monitor_named(
        &self,
        name: &str,
        node: &str,
        to: Recipient<RemoteDown>,
    ) -> Result<Term, DistSendError> {
        self.monitor_term(node, atom(name), to)
    }

    fn monitor_term(
        &self,
        node: &str,
        target: Term,
        to: Recipient<RemoteDown>,
    ) -> Result<Term, DistSendError> {
        let conn = sending_conn(&self.shared, node)?;
        let n = self.shared.next_ref.fetch_add(1, Ordering::Relaxed);
        let id = vec![(n & 0x3_ffff) as u32, (n >> 18) as u32, 0];
        let reference = Term::from(eetf::Reference {
            node: Atom::from(self.shared.name.as_str()),
            id: id.clone(),
            creation: *self.shared.creation.lock(),
        });
        self.shared
            .remote_monitors
            .lock()
            .insert(id, (node.to_string(), to));
        let control = tuple(vec![
            int(MONITOR_P),
            Term::Pid(self.pid()),
            target,
            reference.clone(),
        ]);
        let packet = encode_packet(&control, None)?;
        conn.send(Out::Packet(packet))
            .map_err(|e| refused(e, node.to_string()))?;
        Ok(reference)
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
        if let Some(watch) = self.shared.watch.lock().take() {
            watch.stop();
        }
        self.listening.stop(StopMode::Close);
        for (_, peer) in self.shared.connections.lock().drain() {
            peer.conn.close();
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
    /// Sends `message` (a `Term`, or any [`IntoTerm`] value) to process
    /// `to` on a connected node.
    pub fn send(&self, to: &Pid, message: impl IntoTerm) -> Result<(), DistSendError> {
        send_to_pid(&self.shared, to, message.into_term())
    }

    /// As [`Node::send_named`].
    pub fn send_named(
        &self,
        name: &str,
        node: &str,
        message: impl IntoTerm,
    ) -> Result<(), DistSendError> {
        send_named(&self.shared, name, node, message.into_term())
    }
}

fn node_pid(shared: &Shared) -> Pid {
    Pid::new(shared.name.as_str(), 0, 0, *shared.creation.lock())
}

fn send_named(shared: &Shared, name: &str, node: &str, message: Term) -> Result<(), DistSendError> {
    let conn = sending_conn(shared, node)?;
    let control = tuple(vec![
        int(REG_SEND),
        Term::Pid(node_pid(shared)),
        atom(""),
        atom(name),
    ]);
    let packet = encode_packet(&control, Some(&message))?;
    conn.send(Out::Packet(packet))
        .map_err(|e| refused(e, node.to_string()))
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
    if node == shared.name {
        // To this node's own pid: its inbox, without a round trip.
        deliver_inbox(shared, None, message);
        return Ok(());
    }
    let conn = sending_conn(shared, &node)?;
    let control = tuple(vec![int(SEND), atom(""), Term::Pid(to.clone())]);
    let packet = encode_packet(&control, Some(&message))?;
    conn.send(Out::Packet(packet)).map_err(|e| refused(e, node))
}

/// A connected node: its connection, and whether that connection's write
/// side is paused (past its high watermark: the peer reads slower than
/// this node sends).
struct Peer {
    conn: ConnRef<DistConn>,
    paused: Arc<AtomicBool>,
}

/// The connection to send a user's message to `node` on: refused as
/// `Backlogged` while its write side is paused, so a slow node cannot
/// make this one buffer without bound (the connection's mailbox is
/// bounded by bytes too).
fn sending_conn(shared: &Shared, node: &str) -> Result<ConnRef<DistConn>, DistSendError> {
    let conns = shared.connections.lock();
    let peer = conns
        .get(node)
        .ok_or_else(|| DistSendError::NotConnected(node.to_string()))?;
    if peer.paused.load(Ordering::Acquire) {
        return Err(DistSendError::Backlogged(node.to_string()));
    }
    Ok(peer.conn.clone())
}

/// Why the connection actor refused a packet: full (backlogged) or gone.
fn refused<M>(e: weft_actors::SendError<M>, node: String) -> DistSendError {
    match e {
        weft_actors::SendError::Full(_) => DistSendError::Backlogged(node),
        _ => DistSendError::NotConnected(node),
    }
}

/// One distribution packet: length, pass-through tag, control, message.
fn deliver_inbox(shared: &Shared, from: Option<Pid>, message: Term) {
    match shared.inbox.lock().as_ref() {
        Some(inbox) => {
            let _ = inbox.send(Incoming {
                from,
                to: String::new(),
                message,
            });
        }
        None => tracing::debug!("a message to the node's pid was dropped: no inbox"),
    }
}

fn encode_packet(control: &Term, message: Option<&Term>) -> Result<Vec<u8>, DistSendError> {
    // One buffer: the length is written over its placeholder at the end.
    let mut out = vec![0, 0, 0, 0, PASS_THROUGH];
    let enc = |e: eetf::EncodeError| DistSendError::Encode(e.to_string());
    control.encode(&mut out).map_err(enc)?;
    if let Some(m) = message {
        m.encode(&mut out).map_err(enc)?;
    }
    let len = u32::try_from(out.len() - 4)
        .map_err(|_| DistSendError::Encode("a packet over 4 GiB".into()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Sends a control message (no payload) to `peer` if it is connected,
/// past the senders' back-pressure: exits and monitor answers must not be
/// lost to a slow peer.
fn control_to(shared: &Shared, peer: &str, control: &Term) {
    let conn = shared.connections.lock().get(peer).map(|p| p.conn.clone());
    if let (Some(conn), Ok(p)) = (conn, encode_packet(control, None)) {
        let _ = conn.send(Out::Packet(p));
    }
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

/// A distribution connection's buffers: senders are refused past 1 MiB
/// buffered (resumed below 256 KiB), packets waiting in its mailbox are
/// bounded at 4 MiB, and a peer that stops reading is dropped at 64 MiB.
fn dist_conn_options() -> weft_io::ConnOptions {
    weft_io::ConnOptions::new()
        .watermarks(1 << 20, 256 << 10)
        .mailbox_bytes(4 << 20)
        .max_write_buffer(64 << 20)
        .nodelay(true)
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
    Dial(Connecting, Option<ReplyTo<Result<String, String>>>),
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
    /// Set while the write side is paused (shared with senders).
    paused: Arc<AtomicBool>,
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
            paused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A connection this node makes to another node's listener; `reply`
    /// is told the peer's name or why it failed.
    fn dialing(shared: Arc<Shared>, reply: ReplyTo<Result<String, String>>) -> Self {
        let creation = *shared.creation.lock();
        let (dial, _first) = Connecting::start(&shared.name, &shared.cookie, creation, challenge());
        DistConn {
            shared,
            input: Vec::new(),
            state: State::Dial(dial, Some(reply)),
            heard: Duration::ZERO,
            paused: Arc::new(AtomicBool::new(false)),
        }
    }

    fn handshake(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let mut out = Vec::new();
        let progress = match &mut self.state {
            State::Handshake(acc) => acc.feed(&mut self.input, &mut out),
            State::Dial(dial, _) => dial.feed(&mut self.input, &mut out),
            _ => return Ok(()),
        };
        if matches!(progress, Ok(Progress::Done { .. })) {
            // Ticking starts before the last handshake message goes out.
            conn.send_later(TICK, Out::Tick);
        }
        if !out.is_empty() {
            conn.write(&out)?;
        }
        if progress == Ok(Progress::More) {
            return Ok(());
        }
        let waiter = match &mut self.state {
            State::Dial(_, reply) => reply.take(),
            _ => None,
        };
        match progress {
            Ok(Progress::More) => Ok(()),
            Ok(Progress::Done { peer, .. }) => {
                tracing::info!(%peer, "node connected");
                // Listed before the waiter hears: `connect` returning
                // means `send` finds the connection.
                self.shared.connections.lock().insert(
                    peer.clone(),
                    Peer {
                        conn: conn.address(),
                        paused: self.paused.clone(),
                    },
                );
                if let Some(w) = waiter {
                    w.send(Ok(peer.clone()));
                }
                self.state = State::Connected { peer };
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
                if let Some(w) = waiter {
                    w.send(Err(e.to_string()));
                }
                self.state = State::Failed;
                conn.close();
                Ok(())
            }
        }
    }

    /// Every complete packet in the input.
    fn packets(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        // Parsed in place; what was used goes in one drain at the end.
        let mut input = std::mem::take(&mut self.input);
        let mut at = 0;
        while let Some(head) = input.get(at..at + 4) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let Some(packet) = input.get(at + 4..at + 4 + len) else {
                break;
            };
            at += 4 + len;
            if packet.is_empty() {
                continue; // a tick
            }
            if let Err(e) = self.packet(conn, packet) {
                tracing::warn!(error = %e, "a distribution packet was not understood; closing");
                conn.close();
                return Ok(());
            }
        }
        input.drain(..at);
        self.input = input;
        Ok(())
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
            (SEND | SEND_SENDER, [_, sender, Term::Pid(to)], Some(message)) => {
                let from = match sender {
                    Term::Pid(from) if tag == SEND_SENDER => Some(from.clone()),
                    _ => None,
                };
                let named = self.shared.by_pid.lock().get(&to.id).cloned();
                if to.node.name == self.shared.name && to.id == 0 {
                    deliver_inbox(&self.shared, from, message);
                } else if let Some(name) = named {
                    self.reg_send(conn, from, &name, message);
                } else {
                    tracing::debug!(%to, "a message to an unknown pid was dropped");
                }
            }
            (MONITOR_P, [_, Term::Pid(from), target, reference], None) => {
                let name = match target {
                    Term::Atom(a) => Some(a.name.clone()),
                    Term::Pid(p) if p.node.name == self.shared.name => {
                        self.shared.by_pid.lock().get(&p.id).cloned()
                    }
                    _ => None,
                };
                let actor = name.as_ref().and_then(|n| {
                    self.shared
                        .registered
                        .lock()
                        .get(n)
                        .map(|r| r.actor.clone())
                });
                let watch = self.shared.watch.lock().clone();
                if let (Some(actor), Some(watch), State::Connected { peer }) =
                    (actor, watch, &self.state)
                {
                    let _ = watch.send(WatchMsg::Watch {
                        actor,
                        monitor: Remote {
                            peer: peer.clone(),
                            from: from.clone(),
                            target: target.clone(),
                            reference: reference.clone(),
                        },
                    });
                } else if name.as_deref() != Some("net_kernel") {
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
            (MONITOR_P_EXIT, [_, target, _, Term::Reference(reference), reason], None) => {
                let entry = self.shared.remote_monitors.lock().remove(&reference.id);
                if let Some((_, to)) = entry {
                    let _ = to.send(RemoteDown {
                        reference: Term::Reference(reference.clone()),
                        target: target.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            (LINK, [_, Term::Pid(from), Term::Pid(to)], None) => {
                let local = self.local_actor(to);
                match (local, &self.state) {
                    (Some(actor), State::Connected { peer }) => {
                        if let Some(watch) = self.shared.watch.lock().clone() {
                            let _ = watch.send(WatchMsg::Link {
                                actor,
                                link: RemoteLink {
                                    peer: peer.clone(),
                                    remote: from.clone(),
                                    local: to.clone(),
                                },
                            });
                        }
                    }
                    _ => {
                        // Linking to a process that does not exist: it
                        // exits at once with `noproc`.
                        let exit = tuple(vec![
                            int(EXIT),
                            Term::Pid(to.clone()),
                            Term::Pid(from.clone()),
                            atom("noproc"),
                        ]);
                        let p = encode_packet(&exit, None).map_err(|e| e.to_string())?;
                        conn.write(&p).map_err(|e| e.to_string())?;
                    }
                }
            }
            (EXIT, [_, Term::Pid(from), Term::Pid(to), reason], None) => {
                if let Some(watch) = self.shared.watch.lock().clone() {
                    let _ = watch.send(WatchMsg::RemoteExit {
                        remote: from.clone(),
                        local: to.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            (UNLINK_ID, [_, id, Term::Pid(from), Term::Pid(to)], None) => {
                if let Some(watch) = self.shared.watch.lock().clone() {
                    let _ = watch.send(WatchMsg::Unlink {
                        remote: from.clone(),
                        local: to.clone(),
                    });
                }
                let ack = tuple(vec![
                    int(UNLINK_ID_ACK),
                    id.clone(),
                    Term::Pid(to.clone()),
                    Term::Pid(from.clone()),
                ]);
                let p = encode_packet(&ack, None).map_err(|e| e.to_string())?;
                conn.write(&p).map_err(|e| e.to_string())?;
            }
            (DEMONITOR_P, [_, _, _, reference], _) => {
                if let Some(watch) = self.shared.watch.lock().clone() {
                    let _ = watch.send(WatchMsg::Forget(reference.clone()));
                }
            }
            (other, _, _) => {
                tracing::debug!(tag = other, "a control message weft does not handle yet");
            }
        }
        Ok(())
    }

    /// The registered actor a pid of this node names.
    fn local_actor(&self, pid: &Pid) -> Option<AnyAddr> {
        if pid.node.name != self.shared.name {
            return None;
        }
        let name = self.shared.by_pid.lock().get(&pid.id).cloned()?;
        self.shared
            .registered
            .lock()
            .get(&name)
            .map(|r| r.actor.clone())
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
        let target = self.shared.registered.lock().get(to).map(|r| r.to.clone());
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

    /// A packet weighs its bytes against the connection's mailbox limit.
    fn weigh(msg: &Out) -> usize {
        match msg {
            Out::Packet(p) => p.len(),
            _ => 0,
        }
    }

    /// Past the high watermark, senders are told `Backlogged`. Reading
    /// goes on (ticks and the peer's messages must still come in).
    fn write_paused(&mut self, _conn: &mut Conn<'_, '_, Self>) {
        self.paused.store(true, Ordering::Release);
    }

    fn write_resumed(&mut self, _conn: &mut Conn<'_, '_, Self>) {
        self.paused.store(false, Ordering::Release);
    }

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        self.heard = conn.runtime().now();
        conn.send_later(HANDSHAKE_TIMEOUT, Out::HandshakeTimeout);
        if let State::Dial(dial, _) = &mut self.state {
            // Dialing: our send_name goes first.
            let creation = *self.shared.creation.lock();
            let (fresh, first) = Connecting::start(
                &self.shared.name,
                &self.shared.cookie,
                creation,
                challenge(),
            );
            *dial = fresh;
            conn.write(&first)?;
        }
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.heard = conn.runtime().now();
        self.input.extend_from_slice(data);
        match self.state {
            State::Handshake(_) | State::Dial(..) => self.handshake(conn),
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
                // The next tick is armed before this one goes out, so a
                // peer that saw it knows the next is coming.
                conn.send_later(TICK, Out::Tick);
                conn.write(&[0, 0, 0, 0])?;
            }
            Out::HandshakeTimeout => {
                if matches!(self.state, State::Handshake(_) | State::Dial(..)) {
                    tracing::warn!("a distribution handshake did not complete in time");
                    conn.abort();
                }
            }
        }
        Ok(())
    }

    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        if let State::Connected { peer } = &self.state {
            // Its monitors of our actors are gone with it (its side sees
            // `noconnection`).
            if let Some(watch) = self.shared.watch.lock().clone() {
                let _ = watch.send(WatchMsg::PeerGone(peer.clone()));
            }
            // Our monitors of its processes fire with `noconnection`.
            let lost: Vec<(Vec<u32>, Recipient<RemoteDown>)> = {
                let mut monitors = self.shared.remote_monitors.lock();
                let ids: Vec<Vec<u32>> = monitors
                    .iter()
                    .filter(|(_, (p, _))| p == peer)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter()
                    .filter_map(|id| monitors.remove(&id).map(|(_, to)| (id, to)))
                    .collect()
            };
            let creation = *self.shared.creation.lock();
            for (id, to) in lost {
                let _ = to.send(RemoteDown {
                    reference: Term::from(eetf::Reference {
                        node: Atom::from(self.shared.name.as_str()),
                        id,
                        creation,
                    }),
                    target: atom(peer),
                    reason: atom("noconnection"),
                });
            }
        }
        if let State::Dial(_, waiter) = &mut self.state {
            if let Some(w) = waiter.take() {
                w.send(Err(format!("closed during the handshake: {reason}")));
            }
        }
        if let State::Connected { peer } = &self.state {
            tracing::info!(%peer, %reason, "node disconnected");
            let mut conns = self.shared.connections.lock();
            if conns
                .get(peer)
                .is_some_and(|p| p.conn.id() == conn.address().id())
            {
                conns.remove(peer);
            }
        }
    }
}

/// A monitored remote process ended (or its node was lost): what a
/// [`Node::monitor`] delivers, once.
#[derive(Debug, Clone)]
pub struct RemoteDown {
    /// The monitor's reference (as `Node::monitor` returned it).
    pub reference: Term,
    /// The process (or, on `noconnection`, its node's name).
    pub target: Term,
    /// Its exit reason, `noproc`, or `noconnection`.
    pub reason: Term,
}

/// One of this node's monitors of a remote process: the peer node's
/// name, and who to tell.
type RemoteMonitor = (String, Recipient<RemoteDown>);

/// A registered actor: where its messages go, and how to watch it.
struct Registered {
    to: Recipient<Incoming>,
    actor: AnyAddr,
    pid_id: u32,
}

/// A remote process's monitor of one of our actors.
struct Remote {
    peer: String,
    from: Pid,
    /// The name or pid it monitored (echoed in `MONITOR_P_EXIT`).
    target: Term,
    reference: Term,
}

/// What the node's watcher is told.
enum WatchMsg {
    /// A remote process monitors `actor`.
    Watch { actor: AnyAddr, monitor: Remote },
    /// The remote process demonitored (by its reference).
    Forget(Term),
    /// A node's connection closed: drop its monitors.
    PeerGone(String),
    /// A watched actor exited.
    Down(Down),
    /// A remote process linked to `actor`.
    Link { actor: AnyAddr, link: RemoteLink },
    /// A linked remote process exited.
    RemoteExit {
        remote: Pid,
        local: Pid,
        reason: Term,
    },
    /// A remote process unlinked.
    Unlink { remote: Pid, local: Pid },
}

/// A link between a remote process and one of our registered actors.
struct RemoteLink {
    peer: String,
    remote: Pid,
    /// Our actor's pid (as the remote side knows it).
    local: Pid,
}

/// Watches the local actors remote processes monitor, and tells each
/// monitor's node `MONITOR_P_EXIT` with the exit reason.
struct NodeWatch {
    shared: std::sync::Weak<Shared>,
    watches: HashMap<MonitorRef, Remote>,
    /// Links, each with the monitor that watches its local actor.
    links: Vec<(MonitorRef, AnyAddr, RemoteLink)>,
}

impl Actor for NodeWatch {
    type Msg = WatchMsg;

    fn handle(&mut self, msg: WatchMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            WatchMsg::Watch { actor, monitor } => {
                let key = ctx.monitor_any(&actor, WatchMsg::Down);
                self.watches.insert(key, monitor);
            }
            WatchMsg::Forget(reference) => {
                self.forget_watches(ctx, |m| m.reference == reference);
            }
            WatchMsg::PeerGone(peer) => {
                self.forget_watches(ctx, |m| m.peer == peer);
                // Linked actors go down with the link: `noconnection`.
                for (k, actor, l) in self.take_links(|_, l| l.peer == peer) {
                    ctx.demonitor(k);
                    actor.kill(linked_exit(&l.remote, &atom("noconnection")));
                }
            }
            WatchMsg::Down(down) => {
                self.fire(down.clone());
                self.fire_links(&down);
            }
            WatchMsg::Link { actor, link } => {
                let key = ctx.monitor_any(&actor, WatchMsg::Down);
                self.links.push((key, actor, link));
            }
            WatchMsg::RemoteExit {
                remote,
                local,
                reason,
            } => {
                for (k, actor, _) in self.take_links(|_, l| l.remote == remote && l.local == local)
                {
                    ctx.demonitor(k);
                    // As in Erlang: a normal exit does not take a linked
                    // process with it.
                    if reason != atom("normal") {
                        actor.kill(linked_exit(&remote, &reason));
                    }
                }
            }
            WatchMsg::Unlink { remote, local } => {
                for (k, _, _) in self.take_links(|_, l| l.remote == remote && l.local == local) {
                    ctx.demonitor(k);
                }
            }
        }
        Ok(())
    }
}

impl NodeWatch {
    /// Drops the remote monitors `which` selects (and their local
    /// monitors).
    fn forget_watches(&mut self, ctx: &mut Ctx<'_, Self>, which: impl Fn(&Remote) -> bool) {
        let keys: Vec<MonitorRef> = self
            .watches
            .iter()
            .filter(|(_, m)| which(m))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.watches.remove(&k);
            ctx.demonitor(k);
        }
    }

    /// Takes the links `which` selects out of the table.
    fn take_links(
        &mut self,
        which: impl Fn(&AnyAddr, &RemoteLink) -> bool,
    ) -> Vec<(MonitorRef, AnyAddr, RemoteLink)> {
        let (taken, kept) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(_, actor, l)| which(actor, l));
        self.links = kept;
        taken
    }

    /// Tells every remote process linked to the actor that exited
    /// (`EXIT` with its reason).
    fn fire_links(&mut self, down: &Down) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let reason = exit_term(&down.reason);
        for (_, _, l) in self.take_links(|actor, _| actor.id() == down.id) {
            let exit = tuple(vec![
                int(EXIT),
                Term::Pid(l.local.clone()),
                Term::Pid(l.remote.clone()),
                reason.clone(),
            ]);
            control_to(&shared, &l.peer, &exit);
        }
    }

    /// Tells every monitor of the actor that exited.
    fn fire(&mut self, down: Down) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let reason = exit_term(&down.reason);
        let gone: Vec<MonitorRef> = self
            .watches
            .iter()
            .filter(|(_, m)| monitored_id(&shared, &m.target) == Some(down.id))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            let Some(m) = self.watches.remove(&k) else {
                continue;
            };
            let exit = tuple(vec![
                int(MONITOR_P_EXIT),
                m.target.clone(),
                Term::Pid(m.from.clone()),
                m.reference.clone(),
                reason.clone(),
            ]);
            control_to(&shared, &m.peer, &exit);
        }
    }
}

/// The local actor a monitor's target names.
fn monitored_id(shared: &Shared, target: &Term) -> Option<weft_actors::ActorId> {
    let name = match target {
        Term::Atom(a) => a.name.clone(),
        Term::Pid(p) => shared.by_pid.lock().get(&p.id)?.clone(),
        _ => return None,
    };
    shared.registered.lock().get(&name).map(|r| r.actor.id())
}

/// Why a weft actor linked to a remote process stops with it.
fn linked_exit(remote: &Pid, reason: &Term) -> ExitReason {
    ExitReason::Error(std::sync::Arc::new(LinkedExit(format!(
        "linked process {remote} exited: {reason}"
    ))))
}

/// The error of a weft actor stopped by a linked remote process.
#[derive(Debug)]
struct LinkedExit(String);

impl std::fmt::Display for LinkedExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinkedExit {}

/// An exit reason as Erlang sees it: `normal`, `shutdown`, `killed`, or
/// `{error, <<Text>>}` / `{panic, <<Text>>}`.
fn exit_term(reason: &ExitReason) -> Term {
    let text = |tag: &str, t: String| {
        tuple(vec![
            atom(tag),
            Term::Binary(eetf::Binary::from(t.into_bytes())),
        ])
    };
    match reason {
        ExitReason::Normal => atom("normal"),
        ExitReason::Shutdown => atom("shutdown"),
        ExitReason::Killed => atom("killed"),
        ExitReason::Panic(p) => text("panic", p.to_string()),
        ExitReason::Error(e) => text("error", e.to_string()),
        other => text("error", other.to_string()),
    }
}
