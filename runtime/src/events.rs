//! System events: hooks run at start-up and in the three shutdown phases,
//! as Twisted's `addSystemEventTrigger` and `callWhenRunning`.
//!
//! Owns: the hook lists. Invariants: hooks of a phase run in registration
//! order, on the thread that runs the shutdown, each at most once; a panic
//! in a hook is logged and does not stop the others.
//! Must not touch: the scheduler (the shutdown sequence in `runtime.rs`
//! decides when each phase runs).

use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::Mutex;

/// A phase of shutdown. Hooks run phase by phase: every `Before` hook, then
/// every `During` hook (the actor layer stops actors here), then every
/// `After` hook; then the worker threads stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before anything stops: the runtime is fully working.
    Before,
    /// Actors are stopped in this phase.
    During,
    /// Actors have stopped; workers still run.
    After,
}

/// A hook: run once.
pub(crate) type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub(crate) struct SystemEvents {
    startup: Mutex<Option<Vec<Hook>>>,
    phases: Mutex<[Vec<Hook>; 3]>,
}

fn index(phase: Phase) -> usize {
    match phase {
        Phase::Before => 0,
        Phase::During => 1,
        Phase::After => 2,
    }
}

pub(crate) fn run_hook(hook: Hook) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!("a system event hook panicked");
    }
}

impl SystemEvents {
    pub(crate) fn new() -> Self {
        SystemEvents {
            startup: Mutex::new(Some(Vec::new())),
            phases: Mutex::default(),
        }
    }

    /// Queues `hook` for start-up; returns it back if start-up has passed.
    pub(crate) fn on_startup(&self, hook: Hook) -> Option<Hook> {
        match self.startup.lock().as_mut() {
            Some(list) => {
                list.push(hook);
                None
            }
            None => Some(hook),
        }
    }

    pub(crate) fn on_shutdown(&self, phase: Phase, hook: Hook) {
        self.phases.lock()[index(phase)].push(hook);
    }

    /// Runs the start-up hooks, then closes the list.
    ///
    /// Hooks may add hooks; those run too, in order. The list is closed in
    /// the same critical section that finds it empty, so a hook registered
    /// concurrently is either taken by this loop or refused (and run by its
    /// registrant): never lost, never run twice.
    pub(crate) fn run_startup(&self) {
        loop {
            let hooks = {
                let mut slot = self.startup.lock();
                match slot.as_mut() {
                    Some(list) if !list.is_empty() => std::mem::take(list),
                    _ => {
                        *slot = None;
                        break;
                    }
                }
            };
            hooks.into_iter().for_each(run_hook);
        }
    }

    pub(crate) fn run_phase(&self, phase: Phase) {
        loop {
            let hooks = std::mem::take(&mut self.phases.lock()[index(phase)]);
            if hooks.is_empty() {
                break;
            }
            hooks.into_iter().for_each(run_hook);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Hooks registered while start-up runs are either taken by the
    /// start-up loop or handed back to their registrant to run: each runs
    /// exactly once. The registrant keeps registering until one is handed
    /// back, so it covers the moment the list closes. (Before the list was
    /// closed under the lock that saw it empty, hooks registered in that
    /// moment were dropped.)
    #[test]
    fn hooks_racing_startup_run_exactly_once() {
        for _ in 0..2000 {
            let events = Arc::new(SystemEvents::new());
            let ran = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(Barrier::new(2));
            let registrant = {
                let (events, ran, barrier) = (events.clone(), ran.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut registered = 0;
                    loop {
                        let ran = ran.clone();
                        let hook: Hook = Box::new(move || {
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                        registered += 1;
                        if let Some(hook) = events.on_startup(hook) {
                            run_hook(hook);
                            return registered;
                        }
                    }
                })
            };
            barrier.wait();
            events.run_startup();
            let registered = registrant.join().expect("registrant thread");
            assert_eq!(ran.load(Ordering::SeqCst), registered);
        }
    }

    #[test]
    fn hooks_added_by_hooks_run_in_order_and_later_ones_are_handed_back() {
        let events = Arc::new(SystemEvents::new());
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (e, o) = (events.clone(), order.clone());
        assert!(events
            .on_startup(Box::new(move || {
                o.lock().push(1);
                let o2 = o.clone();
                assert!(e.on_startup(Box::new(move || o2.lock().push(2))).is_none());
            }))
            .is_none());
        events.run_startup();
        assert_eq!(*order.lock(), vec![1, 2]);
        assert!(events.on_startup(Box::new(|| {})).is_some());
    }
}
