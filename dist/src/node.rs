//! A weft node: its name and cookie, its EPMD registration (held while the
//! [`Node`] lives), its distribution listener (a weft listener whose
//! connection actors run [`DistConn`]), the names it answers to, and the
//! connections to other nodes.
//!
//! Owns: routing between the distribution connections and weft actors
//! (pids and registered names in, packets out), dialing other nodes on
//! first use, the node's counters. Must not touch:
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
    reply_slot, Actor, ActorId, ActorResult, Addr, AnyAddr, Ctx, Down, ExitReason, MonitorRef,
    Recipient, ReplyTo, Spawn,
};
use weft_io::{
    connect_tcp, listen_tcp, CloseReason, Conn, ConnRef, ConnectOptions, ListenOptions, Listening,
    Protocol, StopMode,
};
use weft_runtime::Handle;

use crate::epmd::{self, Registration};
use crate::handshake::{status_for, Accepting, AuthError, Connecting, Progress, Status};
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

/// A message for a weft actor with a pid ([`Node::pid_for`]) or a name
/// ([`Node::register`]).
#[derive(Debug)]
pub struct Incoming {
    /// The sending process, when the peer said (`REG_SEND`, `SEND_SENDER`).
    pub from: Option<Pid>,
    /// The name it was sent to (`{Name, Node} ! Msg`), or the actor's
    /// registered name when sent to its pid (empty if it has none).
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
    /// No connection to that node: it went away, or (for control
    /// messages that answer a connection) never connected.
    #[error("not connected to node {0}")]
    NotConnected(String),
    /// Not a node name (`name@host`).
    #[error("{0:?} is not a node name (name@host)")]
    BadNode(String),
    /// A monitor or link of a process of this very node: use weft's own
    /// (`Ctx::monitor`, `Ctx::link`).
    #[error("{0} is this node: monitor or link its actors with weft's own monitors and links")]
    ThisNode(String),
    /// The term could not be encoded.
    #[error("the term cannot be encoded: {0}")]
    Encode(String),
    /// The connection to that node has too much queued (its mailbox is
    /// full): nothing was sent; try again later.
    #[error("the connection to node {0} is backlogged; nothing was sent")]
    Backlogged(String),
    /// No live actor of this node has that pid.
    #[error("no actor of this node has pid {0}")]
    NoSuchActor(String),
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
    /// Dials other nodes (connect on first use).
    handle: Handle,
    /// Where messages to this node's own pid go.
    inbox: Mutex<Option<Recipient<Incoming>>>,
    /// The actors with pids, and their names.
    locals: Mutex<Locals>,
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
            handle: handle.clone(),
            inbox: Mutex::new(None),
            locals: Mutex::new(Locals::default()),
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

    /// The pid other nodes see for actor `to`, given it on first asking
    /// (the same pid every time after): other nodes send to it, monitor
    /// it (`DOWN` with its exit reason) and link to it. It is released
    /// when the actor exits; a message to it after that is dropped, as
    /// Erlang drops one to a dead process.
    pub fn pid_for<A: Actor<Msg = Incoming>>(&self, to: &Addr<A>) -> Pid {
        let id = {
            let mut locals = self.shared.locals.lock();
            if let Some(&id) = locals.by_actor.get(&to.id()) {
                id
            } else {
                locals.next += 1;
                let id = locals.next;
                locals.by_actor.insert(to.id(), id);
                locals.by_id.insert(
                    id,
                    Local {
                        to: to.recipient(),
                        actor: AnyAddr::from(to),
                        name: None,
                    },
                );
                // Released when it exits.
                if let Some(watch) = self.shared.watch.lock().as_ref() {
                    let _ = watch.send(WatchMsg::Track(AnyAddr::from(to)));
                }
                id
            }
        };
        local_pid(&self.shared, id)
    }

    /// Makes actor `to` reachable as `{Name, Node}` from other nodes
    /// (`erl`'s `{Name, 'weft@host'} ! Msg`) as well as at its pid
    /// ([`pid_for`](Self::pid_for)); other nodes may monitor it by name
    /// (`erlang:monitor(process, {Name, Node})`: `DOWN` with its exit
    /// reason). Replaces an earlier registration of `name`; the name goes
    /// when the actor exits.
    pub fn register<A: Actor<Msg = Incoming>>(&self, name: &str, to: &Addr<A>) {
        let id = self.pid_for(to).id;
        let mut locals = self.shared.locals.lock();
        if let Some(old) = locals.names.insert(name.to_string(), id) {
            if let Some(l) = locals.by_id.get_mut(&old) {
                l.name = None;
            }
        }
        let earlier = locals
            .by_id
            .get_mut(&id)
            .and_then(|l| l.name.replace(name.to_string()));
        // One name per actor, as in Erlang: the earlier one is released.
        if let Some(earlier) = earlier.filter(|e| e != name) {
            locals.names.remove(&earlier);
        }
    }

