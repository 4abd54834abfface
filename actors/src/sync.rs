//! The atomics the cell's state machine uses, from `std` normally and from
//! `loom` when built with `--cfg loom`, so the same state machine is
//! model-checked (`cell::state`'s loom tests). Everything else in the crate
//! uses `std` and `parking_lot` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU8;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU8;
