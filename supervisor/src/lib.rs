//! weft-supervisor: supervision trees for weft actors.
//!
//! Owns: child specs, restart strategies (one-for-one, one-for-all,
//! rest-for-one, dynamic), restart intensity and escalation, restart
//! back-off, ordered shutdown with timeouts. Built only on `weft-actors`;
//! it must not touch the scheduler or the reactor directly.
//!
//! The semantics follow Erlang/OTP's `supervisor`:
//!
//! * A child's **restart type** says when it is started again after it
//!   exits: `Permanent` always, `Transient` only after an abnormal exit,
//!   `Temporary` never ([`Restart::restarts_after`]).
//! * The **strategy** says which children a restart involves: the failed
//!   one (`OneForOne`), all (`OneForAll`), or the failed one and those
//!   started after it (`RestForOne`) ([`Strategy::affected`]); the affected
//!   children are stopped in reverse start order and started again in
//!   start order, each with fresh state from its factory.
//! * **Intensity**: more than `max_restarts` restarts within `within` and
//!   the supervisor stops all its children (reverse start order) and exits
//!   with a reason naming the child and its last exit reason; its own
//!   supervisor then applies its strategy ([`RestartWindow`]).
//! * **Shutdown** of a child: `Brutal` kills at once, `Timeout(d)` asks it
//!   to stop and kills it after `d`, `Infinity` waits (the default for a
//!   child that is a supervisor).
//! * Beyond OTP: a restart **back-off** ([`Backoff`]) so a child that fails
//!   at start does not spin.
//!
//! The crate: the [`Supervisor`] actor for static children, the
//! [`DynamicSupervisor`] for many children of one kind started on demand,
//! [`run_application`] / [`Application`] to run a root tree as the program,
//! and [`tree_dump`] to print a tree.
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_actors::{Actor, ActorResult, Ctx};
//! use weft_runtime::Runtime;
//! use weft_supervisor::{run_application, ChildSpec, Intensity, Strategy, SupervisorSpec};
//!
//! struct Worker;
//! impl Actor for Worker {
//!     type Msg = ();
//!     fn handle(&mut self, _m: (), _c: &mut Ctx<'_, Self>) -> ActorResult { Ok(()) }
//! }
//!
//! let rt = Runtime::builder().build().unwrap();
//! let spec = SupervisorSpec::new(Strategy::OneForOne)
//!     .intensity(Intensity { max_restarts: 3, within: Duration::from_secs(5) })
//!     .child(ChildSpec::worker("worker", || Worker));
//! // Blocks until SIGINT/SIGTERM; the tree stops in reverse start order.
//! let reason = run_application(&rt, spec).unwrap();
//! println!("stopped: {reason}");
//! ```

#![deny(missing_docs)]

mod application;
mod dynamic;
mod intensity;
mod spec;
mod supervisor;

pub use application::{run_application, tree_dump, tree_dump_with, Application};
pub use dynamic::{DynamicMsg, DynamicSpec, DynamicSupervisor};
pub use intensity::{Backoff, BackoffState, Intensity, IntensityExceeded, RestartWindow};
pub use spec::{ChildKind, Restart, Shutdown, Strategy};
pub use supervisor::{
    ChildInfo, ChildSpec, Supervisor, SupervisorError, SupervisorMsg, SupervisorSpec, Tag,
};
