//! Protocols over the in-memory transport: the same connection actor as
//! over TCP (buffering, watermarks, half-close, idle timeout, close and
//! abort), with a test-driven peer and, where time matters, the manual
//! clock. No sockets.

mod common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use common::*;
use weft::io::{connect_memory, MemoryClose, WriteError};
use weft::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Connected,
    Data(Vec<u8>),
    ReadClosed,
    Paused,
    Resumed,
    Msg(String),
    WriteFailed(WriteError),
    Closed(CloseReason),
}

/// What the probe does with input.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    /// Answers each chunk with `n` bytes (a producer far faster than a
    /// slow reader).
    Burst(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Control {
    Pause,
    Resume,
    Write(&'static str),
    Close,
    Abort,
    HalfClose,
}

/// A protocol that reports every callback to the test.
struct Probe {
    tx: Sender<Ev>,
    mode: Mode,
    /// Keep writing after `write_paused` (a protocol that ignores pauses).
    ignore_pause: bool,
    /// Answer end of input with this, then close.
    bye: Option<&'static [u8]>,
}

impl Probe {
    fn new(tx: Sender<Ev>, mode: Mode) -> Self {
        Probe {
            tx,
            mode,
            ignore_pause: false,
            bye: None,
        }
    }
}

impl Protocol for Probe {
    type Msg = Control;

    fn connected(&mut self, _conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let _ = self.tx.send(Ev::Connected);
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        let _ = self.tx.send(Ev::Data(data.to_vec()));
        if data == b"panic" {
            panic!("the probe was told to panic");
        }
        match self.mode {
            Mode::Echo => {
                if let Err(e) = conn.write(data) {
                    let _ = self.tx.send(Ev::WriteFailed(e));
                }
            }
            Mode::Burst(n) => {
                let chunk = vec![b'z'; 8192];
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len());
                    if let Err(e) = conn.write(&chunk[..k]) {
                        let _ = self.tx.send(Ev::WriteFailed(e));
                        break;
                    }
                    left -= k;
                    if conn.is_write_paused() && !self.ignore_pause {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn read_closed(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let _ = self.tx.send(Ev::ReadClosed);
        if let Some(bye) = self.bye {
            conn.write(bye)?;
        }
        conn.close();
        Ok(())
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Control) -> ActorResult {
        match msg {
            Control::Pause => conn.pause_reading(),
            Control::Resume => conn.resume_reading(),
            Control::Write(s) => {
                let _ = self.tx.send(Ev::Msg(s.to_string()));
                conn.write(s.as_bytes())?;
            }
            Control::Close => conn.close(),
            Control::Abort => conn.abort(),
            Control::HalfClose => conn.shutdown_write(),
        }
        Ok(())
    }

    fn write_paused(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Paused);
        conn.pause_reading();
    }

    fn write_resumed(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Resumed);
        conn.resume_reading();
    }

    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = self.tx.send(Ev::Closed(reason.clone()));
    }
}

/// Waits for the first event that `pick` accepts, failing after `WAIT`.
fn wait_for(rx: &Receiver<Ev>, pick: impl Fn(&Ev) -> bool) -> Ev {
    loop {
        let ev = recv(rx);
        if pick(&ev) {
            return ev;
        }
    }
}

fn closed_reason(rx: &Receiver<Ev>) -> CloseReason {
    match wait_for(rx, |e| matches!(e, Ev::Closed(_))) {
        Ev::Closed(r) => r,
        _ => unreachable!(),
    }
}

#[test]
fn echo_in_order_and_clean_close_on_end_of_input() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let (_conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    assert_eq!(recv(&rx), Ev::Connected);
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let chunk = format!("line {i}\n").into_bytes();
        peer.write(&chunk);
        sent.extend(chunk);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let part = peer.read_at_least(sent.len() - got.len(), WAIT);
        assert!(!part.is_empty(), "echo stalled at {} bytes", got.len());
        got.extend(part);
    }
    assert_eq!(got, sent);
    peer.shutdown_write();
    assert_eq!(closed_reason(&rx), CloseReason::Clean);
    assert_eq!(peer.wait_closed(WAIT), Some(MemoryClose::Closed));
}

#[test]
fn half_close_lets_the_protocol_answer_after_end_of_input() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let mut probe = Probe::new(tx, Mode::Echo);
    probe.bye = Some(b"bye\n");
    let (_conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), probe);
    peer.write(b"hi\n");
    peer.shutdown_write();
    wait_for(&rx, |e| *e == Ev::ReadClosed);
    assert_eq!(closed_reason(&rx), CloseReason::Clean);
    assert_eq!(peer.wait_closed(WAIT), Some(MemoryClose::Closed));
    assert_eq!(peer.read(), b"hi\nbye\n");
}

