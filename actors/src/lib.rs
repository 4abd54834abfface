//! weft-actors: the actor model on top of weft-runtime.
//!
//! Owns: the [`Actor`] trait, [`Addr`] and [`Recipient`], [`Ctx`],
//! mailboxes (capacity, back-pressure by muting senders), ask and reply,
//! timers as messages, blocking work as messages, monitors and links, exit
//! reasons, panics caught at the handler boundary, thread-worker actors,
//! and the name registry.
//!
//! Must not touch: sockets or supervision (the layers above), nor the
//! scheduler's internals: a cell is a `weft_runtime::Task`, scheduled with
//! `Handle::schedule`, and I/O readiness arrives through
//! `Handle::register`.
//!
//! ```
//! use std::time::Duration;
//! use weft_actors::{Actor, ActorResult, Ctx, ReplyTo, Spawn};
//! use weft_runtime::Runtime;
//!
//! struct Greeter;
//! impl Actor for Greeter {
//!     type Msg = (String, ReplyTo<String>);
//!     fn handle(&mut self, (name, reply): Self::Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
//!         reply.send(format!("hello, {name}"));
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let greeter = rt.handle().spawn(Greeter);
//! // From a plain thread: ask and wait, with a timeout.
//! let answer = greeter.ask_wait(|r| ("weft".to_string(), r), Duration::from_secs(5));
//! assert_eq!(answer.unwrap(), "hello, weft");
//! ```

#![deny(missing_docs)]

mod actor;
mod addr;
mod any_addr;
mod ask;
mod cell;
mod ctx;
mod exit;
pub mod observe;
mod recipient;
mod registry;
mod sync;
mod system;
mod timer;

pub use actor::{Actor, ActorResult, Stopping};
pub use addr::{Addr, SendError};
pub use any_addr::AnyAddr;
pub use ask::{reply_slot, AskError, Pending, ReplyTo};
pub use ctx::{Ctx, JobPanicked};
pub use exit::{ActorId, Down, ExitReason, ExitSignal, MonitorRef};
pub use recipient::Recipient;
pub use registry::{NameError, Registry};
pub use system::{
    actor_by_id, extension, live_actors, on_spawn, Spawn, SpawnError, SpawnOptions,
    DEFAULT_CAPACITY,
};
pub use timer::TimerHandle;
