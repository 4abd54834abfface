//! One worker thread: find a task, run it; when there is none, drive the
//! reactor or park.
//!
//! Owns: the thread-local deque and LIFO slot of each worker. Order of
//! search: LIFO slot (at most `LIFO_LIMIT` times in a row), own deque,
//! injector, other workers' deques. Every `MAINTENANCE_INTERVAL` turns the
//! injector is served first and the reactor and timers are polled without
//! blocking, so neither starves behind a busy local queue.

use std::cell::RefCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker};

use super::{Scheduler, TaskRef};
use crate::watchdog::WorkerSlot;

const LIFO_LIMIT: u32 = 32;
const MAINTENANCE_INTERVAL: u32 = 61;
/// Spins on the queues before going to sleep: a reply that is about to
/// arrive is picked up without a futex round trip.
const IDLE_SPINS: u32 = 256;

struct Local {
    scheduler: *const Scheduler,
    deque: Worker<TaskRef>,
    lifo: Option<TaskRef>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Puts `task` on this thread's LIFO slot if this thread is a worker of
/// `scheduler`; otherwise hands the task back.
pub(crate) fn try_schedule_local(scheduler: &Scheduler, task: TaskRef) -> Result<(), TaskRef> {
    LOCAL.with(|local| {
        let mut local = match local.try_borrow_mut() {
            Ok(l) => l,
            Err(_) => return Err(task),
        };
        match local.as_mut() {
            Some(l) if std::ptr::eq(l.scheduler, scheduler) => {
                if let Some(previous) = l.lifo.replace(task) {
                    l.deque.push(previous);
                    drop(local);
                    scheduler.notify_one();
                }
                Ok(())
            }
            _ => Err(task),
        }
    })
}

/// Whether the calling thread is a worker of some weft runtime (where
/// blocking is forbidden).
pub fn on_worker_thread() -> bool {
    LOCAL.with(|l| l.try_borrow().map_or(true, |l| l.is_some())) || crate::sim::in_sim_turn()
}

/// Starts the worker threads.
pub(crate) fn spawn_workers(
    scheduler: &Arc<Scheduler>,
    name: &str,
) -> io::Result<Vec<JoinHandle<()>>> {
    let deques: Vec<Worker<TaskRef>> = (0..scheduler.workers).map(|_| Worker::new_fifo()).collect();
    let stealers = deques.iter().map(Worker::stealer).collect();
    if scheduler.stealers.set(stealers).is_err() {
        return Err(io::Error::other("workers already started"));
    }
    let _ = scheduler.started.set(Instant::now());
    let mut handles = Vec::with_capacity(deques.len());
    for (index, deque) in deques.into_iter().enumerate() {
        let shared = scheduler.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || run(shared, index, deque));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                scheduler.shutdown();
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}

fn run(scheduler: Arc<Scheduler>, index: usize, deque: Worker<TaskRef>) {
    LOCAL.with(|l| {
        *l.borrow_mut() = Some(Local {
            scheduler: Arc::as_ptr(&scheduler),
            deque,
            lifo: None,
        })
    });
    let mut tick: u32 = 0;
    let mut turn: u64 = 0;
    let mut lifo_streak: u32 = 0;
    while !scheduler.is_shutdown() {
        tick = tick.wrapping_add(1);
        let mut task = None;
        if tick.is_multiple_of(MAINTENANCE_INTERVAL) {
            maintenance(&scheduler, index);
            task = steal_injector(&scheduler);
        }
        if task.is_none() {
            task = find_task(&scheduler, index, &mut lifo_streak);
        }
        match task {
            Some(task) => {
                let slot = &scheduler.slots[index];
                turn = turn.wrapping_add(1);
                slot.turn.store(turn, Ordering::Relaxed);
                slot.task.store(task.id(), Ordering::Relaxed);
                let id = task.id();
                // Tasks catch their own panics (the actor layer stops the
                // actor); this is the last line, so that no task can ever
                // take a worker thread down with it.
                if catch_unwind(AssertUnwindSafe(|| task.run())).is_err() {
                    tracing::error!(
                        task = %scheduler.name_of(id).unwrap_or_else(|| id.to_string()),
                        "a task panicked outside its own panic boundary"
                    );
                }
                slot.task.store(0, Ordering::Relaxed);
            }
            None => idle(&scheduler, index),
        }
    }
    // Tasks still queued at shutdown are dropped with the worker.
    LOCAL.with(|l| l.borrow_mut().take());
}

fn maintenance(scheduler: &Scheduler, index: usize) {
    if scheduler.reactor.registered() > 0 {
        if let Some(mut driver) = scheduler.reactor.driver.try_lock() {
            WorkerSlot::bump(&scheduler.slots[index].polls, 1);
            scheduler.reactor.poll(&mut driver, Some(Duration::ZERO));
            let turn = scheduler.reactor.dispatch(&mut driver);
            drop(driver);
            if turn.signalled {
                signalled(scheduler);
            }
        }
    }
    scheduler.timers.fire_if_due();
}

fn signalled(scheduler: &Scheduler) {
    if let Some(pipe) = scheduler.reactor.signal_pipe.get() {
        pipe.drain();
    }
    if let Some(on_signal) = scheduler.on_signal.get() {
        on_signal();
    }
}

fn steal_injector(scheduler: &Scheduler) -> Option<TaskRef> {
    LOCAL.with(|l| {
        let l = l.borrow();
        let l = l.as_ref()?;
        loop {
            match scheduler.injector.steal_batch_and_pop(&l.deque) {
                Steal::Success(t) => return Some(t),
                Steal::Retry => continue,
                Steal::Empty => return None,
            }
        }
    })
}

fn find_task(scheduler: &Scheduler, index: usize, lifo_streak: &mut u32) -> Option<TaskRef> {
    let local_task = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let l = l.as_mut()?;
        if let Some(t) = l.lifo.take() {
            if *lifo_streak < LIFO_LIMIT {
                *lifo_streak += 1;
                return Some(t);
            }
            // Let the deque's head go first; the LIFO task waits its turn.
            l.deque.push(t);
        }
        *lifo_streak = 0;
        l.deque.pop()
    });
    if local_task.is_some() {
        return local_task;
    }
    if let Some(t) = steal_injector(scheduler) {
        return Some(t);
    }
    steal_others(scheduler, index)
}

