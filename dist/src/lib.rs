//! weft-dist: Erlang distribution for weft. A weft node registers with
//! EPMD, accepts connections from Erlang/OTP nodes (and, through the same
//! protocol, other weft nodes), authenticates them with the cookie
//! handshake (version 6), and exchanges messages in Erlang's external
//! term format (`eetf`'s `Term`): `erl` sends to a weft actor registered
//! by name (`{Name, 'weft@host'} ! Msg`), and a weft actor answers any
//! process of a connected node with [`Node::send`]. `net_adm:ping` is
//! answered.
//!
//! Owns: EPMD registration ([`epmd`]), the handshake ([`handshake`]), the
//! distribution connections and the node's routing ([`Node`]). Built on
//! `weft-io` (the listener and connection actors) and `weft-actors`; must
//! not touch the layers below (no cells, no scheduler, no reactor).
//!
//! What this version does not do yet: connect out to other nodes
//! (PORT_PLEASE2 is here, the connecting handshake is not), hand out
//! weft pids, or carry monitors and links across nodes (a `MONITOR_P` on
//! an unknown name is answered `noproc`; others are accepted and never
//! fire).

#![deny(missing_docs)]

pub mod epmd;
pub mod handshake;
mod node;

pub use eetf;
pub use node::{DistConn, DistSendError, DistSender, Incoming, Node, NodeError, NodeOptions, Out};