#[test]
fn our_half_close_keeps_reading() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let (conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    conn.send(Control::Write("last words")).unwrap();
    conn.send(Control::HalfClose).unwrap();
    assert!(peer.wait_write_shut(WAIT));
    assert_eq!(peer.read(), b"last words");
    // Still reading: data after our half-close reaches the protocol.
    peer.write(b"more");
    assert_eq!(
        wait_for(&rx, |e| matches!(e, Ev::Data(_))),
        Ev::Data(b"more".to_vec())
    );
    // Writing after our half-close is refused with an error value.
    assert_eq!(recv(&rx), Ev::WriteFailed(WriteError::Closed));
    assert_eq!(peer.closed(), None);
    // The peer's end finishes the connection.
    peer.shutdown_write();
    assert_eq!(closed_reason(&rx), CloseReason::Clean);
}

#[test]
fn peer_reset_is_reported() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let (_conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    assert_eq!(recv(&rx), Ev::Connected);
    peer.reset();
    assert_eq!(closed_reason(&rx), CloseReason::PeerReset);
}

#[test]
fn write_watermarks_pause_and_resume_the_producer() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let opts = ConnOptions::new().watermarks(32 * 1024, 8 * 1024);
    let (_conn, peer) = connect_memory(rt.handle(), opts, Probe::new(tx, Mode::Burst(1 << 20)));
    peer.set_window(0); // a reader that never reads
    peer.write(b"go");
    wait_for(&rx, |e| *e == Ev::Paused);
    // The producer stopped near the high mark: at most one chunk past it.
    let stats_bound = 32 * 1024 + 8192;
    // Reading paused with it: more input is not delivered.
    peer.write(b"more");
    assert!(
        rx.recv_timeout(Duration::from_millis(100))
            .map_or(true, |e| !matches!(e, Ev::Data(_))),
        "a paused connection still read"
    );
    // The reader catches up: resume, and the held input arrives.
    peer.set_window(usize::MAX);
    let drained = peer.read_at_least(1, WAIT);
    assert!(!drained.is_empty() && drained.len() <= stats_bound);
    wait_for(&rx, |e| *e == Ev::Resumed);
    assert_eq!(
        wait_for(&rx, |e| matches!(e, Ev::Data(_))),
        Ev::Data(b"more".to_vec())
    );
}