fn steal_others(scheduler: &Scheduler, index: usize) -> Option<TaskRef> {
    let stealers = scheduler.stealers.get()?;
    let n = stealers.len();
    LOCAL.with(|l| {
        let l = l.borrow();
        let l = l.as_ref()?;
        for k in 1..n {
            let victim = &stealers[(index + k) % n];
            loop {
                match victim.steal_batch_and_pop(&l.deque) {
                    Steal::Success(t) => {
                        WorkerSlot::bump(&scheduler.slots[index].steals, 1);
                        return Some(t);
                    }
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        None
    })
}

fn has_work(scheduler: &Scheduler, index: usize) -> bool {
    if !scheduler.injector.is_empty() {
        return true;
    }
    let own = LOCAL.with(|l| {
        l.borrow()
            .as_ref()
            .is_some_and(|l| l.lifo.is_some() || !l.deque.is_empty())
    });
    if own {
        return true;
    }
    scheduler.stealers.get().is_some_and(|stealers| {
        stealers
            .iter()
            .enumerate()
            .any(|(i, s)| i != index && !s.is_empty())
    })
}

/// Polls the reactor without blocking; true if it made work.
fn poll_now(scheduler: &Scheduler, index: usize) -> bool {
    if scheduler.reactor.registered() == 0 {
        return false;
    }
    let Some(mut driver) = scheduler.reactor.driver.try_lock() else {
        return false;
    };
    WorkerSlot::bump(&scheduler.slots[index].polls, 1);
    scheduler.reactor.poll(&mut driver, Some(Duration::ZERO));
    let turn = scheduler.reactor.dispatch(&mut driver);
    drop(driver);
    if turn.signalled {
        signalled(scheduler);
    }
    turn.delivered > 0
}

fn idle(scheduler: &Scheduler, index: usize) {
    // Out of work: readiness that arrived meanwhile is the likeliest next
    // work in an I/O-bound program, and one non-blocking poll finds it
    // without the spin below.
    if poll_now(scheduler, index) {
        return;
    }
    scheduler.start_spinning();
    for _ in 0..IDLE_SPINS {
        if has_work(scheduler, index) || scheduler.is_shutdown() {
            scheduler.stop_spinning();
            if !scheduler.injector.is_empty() {
                // Take one; let another worker have the rest.
                scheduler.notify_one();
            }
            return;
        }
        std::hint::spin_loop();
    }
    scheduler.stop_spinning();
    let driver = scheduler.reactor.driver.try_lock();
    scheduler.add_sleeper(index, driver.is_some());
    if has_work(scheduler, index) || scheduler.shutdown.load(Ordering::SeqCst) {
        scheduler.remove_sleeper(index);
        return;
    }
    let slot = &scheduler.slots[index];
    WorkerSlot::bump(&slot.parks, 1);
    let asleep = Instant::now();
    let since = scheduler.started.get().map_or(0, |t| {
        asleep.saturating_duration_since(*t).as_nanos() as u64
    });
    slot.asleep_since.store(since + 1, Ordering::Relaxed);
    match driver {
        Some(mut driver) => {
            WorkerSlot::bump(&slot.polls, 1);
            let timeout = scheduler.timers.sleep_timeout();
            scheduler.reactor.poll(&mut driver, timeout);
            WorkerSlot::bump(&slot.idle_ns, asleep.elapsed().as_nanos() as u64);
            slot.asleep_since.store(0, Ordering::Relaxed);
            scheduler.remove_sleeper(index);
            let turn = scheduler.reactor.dispatch(&mut driver);
            drop(driver);
            scheduler.timers.fire_due();
            if turn.signalled {
                signalled(scheduler);
            }
        }
        None => {
            std::thread::park();
            WorkerSlot::bump(&slot.idle_ns, asleep.elapsed().as_nanos() as u64);
            slot.asleep_since.store(0, Ordering::Relaxed);
            scheduler.remove_sleeper(index);
        }
    }
}