    /// Releases `name` (`unregister/1`): messages to it are dropped from
    /// now on; the actor keeps its pid. False if nothing had that name.
    pub fn unregister(&self, name: &str) -> bool {
        let mut locals = self.shared.locals.lock();
        let Some(id) = locals.names.remove(name) else {
            return false;
        };
        if let Some(l) = locals.by_id.get_mut(&id) {
            l.name = None;
        }
        true
    }

    /// The pid of the actor registered as `name`.
    pub fn pid_of(&self, name: &str) -> Option<Pid> {
        let id = *self.shared.locals.lock().names.get(name)?;
        Some(local_pid(&self.shared, id))
    }

    /// Sends `message` (a `Term`, or any [`IntoTerm`] value) to process
    /// `to` (on this node or another). A node not connected yet is dialed
    /// (its EPMD asked where it listens, then the handshake) and the
    /// message sent once connected; if that fails, the messages queued
    /// for it are dropped with a warning, as Erlang drops a message to an
    /// unreachable node.
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
    /// (`{Name, Node} ! Msg`), from [`pid`](Self::pid), dialing `node`
    /// first if it is not connected (as [`send`](Self::send)).
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
    /// is). Sending connects on first use too; this is for knowing that
    /// it worked (`net_kernel:connect_node/1`). Blocks up to `timeout`:
    /// call it from a plain thread or the blocking pool, not from an
    /// actor's handler.
    pub fn connect(&self, node: &str, timeout: Duration) -> Result<(), ConnectNodeError> {
        let (reply, pending) = reply_slot();
        let failed = |why: String| ConnectNodeError::Failed {
            node: node.to_string(),
            why,
        };
        {
            let mut conns = self.shared.connections.lock();
            match conns.get_mut(node) {
                Some(Peer {
                    link: PeerLink::Up(_),
                    ..
                }) => return Ok(()),
                Some(Peer {
                    link: PeerLink::Dialing(d),
                    ..
                }) => d.waiters.push(reply),
                None => {
                    if !valid_node_name(node) {
                        return Err(ConnectNodeError::BadName(node.into()));
                    }
                    conns.insert(node.to_string(), Peer::dialing(vec![reply]));
                    drop(conns);
                    start_dial(&self.shared, node);
                }
            }
        }
        match pending.wait(timeout) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(DialError::NoSuchNode(why))) => Err(ConnectNodeError::NoSuchNode {
                node: node.to_string(),
                why,
            }),
            Ok(Err(DialError::Failed(why))) => Err(failed(why)),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Links actor `local` (a pid of this node, from
    /// [`pid_for`](Self::pid_for) or [`pid_of`](Self::pid_of)) with
    /// process `remote` on another node (`link/1`), dialing it if need
    /// be: the actor's exit reaches `remote` as an `EXIT` with its
    /// reason; `remote`'s non-normal exit, or the loss of its node
    /// (`noconnection`), stops the actor.
    pub fn link(&self, local: &Pid, remote: &Pid) -> Result<(), DistSendError> {
        let actor = local_actor(&self.shared, local)
            .ok_or_else(|| DistSendError::NoSuchActor(local.to_string()))?;
        let peer = remote.node.name.clone();
        let control = tuple(vec![
            int(LINK),
            Term::Pid(local.clone()),
            Term::Pid(remote.clone()),
        ]);
        let packet = encode_packet(&control, None)?;
        route(&self.shared, &peer, packet)?;
        if let Some(watch) = self.shared.watch.lock().clone() {
            let _ = watch.send(WatchMsg::Link {
                actor,
                link: RemoteLink {
                    peer,
                    remote: remote.clone(),
                    local: local.clone(),
                },
            });
        }
        Ok(())
    }

    /// Monitors process `target` on another node (`erlang:monitor`),
    /// dialing it if need be:
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

    /// Stops monitor `reference` (`erlang:demonitor/1`): no
    /// [`RemoteDown`] comes for it after this returns. False if it had
    /// already fired or was never made here.
    pub fn demonitor(&self, reference: &Term) -> bool {
        let Term::Reference(r) = reference else {
            return false;
        };
        let Some(m) = self.shared.remote_monitors.lock().remove(&r.id) else {
            return false;
        };
        // DEMONITOR_P {20, FromPid, ToProc, Ref}.
        let control = tuple(vec![
            int(DEMONITOR_P),
            Term::Pid(self.pid()),
            m.target,
            reference.clone(),
        ]);
        control_to(&self.shared, &m.peer, &control);
        true
    }

    fn monitor_term(
        &self,
        node: &str,
        target: Term,
        to: Recipient<RemoteDown>,
    ) -> Result<Term, DistSendError> {
        if !valid_node_name(node) {
            return Err(DistSendError::BadNode(node.to_string()));
        }
        let n = self.shared.next_ref.fetch_add(1, Ordering::Relaxed);
        let id = vec![(n & 0x3_ffff) as u32, (n >> 18) as u32, 0];
        let reference = Term::from(eetf::Reference {
            node: Atom::from(self.shared.name.as_str()),
            id: id.clone(),
            creation: *self.shared.creation.lock(),
        });
        self.shared.remote_monitors.lock().insert(
            id.clone(),
            RemoteMonitor {
                peer: node.to_string(),
                target: target.clone(),
                to,
            },
        );
        let control = tuple(vec![
            int(MONITOR_P),
            Term::Pid(self.pid()),
            target,
            reference.clone(),
        ]);
        let packet = encode_packet(&control, None)?;
        if let Err(e) = route(&self.shared, node, packet) {
            self.shared.remote_monitors.lock().remove(&id);
            return Err(e);
        }
        Ok(reference)
    }

    /// The nodes connected now (not the ones being dialed).
    pub fn connected_nodes(&self) -> Vec<String> {
        let conns = self.shared.connections.lock();
        conns
            .iter()
            .filter(|(_, p)| matches!(p.link, PeerLink::Up(_)))
            .map(|(name, _)| name.clone())
            .collect()
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
            if let PeerLink::Up(conn) = peer.link {
                conn.close();
            }
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

/// Sends to processes of other nodes as its node (`Node::sender`);
/// `Send + Sync + Clone`.
#[derive(Clone)]
pub struct DistSender {
    shared: Arc<Shared>,
}

impl DistSender {
    /// As [`Node::send`].
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

fn send_named(
    shared: &Arc<Shared>,
    name: &str,
    node: &str,
    message: Term,
) -> Result<(), DistSendError> {
    if node == shared.name {
        deliver_named(shared, Some(node_pid(shared)), name, message);
        return Ok(());
    }
    let control = tuple(vec![
        int(REG_SEND),
        Term::Pid(node_pid(shared)),
        atom(""),
        atom(name),
    ]);
    route(shared, node, encode_packet(&control, Some(&message))?)
}

impl std::fmt::Debug for DistSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistSender")
            .field("node", &self.shared.name)
            .finish()
    }
}

fn send_to_pid(shared: &Arc<Shared>, to: &Pid, message: Term) -> Result<(), DistSendError> {
    let node = &to.node.name;
    if *node == shared.name {
        // A pid of this node: delivered without a round trip.
        deliver_local(shared, None, to, message);
        return Ok(());
    }
    let control = tuple(vec![int(SEND), atom(""), Term::Pid(to.clone())]);
    route(shared, node, encode_packet(&control, Some(&message))?)
}

/// The pid of local actor `id`.
fn local_pid(shared: &Shared, id: u32) -> Pid {
    Pid::new(shared.name.as_str(), id, 0, *shared.creation.lock())
}

/// The actor with `pid`, if it is one of this node's and alive.
fn local_actor(shared: &Shared, pid: &Pid) -> Option<AnyAddr> {
    if pid.node.name != shared.name {
        return None;
    }
    let locals = shared.locals.lock();
    locals.by_id.get(&pid.id).map(|l| l.actor.clone())
}

/// Delivers a message sent to a pid of this node: the node's own (its
/// inbox) or an actor's.
fn deliver_local(shared: &Shared, from: Option<Pid>, to: &Pid, message: Term) {
    if to.id == 0 {
        deliver_inbox(shared, from, message);
        return;
    }
    let target = {
        let locals = shared.locals.lock();
        locals
            .by_id
            .get(&to.id)
            .map(|l| (l.to.clone(), l.name.clone().unwrap_or_default()))
    };
    match target {
        Some((r, name)) => {
            let _ = r.send(Incoming {
                from,
                to: name,
                message,
            });
        }
        None => tracing::debug!(%to, "a message to an unknown pid was dropped"),
    }
}

/// Delivers a message sent to a name registered on this node.
fn deliver_named(shared: &Shared, from: Option<Pid>, name: &str, message: Term) {
    let target = {
        let locals = shared.locals.lock();
        locals
            .names
            .get(name)
            .and_then(|id| locals.by_id.get(id))
            .map(|l| l.to.clone())
    };
    match target {
        Some(r) => {
            let _ = r.send(Incoming {
                from,
                to: name.to_string(),
                message,
            });
        }
        None => tracing::debug!(name, "a message to an unregistered name was dropped"),
    }
}

/// The actors of this node with pids.
#[derive(Default)]
struct Locals {
    by_id: HashMap<u32, Local>,
    by_actor: HashMap<ActorId, u32>,
    names: HashMap<String, u32>,
    /// The last id handed out (0 is the node's own pid).
    next: u32,
}

/// An actor with a pid.
struct Local {
    to: Recipient<Incoming>,
    actor: AnyAddr,
    name: Option<String>,
}

/// What a node knows of another: connected, or being dialed.
struct Peer {
    link: PeerLink,
    /// Its connection's outgoing packets (shared with it).
    outbox: Arc<Outbox>,
}

/// The packets senders append for a connection, written by it in one
/// go: a sender that finds the buffer empty tells the connection
/// (`Out::Flush`), so a burst of sends costs one mailbox message and
/// one write, not one of each per packet.
#[derive(Default)]
struct Outbox {
    buf: Mutex<Vec<u8>>,
    /// Set while the connection's write side is paused (past its high
    /// watermark: the peer reads slower than this node sends).
    paused: AtomicBool,
}

impl Outbox {
    /// Appends `packet`; refused as `Backlogged` (unless `force`) while
    /// the connection is paused or the outbox holds a megabyte.
    fn push(
        &self,
        conn: &ConnRef<DistConn>,
        node: &str,
        packet: &[u8],
        force: bool,
    ) -> Result<(), DistSendError> {
        let was_empty = {
            let mut buf = self.buf.lock();
            if !force && (self.paused.load(Ordering::Acquire) || buf.len() >= OUTBOX_LIMIT) {
                return Err(DistSendError::Backlogged(node.to_string()));
            }
            let was_empty = buf.is_empty();
            buf.extend_from_slice(packet);
            was_empty
        };
        if was_empty {
            if let Err(e) = conn.send(Out::Flush) {
                self.buf.lock().clear();
                return Err(refused(e, node.to_string()));
            }
        }
        Ok(())
    }
}

/// How much a connection's outbox holds before senders are told
/// `Backlogged` (its write buffer has its own watermarks besides).
const OUTBOX_LIMIT: usize = 1 << 20;

enum PeerLink {
    Up(ConnRef<DistConn>),
    /// Being dialed: the packets sent meanwhile, in order, and who waits
    /// in [`Node::connect`].
    Dialing(Dialing),
}

#[derive(Default)]
struct Dialing {
    queued: Vec<Vec<u8>>,
    bytes: usize,
    waiters: Vec<ReplyTo<Result<String, DialError>>>,
}

/// Why dialing a node failed (told to [`Node::connect`]'s waiters).
#[derive(Clone, Debug)]
enum DialError {
    NoSuchNode(String),
    Failed(String),
}

impl Peer {
    fn dialing(waiters: Vec<ReplyTo<Result<String, DialError>>>) -> Peer {
        Peer {
            link: PeerLink::Dialing(Dialing {
                waiters,
                ..Dialing::default()
            }),
            outbox: Arc::default(),
        }
    }
}

/// How much may wait for a node being dialed before senders are told
/// `Backlogged` (the connection's own high watermark).
const DIAL_QUEUE: usize = 1 << 20;

fn valid_node_name(node: &str) -> bool {
    node.split_once('@')
        .is_some_and(|(alive, host)| !alive.is_empty() && !host.is_empty())
}

/// Sends `packet` to `node`: into its connection's outbox (refused as
/// `Backlogged` while its write side is paused or the outbox is full, so
/// a slow node cannot make this one buffer without bound), queued while
/// it is dialed, or queued and the dial started if it is neither.
fn route(shared: &Arc<Shared>, node: &str, packet: Vec<u8>) -> Result<(), DistSendError> {
    if node == shared.name {
        return Err(DistSendError::ThisNode(node.to_string()));
    }
    let mut conns = shared.connections.lock();
    match conns.get_mut(node) {
        Some(peer) => match &mut peer.link {
            PeerLink::Up(conn) => peer.outbox.push(conn, node, &packet, false),
            PeerLink::Dialing(d) => {
                if d.bytes + packet.len() > DIAL_QUEUE {
                    return Err(DistSendError::Backlogged(node.to_string()));
                }
                d.bytes += packet.len();
                d.queued.push(packet);
                Ok(())
            }
        },
        None => {
            if !valid_node_name(node) {
                return Err(DistSendError::BadNode(node.to_string()));
            }
            let mut peer = Peer::dialing(Vec::new());
            if let PeerLink::Dialing(d) = &mut peer.link {
                d.bytes = packet.len();
                d.queued.push(packet);
            }
            conns.insert(node.to_string(), peer);
            drop(conns);
            start_dial(shared, node);
            Ok(())
        }
    }
}

/// Dials `node` (already listed as `Dialing`): EPMD on its host and the
/// TCP connect on the blocking pool, then the handshake in the
/// connection actor, which flushes what was queued.
fn start_dial(shared: &Arc<Shared>, node: &str) {
    let for_job = shared.clone();
    let name = node.to_string();
    let job = move || {
        let shared = for_job;
        match locate(&shared, &name) {
            Err(why) => dial_failed(&shared, &name, DialError::NoSuchNode(why)),
            Ok(target) => {
                let options = ConnectOptions::new()
                    .timeout(HANDSHAKE_TIMEOUT)
                    .conn(dist_conn_options());
                let connecting = connect_tcp(
                    &shared.handle,
                    target,
                    options,
                    DistConn::dialing(shared.clone(), name.clone()),
                );
                // From here the connection actor reports the outcome.
                if let Err(e) = connecting.wait(HANDSHAKE_TIMEOUT) {
                    dial_failed(&shared, &name, DialError::Failed(e.to_string()));
                }
            }
        }
    };
    if let Err(e) = shared.handle.spawn_blocking(job) {
        dial_failed(shared, node, DialError::Failed(e.to_string()));
    }
}

/// Where `node` listens, as EPMD on its host says.
fn locate(shared: &Shared, node: &str) -> Result<SocketAddr, String> {
    let (alive, host) = node
        .split_once('@')
        .ok_or_else(|| format!("{node:?} is not a node name"))?;
    let ip = std::net::ToSocketAddrs::to_socket_addrs(&(host, shared.epmd_port))
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let port = epmd::port_please(ip, alive)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "not registered".to_string())?;
    Ok(SocketAddr::new(ip.ip(), port))
}

/// A dial of `node` failed: its waiters are told, what was queued for it
/// is dropped (with a warning), and what was asked of it meanwhile
/// (monitors, links) fires with `noconnection`.
fn dial_failed(shared: &Shared, node: &str, why: DialError) {
    let dialing = {
        let mut conns = shared.connections.lock();
        if !matches!(
            conns.get(node),
            Some(Peer {
                link: PeerLink::Dialing(_),
                ..
            })
        ) {
            return; // connected meanwhile (its own dial reached us)
        }
        match conns.remove(node).map(|p| p.link) {
            Some(PeerLink::Dialing(d)) => d,
            _ => return,
        }
    };
    let text = match &why {
        DialError::NoSuchNode(w) | DialError::Failed(w) => w.clone(),
    };
    if !dialing.queued.is_empty() {
        tracing::warn!(
            node,
            why = %text,
            dropped = dialing.queued.len(),
            "cannot reach node; messages to it were dropped"
        );
    }
    for w in dialing.waiters {
        w.send(Err(why.clone()));
    }
    lost_peer(shared, node);
}

/// The connection to `node` is gone (or never came): this node's
/// monitors of its processes fire with `noconnection`, and its monitors
/// of and links to our actors are dropped (links take their actor down).
fn lost_peer(shared: &Shared, node: &str) {
    if let Some(watch) = shared.watch.lock().clone() {
        let _ = watch.send(WatchMsg::PeerGone(node.to_string()));
    }
    let lost: Vec<(Vec<u32>, RemoteMonitor)> = {
        let mut monitors = shared.remote_monitors.lock();
        let ids: Vec<Vec<u32>> = monitors
            .iter()
            .filter(|(_, m)| m.peer == node)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| monitors.remove(&id).map(|m| (id, m)))
            .collect()
    };
    let creation = *shared.creation.lock();
    for (id, m) in lost {
        let _ = m.to.send(RemoteDown {
            reference: Term::from(eetf::Reference {
                node: Atom::from(shared.name.as_str()),
                id,
                creation,
            }),
            target: m.target,
            reason: atom("noconnection"),
        });
    }
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
    let up = match shared.connections.lock().get(peer) {
        Some(Peer {
            link: PeerLink::Up(conn),
            outbox,
        }) => Some((conn.clone(), outbox.clone())),
        _ => None,
    };
    if let (Some((conn, outbox)), Ok(p)) = (up, encode_packet(control, None)) {
        let _ = outbox.push(&conn, peer, &p, true);
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
    /// Packets wait in the outbox the node's senders share with this
    /// connection.
    Flush,
    /// Time to tick (and to check the peer was heard from).
    Tick,
    /// The handshake's time is up.
    HandshakeTimeout,
}

enum State {
    /// Accepted; `took_over` names the node whose pending entry this
    /// connection owns once the handshake answered its name (`ok`: a new
    /// entry, so sends to it wait for this handshake; `ok_simultaneous`:
    /// our own dial's, which gave way): if the handshake fails, the entry
    /// goes with it.
    Handshake {
        accepting: Accepting,
        took_over: Option<String>,
    },
    /// Dialing the node named.
    Dial(Connecting, String),
    Connected {
        peer: String,
    },
    Failed,
}

/// A distribution connection's protocol: the handshake, then packets.
pub struct DistConn {
    shared: Arc<Shared>,
    input: Vec<u8>,
    state: State,
    /// When the peer last sent anything, on the runtime's clock.
    heard: Duration,
    /// What senders queued (shared with them through the node's table).
    outbox: Arc<Outbox>,
    /// The outbox's other buffer: swapped in on each flush.
    spare: Vec<u8>,
}

impl DistConn {
    fn accepting(shared: Arc<Shared>) -> Self {
        let creation = *shared.creation.lock();
        let state = State::Handshake {
            accepting: Accepting::new(&shared.name, &shared.cookie, creation, challenge()),
            took_over: None,
        };
        DistConn {
            shared,
            input: Vec::new(),
            state,
            heard: Duration::ZERO,
            outbox: Arc::default(),
            spare: Vec::new(),
        }
    }

