//! weft-dist: Erlang distribution for weft. A weft node registers with
//! EPMD, accepts connections from Erlang/OTP nodes and connects to them
//! (on the first message to a node, or [`Node::connect`]: EPMD's
//! PORT_PLEASE2 on the blocking pool, then the handshake), other weft
//! nodes alike, authenticates them with the cookie handshake (version 6;
//! two nodes dialing each other at once settle on one connection by
//! Erlang's rule), keeps the connection alive with ticks (a peer silent
//! for 60 s is dropped), and exchanges messages in Erlang's external
//! term format (`eetf`'s `Term`). A weft actor gets a pid other nodes
//! see ([`Node::pid_for`]; released when it exits) and optionally a name
//! ([`Node::register`]: `{Name, 'weft@host'} ! Msg` from `erl`); a weft
//! program sends to a registered process on another node
//! ([`Node::send_named`]) or to any pid ([`Node::send`]), and answers
//! come to the actor whose pid was sent along, or to the node's own pid
//! ([`Node::pid`], [`Node::set_inbox`]). `net_adm:ping` is answered.
//!
//! Owns: EPMD registration ([`epmd`]), the handshake ([`handshake`]), the
//! distribution connections and the node's routing ([`Node`]). Built on
//! `weft-io` (the listener and connection actors) and `weft-actors`; must
//! not touch the layers below (no cells, no scheduler, no reactor).
//!
//! Remote processes may monitor weft actors, by name or pid
//! (`erlang:monitor(process, {Name, Node})`): they get `DOWN` with the
//! actor's exit reason (`normal`, `shutdown`, `killed`, `{error,
//! <<Text>>}`, `{panic, <<Text>>}`), or `noproc` for a name nobody
//! registered.
//!
//! A weft program monitors remote processes too ([`Node::monitor`],
//! [`Node::monitor_named`]): one [`RemoteDown`] with the exit reason,
//! `noproc`, or `noconnection` when the connection to that node is lost.
//!
//! Links cross nodes both ways (`link(Pid)` from a remote process, or
//! [`Node::link`] from weft): a weft actor's exit reaches the
//! linked process as an `EXIT` with its reason; the linked process's
//! non-normal exit, or the loss of its node (`noconnection`), stops the
//! weft actor; `unlink` is acknowledged.
//!
//! A slow node cannot make this one buffer without bound: past a
//! connection's high watermark, sends to that node are refused with
//! [`DistSendError::Backlogged`] until it catches up.
//!
//! Messages sent while a node is dialed wait for it (up to 1 MiB, then
//! `Backlogged`); if it cannot be reached they are dropped with a
//! warning and monitors of it fire with `noconnection`, as in Erlang.
//!
//! Not offered: the atom cache and fragmented packets (every packet is
//! pass-through, which every OTP node accepts), hidden nodes, global
//! name registration (`global`), spawning on a weft node
//! (`spawn(Node, ...)`), and TLS distribution.
//!
//! Rust values cross as terms through [`IntoTerm`] and [`FromTerm`]
//! (`node.send(&pid, ("ok".to_string(), 6i64))`, `msg.decode::<(Pid, Vec<i64>)>()`).

#![deny(missing_docs)]

pub mod epmd;
pub mod handshake;
mod node;
pub mod typed;

pub use eetf;
pub use node::{
    ConnectNodeError, DistConn, DistSendError, DistSender, Incoming, Node, NodeError, NodeOptions,
    Out, RemoteDown,
};
pub use typed::{FromTerm, IntoTerm, TypeError};
