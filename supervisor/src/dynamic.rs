//! The dynamic supervisor (OTP's `simple_one_for_one`, Elixir's
//! `DynamicSupervisor`): many children of one kind, started on demand with
//! per-child arguments. This is what a listener uses for its connections.
//!
//! Owns: a slab of children (O(1) start and exit, freed slots reused), each
//! with the argument it was started with (a restart builds a fresh actor
//! from the same argument) and a generation.
//!
//! Invariants: a child is in the slab from `StartChild` until its exit is
//! handled; the bookkeeping per child is one slab entry (the argument, the
//! address, a generation and a count), so memory returns when children
//! end (`shrink_to_fit` when the slab empties after a burst). Failures are
//! restarted one-for-one per the restart type, within the intensity;
//! exceeding it stops every child and exits with
//! `SupervisorError::IntensityExceeded`.
//!
//! Must not touch: the scheduler or the reactor.

use std::sync::Arc;
use std::time::Duration;

use slab::Slab;
use weft_actors::{
    Actor, ActorResult, Addr, AnyAddr, Ctx, Down, ExitReason, Registry, ReplyTo, SpawnOptions,
};

use crate::intensity::{Intensity, RestartWindow};
use crate::spec::Restart;
use crate::supervisor::SupervisorError;

type Factory<A, Arg> = Arc<dyn Fn(Arg) -> A + Send + Sync>;

/// How the children of a dynamic supervisor are built and restarted.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
/// use weft_supervisor::{DynamicMsg, DynamicSpec, DynamicSupervisor};
///
/// struct Session(u32);
/// impl Actor for Session {
///     type Msg = ();
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let pool = rt.handle().spawn(DynamicSupervisor::new(DynamicSpec::new(Session)));
/// for n in 0..3 {
///     let child = pool.ask_wait(|r| DynamicMsg::StartChild(n, r), Duration::from_secs(5)).unwrap();
///     assert!(child.is_ok());
/// }
/// assert_eq!(pool.ask_wait(DynamicMsg::Count, Duration::from_secs(5)).unwrap(), 3);
/// ```
#[must_use = "a spec does nothing until started"]
pub struct DynamicSpec<A: Actor, Arg> {
    factory: Factory<A, Arg>,
    restart: Restart,
    intensity: Intensity,
    shutdown: Duration,
    options: SpawnOptions,
    name: Option<Arc<str>>,
}

impl<A: Actor, Arg> Clone for DynamicSpec<A, Arg> {
    fn clone(&self) -> Self {
        DynamicSpec {
            factory: self.factory.clone(),
            restart: self.restart,
            intensity: self.intensity,
            shutdown: self.shutdown,
            options: self.options.clone(),
            name: self.name.clone(),
        }
    }
}

impl<A: Actor, Arg: Clone + Send + 'static> DynamicSpec<A, Arg> {
    /// Children built by `factory(arg)`; temporary (never restarted, the
    /// right default for connection handlers) unless changed.
    pub fn new(factory: impl Fn(Arg) -> A + Send + Sync + 'static) -> Self {
        DynamicSpec {
            factory: Arc::new(factory),
            restart: Restart::Temporary,
            intensity: Intensity::default(),
            shutdown: Duration::from_secs(5),
            options: SpawnOptions::new(),
            name: None,
        }
    }

    /// Registers the supervisor under `name` in the runtime's name
    /// registry when it starts (so others find it, also after a restart).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// When a child is restarted (with the argument it was started with).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The restart intensity of the supervisor.
    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// How long shutdown waits for the children before killing them.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown = d;
        self
    }

    /// Spawn options of every child (e.g. mailbox capacity).
    pub fn spawn_options(mut self, options: SpawnOptions) -> Self {
        self.options = options;
        self
    }
}

struct Child<A: Actor, Arg> {
    arg: Arg,
    addr: Option<Addr<A>>,
    generation: u32,
    restarts: u32,
    reply: Option<ReplyTo<Result<Addr<A>, ExitReason>>>,
}

/// The messages of a [`DynamicSupervisor`].
pub enum DynamicMsg<A: Actor, Arg> {
    /// Start a child with `Arg`; the reply comes once its `started` ran.
    StartChild(Arg, ReplyTo<Result<Addr<A>, ExitReason>>),
    /// Start a child with `Arg`; nobody waits for the outcome.
    StartChildQuiet(Arg),
    /// How many children run now.
    Count(ReplyTo<usize>),
    /// Stop every child, then exit with `Shutdown`.
    Shutdown,
    #[doc(hidden)]
    Started(usize, u32, Result<(), ExitReason>),
    #[doc(hidden)]
    Down(usize, u32, Down),
    #[doc(hidden)]
    ShutdownTimeout,
}

/// A supervisor of many children of one kind, started on demand.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
/// use weft_supervisor::{DynamicMsg, DynamicSpec, DynamicSupervisor};
///
/// /// One per client, started on demand.
/// struct Handler(String);
/// impl Actor for Handler {
///     type Msg = ();
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let spec = DynamicSpec::new(Handler).name("handlers");
/// let sup = rt.handle().spawn(DynamicSupervisor::new(spec));
/// sup.send(DynamicMsg::StartChildQuiet("ann".to_string())).unwrap();
/// let n = sup.ask_wait(DynamicMsg::Count, Duration::from_secs(5)).unwrap();
/// assert_eq!(n, 1);
/// ```
pub struct DynamicSupervisor<A: Actor, Arg> {
    spec: DynamicSpec<A, Arg>,
    children: Slab<Child<A, Arg>>,
    window: RestartWindow,
    shutting_down: bool,
}

