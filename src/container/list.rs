//! [`SharedList`]: byte values in order, as an array of record offsets over
//! an arena of immutable records (see `container/mod.rs`).
//!
//! The region holds two position arrays; the root's `ACTIVE` names the
//! current one. Appends write past the count (nobody reads there) and
//! publish the new count; an operation that moves many positions (insert,
//! remove, reverse, sort) writes the whole new order into the other array
//! and publishes the switch — one commit either way.

use super::engine::{self, root, Corrupt, Mem, Record, Root};
use super::{check_item, Options, Store, Writer};
use crate::error::ContainerError;
use crate::types::{Kind, TypeDesc};
use std::cmp::Ordering as CmpOrdering;

/// The smallest position arrays.
const MIN_CAP: u64 = 8;
/// The smallest arena.
const MIN_ARENA: u64 = 1024;

/// The list-specific checks of a root: the two position arrays (8 bytes a
/// position each) lie before the arena, and the count fits them.
fn check(root: &Root) -> Result<(), Corrupt> {
    root.check_index(16, Some(root.count()), "list positions out of range")
}

/// The offset of array `which`'s position `i`.
fn pos(root: &Root, which: u64, i: u64) -> u64 {
    root.get(root::INDEX) + 8 * (which * root.get(root::INDEX_CAP) + i)
}

fn active(root: &Root) -> u64 {
    root.get(root::ACTIVE)
}

/// The record at position `i` of a checked root.
fn at<M: Mem>(mem: &M, root: &Root, i: u64) -> Result<Record, Corrupt> {
    let off = engine::load(mem, pos(root, active(root), i))?;
    engine::record(mem, root, off)
}

/// Every record, in order.
fn records<M: Mem>(mem: &M, root: &Root) -> Result<Vec<Record>, Corrupt> {
    check(root)?;
    let mut bytes = engine::Budget::of(root);
    (0..root.count())
        .map(|i| {
            let rec = at(mem, root, i)?;
            bytes.take(&rec)?;
            Ok(rec)
        })
        .collect()
}

fn out_of_range(index: usize, len: u64) -> ContainerError {
    ContainerError::OutOfRange {
        index,
        len: len as usize,
    }
}

/// Moves the list to a new region with room for `more` entries and
/// `more_bytes` of records, compacting as it goes.
fn relocate(w: &mut Writer<'_>, more: u64, more_bytes: u64) -> Result<(), ContainerError> {
    let recs = records(w.mem(), &w.root)?;
    let live_bytes: u64 = recs.iter().map(Record::size).sum();
    let count = recs.len() as u64;
    let (cap, arena_len) =
        super::move_sizes(count, more, live_bytes, more_bytes, (MIN_CAP, MIN_ARENA))?;
    let arrays = 16 * cap;
    let region = w.new_region(arrays + arena_len)?;
    let (at, mem) = (region.0, w.mem());
    let mut top = at + arrays;
    for (i, rec) in recs.iter().enumerate() {
        engine::store(mem, at + 8 * i as u64, top)?;
        top += engine::copy_record(mem, rec, top)?;
    }
    w.publish_move(region, cap, arrays, top, count)
}

/// Makes room for `more` positions and `more_bytes` of records.
fn ensure(w: &mut Writer<'_>, more: u64, more_bytes: u64) -> Result<(), ContainerError> {
    let r = w.root;
    let fits = !r.is_bare()
        && r.count()
            .checked_add(more)
            .is_some_and(|n| n <= r.get(root::INDEX_CAP))
        && r.get(root::TOP)
            .checked_add(more_bytes)
            .is_some_and(|t| t <= r.get(root::END));
    if fits {
        Ok(())
    } else {
        relocate(w, more, more_bytes)
    }
}

/// Writes `order` (record offsets) into the inactive array and publishes
/// it with `extra` stores.
fn publish_order(
    w: &mut Writer<'_>,
    order: &[u64],
    extra: &[(u64, u64)],
) -> Result<(), ContainerError> {
    let r = w.root;
    let other = 1 - active(&r);
    for (i, &off) in order.iter().enumerate() {
        engine::store(w.mem(), pos(&r, other, i as u64), off)?;
    }
    let mut stores = vec![
        (w.root_at(root::ACTIVE), other),
        (w.root_at(root::LEN), order.len() as u64),
    ];
    stores.extend_from_slice(extra);
    w.commit(&stores)
}

/// The offsets of the current order.
fn order<M: Mem>(mem: &M, root: &Root) -> Result<Vec<u64>, Corrupt> {
    check(root)?;
    (0..root.count())
        .map(|i| engine::load(mem, pos(root, active(root), i)))
        .collect()
}