    /// A connection this node makes to `node`'s listener (listed as
    /// `Dialing`: the handshake's outcome goes to that entry).
    fn dialing(shared: Arc<Shared>, node: String) -> Self {
        let creation = *shared.creation.lock();
        let (dial, _first) = Connecting::start(&shared.name, &shared.cookie, creation, challenge());
        DistConn {
            shared,
            input: Vec::new(),
            state: State::Dial(dial, node),
            heard: Duration::ZERO,
            outbox: Arc::default(),
            spare: Vec::new(),
        }
    }

    fn handshake(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let mut out = Vec::new();
        let shared = &self.shared;
        let progress = match &mut self.state {
            State::Handshake {
                accepting,
                took_over,
            } => accepting.feed_with(&mut self.input, &mut out, |peer| {
                let mut conns = shared.connections.lock();
                let (connected, dialing) = match conns.get(peer) {
                    Some(p) => (
                        matches!(p.link, PeerLink::Up(_)),
                        matches!(p.link, PeerLink::Dialing(_)),
                    ),
                    None => (false, false),
                };
                let status = status_for(&shared.name, peer, connected, dialing);
                match status {
                    // From now on the node counts as being connected to:
                    // what is sent to it waits for this handshake, and no
                    // dial of ours races it.
                    Status::Ok => {
                        conns.insert(peer.to_string(), Peer::dialing(Vec::new()));
                        *took_over = Some(peer.to_string());
                    }
                    Status::OkSimultaneous => *took_over = Some(peer.to_string()),
                    Status::Nok | Status::Alive => {}
                }
                status
            }),
            State::Dial(dial, node) => dial.feed_with(&mut self.input, &mut out, || {
                // Replace its connection only if we hold none: a live one
                // of ours (made while this dial was on its way) stays.
                !matches!(
                    shared
                        .connections
                        .lock()
                        .get(node.as_str())
                        .map(|p| &p.link),
                    Some(PeerLink::Up(_))
                )
            }),
            _ => return Ok(()),
        };
        if matches!(progress, Ok(Progress::Done { .. })) {
            // Ticking starts before the last handshake message goes out.
            conn.send_later(TICK, Out::Tick);
        }
        if !out.is_empty() {
            conn.write(&out)?;
        }
        match progress {
            Ok(Progress::More) => Ok(()),
            Ok(Progress::Done { peer, .. }) => {
                if let State::Dial(_, dialed) = &self.state {
                    if *dialed != peer {
                        let why = format!("the node there is {peer}");
                        dial_failed(&self.shared, dialed, DialError::Failed(why));
                        self.state = State::Failed;
                        conn.close();
                        return Ok(());
                    }
                }
                self.up(conn, &peer);
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
                let state = std::mem::replace(&mut self.state, State::Failed);
                match (&e, state) {
                    // Our dial gave way to the peer's own connection to
                    // us, which takes over the queued packets.
                    (AuthError::Simultaneous { .. }, State::Dial(..)) => {
                        tracing::debug!("a simultaneous connect: the peer's attempt goes on");
                    }
                    (AuthError::Simultaneous { peer }, _) => {
                        tracing::debug!(%peer, "a simultaneous connect: our attempt goes on");
                    }
                    (_, State::Dial(_, dialed)) => {
                        tracing::warn!(error = %e, node = %dialed, "distribution handshake failed");
                        dial_failed(&self.shared, &dialed, DialError::Failed(e.to_string()));
                    }
                    (_, State::Handshake { took_over, .. }) => {
                        tracing::warn!(error = %e, "distribution handshake refused");
                        if let Some(node) = took_over {
                            dial_failed(&self.shared, &node, DialError::Failed(e.to_string()));
                        }
                    }
                    _ => {}
                }
                conn.close();
                Ok(())
            }
        }
    }

