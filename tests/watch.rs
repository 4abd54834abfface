//! Raw descriptor readiness on pipes: level mode keeps firing while data
//! remains (and edge mode does not), nothing after unwatch, a descriptor
//! closed or replaced behind the runtime's back reported once and never
//! mistaken for the new file, writability, the refusals (a regular file,
//! a directory), the list of watches, and shutdown.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{self, Receiver, Sender};

use common::*;
use weft::io::watch::{watch_fd, watched, FdEvent, FdWatch, Trigger, WatchError, WatchFor};
use weft::prelude::*;

#[derive(Debug, PartialEq)]
enum Seen {
    /// Ready: (watch id, readable, writable, current), and the byte read.
    Ready(u64, bool, bool, bool, Option<u8>),
    Closed(u64),
    Watching(u64),
    Stopped,
}

enum Msg {
    Event(FdEvent),
    Unwatch,
}

/// Watches `fd`; on each readable event reads at most one byte (or none).
struct Watcher {
    fd: RawFd,
    what: WatchFor,
    trigger: Trigger,
    read_one: bool,
    tx: Sender<Seen>,
    watch: Option<FdWatch>,
}

impl Actor for Watcher {
    type Msg = Msg;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        // SAFETY: the test keeps the descriptor open until it closes it on
        // purpose; the watch only records its number.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let watch = watch_fd(ctx, fd, self.what, self.trigger, Msg::Event)?;
        let _ = self.tx.send(Seen::Watching(watch.id()));
        self.watch = Some(watch);
        Ok(())
    }

    fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            Msg::Event(FdEvent::Ready(r)) => {
                let mut byte = None;
                if self.read_one && r.is_readable() && r.is_current() {
                    let mut b = [0u8; 1];
                    if let Ok(1) = nix::unistd::read(self.fd, &mut b) {
                        byte = Some(b[0]);
                    }
                }
                let _ = self.tx.send(Seen::Ready(
                    r.watch(),
                    r.is_readable(),
                    r.is_writable(),
                    r.is_current(),
                    byte,
                ));
            }
            Msg::Event(FdEvent::Closed { watch }) => {
                let _ = self.tx.send(Seen::Closed(watch));
            }
            Msg::Unwatch => {
                if let Some(w) = self.watch.take() {
                    w.unwatch();
                }
            }
        }
        Ok(())
    }

    fn stopped(&mut self, _reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        let _ = self.tx.send(Seen::Stopped);
    }
}

fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe().unwrap();
    for fd in [&r, &w] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
    }
    (r, w)
}

fn start(
    rt: &Runtime,
    fd: &impl AsFd,
    what: WatchFor,
    trigger: Trigger,
    read_one: bool,
) -> (Addr<Watcher>, Receiver<Seen>, u64) {
    let (tx, rx) = mpsc::channel();
    let addr = rt.handle().spawn(Watcher {
        fd: fd.as_fd().as_raw_fd(),
        what,
        trigger,
        read_one,
        tx,
        watch: None,
    });
    let id = match recv(&rx) {
        Seen::Watching(id) => id,
        other => panic!("expected the watch to start, got {other:?}"),
    };
    (addr, rx, id)
}