super::byte_container!(
    /// A list of byte values in shared memory, used by any number of
    /// processes at once: Python's `Manager().list()` without a server.
    ///
    /// Every operation is one atomic step across processes, and a process
    /// killed at any instruction of any operation leaves the list as before or
    /// after it (see [`SharedMap`](crate::SharedMap), which works the same
    /// way). Readers take no lock. The list grows as needed.
    ///
    /// ```
    /// use shmring::SharedList;
    /// let l = SharedList::anonymous()?;
    /// l.extend([b"a".as_slice(), b"b", b"c"])?;
    /// l.reverse()?;
    /// assert_eq!(l.to_vec()?, vec![b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    /// assert_eq!(l.pop()?, Some(b"a".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    SharedList,
    SharedListBuilder,
    Kind::List,
    check,
    "list"
);

impl SharedList {
    /// The item at `index`, copied out; `None` past the end.
    pub fn get(&self, index: usize) -> Result<Option<Vec<u8>>, ContainerError> {
        self.store.read(|mem, root| {
            check(root)?;
            if index as u64 >= root.count() {
                return Ok(None);
            }
            let mut v = Vec::new();
            engine::record_value(mem, &at(mem, root, index as u64)?, &mut v)?;
            Ok(Some(v))
        })
    }

    /// A consistent snapshot of every item, in order.
    pub fn to_vec(&self) -> Result<Vec<Vec<u8>>, ContainerError> {
        self.store.read(|mem, root| {
            records(mem, root)?
                .iter()
                .map(|r| {
                    let mut v = Vec::new();
                    engine::record_value(mem, r, &mut v)?;
                    Ok(v)
                })
                .collect()
        })
    }

    /// An iterator over a consistent snapshot (taken now).
    pub fn iter(&self) -> Result<std::vec::IntoIter<Vec<u8>>, ContainerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Appends `value`.
    pub fn push(&self, value: &[u8]) -> Result<(), ContainerError> {
        check_item(value.len())?;
        let need = engine::record_len(0, value.len());
        let mut w = self.store.write()?;
        ensure(&mut w, 1, need)?;
        let r = w.root;
        let top = r.get(root::TOP);
        engine::store(w.mem(), pos(&r, active(&r), r.count()), top)?;
        engine::write_record(w.mem(), top, 0, &[], value)?;
        w.commit(&[
            (w.root_at(root::LEN), r.count() + 1),
            (w.root_at(root::TOP), top + need),
        ])
    }