    /// The handshake with `peer` completed: this connection is the one
    /// to it from now on. What was queued while dialing goes out first
    /// (before any packet in the mailbox), and the waiters hear.
    fn up(&mut self, conn: &mut Conn<'_, '_, Self>, peer: &str) {
        tracing::info!(%peer, "node connected");
        let me = conn.address().id();
        let replaced = {
            let mut conns = self.shared.connections.lock();
            match conns.get(peer).map(|p| &p.link) {
                Some(PeerLink::Up(old)) if old.id() != me => conns.remove(peer),
                _ => None,
            }
        };
        if let Some(Peer {
            link: PeerLink::Up(old),
            ..
        }) = replaced
        {
            // An earlier connection to a node of that name (it restarted,
            // or both ends dialed at once): what was asked over it is
            // lost with it, and this one replaces it.
            old.abort();
            lost_peer(&self.shared, peer);
        }
        let previous = self.shared.connections.lock().insert(
            peer.to_string(),
            Peer {
                link: PeerLink::Up(conn.address()),
                outbox: self.outbox.clone(),
            },
        );
        if let Some(PeerLink::Dialing(d)) = previous.map(|p| p.link) {
            for packet in &d.queued {
                if conn.write(packet).is_err() {
                    break;
                }
            }
            for w in d.waiters {
                w.send(Ok(peer.to_string()));
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
                if to.node.name == self.shared.name {
                    deliver_local(&self.shared, from, to, message);
                } else {
                    tracing::debug!(%to, "a message for another node's pid was dropped");
                }
            }
            (MONITOR_P, [_, Term::Pid(from), target, reference], None) => {
                let actor = match target {
                    Term::Atom(a) => {
                        let locals = self.shared.locals.lock();
                        locals
                            .names
                            .get(&a.name)
                            .and_then(|id| locals.by_id.get(id))
                            .map(|l| l.actor.clone())
                    }
                    Term::Pid(p) => local_actor(&self.shared, p),
                    _ => None,
                };
                let is_net_kernel = matches!(target, Term::Atom(a) if a.name == "net_kernel");
                let watch = self.shared.watch.lock().clone();
                if let (Some(actor), Some(watch), State::Connected { peer }) =
                    (actor, watch, &self.state)
                {
                    let _ = watch.send(WatchMsg::Watch {
                        monitor: Remote {
                            peer: peer.clone(),
                            actor: actor.id(),
                            from: from.clone(),
                            target: target.clone(),
                            reference: reference.clone(),
                        },
                        actor,
                    });
                } else if !is_net_kernel {
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
                if let Some(RemoteMonitor { to, .. }) = entry {
                    let _ = to.send(RemoteDown {
                        reference: Term::Reference(reference.clone()),
                        target: target.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            (LINK, [_, Term::Pid(from), Term::Pid(to)], None) => {
                let local = local_actor(&self.shared, to);
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
        deliver_named(&self.shared, from, to, message);
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
        self.outbox.paused.store(true, Ordering::Release);
    }

    fn write_resumed(&mut self, _conn: &mut Conn<'_, '_, Self>) {
        self.outbox.paused.store(false, Ordering::Release);
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
            State::Handshake { .. } | State::Dial(..) => self.handshake(conn),
            State::Connected { .. } => self.packets(conn),
            State::Failed => Ok(()),
        }
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Out) -> ActorResult {
        match msg {
            Out::Packet(p) => conn.write(&p)?,
            Out::Flush => {
                std::mem::swap(&mut *self.outbox.buf.lock(), &mut self.spare);
                let written = conn.write(&self.spare);
                self.spare.clear();
                written?;
            }
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
                if matches!(self.state, State::Handshake { .. } | State::Dial(..)) {
                    tracing::warn!("a distribution handshake did not complete in time");
                    conn.abort();
                }
            }
        }
        Ok(())
    }

    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        match &self.state {
            State::Connected { peer } => {
                tracing::info!(%peer, %reason, "node disconnected");
                // Only the current connection to `peer` speaks for it (a
                // replaced one has been accounted for).
                let current = {
                    let mut conns = self.shared.connections.lock();
                    let mine = conns.get(peer).is_some_and(
                        |p| matches!(&p.link, PeerLink::Up(c) if c.id() == conn.address().id()),
                    );
                    if mine {
                        conns.remove(peer);
                    }
                    mine
                };
                if current {
                    lost_peer(&self.shared, peer);
                }
            }
            State::Dial(_, dialed) => {
                let why = format!("closed during the handshake: {reason}");
                dial_failed(&self.shared, dialed, DialError::Failed(why));
            }
            State::Handshake {
                took_over: Some(node),
                ..
            } => {
                let why = format!("its connection closed during the handshake: {reason}");
                dial_failed(&self.shared, node, DialError::Failed(why));
            }
            _ => {}
        }
    }
}

/// A monitored remote process ended (or its node was lost): what a
/// [`Node::monitor`] delivers, once.
#[derive(Debug, Clone)]
pub struct RemoteDown {
    /// The monitor's reference (as `Node::monitor` returned it).
    pub reference: Term,
    /// The process (its pid, or its name when monitored by name).
    pub target: Term,
    /// Its exit reason, `noproc`, or `noconnection`.
    pub reason: Term,
}

/// One of this node's monitors of a remote process.
struct RemoteMonitor {
    /// The node it is on.
    peer: String,
    /// The pid or name monitored.
    target: Term,
    /// Who to tell.
    to: Recipient<RemoteDown>,
}

/// A remote process's monitor of one of our actors.
struct Remote {
    peer: String,
    /// The local actor monitored.
    actor: ActorId,
    from: Pid,
    /// The name or pid it monitored (echoed in `MONITOR_P_EXIT`).
    target: Term,
    reference: Term,
}

/// What the node's watcher is told.
enum WatchMsg {
    /// `actor` got a pid: release it when the actor exits.
    Track(AnyAddr),
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
            WatchMsg::Track(actor) => {
                ctx.monitor_any(&actor, WatchMsg::Down);
            }
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
                self.fire(&down);
                self.fire_links(&down);
                if let Some(shared) = self.shared.upgrade() {
                    release(&shared, down.id);
                }
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
    fn fire(&mut self, down: &Down) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let reason = exit_term(&down.reason);
        let gone: Vec<MonitorRef> = self
            .watches
            .iter()
            .filter(|(_, m)| m.actor == down.id)
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

/// An exited actor's pid and name are released.
fn release(shared: &Shared, actor: ActorId) {
    let mut locals = shared.locals.lock();
    let Some(id) = locals.by_actor.remove(&actor) else {
        return;
    };
    if let Some(Local {
        name: Some(name), ..
    }) = locals.by_id.remove(&id)
    {
        if locals.names.get(&name) == Some(&id) {
            locals.names.remove(&name);
        }
    }
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
