//! `State`: a cell's scheduling state, one atomic byte with named
//! transitions. Every change of the byte goes through a method here, so the
//! ownership rule below is stated and checked in one place.
//!
//! Flags:
//!
//! | flag | set by | cleared by | means |
//! | --- | --- | --- | --- |
//! | `NOTIFIED` | a sender after a push, a waker, a yield | the runner (`to_running`, `take_notified`) | queued to run, or must look at the mailbox again |
//! | `RUNNING` | the runner (`to_running`) | the runner (`to_idle`, `to_yield`) | one thread owns the actor's state |
//! | `SIGNAL` | `signal` (under the mailbox lock) | the runner (under the lock) | a kill or link exit is pending |
//! | `WAITERS` | `wait_for_room` (under the lock) | `refill` (under the lock) | blocked senders wait for room |
//! | `MUTED` | the runner | the runner | it went idle holding sends: its mailbox may hold messages its (empty) turn buffer does not, so a sender may not hand a message straight to the turn buffer |
//! | `CLOSED` | `exit` (under the lock) | never | the mailbox accepts nothing more |
//! | `HOMED` | the cell's creation | never | a thread-worker actor: scheduling unparks its thread |
//! | `DEAD` | `exit` | never | exited: never scheduled again |
//!
//! **Ownership rule.** The actor's state (`Inner`: the actor, its turn
//! buffer, its `Ctx` state) belongs to exactly one party at a time:
//! * the party whose transition moved the byte out of *idle* (no
//!   `NOTIFIED`, no `RUNNING`, no `DEAD`): a sender's `notify` that returns
//!   `true`, or a direct hand-off's `claim_idle`. It must schedule the cell
//!   exactly once; until then it may write the (empty) turn buffer;
//! * then the thread that runs the cell (`to_running`) until `to_idle`
//!   succeeds or `to_yield` hands it back to the run queue, or forever once
//!   it marks the cell `DEAD`.
//!
//! Orderings: every transition is `AcqRel`, so whatever the previous owner
//! wrote before giving the state up is visible to the next owner.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use crate::sync::AtomicU8;

const NOTIFIED: u8 = 1;
const RUNNING: u8 = 2;
const SIGNAL: u8 = 4;
const WAITERS: u8 = 8;
const DEAD: u8 = 16;
const CLOSED: u8 = 32;
const MUTED: u8 = 64;
const HOMED: u8 = 128;

/// What `to_idle` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToIdle {
    /// The cell is idle; the runner no longer owns it.
    Idle,
    /// Something arrived (a message or a signal): the runner still owns
    /// the cell and must run it again (or yield it).
    MustRun,
}

/// A cell's scheduling state. See the module doc.
pub(crate) struct State(AtomicU8);

impl State {
    /// Idle: nobody owns the cell and it is in no queue. `homed` for a
    /// thread-worker actor (which then never takes the direct hand-off).
    #[inline]
    pub(crate) fn new(homed: bool) -> Self {
        State(AtomicU8::new(if homed { HOMED } else { 0 }))
    }

    /// Whether this is a thread-worker actor.
    #[inline]
    pub(crate) fn is_homed(&self) -> bool {
        self.0.load(Relaxed) & HOMED != 0
    }

    /// Direct hand-off: moves an idle cell to `NOTIFIED`. On `true` the
    /// caller owns the cell's state until it schedules the cell. Fails on
    /// any flag, `MUTED` included (a muted actor's mailbox may hold
    /// messages older than its empty turn buffer).
    #[inline]
    pub(crate) fn claim_idle(&self) -> bool {
        self.0.load(Relaxed) == 0
            && self
                .0
                .compare_exchange(0, NOTIFIED, AcqRel, Relaxed)
                .is_ok()
    }

    /// After a push under the mailbox lock: makes sure the runner will look
    /// at the mailbox. `true`: the cell was idle and the caller must
    /// schedule it. If `NOTIFIED` is already set, the runner has yet to
    /// clear it and takes the mailbox after clearing it (the lock orders
    /// the push before that take), so no write is needed.
    #[inline]
    pub(crate) fn notify_after_push(&self) -> bool {
        if self.0.load(Acquire) & NOTIFIED != 0 {
            return false;
        }
        self.notify()
    }

