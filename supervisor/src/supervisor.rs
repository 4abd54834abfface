//! The supervisor actor: starts its children in order, restarts them per
//! strategy within the restart intensity, and stops them in reverse order.
//!
//! Owns: its children's addresses, generations and restart counts, and a
//! small state machine (starting, running, restarting, shutting down) that
//! runs entirely on messages: it never blocks its worker.
//!
//! Invariants:
//! * Children start one at a time, in spec order; the next starts only once
//!   the previous one's `started` succeeded (`Ctx::spawn_notify`).
//! * Children stop one at a time, in reverse start order, each per its
//!   `Shutdown`; a child still alive when its timeout passes is killed and
//!   no longer waited for, so the supervisor never waits longer than the
//!   timeout. ("Kill" cannot interrupt a running handler: the child exits as
//!   soon as that handler returns; weft never unwinds another thread.)
//! * Every notice carries the child's generation; a notice about an earlier
//!   incarnation is ignored.
//!
//! Must not touch: the scheduler or the reactor; children are reached only
//! through `AnyAddr`.

use std::sync::Arc;

use weft_actors::{
    Actor, ActorResult, Addr, AnyAddr, Ctx, Down, ExitReason, ReplyTo, SpawnError, SpawnOptions,
    TimerHandle,
};

use crate::intensity::{Backoff, BackoffState, Intensity, RestartWindow};
use crate::spec::{ChildKind, Restart, Shutdown, Strategy};

type StartFn =
    Arc<dyn Fn(&mut Ctx<'_, Supervisor>, Tag) -> Result<Spawned, SpawnError> + Send + Sync>;

/// A started child: its address, and its typed address if it is a
/// supervisor (so trees can be walked).
struct Spawned {
    any: AnyAddr,
    supervisor: Option<Addr<Supervisor>>,
}

/// Names one incarnation of one child: its index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    index: usize,
    generation: u64,
}

/// How to start, restart and stop one child.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx};
/// use weft_supervisor::{Backoff, ChildSpec, Restart, Shutdown};
///
/// struct Job;
/// impl Actor for Job {
///     type Msg = ();
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// // Restarted only after a failure, with a growing pause between restarts,
/// // and given 2 s to stop at shutdown.
/// let spec = ChildSpec::worker("job", || Job)
///     .restart(Restart::Transient)
///     .backoff(Backoff {
///         initial: Duration::from_millis(10),
///         max: Duration::from_secs(1),
///         factor: 2.0,
///         reset_after: Duration::from_secs(60),
///     })
///     .shutdown(Shutdown::Timeout(Duration::from_secs(2)));
/// assert_eq!(spec.id(), "job");
/// ```
#[must_use = "a spec does nothing until given to a supervisor"]
#[derive(Clone)]
pub struct ChildSpec {
    id: Arc<str>,
    start: StartFn,
    restart: Restart,
    shutdown: Shutdown,
    kind: ChildKind,
    backoff: Option<Backoff>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .finish()
    }
}

