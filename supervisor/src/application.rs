//! The application: a root supervisor run as the program (Twisted's
//! `application.service` and `twistd`, OTP's application), and the tree
//! dump (Erlang's `observer` in text).
//!
//! Owns: wiring a root tree into a runtime's life. The root starts when
//! `run_application` is called; the runtime's shutdown (SIGINT/SIGTERM or
//! `Handle::shutdown`) stops the tree in order in `Phase::Before`, before
//! the actor layer kills whatever is left; if the root exits on its own
//! (escalation), the runtime shuts down. `run_application` returns the
//! root's exit reason.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weft_actors::{Actor, ActorResult, Addr, Ctx, Down, ExitReason, Spawn};
use weft_runtime::{Phase, Runtime, RuntimeError};

use crate::supervisor::{ChildInfo, Supervisor, SupervisorMsg, SupervisorSpec};

/// Watches the root: records its exit reason and ends the runtime.
struct RootWatch {
    reason: Arc<Mutex<Option<ExitReason>>>,
}

enum RootWatchMsg {
    Watch(Addr<Supervisor>),
    Down(Down),
}

impl Actor for RootWatch {
    type Msg = RootWatchMsg;
    fn handle(&mut self, msg: RootWatchMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            RootWatchMsg::Watch(root) => {
                ctx.monitor(&root, RootWatchMsg::Down);
            }
            RootWatchMsg::Down(down) => {
                if down.reason.is_abnormal() {
                    tracing::error!(reason = %down.reason, "the application's root supervisor exited");
                }
                *self.reason.lock() = Some(down.reason);
                ctx.runtime().shutdown();
                ctx.stop();
            }
        }
        Ok(())
    }
}

/// Runs `spec` as the application on `rt`: starts the root supervisor,
/// blocks in `rt.run()` until shutdown, stops the tree in order, and
/// returns the root's exit reason (`Shutdown` after a requested shutdown,
/// the escalated failure if the root gave up).
///
/// ```
/// use weft_actors::{Actor, ActorResult, Ctx};
/// use weft_supervisor::{run_application, ChildSpec, Strategy, SupervisorSpec};
///
/// struct Quitter;
/// impl Actor for Quitter {
///     type Msg = ();
///     fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         ctx.runtime().shutdown();
///         Ok(())
///     }
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("q", || Quitter));
/// let reason = run_application(&rt, spec).unwrap();
/// println!("ended: {reason}");
/// ```
pub fn run_application(rt: &Runtime, spec: SupervisorSpec) -> Result<ExitReason, RuntimeError> {
    Application::start(rt, spec).run(rt)
}

/// A root tree started on a runtime, not yet run (to get at the root's
/// address before blocking in [`Application::run`]).
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, ExitReason};
/// use weft_supervisor::{Application, ChildSpec, Strategy, SupervisorSpec};
///
/// /// Asks the runtime to shut down once started (a real service runs
/// /// until SIGTERM).
/// struct Quitter;
/// impl Actor for Quitter {
///     type Msg = ();
///     fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         ctx.runtime().shutdown();
///         Ok(())
///     }
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("quitter", || Quitter));
/// let app = Application::start(&rt, spec);
/// println!("root is {}", app.root().id());
/// let reason = app.run(&rt).unwrap();
/// assert!(matches!(reason, ExitReason::Shutdown));
/// ```
pub struct Application {
    root: Addr<Supervisor>,
    reason: Arc<Mutex<Option<ExitReason>>>,
}

impl Application {
    /// Starts the root supervisor of `spec` on `rt` and wires it to the
    /// runtime's shutdown (ordered stop in `Phase::Before`) and the
    /// runtime's end to the root's exit.
    pub fn start(rt: &Runtime, spec: SupervisorSpec) -> Self {
        let handle = rt.handle().clone();
        let root = handle.spawn(Supervisor::new(spec));
        let reason = Arc::new(Mutex::new(None));
        let watch = handle.spawn(RootWatch {
            reason: reason.clone(),
        });
        let _ = watch.send(RootWatchMsg::Watch(root.clone()));
        let timeout = handle.shutdown_timeout();
        let stopping = root.clone();
        handle.on_shutdown(Phase::Before, move || {
            // Ordered: the root stops its children in reverse start order,
            // recursively, each within its shutdown policy.
            if stopping.send(SupervisorMsg::Shutdown).is_ok() {
                let deadline = Instant::now() + timeout;
                while !stopping.is_stopped() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Application { root, reason }
    }

    /// The root supervisor.
    pub fn root(&self) -> &Addr<Supervisor> {
        &self.root
    }

    /// Blocks in `rt.run()` until shutdown; returns the root's exit reason.
    pub fn run(self, rt: &Runtime) -> Result<ExitReason, RuntimeError> {
        rt.run()?;
        let reason = self.reason.lock().take();
        Ok(reason.unwrap_or(ExitReason::Shutdown))
    }
}

/// A text dump of the tree under `root`: every child with its id, kind,
/// restart type, restart count and address, nested supervisors indented
/// (asked from a plain thread; each supervisor answers within `timeout`).
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
/// use weft_supervisor::{tree_dump, ChildSpec, Strategy, Supervisor, SupervisorSpec};
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
/// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("idle", || Idle));
/// let root = rt.handle().spawn(Supervisor::new(spec));
/// let text = tree_dump(&root, Duration::from_secs(5));
/// assert!(text.contains("idle [Worker, Permanent, restarts 0]"), "{text}");
/// ```
pub fn tree_dump(root: &Addr<Supervisor>, timeout: Duration) -> String {
    tree_dump_with(root, timeout, |child| match &child.addr {
        Some(addr) => addr.describe(),
        None => "not running".to_string(),
    })
}

/// [`tree_dump`] with each child's last column written by `describe` (its
/// mailbox from the live view, say): one line per child, `id [kind,
/// restart type, restarts N] <describe(child)>`, nested supervisors
/// indented, a supervisor that does not answer within `timeout` shown as
/// `<no answer: ...>`. From a plain thread (or the blocking pool).
pub fn tree_dump_with(
    root: &Addr<Supervisor>,
    timeout: Duration,
    mut describe: impl FnMut(&ChildInfo) -> String,
) -> String {
    let mut out = format!("{} (root)\n", weft_actors::AnyAddr::from(root).describe());
    dump_into(root, 1, timeout, &mut describe, &mut out);
    out
}

fn dump_into(
    sup: &Addr<Supervisor>,
    depth: usize,
    timeout: Duration,
    describe: &mut dyn FnMut(&ChildInfo) -> String,
    out: &mut String,
) {
    let children: Vec<ChildInfo> = match sup.ask_wait(SupervisorMsg::WhichChildren, timeout) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "{}<no answer: {e}>", "  ".repeat(depth));
            return;
        }
    };
    for child in children {
        let _ = writeln!(
            out,
            "{}{} [{:?}, {:?}, restarts {}] {}",
            "  ".repeat(depth),
            child.id,
            child.kind,
            child.restart,
            child.restarts,
            describe(&child)
        );
        if let Some(nested) = &child.supervisor {
            dump_into(nested, depth + 1, timeout, describe, out);
        }
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").finish_non_exhaustive()
    }
}
