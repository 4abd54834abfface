//! `AnyAddr`: the address of an actor of any type, for code that manages
//! actors without sending them messages (supervisors, registries of
//! children): stop, kill, watch, identify.

use std::fmt;
use std::sync::Arc;

use crate::actor::Actor;
use crate::addr::Addr;
use crate::cell::{AnyCell, Signal};
use crate::exit::{ActorId, ExitReason};

/// A type-erased actor address: `Send + Sync + Clone`. It cannot send the
/// actor messages (its type is gone); it can stop, kill and identify it,
/// and `Ctx::monitor_any` watches it.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, AnyAddr, Ctx, ExitReason, Spawn};
///
/// struct Idle;
/// impl Actor for Idle {
///     type Msg = ();
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// // Actors of different types, held alike.
/// let all: Vec<AnyAddr> = vec![rt.handle().spawn(Idle).into(), rt.handle().spawn(Idle).into()];
/// for a in &all {
///     a.stop(ExitReason::Normal);
/// }
/// let deadline = std::time::Instant::now() + Duration::from_secs(5);
/// while !all.iter().all(AnyAddr::is_stopped) {
///     assert!(std::time::Instant::now() < deadline);
///     std::thread::yield_now();
/// }
/// ```
#[derive(Clone)]
pub struct AnyAddr {
    pub(crate) cell: Arc<dyn AnyCell>,
}

impl fmt::Debug for AnyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cell.describe())
    }
}

impl PartialEq for AnyAddr {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for AnyAddr {}

impl<A: Actor> From<Addr<A>> for AnyAddr {
    fn from(addr: Addr<A>) -> Self {
        AnyAddr { cell: addr.cell }
    }
}

impl<A: Actor> From<&Addr<A>> for AnyAddr {
    fn from(addr: &Addr<A>) -> Self {
        AnyAddr {
            cell: addr.cell.clone(),
        }
    }
}

impl AnyAddr {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id()
    }

    /// The actor's type and id, e.g. `my_app::Worker<42>`.
    pub fn describe(&self) -> String {
        self.cell.describe()
    }

    /// How many relations the actor holds (see
    /// [`Addr::relations`](crate::Addr::relations)).
    pub fn relations(&self) -> usize {
        self.cell.watch_entries()
    }

    /// Whether the actor has exited.
    pub fn is_stopped(&self) -> bool {
        self.cell.is_dead()
    }

    /// Stops the actor after the messages already queued, with `reason`.
    /// False if it had already exited.
    pub fn stop(&self, reason: ExitReason) -> bool {
        self.cell.clone().stop_gracefully(reason)
    }

    /// Stops the actor before its next message, with `reason`, dropping
    /// what is queued; a handler already running finishes first. False if
    /// it had already exited.
    pub fn kill(&self, reason: ExitReason) -> bool {
        self.cell.clone().signal(Signal::Kill(reason))
    }
}
