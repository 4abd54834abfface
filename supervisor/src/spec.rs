//! The vocabulary of a child spec, as Erlang/OTP's `supervisor` defines it:
//! restart types, shutdown policies, child kinds and restart strategies.
//!
//! Owns: the pure decisions ("is this exit restarted?", "which children does
//! a failure restart?"); nothing here runs or touches an actor.

use std::ops::Range;
use std::time::Duration;

use weft_actors::ExitReason;

/// When a child that exited is started again (OTP's restart types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whatever the exit reason.
    Permanent,
    /// Restarted only after an abnormal exit (not `Normal` or `Shutdown`).
    Transient,
    /// Never restarted.
    Temporary,
}

impl Restart {
    /// Whether a child of this restart type that exited with `reason` is
    /// started again.
    pub fn restarts_after(self, reason: &ExitReason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => reason.is_abnormal(),
            Restart::Temporary => false,
        }
    }
}

/// How a supervisor stops a child (OTP's shutdown values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Kill at once: the child handles nothing more.
    Brutal,
    /// Ask the child to stop; if it has not exited within the timeout,
    /// kill it.
    Timeout(Duration),
    /// Wait for the child however long it takes (the default for a child
    /// that is itself a supervisor: its subtree stops in order first).
    Infinity,
}

/// Whether a child is a worker or a supervisor (the default shutdown
/// differs, and introspection shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    /// A leaf actor.
    Worker,
    /// A supervisor of its own subtree.
    Supervisor,
}

impl ChildKind {
    /// OTP's default shutdown for the kind: 5 s for a worker, infinity for
    /// a supervisor.
    pub fn default_shutdown(self) -> Shutdown {
        match self {
            ChildKind::Worker => Shutdown::Timeout(Duration::from_secs(5)),
            ChildKind::Supervisor => Shutdown::Infinity,
        }
    }
}

/// Which children a failure restarts (OTP's strategies). A dynamic
/// supervisor restarts only the failed child, as `OneForOne` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// Every child: all are stopped (in reverse start order) and started
    /// again (in start order).
    OneForAll,
    /// The child that exited and every child started after it.
    RestForOne,
}

impl Strategy {
    /// The children (indices in start order, of `count`) that are stopped
    /// and started again when the child at `failed` exits and is to be
    /// restarted.
    pub fn affected(self, failed: usize, count: usize) -> Range<usize> {
        debug_assert!(failed < count, "the failed child is one of the children");
        match self {
            Strategy::OneForOne => failed..failed + 1,
            Strategy::OneForAll => 0..count,
            Strategy::RestForOne => failed..count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_types_follow_otp() {
        let error = ExitReason::Panic("boom".into());
        for (restart, normal, shutdown, abnormal) in [
            (Restart::Permanent, true, true, true),
            (Restart::Transient, false, false, true),
            (Restart::Temporary, false, false, false),
        ] {
            assert_eq!(restart.restarts_after(&ExitReason::Normal), normal);
            assert_eq!(restart.restarts_after(&ExitReason::Shutdown), shutdown);
            assert_eq!(restart.restarts_after(&error), abnormal);
            assert_eq!(restart.restarts_after(&ExitReason::Killed), abnormal);
        }
    }

    #[test]
    fn strategies_pick_the_affected_children() {
        assert_eq!(Strategy::OneForOne.affected(2, 5), 2..3);
        assert_eq!(Strategy::OneForAll.affected(2, 5), 0..5);
        assert_eq!(Strategy::RestForOne.affected(2, 5), 2..5);
        assert_eq!(Strategy::RestForOne.affected(4, 5), 4..5);
        assert_eq!(Strategy::RestForOne.affected(0, 1), 0..1);
    }

    #[test]
    fn default_shutdowns() {
        assert_eq!(
            ChildKind::Worker.default_shutdown(),
            Shutdown::Timeout(Duration::from_secs(5))
        );
        assert_eq!(ChildKind::Supervisor.default_shutdown(), Shutdown::Infinity);
    }
}