#[test]
fn a_protocol_that_ignores_pauses_hits_the_buffer_limit_with_an_error() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let opts = ConnOptions::new()
        .watermarks(16 * 1024, 4 * 1024)
        .max_write_buffer(64 * 1024);
    let mut probe = Probe::new(tx, Mode::Burst(1 << 20));
    probe.ignore_pause = true;
    let (_conn, peer) = connect_memory(rt.handle(), opts, probe);
    peer.set_window(0);
    peer.write(b"go");
    match wait_for(&rx, |e| matches!(e, Ev::WriteFailed(_))) {
        Ev::WriteFailed(WriteError::BufferFull { buffered, limit }) => {
            assert_eq!(limit, 64 * 1024);
            assert!(buffered <= limit, "buffered {buffered} past the limit");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Nothing was lost: what was accepted is all delivered once read.
    peer.set_window(usize::MAX);
    let got = peer.read_at_least(1, WAIT);
    assert!(got.len() > 16 * 1024 && got.len() <= 64 * 1024);
}

#[test]
fn pause_and_resume_reading() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let (conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    assert_eq!(recv(&rx), Ev::Connected);
    conn.send(Control::Pause).unwrap();
    conn.send(Control::Write("marker")).unwrap();
    wait_for(&rx, |e| matches!(e, Ev::Msg(_)));
    peer.write(b"held");
    assert_silent(&rx);
    conn.send(Control::Resume).unwrap();
    assert_eq!(recv(&rx), Ev::Data(b"held".to_vec()));
}

#[test]
fn idle_timeout_on_the_manual_clock() {
    let (rt, clock) = manual_runtime(1);
    let (tx, rx) = mpsc::channel();
    let opts = ConnOptions::new().idle_timeout(Some(Duration::from_secs(30)));
    let (_conn, peer) = connect_memory(rt.handle(), opts, Probe::new(tx, Mode::Echo));
    assert_eq!(recv(&rx), Ev::Connected);
    clock.advance(Duration::from_secs(20));
    // Activity pushes the deadline back.
    peer.write(b"ping");
    assert_eq!(peer.read_at_least(4, WAIT), b"ping");
    assert_eq!(recv(&rx), Ev::Data(b"ping".to_vec()));
    clock.advance(Duration::from_secs(20));
    assert_silent(&rx);
    assert_eq!(peer.closed(), None, "closed after 20 s of quiet");
    // Step the clock a second at a time (the connection re-arms its check
    // from whatever time it sees): it closes once 30 s passed in quiet.
    let mut quiet = 20;
    while peer.wait_closed(Duration::from_millis(20)).is_none() {
        assert!(quiet < 90, "no idle timeout after {quiet} s of quiet");
        clock.advance(Duration::from_secs(1));
        quiet += 1;
    }
    assert!(quiet >= 30, "closed after only {quiet} s of quiet");
    assert_eq!(closed_reason(&rx), CloseReason::IdleTimeout);
    assert_eq!(peer.wait_closed(WAIT), Some(MemoryClose::Closed));
}

#[test]
fn close_flushes_and_abort_discards() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let (conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    peer.set_window(3);
    conn.send(Control::Write("flushed in full")).unwrap();
    conn.send(Control::Close).unwrap();
    wait_for(&rx, |e| matches!(e, Ev::Msg(_)));
    // Only 3 bytes fit; close waits for the rest.
    assert_eq!(peer.wait_closed(Duration::from_millis(100)), None);
    peer.set_window(usize::MAX);
    let mut got = peer.read_at_least(15, WAIT);
    assert_eq!(peer.wait_closed(WAIT), Some(MemoryClose::Closed));
    got.extend(peer.read());
    assert_eq!(got, b"flushed in full");
    assert_eq!(closed_reason(&rx), CloseReason::Clean);

    let (tx, rx) = mpsc::channel();
    let (conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    peer.set_window(0);
    conn.send(Control::Write("discarded")).unwrap();
    conn.send(Control::Abort).unwrap();
    assert_eq!(closed_reason(&rx), CloseReason::Aborted);
    assert_eq!(peer.wait_closed(WAIT), Some(MemoryClose::Aborted));
    assert!(peer.read().is_empty());
}

#[test]
fn a_panicking_protocol_is_reset_and_others_carry_on() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let (bad, bad_peer) =
        connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    let (tx2, _rx2) = mpsc::channel();
    let (_good, good_peer) =
        connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx2, Mode::Echo));
    bad_peer.write(b"panic");
    assert_eq!(bad_peer.wait_closed(WAIT), Some(MemoryClose::Aborted));
    // `closed` is not called on a protocol whose callback failed.
    assert!(!rx.try_iter().any(|e| matches!(e, Ev::Closed(_))));
    let deadline = std::time::Instant::now() + WAIT;
    while !bad.is_closed() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(bad.is_closed());
    good_peer.write(b"still here");
    assert_eq!(good_peer.read_at_least(10, WAIT), b"still here");
}

