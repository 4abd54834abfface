//! weft-supervisor: supervision trees for weft actors.
//!
//! Will own: child specs, restart strategies (one-for-one, one-for-all,
//! rest-for-one, dynamic), restart intensity and escalation, ordered
//! shutdown with timeouts. Built only on `weft-actors`; it must not touch
//! the scheduler or the reactor directly.
//!
//! This crate is empty until the supervision issue lands; today an actor's
//! exit reaches whoever monitors or links to it (see `weft_actors::Ctx`).
