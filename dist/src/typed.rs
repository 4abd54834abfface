//! Rust values to and from Erlang terms, so a program sends and matches
//! Rust types rather than building `Term` trees by hand: [`IntoTerm`]
//! and [`FromTerm`] for integers, floats, booleans (the atoms `true` and
//! `false`), strings (binaries, as Elixir and modern Erlang code use
//! them; a charlist is read as a string too), vectors (lists), tuples of
//! two to six, pids, atoms and terms themselves.
//!
//! Owns: the mapping. Must not touch: encoding bytes (that is `eetf`'s).

use eetf::{Atom, BigInteger, Binary, FixInteger, Float, List, Pid, Term, Tuple};

/// A value that goes to another node as a term.
pub trait IntoTerm {
    /// The term.
    fn into_term(self) -> Term;
}

/// A value read from a term of the right shape.
pub trait FromTerm: Sized {
    /// The value, or what was expected and what came.
    fn from_term(term: &Term) -> Result<Self, TypeError>;
}

/// A term of another shape than the type asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct TypeError {
    /// What the type reads.
    pub expected: &'static str,
    /// The term that came (as Erlang prints it).
    pub got: String,
}

fn mismatch(expected: &'static str, term: &Term) -> TypeError {
    TypeError {
        expected,
        got: term.to_string(),
    }
}

impl IntoTerm for Term {
    fn into_term(self) -> Term {
        self
    }
}

impl FromTerm for Term {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        Ok(term.clone())
    }
}

impl IntoTerm for i64 {
    fn into_term(self) -> Term {
        match i32::try_from(self) {
            Ok(small) => Term::FixInteger(FixInteger::from(small)),
            Err(_) => Term::BigInteger(BigInteger::from(self)),
        }
    }
}

impl FromTerm for i64 {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        match term {
            Term::FixInteger(i) => Ok(i64::from(i.value)),
            Term::BigInteger(b) => i64::try_from(&b.value)
                .map_err(|_| mismatch("an integer that fits in 64 bits", term)),
            _ => Err(mismatch("an integer", term)),
        }
    }
}

impl IntoTerm for i32 {
    fn into_term(self) -> Term {
        Term::FixInteger(FixInteger::from(self))
    }
}

impl FromTerm for i32 {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        let wide = i64::from_term(term)?;
        i32::try_from(wide).map_err(|_| mismatch("an integer that fits in 32 bits", term))
    }
}

impl IntoTerm for u32 {
    fn into_term(self) -> Term {
        i64::from(self).into_term()
    }
}

impl FromTerm for u32 {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        let wide = i64::from_term(term)?;
        u32::try_from(wide).map_err(|_| mismatch("a non-negative 32-bit integer", term))
    }
}

impl IntoTerm for f64 {
    fn into_term(self) -> Term {
        // A NaN or infinity has no Erlang float: it fails at encoding,
        // reported by the send.
        Term::Float(Float { value: self })
    }
}

impl FromTerm for f64 {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        match term {
            Term::Float(f) => Ok(f.value),
            _ => Err(mismatch("a float", term)),
        }
    }
}

impl IntoTerm for bool {
    fn into_term(self) -> Term {
        Term::Atom(Atom::from(if self { "true" } else { "false" }))
    }
}

impl FromTerm for bool {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        match term {
            Term::Atom(a) if a.name == "true" => Ok(true),
            Term::Atom(a) if a.name == "false" => Ok(false),
            _ => Err(mismatch("true or false", term)),
        }
    }
}

impl IntoTerm for String {
    fn into_term(self) -> Term {
        Term::Binary(Binary::from(self.into_bytes()))
    }
}

impl IntoTerm for &str {
    fn into_term(self) -> Term {
        self.to_string().into_term()
    }
}

impl FromTerm for String {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        let bytes = match term {
            Term::Binary(b) => b.bytes.clone(),
            Term::ByteList(l) => l.bytes.clone(),
            Term::List(l) if l.elements.is_empty() => Vec::new(),
            _ => return Err(mismatch("a binary or a string", term)),
        };
        String::from_utf8(bytes).map_err(|_| mismatch("UTF-8 text", term))
    }
}