#[test]
fn runtime_shutdown_flushes_pending_writes() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let (conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Probe::new(tx, Mode::Echo));
    peer.set_window(4);
    conn.send(Control::Write("pending at shutdown")).unwrap();
    wait_for(&rx, |e| matches!(e, Ev::Msg(_)));
    let reader = std::thread::spawn(move || {
        // Read slowly, while the runtime is shutting down.
        let mut got = Vec::new();
        while peer.closed().is_none() || peer.unread() > 0 {
            std::thread::sleep(Duration::from_millis(5));
            got.extend(peer.read());
            if got.len() > 1000 {
                break;
            }
        }
        got.extend(peer.read());
        (got, peer.closed())
    });
    rt.shutdown_and_wait().expect("shutdown completes in time");
    let (got, how) = reader.join().unwrap();
    assert_eq!(got, b"pending at shutdown");
    assert_eq!(how, Some(MemoryClose::Closed));
    assert_eq!(closed_reason(&rx), CloseReason::Shutdown);
}

/// Writes past the high mark in `connected`, and aborts when told it must
/// pause (or resume): the connection resets, and nothing but `closed`
/// follows the abort.
struct AbortOnPause {
    tx: Sender<Ev>,
    on_resume: bool,
}
impl Protocol for AbortOnPause {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        conn.write(&vec![b'x'; 64 * 1024])?;
        Ok(())
    }
    fn write_paused(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Paused);
        if !self.on_resume {
            conn.abort();
        }
    }
    fn write_resumed(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Resumed);
        if self.on_resume {
            conn.abort();
        }
    }
    fn write_drained(&mut self, _conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Msg("drained".into()));
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = self.tx.send(Ev::Closed(reason.clone()));
    }
}

#[test]
fn an_abort_in_write_paused_or_write_resumed_resets_and_ends_the_callbacks() {
    for on_resume in [false, true] {
        let rt = runtime(1);
        let (tx, rx) = mpsc::channel();
        let opts = ConnOptions::new().watermarks(16 * 1024, 4 * 1024);
        let (_conn, peer) = connect_memory(rt.handle(), opts, AbortOnPause { tx, on_resume });
        // A reader that does not read: the 64 KiB answer to "go" pauses.
        peer.set_window(0);
        peer.write(b"go");
        if on_resume {
            // Then it reads: the buffer drains below the low mark.
            assert_eq!(recv(&rx), Ev::Paused);
            peer.set_window(usize::MAX);
            while peer.closed().is_none() {
                peer.read_at_least(1, Duration::from_millis(10));
            }
            assert_eq!(recv(&rx), Ev::Resumed);
        } else {
            assert_eq!(recv(&rx), Ev::Paused);
        }
        assert_eq!(
            peer.wait_closed(WAIT),
            Some(MemoryClose::Aborted),
            "on_resume {on_resume}"
        );
        assert_eq!(recv(&rx), Ev::Closed(CloseReason::Aborted));
        assert_silent(&rx);
    }
}

/// A push producer that stops when `is_write_paused` says so (as its docs
/// suggest) and goes on when resumed; sends `total` bytes in all.
struct Producer {
    total: usize,
    sent: usize,
    tx: Sender<Ev>,
}
impl Producer {
    fn produce(&mut self, conn: &mut Conn<'_, '_, Self>) {
        while self.sent < self.total && !conn.is_write_paused() {
            let n = (self.total - self.sent).min(8192);
            if let Err(e) = conn.write(&vec![b'p'; n]) {
                let _ = self.tx.send(Ev::WriteFailed(e));
                return;
            }
            self.sent += n;
        }
    }
}
impl Protocol for Producer {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        self.produce(conn);
        Ok(())
    }
    fn write_paused(&mut self, _conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Paused);
    }
    fn write_resumed(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = self.tx.send(Ev::Resumed);
        self.produce(conn);
    }
}

