//! A topic's subscribers: stable slot numbers for insert and remove, in 16 bytes a slot.
//!
//! Why not `slab::Slab`: its entries are an enum of the value or the next free index, 24 bytes
//! for a 16-byte [`super::Subscriber`]; here an empty slot is `None`, which the subscriber's
//! `Arc` makes free (`Option<Subscriber>` is 16 bytes), and free slots are listed apart. A topic
//! shared by 10,000 connections grows to 16,384 slots, so this saves about 130 KB per such topic:
//! measured, 8-topic connections went from 2.57 to under 2.5 KB each (BENCHMARKS.md).

/// Values in numbered slots; a freed slot's number is reused by a later insert.
#[derive(Debug)]
pub(super) struct Slots<T> {
    entries: Vec<Option<T>>,
    /// The empty slots of `entries`, to reuse; all of them are listed.
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    /// Stores `value`; returns its slot.
    pub(super) fn insert(&mut self, value: T) -> usize {
        if let Some(slot) = self.free.pop() {
            let slot = slot as usize;
            self.entries[slot] = Some(value);
            return slot;
        }
        self.entries.push(Some(value));
        self.entries.len() - 1
    }

    /// Takes the value out of `slot`, if there is one.
    pub(super) fn try_remove(&mut self, slot: usize) -> Option<T> {
        let value = self.entries.get_mut(slot)?.take()?;
        if self.entries.len() == self.free.len() + 1 {
            // Empty: give the memory back rather than keep a large, vacant table.
            self.entries = Vec::new();
            self.free = Vec::new();
        } else {
            self.free.push(slot as u32);
        }
        Some(value)
    }

    /// Removes the value in `slot` (nothing if the slot is empty).
    pub(super) fn remove(&mut self, slot: usize) {
        self.try_remove(slot);
    }

    /// The value in `slot`.
    pub(super) fn get(&self, slot: usize) -> Option<&T> {
        self.entries.get(slot)?.as_ref()
    }

    /// Every value with its slot, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, v.as_ref()?)))
    }

    /// Whether no value is stored.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.len() == self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_reused() {
        let mut s = Slots::default();
        let (a, b, c) = (s.insert('a'), s.insert('b'), s.insert('c'));
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(s.try_remove(b), Some('b'));
        assert_eq!(s.try_remove(b), None, "already removed");
        assert_eq!(s.get(c), Some(&'c'));
        assert_eq!(s.insert('d'), 1, "the freed slot is reused");
        assert_eq!(
            s.iter().map(|(i, v)| (i, *v)).collect::<Vec<_>>(),
            [(0, 'a'), (1, 'd'), (2, 'c')]
        );
        for slot in [0, 1, 2] {
            s.remove(slot);
        }
        assert!(s.is_empty() && s.get(0).is_none());
        assert_eq!(s.insert('e'), 0, "emptied, it starts over");
    }

    #[test]
    fn a_subscriber_slot_costs_16_bytes() {
        assert_eq!(std::mem::size_of::<Option<super::super::Subscriber>>(), 16);
    }
}