impl<T: IntoTerm> IntoTerm for Vec<T> {
    fn into_term(self) -> Term {
        Term::List(List::from(
            self.into_iter()
                .map(IntoTerm::into_term)
                .collect::<Vec<_>>(),
        ))
    }
}

impl<T: FromTerm> FromTerm for Vec<T> {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        match term {
            Term::List(l) => l.elements.iter().map(T::from_term).collect(),
            // A list of small integers travels as a byte string.
            Term::ByteList(l) => l
                .bytes
                .iter()
                .map(|b| T::from_term(&Term::FixInteger(FixInteger::from(i32::from(*b)))))
                .collect(),
            _ => Err(mismatch("a list", term)),
        }
    }
}

impl IntoTerm for Pid {
    fn into_term(self) -> Term {
        Term::Pid(self)
    }
}

impl FromTerm for Pid {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        match term {
            Term::Pid(p) => Ok(p.clone()),
            _ => Err(mismatch("a pid", term)),
        }
    }
}

impl IntoTerm for Atom {
    fn into_term(self) -> Term {
        Term::Atom(self)
    }
}

impl FromTerm for Atom {
    fn from_term(term: &Term) -> Result<Self, TypeError> {
        match term {
            Term::Atom(a) => Ok(a.clone()),
            _ => Err(mismatch("an atom", term)),
        }
    }
}

macro_rules! tuples {
    ($($n:literal => ($($t:ident $i:tt),+);)+) => {$(
        impl<$($t: IntoTerm),+> IntoTerm for ($($t,)+) {
            fn into_term(self) -> Term {
                Term::Tuple(Tuple::from(vec![$(self.$i.into_term()),+]))
            }
        }

        impl<$($t: FromTerm),+> FromTerm for ($($t,)+) {
            fn from_term(term: &Term) -> Result<Self, TypeError> {
                match term {
                    Term::Tuple(t) if t.elements.len() == $n => {
                        Ok(($($t::from_term(&t.elements[$i])?,)+))
                    }
                    _ => Err(mismatch(concat!("a tuple of ", $n), term)),
                }
            }
        }
    )+};
}

tuples! {
    2 => (A 0, B 1);
    3 => (A 0, B 1, C 2);
    4 => (A 0, B 1, C 2, D 3);
    5 => (A 0, B 1, C 2, D 3, E 4);
    6 => (A 0, B 1, C 2, D 3, E 4, F 5);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: IntoTerm + FromTerm + Clone + PartialEq + std::fmt::Debug>(v: T) {
        let mut bytes = Vec::new();
        v.clone().into_term().encode(&mut bytes).unwrap();
        let back = Term::decode(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(T::from_term(&back), Ok(v));
    }

    #[test]
    fn values_survive_the_wire() {
        round_trip(42i64);
        round_trip(-7i32);
        round_trip(i64::MAX);
        round_trip(3.5f64);
        round_trip(true);
        round_trip("héllo".to_string());
        round_trip(vec![1i64, 2, 3]);
        round_trip(("ok".to_string(), 6i64));
        round_trip((Atom::from("reply"), vec![false, true], 1u32, 2.0f64));
    }

    #[test]
    fn the_wrong_shape_is_named() {
        let t = true.into_term();
        assert_eq!(
            i64::from_term(&t),
            Err(TypeError {
                expected: "an integer",
                got: "'true'".into()
            })
        );
        assert!(<(i64, i64)>::from_term(&(1i64, 2i64, 3i64).into_term()).is_err());
        assert!(i32::from_term(&i64::MAX.into_term()).is_err());
        // A charlist reads as a string.
        let chars = Term::ByteList(eetf::ByteList::from(b"abc".to_vec()));
        assert_eq!(String::from_term(&chars), Ok("abc".into()));
    }
}