impl ChildSpec {
    /// A worker child: `factory` builds a fresh actor for every (re)start.
    /// Permanent, with a 5 s shutdown timeout, unless changed.
    pub fn worker<A: Actor>(
        id: impl Into<Arc<str>>,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> Self {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |ctx, tag| {
                ctx.spawn_notify(factory(), SpawnOptions::new(), move |r| {
                    SupervisorMsg::Started(tag, r)
                })
                .map(|addr| Spawned {
                    any: AnyAddr::from(addr),
                    supervisor: None,
                })
            }),
            restart: Restart::Permanent,
            shutdown: ChildKind::Worker.default_shutdown(),
            kind: ChildKind::Worker,
            backoff: None,
        }
    }

    /// A child that is itself a supervisor of `spec`'s children. Its
    /// shutdown waits for its whole subtree unless changed.
    pub fn supervisor(id: impl Into<Arc<str>>, spec: SupervisorSpec) -> Self {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |ctx, tag| {
                ctx.spawn_notify(
                    Supervisor::new(spec.clone()),
                    SpawnOptions::new(),
                    move |r| SupervisorMsg::Started(tag, r),
                )
                .map(|addr| Spawned {
                    any: AnyAddr::from(&addr),
                    supervisor: Some(addr),
                })
            }),
            restart: Restart::Permanent,
            shutdown: ChildKind::Supervisor.default_shutdown(),
            kind: ChildKind::Supervisor,
            backoff: None,
        }
    }

    /// When the child is restarted.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Wait before restarting this child after it failed, growing per
    /// `backoff` while it keeps failing (beyond OTP: a child that fails at
    /// once, e.g. on a busy port, does not spin).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// How the child is stopped.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A supervisor's strategy, intensity and children (in start order).
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
/// use weft_supervisor::{ChildSpec, Strategy, Supervisor, SupervisorMsg, SupervisorSpec};
/// use weft_supervisor::Intensity;
///
/// struct Idle;
/// impl Actor for Idle {
///     type Msg = ();
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// // Restart every child when one fails, at most 3 times in 5 s; a nested
/// // supervisor as the second child.
/// let inner = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("leaf", || Idle));
/// let spec = SupervisorSpec::new(Strategy::OneForAll)
///     .intensity(Intensity { max_restarts: 3, within: Duration::from_secs(5) })
///     .child(ChildSpec::worker("first", || Idle))
///     .child(ChildSpec::supervisor("inner", inner));
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let sup = rt.handle().spawn(Supervisor::new(spec));
/// let children = sup.ask_wait(SupervisorMsg::WhichChildren, Duration::from_secs(5)).unwrap();
/// assert_eq!(children.len(), 2);
/// assert_eq!(children[1].kind, weft_supervisor::ChildKind::Supervisor);
/// ```
#[must_use = "a spec does nothing until started"]
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    strategy: Strategy,
    intensity: Intensity,
    children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A spec with `strategy`, OTP's default intensity and no children.
    pub fn new(strategy: Strategy) -> Self {
        SupervisorSpec {
            strategy,
            intensity: Intensity::default(),
            children: Vec::new(),
        }
    }

    /// At most `max_restarts` within `within`.
    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Adds a child after those already added.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }
}

/// Why a supervisor exited abnormally (inside `ExitReason::Error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A child's start failed while the supervisor was starting.
    #[error("child `{child}` failed to start: {reason}")]
    StartFailed {
        /// The child's id.
        child: String,
        /// Why it failed.
        reason: ExitReason,
    },
    /// More restarts than the intensity allows; names the last failure.
    #[error("restart intensity exceeded ({max_restarts} in {within:?}); child `{child}` exited: {reason}")]
    IntensityExceeded {
        /// The child whose exit was one too many.
        child: String,
        /// Its exit reason.
        reason: ExitReason,
        /// The intensity's restarts.
        max_restarts: u32,
        /// The intensity's window.
        within: std::time::Duration,
    },
}

/// What a supervisor says about one child.
#[derive(Clone, Debug)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its address while it runs.
    pub addr: Option<AnyAddr>,
    /// Its typed address while it runs, if it is a supervisor (to walk the
    /// tree).
    pub supervisor: Option<Addr<Supervisor>>,
    /// How often it was restarted.
    pub restarts: u32,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: Restart,
}

/// The supervisor's messages.
pub enum SupervisorMsg {
    /// A child's start notice.
    Started(Tag, Result<(), ExitReason>),
    /// A child exited.
    Down(Tag, Down),
    /// A child did not stop within its shutdown timeout.
    StopTimeout(Tag),
    /// Which children there are (OTP's `which_children`).
    WhichChildren(ReplyTo<Vec<ChildInfo>>),
    /// Stop every child in reverse start order, then exit (`Shutdown`).
    Shutdown,
    /// A child's back-off delay passed: start it.
    #[doc(hidden)]
    Resume(Tag),
}

struct Child {
    addr: Option<AnyAddr>,
    supervisor: Option<Addr<Supervisor>>,
    generation: u64,
    restarts: u32,
    timer: Option<TimerHandle>,
    backoff: BackoffState,
    /// The back-off delay owed before this child's next start.
    delay: std::time::Duration,
}

enum Phase {
    Starting,
    Running,
    /// Stopping `stop` (last first), then starting `start` (first first).
    Restarting {
        stop: Vec<usize>,
        start: Vec<usize>,
    },
    ShuttingDown {
        stop: Vec<usize>,
        reason: ExitReason,
    },
}

