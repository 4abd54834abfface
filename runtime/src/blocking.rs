//! The blocking pool: threads for work that blocks (file I/O, DNS, a
//! synchronous library), so that it never holds a scheduler worker.
//!
//! Owns: its threads and its queue. Invariants: never more than
//! `max_threads` threads; the queue never holds more than `queue_capacity`
//! jobs (a submit past that is refused with `BlockingPoolFull`); a thread
//! idle for `keep_alive` exits; a failed thread spawn is an error value when
//! no thread is left to run the job, never a panic or a silent hang; a
//! panicking job is logged and its thread lives on.
//! Must not touch: the scheduler or actors (results travel back through
//! whatever the job's closure captured, e.g. an actor's address).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::RuntimeError;

type Job = Box<dyn FnOnce() + Send>;

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    busy: usize,
    busiest: usize,
    shutdown: bool,
    handles: Vec<JoinHandle<()>>,
}

pub(crate) struct BlockingPool {
    state: Mutex<State>,
    work: Condvar,
    max_threads: usize,
    queue_capacity: usize,
    keep_alive: Duration,
    name: String,
}

/// A snapshot of the blocking pool, for tests and introspection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockingStats {
    /// Threads alive now.
    pub threads: usize,
    /// Threads waiting for work.
    pub idle: usize,
    /// Jobs queued, not yet started.
    pub queued: usize,
    /// The most threads ever alive at once.
    pub peak_threads: usize,
}

impl BlockingPool {
    pub(crate) fn new(
        max_threads: usize,
        queue_capacity: usize,
        keep_alive: Duration,
        name: String,
    ) -> Arc<Self> {
        Arc::new(BlockingPool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                busy: 0,
                busiest: 0,
                shutdown: false,
                handles: Vec::new(),
            }),
            work: Condvar::new(),
            max_threads,
            queue_capacity,
            keep_alive,
            name,
        })
    }

    pub(crate) fn stats(&self) -> BlockingStats {
        let st = self.state.lock();
        BlockingStats {
            threads: st.threads,
            idle: st.idle,
            queued: st.queue.len(),
            peak_threads: st.busiest,
        }
    }

    pub(crate) fn spawn(self: &Arc<Self>, job: Job) -> Result<(), RuntimeError> {
        let mut st = self.state.lock();
        if st.shutdown {
            return Err(RuntimeError::ShuttingDown);
        }
        if st.queue.len() < st.idle {
            st.queue.push_back(job);
            self.work.notify_one();
            return Ok(());
        }
        if st.threads < self.max_threads {
            st.queue.push_back(job);
            st.threads += 1;
            st.busiest = st.busiest.max(st.threads);
            st.handles.retain(|h| !h.is_finished());
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-blocking", self.name))
                .spawn(move || pool.thread_main());
            match spawned {
                Ok(handle) => st.handles.push(handle),
                Err(e) => {
                    st.threads -= 1;
                    if st.threads == 0 {
                        st.queue.pop_back();
                        return Err(RuntimeError::Os {
                            what: "spawn a blocking-pool thread",
                            source: e,
                        });
                    }
                    tracing::warn!(error = %e, "blocking pool could not grow; job queued");
                }
            }
            return Ok(());
        }
        // Threads that are not busy (idle, or just started) will each take
        // a queued job; only the rest are waiting.
        let waiting = st.queue.len().saturating_sub(st.threads - st.busy);
        if waiting >= self.queue_capacity {
            return Err(RuntimeError::BlockingPoolFull {
                queued: st.queue.len(),
                threads: st.threads,
            });
        }
        st.queue.push_back(job);
        Ok(())
    }

    fn thread_main(self: Arc<Self>) {
        let mut st = self.state.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.busy += 1;
                drop(st);
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a blocking-pool job panicked");
                }
                st = self.state.lock();
                st.busy -= 1;
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let timed_out = self.work.wait_for(&mut st, self.keep_alive).timed_out();
            st.idle -= 1;
            if timed_out && st.queue.is_empty() && !st.shutdown {
                break;
            }
        }
        st.threads -= 1;
    }

    /// Stops the pool: idle threads exit at once, busy ones after their
    /// job. Waits until `deadline`; returns how many threads were still
    /// running a job then (left behind, detached).
    pub(crate) fn shutdown_until(&self, deadline: std::time::Instant) -> usize {
        let handles = {
            let mut st = self.state.lock();
            st.shutdown = true;
            std::mem::take(&mut st.handles)
        };
        self.work.notify_all();
        crate::runtime::join_until(handles, deadline).len()
    }
}