    /// Appends every item, as one atomic step (other processes see all of
    /// them or none).
    pub fn extend<I>(&self, items: I) -> Result<(), ContainerError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let items: Vec<I::Item> = items.into_iter().collect();
        let mut bytes = 0u64;
        for it in &items {
            check_item(it.as_ref().len())?;
            bytes = bytes.saturating_add(engine::record_len(it.as_ref().len(), 0));
        }
        if items.is_empty() {
            return Ok(());
        }
        let mut w = self.store.write()?;
        ensure(&mut w, items.len() as u64, bytes)?;
        let r = w.root;
        let mut top = r.get(root::TOP);
        for (i, it) in items.iter().enumerate() {
            engine::store(w.mem(), pos(&r, active(&r), r.count() + i as u64), top)?;
            top += engine::write_record(w.mem(), top, 0, &[], it.as_ref())?;
        }
        w.commit(&[
            (w.root_at(root::LEN), r.count() + items.len() as u64),
            (w.root_at(root::TOP), top),
        ])
    }

    /// Removes and returns the last item.
    pub fn pop(&self) -> Result<Option<Vec<u8>>, ContainerError> {
        let mut w = self.store.write()?;
        let r = w.root;
        check(&r)?;
        if r.count() == 0 {
            return Ok(None);
        }
        let rec = at(w.mem(), &r, r.count() - 1)?;
        let mut v = Vec::new();
        engine::record_value(w.mem(), &rec, &mut v)?;
        w.commit(&[
            (w.root_at(root::LEN), r.count() - 1),
            (w.root_at(root::GARBAGE), r.get(root::GARBAGE) + rec.size()),
        ])?;
        Ok(Some(v))
    }

    /// Replaces the item at `index`; returns the old one.
    ///
    /// # Errors
    /// `OutOfRange` past the end (nothing changed).
    pub fn set(&self, index: usize, value: &[u8]) -> Result<Vec<u8>, ContainerError> {
        check_item(value.len())?;
        let need = engine::record_len(0, value.len());
        let mut w = self.store.write()?;
        check(&w.root)?;
        if index as u64 >= w.root.count() {
            return Err(out_of_range(index, w.root.count()));
        }
        ensure(&mut w, 0, need)?;
        let r = w.root;
        let old = at(w.mem(), &r, index as u64)?;
        let mut v = Vec::new();
        engine::record_value(w.mem(), &old, &mut v)?;
        let top = r.get(root::TOP);
        engine::write_record(w.mem(), top, 0, &[], value)?;
        w.commit(&[
            (pos(&r, active(&r), index as u64), top),
            (w.root_at(root::TOP), top + need),
            (w.root_at(root::GARBAGE), r.get(root::GARBAGE) + old.size()),
        ])?;
        Ok(v)
    }

    /// Inserts `value` before position `index` (`index == len` appends).
    ///
    /// # Errors
    /// `OutOfRange` past the end (nothing changed).
    pub fn insert(&self, index: usize, value: &[u8]) -> Result<(), ContainerError> {
        check_item(value.len())?;
        let need = engine::record_len(0, value.len());
        let mut w = self.store.write()?;
        check(&w.root)?;
        if index as u64 > w.root.count() {
            return Err(out_of_range(index, w.root.count()));
        }
        ensure(&mut w, 1, need)?;
        let r = w.root;
        let top = r.get(root::TOP);
        engine::write_record(w.mem(), top, 0, &[], value)?;
        let mut new = order(w.mem(), &r)?;
        new.insert(index, top);
        let extra = [(w.root_at(root::TOP), top + need)];
        publish_order(&mut w, &new, &extra)
    }

    /// Removes and returns the item at `index`.
    ///
    /// # Errors
    /// `OutOfRange` past the end (nothing changed).
    pub fn remove(&self, index: usize) -> Result<Vec<u8>, ContainerError> {
        let mut w = self.store.write()?;
        let r = w.root;
        check(&r)?;
        if index as u64 >= r.count() {
            return Err(out_of_range(index, r.count()));
        }
        let rec = at(w.mem(), &r, index as u64)?;
        let mut v = Vec::new();
        engine::record_value(w.mem(), &rec, &mut v)?;
        let mut new = order(w.mem(), &r)?;
        new.remove(index);
        let extra = [(w.root_at(root::GARBAGE), r.get(root::GARBAGE) + rec.size())];
        publish_order(&mut w, &new, &extra)?;
        Ok(v)
    }

    /// Reverses the order, as one atomic step.
    pub fn reverse(&self) -> Result<(), ContainerError> {
        let mut w = self.store.write()?;
        let r = w.root;
        if r.is_bare() {
            return Ok(());
        }
        let mut new = order(w.mem(), &r)?;
        new.reverse();
        publish_order(&mut w, &new, &[])
    }

    /// Sorts the items by their bytes (stable), as one atomic step.
    pub fn sort(&self) -> Result<(), ContainerError> {
        self.sort_by(|a, b| a.cmp(b))
    }

    /// Sorts the items with `compare` (stable), as one atomic step.
    ///
    /// `compare` runs under the list's writer lock: do not use this list
    /// inside it.
    ///
    /// # Panics
    /// If `compare` uses this list. If `compare` panics, the list is
    /// unchanged.
    pub fn sort_by(
        &self,
        mut compare: impl FnMut(&[u8], &[u8]) -> CmpOrdering,
    ) -> Result<(), ContainerError> {
        self.reorder(|items| {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| compare(&items[a], &items[b]));
            Ok(order)
        })
    }

    /// Puts the items in the order `f` gives (positions into the slice of
    /// current items it is shown), as one atomic step under the writer
    /// lock; an error from `f` changes nothing.
    pub(crate) fn reorder(
        &self,
        f: impl FnOnce(&[Vec<u8>]) -> Result<Vec<usize>, ContainerError>,
    ) -> Result<(), ContainerError> {
        let mut w = self.store.write()?;
        let r = w.root;
        if r.is_bare() {
            return Ok(());
        }
        let recs = records(w.mem(), &r)?;
        let mut items = Vec::with_capacity(recs.len());
        for rec in &recs {
            let mut v = Vec::new();
            engine::record_value(w.mem(), rec, &mut v)?;
            items.push(v);
        }
        let order = f(&items)?;
        let mut seen = vec![false; recs.len()];
        let mut new = Vec::with_capacity(recs.len());
        for &i in &order {
            assert!(
                i < recs.len() && !std::mem::replace(&mut seen[i], true),
                "reorder: not a permutation"
            );
            new.push(recs[i].off);
        }
        assert_eq!(new.len(), recs.len(), "reorder: not a permutation");
        publish_order(&mut w, &new, &[])
    }

    /// Keeps the first `len` items (nothing happens if there are fewer).
    pub fn truncate(&self, len: usize) -> Result<(), ContainerError> {
        let mut w = self.store.write()?;
        let r = w.root;
        check(&r)?;
        if len as u64 >= r.count() {
            return Ok(());
        }
        let mut dropped = 0;
        for i in len as u64..r.count() {
            dropped += at(w.mem(), &r, i)?.size();
        }
        w.commit(&[
            (w.root_at(root::LEN), len as u64),
            (w.root_at(root::GARBAGE), r.get(root::GARBAGE) + dropped),
        ])
    }

    /// Removes every item (one atomic step) and gives the memory back.
    pub fn clear(&self) -> Result<(), ContainerError> {
        self.store.write()?.clear()
    }
}