/// A supervisor actor. Spawn it like any actor (`Handle::spawn`), or as a
/// child with [`ChildSpec::supervisor`]; with `Ctx::spawn_notify` its
/// parent learns whether all its children started.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
/// use weft_supervisor::{ChildSpec, Strategy, Supervisor, SupervisorMsg, SupervisorSpec};
///
/// struct Worker(std::sync::mpsc::Sender<&'static str>);
/// impl Actor for Worker {
///     type Msg = ();
///     fn started(&mut self, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         self.0.send("started")?;
///         Ok(())
///     }
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Err("it fails; the supervisor starts a fresh one".into())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// let spec = SupervisorSpec::new(Strategy::OneForOne)
///     .child(ChildSpec::worker("worker", move || Worker(tx.clone())));
/// let sup = rt.handle().spawn(Supervisor::new(spec));
/// assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "started");
/// // Make the child fail: it is restarted.
/// let children = sup.ask_wait(SupervisorMsg::WhichChildren, Duration::from_secs(5)).unwrap();
/// let child = children[0].addr.clone().unwrap();
/// child.kill(weft_actors::ExitReason::Killed);
/// assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "started");
/// let children = sup.ask_wait(SupervisorMsg::WhichChildren, Duration::from_secs(5)).unwrap();
/// assert_eq!(children[0].restarts, 1);
/// ```
pub struct Supervisor {
    spec: SupervisorSpec,
    children: Vec<Child>,
    window: RestartWindow,
    phase: Phase,
    /// While starting: the index being started.
    starting: usize,
    /// The child being stopped, whose `Down` (or timeout) moves on.
    awaiting_stop: Option<usize>,
}

impl Supervisor {
    /// A supervisor for `spec` (children start when it starts).
    pub fn new(spec: SupervisorSpec) -> Self {
        let window = RestartWindow::new(spec.intensity);
        let children = spec
            .children
            .iter()
            .map(|_| Child {
                addr: None,
                supervisor: None,
                generation: 0,
                restarts: 0,
                timer: None,
                backoff: BackoffState::default(),
                delay: std::time::Duration::ZERO,
            })
            .collect();
        Supervisor {
            spec,
            children,
            window,
            phase: Phase::Starting,
            starting: 0,
            awaiting_stop: None,
        }
    }

    fn tag(&self, index: usize) -> Tag {
        Tag {
            index,
            generation: self.children[index].generation,
        }
    }

    fn current(&self, tag: Tag) -> bool {
        self.children
            .get(tag.index)
            .is_some_and(|c| c.generation == tag.generation)
    }

    /// Spawns child `index` and watches it; an error if it could not even
    /// be spawned.
    fn start_child(&mut self, index: usize, ctx: &mut Ctx<'_, Self>) -> Result<(), ExitReason> {
        self.children[index].generation += 1;
        // The quiet period of the back-off counts from the (re)start.
        self.children[index].backoff.started(ctx.runtime().now());
        let tag = self.tag(index);
        let start = self.spec.children[index].start.clone();
        match start(ctx, tag) {
            Ok(spawned) => {
                ctx.monitor_any(&spawned.any, move |down| SupervisorMsg::Down(tag, down));
                self.children[index].addr = Some(spawned.any);
                self.children[index].supervisor = spawned.supervisor;
                Ok(())
            }
            Err(e) => Err(ExitReason::error(e)),
        }
    }

    /// Starts the next child of the start phase, or finishes it.
    fn start_next(&mut self, ctx: &mut Ctx<'_, Self>) {
        let index = self.starting;
        if index == self.children.len() {
            self.phase = Phase::Running;
            ctx.start_complete(Ok(()));
            return;
        }
        // On success, its start notice brings us back here for the next.
        if let Err(reason) = self.start_child(index, ctx) {
            self.fail_start(index, reason, ctx);
        }
    }

    fn fail_start(&mut self, index: usize, reason: ExitReason, ctx: &mut Ctx<'_, Self>) {
        let child = self.spec.children[index].id.to_string();
        tracing::error!(child, %reason, "child failed to start; supervisor start fails");
        let reason = ExitReason::error(SupervisorError::StartFailed { child, reason });
        ctx.start_complete(Err(reason.clone()));
        self.begin_shutdown(reason, ctx);
    }

