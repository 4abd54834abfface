//! The live view of a runtime's actors (what Erlang's observer shows of
//! processes): every live actor with its type, parent, registered name
//! and mailbox depth, as a snapshot readable from any thread or actor
//! without a message round trip.
//!
//! Owns: the snapshot types and the walk over the live-actor table. Each
//! actor is read under its own mailbox lock, one at a time, so a snapshot
//! is not atomic across actors (an actor may exit or be born during the
//! walk) but never blocks a turn for longer than one mailbox push would.
//! Must not touch: the supervision layer (its children, restart counts
//! and strategies are its own view, built on this one).

use std::collections::HashMap;

use weft_runtime::Handle;

use crate::exit::ActorId;
use crate::system::System;

/// One live actor, as the live view sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActorInfo {
    /// Its id.
    pub id: ActorId,
    /// Its Rust type (`std::any::type_name`).
    pub type_name: &'static str,
    /// The actor that spawned it with `Ctx::spawn` (its parent: stopped
    /// with it), if any.
    pub parent: Option<ActorId>,
    /// Its registered name, if it has one.
    pub name: Option<String>,
    /// User messages waiting in its mailbox now.
    pub mailbox: usize,
    /// The most its mailbox has held at once.
    pub mailbox_high_water: usize,
    /// Its mailbox's capacity.
    pub mailbox_capacity: usize,
    /// Monitors, links, children and parent it takes part in.
    pub relations: usize,
    /// Whether it runs on a thread of its own (`spawn_thread`).
    pub thread_worker: bool,
}

impl ActorInfo {
    /// The type name without module paths (`Connection<Echo>` for
    /// `weft_io::conn::Connection<echo::Echo>`).
    pub fn short_type(&self) -> String {
        short_type(self.type_name)
    }
}

/// `type_name` without module paths, generics kept.
pub fn short_type(type_name: &str) -> String {
    let mut out = String::with_capacity(type_name.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word.rsplit("::").next().unwrap_or(word));
        word.clear();
    };
    for c in type_name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Every live actor on `handle`'s runtime, by id.
///
/// ```
/// use weft_actors::{observe, Actor, ActorResult, Ctx, Spawn};
///
/// struct Idle;
/// impl Actor for Idle {
///     type Msg = ();
///     fn handle(&mut self, _: (), _: &mut Ctx<'_, Self>) -> ActorResult { Ok(()) }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let a = rt.handle().spawn(Idle);
/// let seen = observe::actors(rt.handle());
/// assert!(seen.iter().any(|i| i.id == a.id() && i.short_type() == "Idle"));
/// ```
pub fn actors(handle: &Handle) -> Vec<ActorInfo> {
    let Some(system) = System::of(handle) else {
        return Vec::new();
    };
    let names: HashMap<ActorId, String> = system
        .names
        .iter()
        .map(|e| (e.value().0, e.key().to_string()))
        .collect();
    let mut all: Vec<ActorInfo> = system
        .cells()
        .into_iter()
        .filter(|c| !c.is_dead())
        .map(|c| {
            let mut info = c.info();
            info.name = names.get(&info.id).cloned();
            info
        })
        .collect();
    all.sort_by_key(|i| i.id);
    all
}

/// One live actor by id, or `None` if there is none (it exited, or never
/// was).
pub fn actor(handle: &Handle, id: ActorId) -> Option<ActorInfo> {
    let system = System::of(handle)?;
    let cell = system.cell(id)?;
    let mut info = cell.info();
    info.name = system
        .names
        .iter()
        .find(|e| e.value().0 == id)
        .map(|e| e.key().to_string());
    Some(info)
}

/// How many live actors there are of each type (by `type_name`), most
/// first.
pub fn actors_by_type(handle: &Handle) -> Vec<(&'static str, usize)> {
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for info in actors(handle) {
        *counts.entry(info.type_name).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
}

/// The live actors as a tree: each root (an actor without a live parent)
/// with its descendants, depth first, as (depth, actor).
pub fn tree(handle: &Handle) -> Vec<(usize, ActorInfo)> {
    let all = actors(handle);
    let live: std::collections::HashSet<ActorId> = all.iter().map(|i| i.id).collect();
    let mut children: HashMap<Option<ActorId>, Vec<ActorInfo>> = HashMap::new();
    for info in all {
        let parent = info.parent.filter(|p| live.contains(p));
        children.entry(parent).or_default().push(info);
    }
    let mut out = Vec::new();
    let mut stack: Vec<(usize, ActorInfo)> = children
        .remove(&None)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .map(|i| (0, i))
        .collect();
    while let Some((depth, info)) = stack.pop() {
        if let Some(kids) = children.remove(&Some(info.id)) {
            stack.extend(kids.into_iter().rev().map(|k| (depth + 1, k)));
        }
        out.push((depth, info));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_type_drops_paths_and_keeps_generics() {
        assert_eq!(
            super::short_type("weft_io::conn::Connection<echo::Echo>"),
            "Connection<Echo>"
        );
        assert_eq!(super::short_type("a::B<c::D, e::F<g::H>>"), "B<D, F<H>>");
        assert_eq!(super::short_type("Plain"), "Plain");
    }
}