#[test]
fn level_mode_keeps_firing_while_data_remains_edge_mode_does_not() {
    let rt = runtime(2);
    let (r, w) = nonblocking_pipe();
    let (_level, rx, id) = start(&rt, &r, WatchFor::Read, Trigger::Level, true);
    nix::unistd::write(&w, b"abcde").unwrap();
    let bytes: Vec<u8> = (0..5)
        .map(|_| match recv(&rx) {
            Seen::Ready(got, true, false, true, Some(b)) if got == id => b,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bytes, b"abcde", "one event per byte, while bytes remained");
    assert_silent(&rx);

    let (r2, w2) = nonblocking_pipe();
    let (_edge, rx2, id2) = start(&rt, &r2, WatchFor::Read, Trigger::Edge, true);
    nix::unistd::write(&w2, b"abcde").unwrap();
    assert_eq!(recv(&rx2), Seen::Ready(id2, true, false, true, Some(b'a')));
    assert_silent(&rx2);
    // A new write is a new edge.
    nix::unistd::write(&w2, b"f").unwrap();
    assert_eq!(recv(&rx2), Seen::Ready(id2, true, false, true, Some(b'b')));
}

#[test]
fn nothing_arrives_after_unwatch_and_the_list_follows() {
    let rt = runtime(2);
    let (r, w) = nonblocking_pipe();
    let (watcher, rx, id) = start(&rt, &r, WatchFor::Read, Trigger::Level, true);
    let listed = watched(rt.handle());
    assert!(
        listed.iter().any(|i| i.id == id
            && i.fd == r.as_raw_fd()
            && i.read
            && !i.write
            && i.level
            && i.actor == watcher.id()),
        "{listed:?}"
    );
    watcher.send(Msg::Unwatch).unwrap();
    eventually("the watch is gone from the list", || {
        !watched(rt.handle()).iter().any(|i| i.id == id)
    });
    nix::unistd::write(&w, b"after").unwrap();
    assert_silent(&rx);
}

#[test]
fn a_descriptor_closed_behind_the_runtime_s_back_is_reported_once() {
    let rt = runtime(2);
    let (r, w) = nonblocking_pipe();
    // Level mode, and the handler never reads: events keep coming while
    // the data sits there.
    let (_watcher, rx, id) = start(&rt, &r, WatchFor::Read, Trigger::Level, false);
    nix::unistd::write(&w, b"x").unwrap();
    assert!(matches!(recv(&rx), Seen::Ready(got, true, _, _, None) if got == id));
    assert!(matches!(recv(&rx), Seen::Ready(got, true, _, _, None) if got == id));
    drop(r);
    loop {
        match recv(&rx) {
            Seen::Ready(got, ..) if got == id => continue,
            Seen::Closed(got) => {
                assert_eq!(got, id);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // Once, and no spinning after it.
    assert_silent(&rx);
}

#[test]
fn a_reused_number_gets_no_stale_event() {
    let rt = runtime(2);
    let (a_r, a_w) = nonblocking_pipe();
    let number = a_r.as_raw_fd();
    let (_old, old_rx, old_id) = start(&rt, &a_r, WatchFor::Read, Trigger::Level, false);
    nix::unistd::write(&a_w, b"a").unwrap();
    assert!(matches!(recv(&old_rx), Seen::Ready(got, ..) if got == old_id));
    // Another pipe's read end takes the same number behind the runtime's
    // back (the old file lives on through its write end's pipe).
    let (b_r, b_w) = nonblocking_pipe();
    nix::unistd::dup2(b_r.as_raw_fd(), number).unwrap();
    drop(b_r);
    let b_r = a_r; // the number now names pipe B's read end
    loop {
        match recv(&old_rx) {
            Seen::Ready(got, ..) if got == old_id => continue,
            Seen::Closed(got) if got == old_id => break,
            other => panic!("{other:?}"),
        }
    }
    // Data on the new file never reaches the old watch.
    nix::unistd::write(&b_w, b"b").unwrap();
    assert_silent(&old_rx);
    // A new watch on the number sees the new file.
    let (_new, new_rx, new_id) = start(&rt, &b_r, WatchFor::Read, Trigger::Edge, true);
    assert_ne!(new_id, old_id);
    assert_eq!(
        recv(&new_rx),
        Seen::Ready(new_id, true, false, true, Some(b'b'))
    );
}

#[test]
fn writability_and_the_refusals() {
    let rt = runtime(2);
    let (_r, w) = nonblocking_pipe();
    let (_writer, rx, id) = start(&rt, &w, WatchFor::Write, Trigger::Edge, false);
    assert_eq!(recv(&rx), Seen::Ready(id, false, true, true, None));
    assert_silent(&rx);

    struct Try(Sender<Result<(), String>>, RawFd);
    impl Actor for Try {
        type Msg = FdEvent;
        fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
            // SAFETY: the file stays open until the test ends.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.1) };
            let result = watch_fd(ctx, fd, WatchFor::Read, Trigger::Edge, |e| e);
            let _ = self.0.send(result.map(drop).map_err(|e| match e {
                WatchError::NotPollable { .. } => "not pollable".to_string(),
                other => other.to_string(),
            }));
            Ok(())
        }
        fn handle(&mut self, _msg: FdEvent, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
            Ok(())
        }
    }
    // A number that names nothing (descriptors are allocated lowest
    // first, so no test of this binary ever gets this one).
    let closed = 999_999;
    let (tx, rx) = mpsc::channel();
    rt.handle().spawn(Try(tx, closed));
    let err = recv(&rx).unwrap_err();
    assert!(err.contains("is not open"), "{err}");

    let file = std::fs::File::open("/etc/hostname")
        .or_else(|_| std::fs::File::open(std::env::current_exe().unwrap()))
        .unwrap();
    let dir = std::fs::File::open("/").unwrap();
    for fd in [file.as_raw_fd(), dir.as_raw_fd()] {
        let (tx, rx) = mpsc::channel();
        rt.handle().spawn(Try(tx, fd));
        assert_eq!(recv(&rx), Err("not pollable".to_string()));
    }
}

#[test]
fn watchers_are_stopped_at_shutdown_and_their_watches_end() {
    let rt = runtime(2);
    let (r, _w) = nonblocking_pipe();
    let (_watcher, rx, id) = start(&rt, &r, WatchFor::Read, Trigger::Edge, true);
    assert!(watched(rt.handle()).iter().any(|i| i.id == id));
    let handle = rt.handle().clone();
    rt.shutdown_and_wait().unwrap();
    assert_eq!(recv(&rx), Seen::Stopped);
    assert!(!watched(&handle).iter().any(|i| i.id == id));
}
