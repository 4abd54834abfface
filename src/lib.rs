//! weft: an actor-model reactor runtime.
//!
//! Everything Twisted's reactor gives a Python program, rebuilt around one
//! idea: every connection, listener, timer, process and thread worker is an
//! actor with a mailbox. The reactor (mio) turns OS readiness into
//! messages, a scheduler runs actors on a few worker threads, and
//! supervision trees restart what fails.
//!
//! This facade re-exports the layers; `use weft::prelude::*` brings in
//! what most programs need.
//!
//! ```
//! use std::time::Duration;
//! use weft::prelude::*;
//!
//! struct Doubler;
//! impl Actor for Doubler {
//!     type Msg = (u64, ReplyTo<u64>);
//!     fn handle(&mut self, (n, reply): Self::Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
//!         reply.send(n * 2);
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::builder().build()?;
//! let doubler = rt.handle().spawn(Doubler);
//! assert_eq!(doubler.ask_wait(|r| (21, r), Duration::from_secs(5))?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Layers (each its own crate, dependencies pointing down only):
//! [`runtime`] (scheduler, reactor, timers, clock, blocking pool, system
//! events) ← [`actors`] ← [`supervisor`] ← [`io`].

#![deny(missing_docs)]

pub use weft_actors as actors;
pub use weft_dist as dist;
pub use weft_io as io;
pub use weft_runtime as runtime;
pub use weft_supervisor as supervisor;

pub use weft_actors::{
    Actor, ActorId, ActorResult, Addr, AnyAddr, AskError, Ctx, Down, ExitReason, ExitSignal,
    MonitorRef, Recipient, ReplyTo, SendError, Spawn, SpawnOptions, Stopping, TimerHandle,
};
pub use weft_io::{
    connect_tcp, listen_tcp, CloseReason, Conn, ConnOptions, ConnRef, ConnectError, ConnectOptions,
    ListenOptions, Protocol, StopMode,
};
pub use weft_runtime::{
    Builder, Handle, ManualClock, MissedTicks, Phase, Runtime, RuntimeError, RuntimeMetrics,
    WorkerMetrics,
};

/// Deterministic simulation: a whole program on one thread, scheduled
/// by a seed, on virtual time, over a simulated network of named hosts
/// (`Builder::simulation`, [`sim::SimNet`]), with [`sim::check_seeds`]
/// to run a scenario over many seeds.
pub mod sim {
    pub use weft_io::sim::{Host, SimNet, SimNetError};
    pub use weft_runtime::{
        check_determinism, check_seeds, seed_from_env, Nondeterminism, SeedFailure, Simulation,
        Step, TraceEvent,
    };
}

/// What most weft programs import.
pub mod prelude {
    pub use weft_actors::{
        Actor, ActorId, ActorResult, Addr, AskError, Ctx, Down, ExitReason, ExitSignal, MonitorRef,
        Recipient, ReplyTo, SendError, Spawn, SpawnOptions, Stopping, TimerHandle,
    };
    pub use weft_io::{
        connect_tcp, connect_unix, listen_tcp, listen_unix, Address, CloseReason, Conn, ConnMsg,
        ConnOptions, ConnRef, ConnectOptions, ListenOptions, Protocol, StopMode, UnixAddr,
    };
    #[cfg(feature = "tls")]
    pub use weft_io::{connect_tls, listen_tls};
    pub use weft_runtime::{Handle, ManualClock, MissedTicks, Phase, Runtime};
}

/// The porting guide's Rust snippets (`docs/porting-from-twisted.md`),
/// compiled and run as doc tests so that the guide cannot drift from the
/// API. Not part of the documented API.
#[cfg(doctest)]
#[doc = include_str!("../docs/porting-from-twisted.md")]
pub struct PortingFromTwisted;
