//! weft-io: actors for file descriptors.
//!
//! Will own: TCP, UDP, UNIX sockets, TLS, child processes, raw fd
//! readiness, adopted sockets, name resolution, write buffering and flow
//! control. Built on `weft-supervisor` and `weft-actors`; it must not reach
//! into actor cells or the scheduler.
//!
//! Empty until the TCP issue lands; today readiness of any mio source can
//! be delivered to an actor with `weft_actors::Ctx::register_io`.
