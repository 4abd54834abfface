//! `OnceFn`: a one-shot callback stored inline in a timer's wheel entry.
//!
//! Most timer callbacks are small (a `Weak` to an actor and a message):
//! boxing each one was a `malloc` on arming and a `free` on firing or
//! cancelling, about a tenth of the cost of a timer in the harness, and a
//! 16-byte allocator header on top of every pending timer. A closure of at
//! most [`INLINE`] bytes, aligned to at most a word, is stored in the entry
//! itself; a larger or over-aligned one is boxed and the box is stored
//! inline.
//!
//! Invariant: `data` holds exactly one live value of the type `vtable` was
//! made for, from `new` until `call` (which moves it out) or `drop` (which
//! drops it in place); nothing else reads or writes it.

use std::marker::PhantomData;
use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};

/// Words of inline storage.
const WORDS: usize = 4;
/// Bytes of inline storage: a closure up to this size is not boxed.
pub(crate) const INLINE: usize = WORDS * size_of::<usize>();

/// The operations on one concrete closure type.
struct VTable {
    /// Moves the closure out of the storage and calls it.
    call: unsafe fn(*mut u8),
    /// Drops the closure in place.
    drop: unsafe fn(*mut u8),
}

struct Ops<F>(PhantomData<F>);

impl<F: FnOnce() + Send + 'static> Ops<F> {
    const VTABLE: VTable = VTable {
        call: Self::call,
        drop: Self::drop,
    };

    /// # Safety
    /// `data` holds a live `F` (see the module invariant), which the caller
    /// gives up: it is moved out here.
    unsafe fn call(data: *mut u8) {
        // SAFETY: the caller guarantees a live, suitably aligned `F` at
        // `data` and never touches it again.
        let f = unsafe { data.cast::<F>().read() };
        f();
    }

    /// # Safety
    /// As `call`: a live `F` at `data`, never used again.
    unsafe fn drop(data: *mut u8) {
        // SAFETY: as in `call`.
        unsafe { data.cast::<F>().drop_in_place() }
    }
}

/// A `FnOnce() + Send` callback, inline when it is small.
pub(crate) struct OnceFn {
    data: MaybeUninit<[usize; WORDS]>,
    vtable: &'static VTable,
}

// SAFETY: only `F: Send` closures are ever stored (see `new`), and the
// storage is owned: moving an `OnceFn` to another thread moves the closure.
unsafe impl Send for OnceFn {}

impl OnceFn {
    /// Stores `f`, inline if it fits.
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Self {
        if fits::<F>() {
            Self::inline(f)
        } else {
            let boxed: Box<F> = Box::new(f);
            Self::inline(boxed)
        }
    }

    fn inline<F: FnOnce() + Send + 'static>(f: F) -> Self {
        assert!(fits::<F>(), "a boxed closure always fits");
        let mut data = MaybeUninit::<[usize; WORDS]>::uninit();
        // SAFETY: `F` fits the storage in size and alignment (checked
        // above), and the storage is fresh: nothing is overwritten.
        unsafe { data.as_mut_ptr().cast::<F>().write(f) };
        OnceFn {
            data,
            vtable: &Ops::<F>::VTABLE,
        }
    }

    /// Calls the callback, consuming it.
    pub(crate) fn call(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `data` holds the live closure `vtable` was made for; the
        // `ManuallyDrop` makes sure it is not dropped again after being
        // moved out, also when the call panics.
        unsafe { (this.vtable.call)(this.data.as_mut_ptr().cast()) }
    }
}

impl Drop for OnceFn {
    fn drop(&mut self) {
        // SAFETY: `data` holds the live closure `vtable` was made for and
        // is not used after this.
        unsafe { (self.vtable.drop)(self.data.as_mut_ptr().cast()) }
    }
}

const fn fits<F>() -> bool {
    size_of::<F>() <= INLINE && align_of::<F>() <= align_of::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its drops.
    struct Tally(Arc<AtomicUsize>);
    impl Drop for Tally {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn run_each_way(make: impl Fn(Tally, Arc<AtomicUsize>) -> OnceFn) {
        // Called: runs once, drops its captures once.
        let drops = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        make(Tally(drops.clone()), calls.clone()).call();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // Dropped uncalled (a cancelled timer): never runs, drops once.
        let drops = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        drop(make(Tally(drops.clone()), calls.clone()));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_small_closure_runs_or_drops_exactly_once() {
        run_each_way(|t, calls| {
            let f = move || {
                let _keep = &t;
                calls.fetch_add(1, Ordering::SeqCst);
            };
            assert!(std::mem::size_of_val(&f) <= INLINE, "stored inline");
            OnceFn::new(f)
        });
    }

    #[test]
    fn a_large_closure_is_boxed_and_runs_or_drops_exactly_once() {
        run_each_way(|t, calls| {
            let big = [7u64; 16];
            OnceFn::new(move || {
                let _keep = &t;
                assert_eq!(big.iter().sum::<u64>(), 7 * 16);
                calls.fetch_add(1, Ordering::SeqCst);
            })
        });
    }

    #[test]
    fn an_over_aligned_closure_is_boxed() {
        #[repr(align(32))]
        struct Wide(u8);
        let wide = Wide(5);
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let f = move || {
            g.store(usize::from(wide.0), Ordering::SeqCst);
        };
        assert!(!fits::<Wide>());
        OnceFn::new(f).call();
        assert_eq!(got.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn a_panicking_call_drops_its_captures_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t = Tally(drops.clone());
        let f = OnceFn::new(move || {
            let _keep = &t;
            panic!("boom");
        });
        assert!(catch_unwind(AssertUnwindSafe(|| f.call())).is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_closure_moves_to_another_thread() {
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let f = OnceFn::new(move || {
            g.fetch_add(3, Ordering::SeqCst);
        });
        std::thread::spawn(move || f.call()).join().unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 3);
    }
}