    /// The running children among `indices`, in start order (stop lists
    /// are popped from the back, so they stop in reverse start order).
    fn running(&self, indices: impl Iterator<Item = usize>) -> Vec<usize> {
        indices
            .filter(|&i| self.children[i].addr.is_some())
            .collect()
    }

    fn begin_shutdown(&mut self, reason: ExitReason, ctx: &mut Ctx<'_, Self>) {
        let stop = self.running(0..self.children.len());
        self.phase = Phase::ShuttingDown { stop, reason };
        self.stop_next(ctx);
    }

    /// Stops the next child of the current stop list, or moves on.
    fn stop_next(&mut self, ctx: &mut Ctx<'_, Self>) {
        let next = match &mut self.phase {
            Phase::Restarting { stop, .. } | Phase::ShuttingDown { stop, .. } => stop.pop(),
            _ => return,
        };
        if let Some(index) = next {
            if self.children[index].addr.is_some() {
                return self.stop_child(index, ctx);
            }
            return self.stop_next(ctx);
        }
        match std::mem::replace(&mut self.phase, Phase::Running) {
            Phase::Restarting { start, .. } => {
                self.phase = Phase::Restarting {
                    stop: Vec::new(),
                    start,
                };
                self.restart_next(ctx);
            }
            Phase::ShuttingDown { reason, .. } => ctx.stop_with(reason),
            other => self.phase = other,
        }
    }

    fn stop_child(&mut self, index: usize, ctx: &mut Ctx<'_, Self>) {
        let tag = self.tag(index);
        let Some(addr) = self.children[index].addr.clone() else {
            return self.stop_next(ctx);
        };
        self.awaiting_stop = Some(index);
        let policy = self.spec.children[index].shutdown;
        if let Shutdown::Brutal = policy {
            addr.kill(ExitReason::Killed);
            return;
        }
        // A supervisor child stops its own subtree in order first; a
        // worker gets the shutdown exit signal.
        let asked = match &self.children[index].supervisor {
            Some(sup) => sup.send(SupervisorMsg::Shutdown).is_ok(),
            None => false,
        };
        if !asked {
            addr.kill(ExitReason::Shutdown);
        }
        if let Shutdown::Timeout(d) = policy {
            let timer = ctx.send_later(d, SupervisorMsg::StopTimeout(tag));
            self.children[index].timer = Some(timer);
        }
    }

    fn restart_next(&mut self, ctx: &mut Ctx<'_, Self>) {
        let next = match &mut self.phase {
            Phase::Restarting { start, .. } if !start.is_empty() => Some(start.remove(0)),
            _ => None,
        };
        match next {
            Some(index) => {
                let delay = std::mem::take(&mut self.children[index].delay);
                if !delay.is_zero() {
                    if let Phase::Restarting { start, .. } = &mut self.phase {
                        start.insert(0, index);
                    }
                    let tag = self.tag(index);
                    ctx.send_later(delay, SupervisorMsg::Resume(tag));
                    return;
                }
                self.children[index].restarts += 1;
                if let Err(reason) = self.start_child(index, ctx) {
                    tracing::error!(child = %self.spec.children[index].id, %reason, "restart failed");
                    // Treated as the child failing again.
                    self.child_failed(index, reason, ctx);
                }
            }
            None => self.phase = Phase::Running,
        }
    }

    fn child_failed(&mut self, index: usize, reason: ExitReason, ctx: &mut Ctx<'_, Self>) {
        let spec = &self.spec.children[index];
        if !spec.restart.restarts_after(&reason) {
            tracing::debug!(child = %spec.id, %reason, "child exited; not restarted");
            if matches!(self.phase, Phase::Restarting { .. }) {
                self.restart_next(ctx);
            }
            return;
        }
        if let Err(exceeded) = self.window.record(ctx.runtime().now()) {
            let child = spec.id.to_string();
            tracing::error!(child, %reason, "restart intensity exceeded; supervisor exits");
            let reason = ExitReason::error(SupervisorError::IntensityExceeded {
                child,
                reason,
                max_restarts: exceeded.max_restarts,
                within: exceeded.within,
            });
            return self.begin_shutdown(reason, ctx);
        }
        if let Some(policy) = spec.backoff {
            let now = ctx.runtime().now();
            self.children[index].delay = self.children[index].backoff.delay(&policy, now);
        }
        tracing::warn!(child = %spec.id, %reason, restarts = self.children[index].restarts + 1, "restarting child");
        let affected = self.spec.strategy.affected(index, self.children.len());
        let stop = self.running(affected.clone());
        let start = affected
            .filter(|&i| i == index || self.spec.children[i].restart != Restart::Temporary)
            .collect();
        self.phase = Phase::Restarting { stop, start };
        self.stop_next(ctx);
    }