/// The producer saw "paused" from `is_write_paused`, but the socket took
/// the whole buffer before `write_paused` was due: it is still told to
/// resume (before, it stalled forever after the first 40 KiB).
#[test]
fn a_producer_that_saw_paused_is_always_resumed() {
    let rt = runtime(1);
    let (tx, _rx) = mpsc::channel();
    let total = 1 << 20;
    let opts = ConnOptions::new().watermarks(32 * 1024, 8 * 1024);
    let producer = Producer { total, sent: 0, tx };
    let (_conn, peer) = connect_memory(rt.handle(), opts, producer);
    peer.write(b"go");
    let mut got = 0;
    while got < total {
        let part = peer.read_at_least(total - got, WAIT);
        assert!(!part.is_empty(), "the producer stalled at {got} bytes");
        got += part.len();
    }
    assert_eq!(got, total);
}

/// Writes one block larger than the buffer limit when told to.
struct BigWrite {
    tx: Sender<Ev>,
}
impl Protocol for BigWrite {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        let size = if data == b"big" { 100_000 } else { 10 };
        if let Err(e) = conn.write(&vec![b'b'; size]) {
            let _ = self.tx.send(Ev::WriteFailed(e));
        }
        Ok(())
    }
}

/// A refused write took nothing: not even the part that a write straight
/// to an empty socket buffer would have sent (the peer's window takes
/// 10,000 of the 100,000 bytes; the limit is 64 KiB).
#[test]
fn a_write_refused_for_the_buffer_limit_sent_nothing() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let opts = ConnOptions::new()
        .watermarks(32 * 1024, 8 * 1024)
        .max_write_buffer(64 * 1024);
    let (_conn, peer) = connect_memory(rt.handle(), opts, BigWrite { tx });
    peer.set_window(10_000);
    peer.write(b"big");
    assert!(matches!(
        recv(&rx),
        Ev::WriteFailed(WriteError::BufferFull { .. })
    ));
    peer.write(b"small");
    assert_eq!(peer.read_at_least(10, WAIT), vec![b'b'; 10]);
}

/// A pull producer: writes the next chunk whenever the buffer drained.
struct Puller {
    chunks: u32,
    next: u32,
}
impl Protocol for Puller {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        self.write_drained(conn);
        Ok(())
    }
    fn write_drained(&mut self, conn: &mut Conn<'_, '_, Self>) {
        if self.next < self.chunks {
            let chunk: Vec<u8> = (0..4096u32)
                .map(|i| ((i + self.next) % 251) as u8)
                .collect();
            conn.write(&chunk).expect("a drained buffer has room");
            self.next += 1;
        } else {
            conn.close();
        }
    }
}

/// Twisted's pull producer: `write_drained` is called whenever what was
/// written has gone to the socket, with a slow reader and a fast one, and
/// every chunk arrives in order.
#[test]
fn a_pull_producer_is_asked_for_more_whenever_the_buffer_drains() {
    for window in [1_000, usize::MAX] {
        let rt = runtime(1);
        let chunks = 256;
        let (_conn, peer) =
            connect_memory(rt.handle(), ConnOptions::new(), Puller { chunks, next: 0 });
        peer.set_window(window);
        peer.write(b"go");
        let mut got = Vec::new();
        loop {
            // Empty once the connection closed and all was read (or after
            // WAIT without progress, which the length check reports).
            let part = peer.read_at_least(1, WAIT);
            if part.is_empty() {
                break;
            }
            got.extend(part);
        }
        let expected: Vec<u8> = (0..chunks)
            .flat_map(|c| (0..4096u32).map(move |i| ((i + c) % 251) as u8))
            .collect();
        assert_eq!(got.len(), expected.len(), "window {window}");
        assert!(got == expected, "window {window}: out of order");
        assert_eq!(peer.closed(), Some(MemoryClose::Closed));
    }
}

