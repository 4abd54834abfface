//! weft's tracing: every event of an actor's turn (its handler's own,
//! its exit's) is inside a span that names the actor (id and type), and
//! exits with an error are reported. A subscriber that writes to memory
//! collects them. (One test: the subscriber is the process's global one,
//! since turns run on the runtime's worker threads.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use weft::prelude::*;

/// Where the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Logs each message; fails on 0.
struct Chatty;

impl Actor for Chatty {
    type Msg = u32;
    fn handle(&mut self, n: u32, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if n == 0 {
            return Err("zero is not allowed".into());
        }
        tracing::info!(n, "handling");
        Ok(())
    }
}

#[test]
fn events_of_a_turn_carry_the_actors_id_and_type() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let rt = runtime(2);
    let a = rt.handle().spawn(Chatty);
    let b = rt.handle().spawn(Chatty);
    a.send(7).unwrap();
    b.send(8).unwrap();
    a.send(0).unwrap();
    eventually("a exited and b handled its message", || {
        a.is_stopped() && captured.text().contains("n=8")
    });
    let text = captured.text();
    let line = |needle: &str| -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
            .to_string()
    };
    let ty = "actor_type=\"trace_spans::Chatty\"";
    let seven = line("n=7");
    assert!(
        seven.contains(&format!("actor{{id={} {ty}}}", a.id().0)),
        "{seven}"
    );
    let eight = line("n=8");
    assert!(
        eight.contains(&format!("actor{{id={} {ty}}}", b.id().0)),
        "{eight}"
    );
    let exit = line("actor exited");
    assert!(exit.contains(" WARN "), "{exit}");
    assert!(exit.contains(&format!("actor{{id={}", a.id().0)), "{exit}");
    assert!(exit.contains("zero is not allowed"), "{exit}");
}