    /// Sets `NOTIFIED` with a read-modify-write (a waker: no push came
    /// first). `true`: the cell was idle and the caller must schedule it.
    #[inline]
    pub(crate) fn notify(&self) -> bool {
        let prev = self.0.fetch_or(NOTIFIED, AcqRel);
        prev & (NOTIFIED | RUNNING | DEAD) == 0
    }

    /// The runner takes the cell: `NOTIFIED` → `RUNNING`, flags kept.
    #[inline]
    pub(crate) fn to_running(&self) {
        let prev = self.0.fetch_xor(NOTIFIED | RUNNING, AcqRel);
        debug_assert!(
            prev & NOTIFIED != 0 && prev & RUNNING == 0,
            "a cell ran without being notified, or twice at once"
        );
    }

    /// The runner consumes a notification: `true` if `NOTIFIED` was set
    /// (then it must take the mailbox again).
    #[inline]
    pub(crate) fn take_notified(&self) -> bool {
        if self.0.load(Acquire) & NOTIFIED == 0 {
            return false;
        }
        self.0.fetch_and(!NOTIFIED, AcqRel);
        true
    }

    /// The runner gives the cell up at the end of a turn, unless something
    /// arrived (`NOTIFIED` or `SIGNAL`).
    #[inline]
    pub(crate) fn to_idle(&self) -> ToIdle {
        let mut s = self.0.load(Acquire);
        loop {
            debug_assert!(s & RUNNING != 0, "to_idle by a non-runner");
            if s & (NOTIFIED | SIGNAL) != 0 {
                return ToIdle::MustRun;
            }
            match self
                .0
                .compare_exchange_weak(s, s & !RUNNING, AcqRel, Acquire)
            {
                Ok(_) => return ToIdle::Idle,
                Err(actual) => s = actual,
            }
        }
    }

    /// The runner yields: the cell stays owned by the run queue
    /// (`NOTIFIED`), and the caller must schedule it.
    #[inline]
    pub(crate) fn to_yield(&self) {
        self.0.fetch_or(NOTIFIED, AcqRel);
        self.0.fetch_and(!RUNNING, AcqRel);
    }

    /// Under the mailbox lock: a signal is pending.
    #[inline]
    pub(crate) fn set_signal(&self) {
        self.0.fetch_or(SIGNAL, AcqRel);
    }

    /// Under the mailbox lock: the pending signals were taken.
    #[inline]
    pub(crate) fn clear_signal(&self) {
        self.0.fetch_and(!SIGNAL, AcqRel);
    }

    /// Whether a signal is pending.
    #[inline]
    pub(crate) fn has_signal(&self) -> bool {
        self.0.load(Acquire) & SIGNAL != 0
    }

    /// Under the mailbox lock: blocked senders wait for room.
    #[inline]
    pub(crate) fn set_waiters(&self) {
        self.0.fetch_or(WAITERS, AcqRel);
    }

    /// Under the mailbox lock: `true` if senders waited (the flag is
    /// cleared; the caller wakes them).
    #[inline]
    pub(crate) fn take_waiters(&self) -> bool {
        if self.0.load(Acquire) & WAITERS == 0 {
            return false;
        }
        self.0.fetch_and(!WAITERS, AcqRel);
        true
    }

    /// By the runner, before it goes idle holding sends.
    #[inline]
    pub(crate) fn set_muted(&self) {
        self.0.fetch_or(MUTED, AcqRel);
    }

    /// By the runner: it holds nothing any more.
    #[inline]
    pub(crate) fn clear_muted(&self) {
        if self.0.load(Relaxed) & MUTED != 0 {
            self.0.fetch_and(!MUTED, AcqRel);
        }
    }

    /// Under the mailbox lock, by the exiting runner: nothing more is
    /// accepted.
    #[inline]
    pub(crate) fn close(&self) {
        self.0.fetch_or(CLOSED, AcqRel);
    }

    /// Whether the mailbox is closed (read under the mailbox lock, which
    /// orders it with the exit that closed it).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.0.load(Acquire) & CLOSED != 0
    }

    /// By the exiting runner: the cell is never scheduled again.
    #[inline]
    pub(crate) fn mark_dead(&self) {
        self.0.fetch_or(DEAD, AcqRel);
    }

    /// Whether the actor has exited.
    #[inline]
    pub(crate) fn is_dead(&self) -> bool {
        self.0.load(Acquire) & DEAD != 0
    }
}