/// Counts the bytes it is forwarded (slowly), checking their order; its
/// mailbox is bounded by bytes.
struct Consumer {
    expect: u64,
    max_queued: usize,
    done: Sender<(u64, usize)>,
    total: u64,
}
impl Actor for Consumer {
    type Msg = Vec<u8>;
    fn handle(&mut self, chunk: Vec<u8>, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        for b in chunk {
            if b != (self.expect % 251) as u8 {
                return Err(format!("byte {} out of order", self.expect).into());
            }
            self.expect += 1;
        }
        self.max_queued = self.max_queued.max(ctx.address().queued_weight());
        std::hint::black_box((0..20_000).sum::<u64>());
        if self.expect == self.total {
            self.done.send((self.expect, self.max_queued))?;
        }
        Ok(())
    }
    fn weigh(chunk: &Vec<u8>) -> usize {
        chunk.len()
    }
}

/// Forwards what it reads to the consumer, with back-pressure.
struct Forward(Addr<Consumer>);
impl Protocol for Forward {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.ctx().send(&self.0, data.to_vec())?;
        Ok(())
    }
}

/// A byte stream forwarded from a connection to a slow actor whose
/// mailbox is bounded by bytes: the connection is muted (it stops reading,
/// so the peer's window closes) while 256 KiB wait there, instead of
/// parking up to 1,024 reads of 64 KiB; every byte arrives, in order.
#[test]
fn a_byte_stream_into_a_byte_bounded_mailbox_stays_bounded() {
    let rt = runtime(2);
    let total: u64 = 8 << 20;
    let (done, rx) = mpsc::channel();
    let consumer = rt
        .handle()
        .spawn_with(
            Consumer {
                expect: 0,
                max_queued: 0,
                done,
                total,
            },
            SpawnOptions::new().max_weight(256 * 1024),
        )
        .unwrap();
    let (_conn, peer) = connect_memory(rt.handle(), ConnOptions::new(), Forward(consumer));
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    for chunk in data.chunks(1 << 20) {
        peer.write(chunk);
    }
    let (got, max_queued) = recv(&rx);
    assert_eq!(got, total);
    assert!(
        max_queued <= 256 * 1024 + 64 * 1024,
        "{max_queued} bytes waited"
    );
}

/// Holds its first message until the gate opens; weighs messages by length.
struct GatedConn(Option<mpsc::Receiver<()>>);
impl Protocol for GatedConn {
    type Msg = Vec<u8>;
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        Ok(())
    }
    fn message(&mut self, _conn: &mut Conn<'_, '_, Self>, _msg: Vec<u8>) -> ActorResult {
        if let Some(gate) = self.0.take() {
            gate.recv_timeout(WAIT)?;
        }
        Ok(())
    }
    fn weigh(msg: &Vec<u8>) -> usize {
        msg.len()
    }
}

/// `ConnOptions::mailbox_bytes` bounds a connection's mailbox by the
/// weight of its protocol's messages.
#[test]
fn a_connection_mailbox_can_be_bounded_by_bytes() {
    let rt = runtime(1);
    let (open, gate) = mpsc::channel();
    let opts = ConnOptions::new().mailbox_bytes(1_000);
    let (conn, _peer) = connect_memory(rt.handle(), opts, GatedConn(Some(gate)));
    conn.send(vec![0]).unwrap();
    while conn.addr().queued() > 0 {
        std::thread::yield_now();
    }
    conn.send(vec![1; 999]).unwrap();
    conn.send(vec![2; 10]).unwrap();
    assert!(matches!(conn.send(vec![3]), Err(SendError::Full(_))));
    open.send(()).unwrap();
}
