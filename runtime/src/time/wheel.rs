//! A hierarchical timer wheel: O(1) insert, cancel and reset, with a bit scan
//! per level to find the next deadline.
//!
//! Time is counted in *ticks* (1 ms each, see `super::TICK`). Six levels of
//! 64 slots each cover about 2.2 years; a deadline further out is placed in
//! the top level and cascades down as time passes.
//!
//! | level | one slot covers | the level covers |
//! | ----- | --------------- | ---------------- |
//! | 0     | 1 ms            | 64 ms            |
//! | 1     | 64 ms           | ~4 s             |
//! | 2     | ~4 s            | ~4.5 min         |
//! | 3     | ~4.5 min        | ~4.8 h           |
//! | 4     | ~4.8 h          | ~12.7 days       |
//! | 5     | ~12.7 days      | ~2.2 years       |
//!
//! Entries live in a slab (`Vec` plus a free list) and are linked into their
//! slot by intrusive `prev`/`next` indices, so unlinking is O(1). Each list
//! keeps its head and its tail: entries are appended, and a cascading slot
//! is taken from its head, so entries with equal deadlines come out of
//! `poll` in the order they were inserted, at every level (Twisted's
//! `callLater` order, which users rely on). A [`Key`]
//! carries a generation: a key whose entry was freed (fired or cancelled) and
//! reused never touches the new entry.
//!
//! Invariants:
//! * `elapsed` never goes backwards; every linked entry in a level slot has
//!   `when > elapsed`; entries with `when <= elapsed` wait in the `PENDING`
//!   list and come out of the next `poll`.
//! * An entry is in exactly one list (a slot or pending) or in none
//!   (`NOWHERE`: expired and handed to the owner) or free.
//! * Within a list, entries with equal deadlines are in insertion order
//!   (an entry moved by `reschedule` counts as inserted when moved).
//!
//! The wheel knows nothing of clocks, locks or callbacks: `super::Timers`
//! owns it behind a mutex.

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const NIL: u32 = u32::MAX;
/// The list index of the "already due" list.
const PENDING: u16 = (LEVELS * SLOTS) as u16;
/// Location of an allocated entry that is in no list.
const NOWHERE: u16 = u16::MAX;
/// The furthest ahead (in ticks) an entry is placed; later deadlines cascade.
const MAX_AHEAD: u64 = (1u64 << (SLOT_BITS as usize * LEVELS)) - 1;

/// Names one entry of the wheel; stale keys are detected by generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

struct Entry<T> {
    when: u64,
    prev: u32,
    next: u32,
    generation: u32,
    location: u16,
    value: Option<T>,
}

/// The wheel. `T` is what the owner stores with each deadline.
pub struct Wheel<T> {
    elapsed: u64,
    entries: Vec<Entry<T>>,
    free_head: u32,
    heads: Vec<u32>,
    tails: Vec<u32>,
    occupied: [u64; LEVELS],
    len: usize,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Wheel<T> {
    /// An empty wheel whose time is tick 0.
    pub fn new() -> Self {
        Wheel {
            elapsed: 0,
            entries: Vec::new(),
            free_head: NIL,
            heads: vec![NIL; LEVELS * SLOTS + 1],
            tails: vec![NIL; LEVELS * SLOTS + 1],
            occupied: [0; LEVELS],
            len: 0,
        }
    }

    /// How many entries are allocated (pending or linked or just expired).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is allocated.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an entry due at tick `when` (a past tick is due at once).
    pub fn insert(&mut self, when: u64, value: T) -> Key {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.when = when;
            entry.value = Some(value);
            entry.location = NOWHERE;
            index
        } else {
            let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 timers");
            assert!(index != NIL, "timer wheel full");
            self.entries.push(Entry {
                when,
                prev: NIL,
                next: NIL,
                generation: 0,
                location: NOWHERE,
                value: Some(value),
            });
            index
        };
        self.len += 1;
        self.link(index);
        Key {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    fn live(&self, key: Key) -> bool {
        self.entries
            .get(key.index as usize)
            .is_some_and(|e| e.generation == key.generation && e.value.is_some())
    }

    /// The deadline of a live entry.
    pub fn when(&self, key: Key) -> Option<u64> {
        self.live(key)
            .then(|| self.entries[key.index as usize].when)
    }

    /// Mutable access to a live entry's value.
    pub fn value_mut(&mut self, key: Key) -> Option<&mut T> {
        if !self.live(key) {
            return None;
        }
        self.entries[key.index as usize].value.as_mut()
    }

    /// Removes a live entry (linked or expired) and returns its value.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        if !self.live(key) {
            return None;
        }
        self.unlink(key.index);
        let entry = &mut self.entries[key.index as usize];
        let value = entry.value.take();
        entry.generation = entry.generation.wrapping_add(1);
        entry.next = self.free_head;
        self.free_head = key.index;
        self.len -= 1;
        value
    }

