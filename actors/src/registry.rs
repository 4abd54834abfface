//! The name registry: find an actor's address by name (Erlang's
//! `register`/`whereis`), one table per runtime, on dashmap.
//!
//! Invariant: a name maps to at most one live actor; a name whose actor
//! has exited is free (it is reclaimed when looked up or registered again).

use weft_runtime::Handle;

use crate::actor::Actor;
use crate::addr::Addr;
use crate::system::System;

/// Why a name could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Another live actor holds the name.
    #[error("the name `{0}` is taken by a live actor")]
    Taken(String),
}

/// The name registry of one runtime.
///
/// ```
/// use weft_actors::{Actor, ActorResult, Ctx, Registry, Spawn};
/// use weft_runtime::Runtime;
///
/// struct Svc;
/// impl Actor for Svc {
///     type Msg = ();
///     fn handle(&mut self, _m: (), _c: &mut Ctx<'_, Self>) -> ActorResult { Ok(()) }
/// }
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let svc = rt.handle().spawn(Svc);
/// let names = Registry::of(rt.handle());
/// names.register("svc", &svc).unwrap();
/// assert_eq!(names.lookup::<Svc>("svc"), Some(svc));
/// ```
pub struct Registry<'a> {
    system: &'a System,
}

impl<'a> Registry<'a> {
    /// The registry of `handle`'s runtime.
    pub fn of(handle: &'a Handle) -> Self {
        Registry {
            system: System::get(handle),
        }
    }

    /// Registers `addr` under `name`.
    pub fn register<A: Actor>(&self, name: &str, addr: &Addr<A>) -> Result<(), NameError> {
        use dashmap::mapref::entry::Entry;
        match self.system.names.entry(name.into()) {
            Entry::Occupied(mut e) => {
                let live = e
                    .get()
                    .1
                    .downcast_ref::<Addr<A>>()
                    .is_none_or(|a| !a.is_stopped());
                if live && e.get().0 != addr.id() {
                    return Err(NameError::Taken(name.to_string()));
                }
                e.insert((addr.id(), Box::new(addr.clone())));
            }
            Entry::Vacant(e) => {
                e.insert((addr.id(), Box::new(addr.clone())));
            }
        }
        Ok(())
    }

    /// The live actor of type `A` registered under `name`.
    pub fn lookup<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        let found = self
            .system
            .names
            .get(name)
            .and_then(|e| e.value().1.downcast_ref::<Addr<A>>().cloned());
        match found {
            Some(addr) if addr.is_stopped() => {
                self.system
                    .names
                    .remove_if(name, |_, (id, _)| *id == addr.id());
                None
            }
            other => other,
        }
    }

    /// Removes `name`; true if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.system.names.remove(name).is_some()
    }
}

impl std::fmt::Debug for Registry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}