    fn on_down(&mut self, tag: Tag, down: Down, ctx: &mut Ctx<'_, Self>) {
        if !self.current(tag) {
            return;
        }
        let child = &mut self.children[tag.index];
        child.addr = None;
        if let Some(timer) = child.timer.take() {
            timer.cancel();
        }
        if self.awaiting_stop == Some(tag.index) {
            self.awaiting_stop = None;
            return self.stop_next(ctx);
        }
        match self.phase {
            Phase::Starting => {
                // A child that had started died before the others did:
                // the start fails (its start notice came first, so this
                // is not the one being started).
                self.fail_start(tag.index, down.reason, ctx);
            }
            Phase::Running | Phase::Restarting { .. } => {
                self.child_failed(tag.index, down.reason, ctx)
            }
            // Gone on its own while others stop: nothing to wait for.
            Phase::ShuttingDown { .. } => {}
        }
    }

    fn on_stop_timeout(&mut self, tag: Tag, ctx: &mut Ctx<'_, Self>) {
        if !self.current(tag) || self.awaiting_stop != Some(tag.index) {
            return;
        }
        self.awaiting_stop = None;
        let child = &mut self.children[tag.index];
        if let Some(addr) = child.addr.take() {
            tracing::warn!(child = %self.spec.children[tag.index].id, "child did not stop in time; killed");
            addr.kill(ExitReason::Killed);
            // Its eventual Down belongs to an abandoned incarnation.
            child.generation += 1;
            child.timer = None;
            self.stop_next(ctx);
        }
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        self.spec
            .children
            .iter()
            .zip(&self.children)
            .map(|(spec, child)| ChildInfo {
                id: spec.id.to_string(),
                addr: child.addr.clone(),
                supervisor: child.addr.as_ref().and(child.supervisor.clone()),
                restarts: child.restarts,
                kind: spec.kind,
                restart: spec.restart,
            })
            .collect()
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.hold_start();
        self.start_next(ctx);
        Ok(())
    }

    fn handle(&mut self, msg: SupervisorMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            SupervisorMsg::Started(tag, outcome) => {
                if !self.current(tag) {
                    return Ok(());
                }
                match (&self.phase, outcome) {
                    (Phase::Starting, Ok(())) => {
                        self.starting = tag.index + 1;
                        self.start_next(ctx);
                    }
                    (Phase::Starting, Err(reason)) => {
                        self.children[tag.index].addr = None;
                        self.fail_start(tag.index, reason, ctx);
                    }
                    (Phase::Restarting { .. }, Ok(())) => self.restart_next(ctx),
                    (Phase::Restarting { .. }, Err(reason)) => {
                        // The restarted child failed in `started`: that is
                        // another failure; its coming Down is stale.
                        let child = &mut self.children[tag.index];
                        child.addr = None;
                        child.generation += 1;
                        self.child_failed(tag.index, reason, ctx);
                    }
                    _ => {}
                }
            }
            SupervisorMsg::Down(tag, down) => self.on_down(tag, down, ctx),
            SupervisorMsg::StopTimeout(tag) => self.on_stop_timeout(tag, ctx),
            SupervisorMsg::Resume(tag) => {
                if self.current(tag) && matches!(self.phase, Phase::Restarting { .. }) {
                    self.restart_next(ctx);
                }
            }
            SupervisorMsg::WhichChildren(reply) => reply.send(self.which_children()),
            SupervisorMsg::Shutdown => {
                if !matches!(self.phase, Phase::ShuttingDown { .. }) {
                    self.begin_shutdown(ExitReason::Shutdown, ctx);
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SupervisorMsg")
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}