impl<A: Actor, Arg: Clone + Send + 'static> DynamicSupervisor<A, Arg> {
    /// A dynamic supervisor with no children yet.
    pub fn new(spec: DynamicSpec<A, Arg>) -> Self {
        let window = RestartWindow::new(spec.intensity);
        DynamicSupervisor {
            spec,
            children: Slab::new(),
            window,
            shutting_down: false,
        }
    }

    fn spawn(&mut self, key: usize, ctx: &mut Ctx<'_, Self>) {
        let child = &mut self.children[key];
        child.generation = child.generation.wrapping_add(1);
        let generation = child.generation;
        let actor = (self.spec.factory)(child.arg.clone());
        match ctx.spawn_notify(actor, self.spec.options.clone(), move |r| {
            DynamicMsg::Started(key, generation, r)
        }) {
            Ok(addr) => {
                ctx.monitor_any(&AnyAddr::from(&addr), move |d| {
                    DynamicMsg::Down(key, generation, d)
                });
                self.children[key].addr = Some(addr);
            }
            Err(e) => {
                let child = self.children.remove(key);
                if let Some(reply) = child.reply {
                    reply.send(Err(ExitReason::error(e)));
                }
            }
        }
    }

    fn start(
        &mut self,
        arg: Arg,
        reply: Option<ReplyTo<Result<Addr<A>, ExitReason>>>,
        ctx: &mut Ctx<'_, Self>,
    ) {
        if self.shutting_down {
            if let Some(reply) = reply {
                reply.send(Err(ExitReason::Shutdown));
            }
            return;
        }
        let key = self.children.insert(Child {
            arg,
            addr: None,
            generation: 0,
            restarts: 0,
            reply,
        });
        self.spawn(key, ctx);
    }

    fn remove(&mut self, key: usize) {
        self.children.remove(key);
        if self.children.is_empty() && self.children.capacity() > 1024 {
            // After a burst, give the memory back.
            self.children.shrink_to_fit();
        }
    }

    fn on_down(&mut self, key: usize, generation: u32, down: Down, ctx: &mut Ctx<'_, Self>) {
        let Some(child) = self.children.get_mut(key) else {
            return;
        };
        if child.generation != generation {
            return;
        }
        child.addr = None;
        if self.shutting_down {
            self.remove(key);
            if self.children.is_empty() {
                ctx.stop_with(ExitReason::Shutdown);
            }
            return;
        }
        if !self.spec.restart.restarts_after(&down.reason) {
            self.remove(key);
            return;
        }
        if let Err(exceeded) = self.window.record(ctx.runtime().now()) {
            tracing::error!(%down.reason, "dynamic supervisor: restart intensity exceeded");
            let reason = ExitReason::error(SupervisorError::IntensityExceeded {
                child: format!("dynamic child {key}"),
                reason: down.reason,
                max_restarts: exceeded.max_restarts,
                within: exceeded.within,
            });
            self.remove(key);
            return self.shutdown(reason, ctx);
        }
        child.restarts += 1;
        tracing::warn!(child = key, reason = %down.reason, restarts = child.restarts, "restarting dynamic child");
        self.spawn(key, ctx);
    }

    fn shutdown(&mut self, reason: ExitReason, ctx: &mut Ctx<'_, Self>) {
        self.shutting_down = true;
        if self.children.is_empty() {
            ctx.stop_with(reason);
            return;
        }
        for (_, child) in self.children.iter() {
            if let Some(addr) = &child.addr {
                addr.stop_with(ExitReason::Shutdown);
            }
        }
        ctx.send_later(self.spec.shutdown, DynamicMsg::ShutdownTimeout);
    }
}

impl<A: Actor, Arg: Clone + Send + 'static> Actor for DynamicSupervisor<A, Arg> {
    type Msg = DynamicMsg<A, Arg>;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if let Some(name) = &self.spec.name {
            Registry::of(ctx.runtime()).register(name, &ctx.address())?;
        }
        Ok(())
    }

    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            DynamicMsg::StartChild(arg, reply) => self.start(arg, Some(reply), ctx),
            DynamicMsg::StartChildQuiet(arg) => self.start(arg, None, ctx),
            DynamicMsg::Count(reply) => reply.send(self.children.len()),
            DynamicMsg::Shutdown => self.shutdown(ExitReason::Shutdown, ctx),
            DynamicMsg::Started(key, generation, outcome) => {
                let Some(child) = self.children.get_mut(key) else {
                    return Ok(());
                };
                if child.generation != generation {
                    return Ok(());
                }
                if let Some(reply) = child.reply.take() {
                    match (outcome, child.addr.clone()) {
                        (Ok(()), Some(addr)) => reply.send(Ok(addr)),
                        (Err(reason), _) => reply.send(Err(reason)),
                        (Ok(()), None) => reply.send(Err(ExitReason::Normal)),
                    }
                }
            }
            DynamicMsg::Down(key, generation, down) => self.on_down(key, generation, down, ctx),
            DynamicMsg::ShutdownTimeout => {
                for (_, child) in self.children.iter() {
                    if let Some(addr) = &child.addr {
                        addr.kill();
                    }
                }
                ctx.stop_with(ExitReason::Shutdown);
            }
        }
        Ok(())
    }
}

impl<A: Actor, Arg> std::fmt::Debug for DynamicSpec<A, Arg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicSpec").finish_non_exhaustive()
    }
}

impl<A: Actor, Arg> std::fmt::Debug for DynamicMsg<A, Arg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynamicMsg")
    }
}

impl<A: Actor, Arg> std::fmt::Debug for DynamicSupervisor<A, Arg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicSupervisor")
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}