    /// Moves a live entry to a new deadline. Returns false for a stale key.
    pub fn reschedule(&mut self, key: Key, when: u64) -> bool {
        if !self.live(key) {
            return false;
        }
        self.unlink(key.index);
        self.entries[key.index as usize].when = when;
        self.link(key.index);
        true
    }

    /// The earliest tick at which `poll` has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.heads[PENDING as usize] != NIL {
            return Some(self.elapsed);
        }
        self.next_expiration().map(|(_, _, deadline)| deadline)
    }

    /// Advances time to `now` and appends every entry due by then to `out`.
    /// The entries stay allocated (location `NOWHERE`); the owner then calls
    /// `remove` or `reschedule` on each.
    pub fn poll(&mut self, now: u64, out: &mut Vec<Key>) {
        self.take_list(PENDING as usize, out);
        while let Some((level, slot, deadline)) = self.next_expiration() {
            if deadline > now {
                break;
            }
            debug_assert!(deadline >= self.elapsed, "wheel time went backwards");
            self.elapsed = deadline;
            let list = level * SLOTS + slot;
            let mut index = self.heads[list];
            self.heads[list] = NIL;
            self.tails[list] = NIL;
            self.occupied[level] &= !(1u64 << slot);
            while index != NIL {
                let (next, key) = self.detach(index);
                if self.entries[index as usize].when <= self.elapsed {
                    out.push(key);
                } else {
                    self.link(index);
                }
                index = next;
            }
        }
        if now > self.elapsed {
            self.elapsed = now;
        }
    }

    fn take_list(&mut self, list: usize, out: &mut Vec<Key>) {
        let mut index = self.heads[list];
        self.heads[list] = NIL;
        self.tails[list] = NIL;
        while index != NIL {
            let (next, key) = self.detach(index);
            out.push(key);
            index = next;
        }
    }

    /// Marks an entry of a list being taken whole as in no list; returns
    /// the next entry of that list and the entry's key.
    fn detach(&mut self, index: u32) -> (u32, Key) {
        let entry = &mut self.entries[index as usize];
        let next = entry.next;
        entry.location = NOWHERE;
        entry.prev = NIL;
        entry.next = NIL;
        (
            next,
            Key {
                index,
                generation: entry.generation,
            },
        )
    }

    fn level_for(&self, when: u64) -> usize {
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        ((significant / SLOT_BITS) as usize).min(LEVELS - 1)
    }

    fn link(&mut self, index: u32) {
        let when = self.entries[index as usize].when;
        let list = if when <= self.elapsed {
            PENDING as usize
        } else {
            let placed = when.min(self.elapsed + MAX_AHEAD);
            let level = self.level_for(placed);
            let slot = ((placed >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
            self.occupied[level] |= 1u64 << slot;
            level * SLOTS + slot
        };
        let tail = self.tails[list];
        {
            let entry = &mut self.entries[index as usize];
            entry.location = list as u16;
            entry.prev = tail;
            entry.next = NIL;
        }
        if tail != NIL {
            self.entries[tail as usize].next = index;
        } else {
            self.heads[list] = index;
        }
        self.tails[list] = index;
    }

    fn unlink(&mut self, index: u32) {
        let (location, prev, next) = {
            let e = &self.entries[index as usize];
            (e.location, e.prev, e.next)
        };
        if location == NOWHERE {
            return;
        }
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[location as usize] = next;
            if next == NIL && location != PENDING {
                let level = location as usize / SLOTS;
                let slot = location as usize % SLOTS;
                self.occupied[level] &= !(1u64 << slot);
            }
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        } else {
            self.tails[location as usize] = prev;
        }
        let e = &mut self.entries[index as usize];
        e.location = NOWHERE;
        e.prev = NIL;
        e.next = NIL;
    }

    /// (level, slot, deadline of the slot) of the earliest occupied slot.
    /// A lower level always expires before any higher one.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let slot_range = 1u64 << (level as u32 * SLOT_BITS);
            let level_range = slot_range << SLOT_BITS;
            let now_slot = (self.elapsed / slot_range) % SLOTS as u64;
            let rotated = occupied.rotate_right(now_slot as u32);
            let slot = ((rotated.trailing_zeros() as u64 + now_slot) % SLOTS as u64) as usize;
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start + slot as u64 * slot_range;
            if deadline <= self.elapsed {
                deadline += level_range;
            }
            return Some((level, slot, deadline));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(wheel: &mut Wheel<u64>, now: u64) -> Vec<u64> {
        let mut keys = Vec::new();
        wheel.poll(now, &mut keys);
        keys.into_iter()
            .map(|k| wheel.remove(k).expect("expired key is live"))
            .collect()
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = Wheel::new();
        w.insert(10, 10);
        assert!(drain(&mut w, 9).is_empty());
        assert_eq!(drain(&mut w, 10), vec![10]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadline_is_due_at_once() {
        let mut w = Wheel::new();
        drain(&mut w, 100);
        w.insert(5, 5);
        assert_eq!(w.next_deadline(), Some(100));
        assert_eq!(drain(&mut w, 100), vec![5]);
    }

    #[test]
    fn cancel_and_stale_keys() {
        let mut w = Wheel::new();
        let a = w.insert(50, 1);
        assert_eq!(w.remove(a), Some(1));
        assert_eq!(w.remove(a), None, "second cancel is a no-op");
        let b = w.insert(60, 2);
        assert_eq!(b.index, a.index, "slot reused");
        assert_eq!(w.remove(a), None, "stale key must not cancel the new entry");
        assert_eq!(drain(&mut w, 100), vec![2]);
    }

    #[test]
    fn far_deadlines_cascade() {
        let mut w = Wheel::new();
        let far = 3 * 365 * 24 * 3600 * 1000u64; // beyond the wheel's range
        w.insert(far, 1);
        w.insert(70_000, 2);
        assert_eq!(drain(&mut w, 69_999), Vec::<u64>::new());
        assert_eq!(drain(&mut w, 70_000), vec![2]);
        let mut now = 70_000;
        let mut fired = Vec::new();
        while fired.is_empty() {
            now = w.next_deadline().expect("far timer pending");
            fired = drain(&mut w, now);
        }
        assert_eq!(fired, vec![1]);
        assert_eq!(now, far);
    }

    proptest! {
        /// Every entry fires exactly once, never early, in deadline order,
        /// whatever the deadlines and the poll steps.
        #[test]
        fn fires_in_order_never_early(
            deadlines in proptest::collection::vec(0u64..300_000, 1..200),
            cancel in proptest::collection::vec(any::<bool>(), 200),
            step in 1u64..5_000,
        ) {
            let mut w = Wheel::new();
            let mut keys = Vec::new();
            for (i, d) in deadlines.iter().enumerate() {
                keys.push(w.insert(*d, i as u64));
            }
            let mut expected: Vec<(u64, u64)> = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                if cancel[i] {
                    prop_assert!(w.remove(*k).is_some());
                } else {
                    expected.push((deadlines[i], i as u64));
                }
            }
            let mut now = 0;
            let mut previous_poll: Option<u64> = None;
            let mut got: Vec<(u64, u64)> = Vec::new();
            while !w.is_empty() {
                now += step;
                let mut due = Vec::new();
                w.poll(now, &mut due);
                let mut batch: Vec<(u64, u64)> = due
                    .into_iter()
                    .map(|k| {
                        let when = w.when(k).unwrap();
                        (when, w.remove(k).unwrap())
                    })
                    .collect();
                for (when, _) in &batch {
                    prop_assert!(*when <= now, "fired early");
                    // Due by the previous poll means it should have fired then.
                    if let Some(previous) = previous_poll {
                        prop_assert!(*when > previous, "fired late: {} at {}", when, now);
                    }
                }
                previous_poll = Some(now);
                // Deadline order; equal deadlines in insertion order (the
                // stable sort keeps the order `poll` gave).
                batch.sort_by_key(|(when, _)| *when);
                got.extend(batch);
            }
            expected.sort();
            prop_assert_eq!(got, expected);
        }

        /// Equal deadlines fire in the order they were set, at every level,
        /// however the time between the insertions and the polls is cut:
        /// entries are inserted in rounds between polls (so some go in at a
        /// high level and cascade, others go in low later), and a moved
        /// entry counts as set when moved.
        #[test]
        fn equal_deadlines_fire_in_insertion_order(
            rounds in proptest::collection::vec(
                (proptest::collection::vec((0u64..6, any::<bool>()), 1..40), 1u64..20_000),
                1..8,
            ),
            base in 0u64..400_000,
        ) {
            let targets = [base + 5, base + 64, base + 4_097, base + 70_000, base + 300_001, base + 17];
            let mut w = Wheel::new();
            let mut keys: Vec<Key> = Vec::new();
            // Per target: the expected firing order of values.
            let mut order: std::collections::HashMap<u64, Vec<u64>> = Default::default();
            let mut now = 0;
            let mut fired: Vec<(u64, u64)> = Vec::new();
            let mut next_value = 0u64;
            let poll = |w: &mut Wheel<u64>, now: u64, fired: &mut Vec<(u64, u64)>| {
                let mut due = Vec::new();
                w.poll(now, &mut due);
                for k in due {
                    let when = w.when(k).unwrap();
                    fired.push((when, w.remove(k).unwrap()));
                }
            };
            for (inserts, advance) in rounds {
                for (target, move_one) in inserts {
                    let when = targets[target as usize];
                    if move_one && !keys.is_empty() {
                        // Move the oldest still-pending entry to `when`.
                        let k = keys.remove(0);
                        if let Some(old) = w.when(k) {
                            let value = *w.value_mut(k).unwrap();
                            order.get_mut(&old).unwrap().retain(|v| *v != value);
                            prop_assert!(w.reschedule(k, when));
                            order.entry(when).or_default().push(value);
                            keys.push(k);
                        }
                        continue;
                    }
                    let value = next_value;
                    next_value += 1;
                    keys.push(w.insert(when, value));
                    order.entry(when).or_default().push(value);
                }
                now += advance;
                poll(&mut w, now, &mut fired);
            }
            while let Some(next) = w.next_deadline() {
                now = now.max(next);
                poll(&mut w, now, &mut fired);
            }
            for (when, values) in order {
                let got: Vec<u64> = fired.iter().filter(|(w, _)| *w == when).map(|(_, v)| *v).collect();
                // Entries whose deadline had passed when inserted fire "at
                // once" in insertion order too, so the filter above sees them.
                prop_assert_eq!(got, values, "deadline {}", when);
            }
        }
    }
}