/// Model checks of the state machine with loom
/// (`RUSTFLAGS="--cfg loom" cargo test -p weft-actors --lib --release loom`).
///
/// The model is the cell's protocol with the real `State`: a mailbox
/// behind a mutex, the turn buffer in a loom `UnsafeCell` (loom fails the
/// test if two threads ever touch it at once: the ownership rule), and a
/// run queue that fails the test if the cell is ever queued twice.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use loom::sync::{Arc, Mutex};

    use super::{State, ToIdle};

    struct Model {
        state: State,
        mailbox: Mutex<Vec<u32>>,
        batch: UnsafeCell<Vec<u32>>,
        handled: Mutex<Vec<u32>>,
        queued: AtomicUsize,
    }

    impl Model {
        fn new() -> Arc<Self> {
            Arc::new(Model {
                state: State::new(false),
                mailbox: Mutex::new(Vec::new()),
                batch: UnsafeCell::new(Vec::new()),
                handled: Mutex::new(Vec::new()),
                queued: AtomicUsize::new(0),
            })
        }

        fn schedule(&self) {
            assert_eq!(self.queued.fetch_add(1, SeqCst), 0, "queued twice");
        }

        /// A sender: the direct hand-off when idle, else push and notify.
        fn send(&self, msg: u32, direct: bool) {
            if direct && self.state.claim_idle() {
                self.batch.with_mut(|b| unsafe { (*b).push(msg) });
                self.schedule();
                return;
            }
            self.mailbox.lock().unwrap().push(msg);
            if self.state.notify_after_push() {
                self.schedule();
            }
        }

        /// A worker runs the queued cell once: one turn, then idle or yield.
        fn run(&self) {
            assert_eq!(self.queued.fetch_sub(1, SeqCst), 1, "ran while not queued");
            self.state.to_running();
            let mut look = true;
            loop {
                let taken = self.batch.with_mut(|b| std::mem::take(unsafe { &mut *b }));
                self.handled.lock().unwrap().extend(taken);
                if !look && !self.state.take_notified() {
                    break;
                }
                look = false;
                let refill = std::mem::take(&mut *self.mailbox.lock().unwrap());
                self.batch.with_mut(|b| unsafe { (*b).extend(refill) });
            }
            if self.state.to_idle() == ToIdle::MustRun {
                self.state.to_yield();
                self.schedule();
            }
        }

        /// Runs the cell while it is queued (the rest of the run queue).
        fn drain(&self) {
            while self.queued.load(SeqCst) == 1 {
                self.run();
            }
        }
    }

    /// A sender races the end of a turn: the cell is scheduled exactly
    /// once per idle → notified transition and no message is lost,
    /// through both the locked path and the direct hand-off.
    #[test]
    fn a_send_racing_the_end_of_a_turn_schedules_once_and_loses_nothing() {
        for direct in [false, true] {
            loom::model(move || {
                let m = Model::new();
                m.send(0, direct); // the cell is queued with a message
                let worker = {
                    let m = m.clone();
                    loom::thread::spawn(move || m.run())
                };
                let sender = {
                    let m = m.clone();
                    loom::thread::spawn(move || m.send(1, direct))
                };
                worker.join().unwrap();
                sender.join().unwrap();
                m.drain();
                let mut handled = m.handled.lock().unwrap().clone();
                handled.sort_unstable();
                assert_eq!(handled, vec![0, 1]);
                assert_eq!(m.queued.load(SeqCst), 0);
                assert!(m.state.claim_idle(), "the cell ends idle");
            });
        }
    }

    /// Two senders race each other and an idle cell: one of them schedules
    /// it, and both messages are handled.
    #[test]
    fn two_senders_racing_an_idle_cell_schedule_it_once() {
        loom::model(|| {
            let m = Model::new();
            let senders: Vec<_> = [(1, true), (2, false)]
                .into_iter()
                .map(|(msg, direct)| {
                    let m = m.clone();
                    loom::thread::spawn(move || m.send(msg, direct))
                })
                .collect();
            for s in senders {
                s.join().unwrap();
            }
            m.drain();
            let mut handled = m.handled.lock().unwrap().clone();
            handled.sort_unstable();
            assert_eq!(handled, vec![1, 2]);
        });
    }
}
