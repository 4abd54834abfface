//! weft-dist: Erlang distribution for weft. A weft node registers with
//! EPMD, accepts connections from Erlang/OTP nodes and connects to them
//! ([`Node::connect`]: EPMD's PORT_PLEASE2, then the handshake), other
//! weft nodes alike, authenticates them with the cookie handshake
//! (version 6), keeps the connection alive with ticks (a peer silent for
//! 60 s is dropped), and exchanges messages in Erlang's external term
//! format (`eetf`'s `Term`): `erl` sends to a weft actor registered by
//! name (`{Name, 'weft@host'} ! Msg`); a weft program sends to a
//! registered process on another node ([`Node::send_named`]) or to any
//! process of a connected node ([`Node::send`]), and answers come to the
//! node's own pid ([`Node::pid`], [`Node::set_inbox`]). `net_adm:ping`
//! is answered.
//!
//! Owns: EPMD registration ([`epmd`]), the handshake ([`handshake`]), the
//! distribution connections and the node's routing ([`Node`]). Built on
//! `weft-io` (the listener and connection actors) and `weft-actors`; must
//! not touch the layers below (no cells, no scheduler, no reactor).
//!
//! Remote processes may monitor registered weft actors, by name or pid
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
//! [`Node::link`] from weft): a registered weft actor's exit reaches the
//! linked process as an `EXIT` with its reason; the linked process's
//! non-normal exit, or the loss of its node (`noconnection`), stops the
//! weft actor; `unlink` is acknowledged.
//!
//! A slow node cannot make this one buffer without bound: past a
//! connection's high watermark, sends to that node are refused with
//! [`DistSendError::Backlogged`] until it catches up.
//!
//! What this version does not do yet: pids for unregistered actors, connecting on first use
//! (connect explicitly).
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
