//! `Sleepers`: the handshake between a worker going to sleep and a
//! notifier that made work, so that no wake-up is ever lost.
//!
//! Protocol (every access `SeqCst`):
//! * A worker out of work first *spins* (counted in `spinning`) on the
//!   queues. A notifier that sees a spinner wakes nobody: the spinner will
//!   find the work.
//! * A spinner that found nothing leaves `spinning`, then *lists* itself
//!   (with its waker) under the mutex, issues a fence, and re-checks every
//!   queue before it blocks; if it finds work, it unlists itself.
//! * A notifier pushes its work, issues a fence, then reads `spinning` and
//!   `sleeping`; if nobody spins and someone sleeps, it pops one sleeper
//!   under the mutex and wakes it.
//!
//! Why no wake-up is lost: the worker's fence (after listing) and the
//! notifier's fence (after pushing) are ordered one way or the other. If
//! the worker's comes first, the notifier sees it listed and wakes it (or
//! sees it spinning, and it has not yet re-checked: it will see the work).
//! If the notifier's comes first, the worker's re-check sees the work.
//! Wakers keep a token (`unpark`, the reactor's eventfd), so a wake that
//! arrives between the re-check and the block is not lost either.
//! `loom_tests` below checks this with the same code.

use std::sync::atomic::Ordering::SeqCst;

use crate::sync::{fence, AtomicUsize, Mutex};

struct Entry<W> {
    index: usize,
    waker: W,
}

/// Workers that sleep or spin; `W` is how to wake one.
pub(crate) struct Sleepers<W> {
    list: Mutex<Vec<Entry<W>>>,
    sleeping: AtomicUsize,
    spinning: AtomicUsize,
}

impl<W> Sleepers<W> {
    pub(crate) fn new(workers: usize) -> Self {
        Sleepers {
            list: Mutex::new(Vec::with_capacity(workers)),
            sleeping: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
        }
    }

    /// A worker starts spinning on the queues.
    pub(crate) fn start_spinning(&self) {
        self.spinning.fetch_add(1, SeqCst);
    }

    /// A worker stops spinning (found work, or is about to list itself).
    pub(crate) fn stop_spinning(&self) {
        self.spinning.fetch_sub(1, SeqCst);
    }

    /// A worker lists itself before its final re-check of the queues.
    pub(crate) fn list(&self, index: usize, waker: W) {
        let mut list = self.list.lock();
        list.push(Entry { index, waker });
        self.sleeping.store(list.len(), SeqCst);
        drop(list);
        fence(SeqCst);
    }

    /// A worker that woke (or found work on its re-check) unlists itself.
    pub(crate) fn unlist(&self, index: usize) {
        let mut list = self.list.lock();
        list.retain(|e| e.index != index);
        self.sleeping.store(list.len(), SeqCst);
    }

    /// After pushing work: the sleeper to wake, if nobody spins.
    pub(crate) fn to_wake(&self) -> Option<W> {
        fence(SeqCst);
        if self.spinning.load(SeqCst) > 0 || self.sleeping.load(SeqCst) == 0 {
            return None;
        }
        let mut list = self.list.lock();
        let entry = list.pop();
        self.sleeping.store(list.len(), SeqCst);
        entry.map(|e| e.waker)
    }

    /// Every listed sleeper (at shutdown).
    pub(crate) fn take_all(&self) -> Vec<W> {
        let list = std::mem::take(&mut *self.list.lock());
        self.sleeping.store(0, SeqCst);
        list.into_iter().map(|e| e.waker).collect()
    }
}

/// `RUSTFLAGS="--cfg loom" cargo test -p weft-runtime --lib --release loom`
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use loom::sync::Arc;
    use loom::thread::Thread;

    use super::Sleepers;

    /// The worker's idle path as the scheduler runs it (`worker::idle`):
    /// spin once, list, re-check, park; return when it took one piece of
    /// work. A spinner that takes work while more is queued wakes another
    /// worker (without that rule loom finds a sleeper left with work
    /// queued: the notifiers saw the spinner and woke nobody).
    fn worker(s: &Sleepers<Thread>, work: &AtomicUsize, index: usize) {
        loop {
            s.start_spinning();
            let found = try_take(work);
            s.stop_spinning();
            if found {
                if work.load(SeqCst) > 0 {
                    if let Some(t) = s.to_wake() {
                        t.unpark();
                    }
                }
                return;
            }
            s.list(index, loom::thread::current());
            if work.load(SeqCst) > 0 {
                s.unlist(index);
                continue;
            }
            loom::thread::park();
            s.unlist(index);
        }
    }

    fn try_take(work: &AtomicUsize) -> bool {
        let mut n = work.load(SeqCst);
        while n > 0 {
            match work.compare_exchange(n, n - 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
        false
    }

    fn notify(s: &Sleepers<Thread>, work: &AtomicUsize) {
        work.fetch_add(1, SeqCst);
        if let Some(t) = s.to_wake() {
            t.unpark();
        }
    }

    /// A notify racing a worker going to sleep is never lost: the worker
    /// always wakes and takes the work (loom fails the model on a
    /// deadlock, i.e. a worker parked forever).
    #[test]
    fn a_notify_racing_a_worker_going_to_sleep_is_never_lost() {
        loom::model(|| {
            let s = Arc::new(Sleepers::new(1));
            let work = Arc::new(AtomicUsize::new(0));
            let w = {
                let (s, work) = (s.clone(), work.clone());
                loom::thread::spawn(move || worker(&s, &work, 0))
            };
            notify(&s, &work);
            w.join().unwrap();
        });
    }

    /// Two workers, two pieces of work from two notifiers: both workers
    /// wake and each takes one.
    #[test]
    fn two_notifies_wake_two_sleepers() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let s = Arc::new(Sleepers::new(2));
            let work = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..2)
                .map(|i| {
                    let (s, work) = (s.clone(), work.clone());
                    loom::thread::spawn(move || worker(&s, &work, i))
                })
                .collect();
            let n = {
                let (s, work) = (s.clone(), work.clone());
                loom::thread::spawn(move || notify(&s, &work))
            };
            notify(&s, &work);
            n.join().unwrap();
            for w in workers {
                w.join().unwrap();
            }
        });
    }
}
