//! [`SharedMap`]: byte keys to byte values, in a hash table with linear
//! probing over an arena of immutable records (see `container/mod.rs`).
//!
//! A table entry is two words, the key's hash and its record's offset
//! (`EMPTY`, `TOMB` for a removed entry, or the record). The table is kept
//! at most three quarters full, tombstones included; a move (growth or
//! compaction) rebuilds it without tombstones.

use super::engine::{self, root, Corrupt, Mem, Record, Root};
use super::{check_item, Options, Store, Writer};
use crate::error::ContainerError;
use crate::types::{Kind, TypeDesc};

const EMPTY: u64 = 0;
const TOMB: u64 = 1;
/// Bytes per table entry.
const ENTRY: u64 = 16;
/// The smallest table.
const MIN_CAP: u64 = 8;
/// The smallest arena.
const MIN_ARENA: u64 = 1024;

/// The map-specific checks of a root: the table lies before the arena, and
/// its entries fit.
fn check(root: &Root) -> Result<(), Corrupt> {
    let used = root.count().checked_add(root.get(root::TOMBS));
    root.check_index(ENTRY, used, "map table out of range")
}

fn entry(root: &Root, slot: u64) -> u64 {
    root.get(root::INDEX) + ENTRY * slot
}

/// Where a key is, or would go.
enum Probe {
    Found {
        slot: u64,
        rec: Record,
    },
    /// Absent; `slot` is where it would go (the first tombstone or empty
    /// entry on its path), `tomb` whether that is a tombstone.
    Vacant {
        slot: u64,
        tomb: bool,
    },
    /// Absent, and no entry on the path is free (or there is no table).
    NoRoom,
}

fn probe<M: Mem>(mem: &M, root: &Root, hash: u64, key: &[u8]) -> Result<Probe, Corrupt> {
    check(root)?;
    if root.is_bare() {
        return Ok(Probe::NoRoom);
    }
    let cap = root.get(root::INDEX_CAP);
    let mask = cap - 1;
    let mut i = hash & mask;
    let mut vacant = None;
    for _ in 0..cap {
        let e = entry(root, i);
        let off = engine::load(mem, e + 8)?;
        if off == EMPTY {
            let (slot, tomb) = vacant.unwrap_or((i, false));
            return Ok(Probe::Vacant { slot, tomb });
        }
        if off == TOMB {
            vacant.get_or_insert((i, true));
        } else if engine::load(mem, e)? == hash {
            let rec = engine::record(mem, root, off)?;
            if engine::key_is(mem, &rec, hash, key)? {
                return Ok(Probe::Found { slot: i, rec });
            }
        }
        i = (i + 1) & mask;
    }
    Ok(match vacant {
        Some((slot, tomb)) => Probe::Vacant { slot, tomb },
        None => Probe::NoRoom,
    })
}

/// Every live entry of a checked root: (hash, record).
fn live<M: Mem>(mem: &M, root: &Root) -> Result<Vec<(u64, Record)>, Corrupt> {
    check(root)?;
    if root.is_bare() {
        return Ok(Vec::new());
    }
    let cap = root.get(root::INDEX_CAP);
    let mut out = Vec::with_capacity(root.count().min(1 << 16) as usize);
    let mut bytes = engine::Budget::of(root);
    for i in 0..cap {
        let e = entry(root, i);
        let off = engine::load(mem, e + 8)?;
        if off > TOMB {
            let rec = engine::record(mem, root, off)?;
            bytes.take(&rec)?;
            out.push((engine::load(mem, e)?, rec));
        }
    }
    if out.len() as u64 != root.count() {
        return Err(Corrupt("map count disagrees with its table"));
    }
    Ok(out)
}

/// Moves the map to a new region with room for `more` entries and
/// `more_bytes` of records, compacting as it goes.
fn relocate(w: &mut Writer<'_>, more: u64, more_bytes: u64) -> Result<(), ContainerError> {
    let entries = live(w.mem(), &w.root)?;
    let live_bytes: u64 = entries.iter().map(|(_, r)| r.size()).sum();
    let count = entries.len() as u64;
    let (cap, arena_len) =
        super::move_sizes(count, more, live_bytes, more_bytes, (MIN_CAP, MIN_ARENA))?;
    let table_len = cap * ENTRY;
    let region = w.new_region(table_len + arena_len)?;
    let (at, mem) = (region.0, w.mem());
    engine::zero(mem, at, table_len / 8)?;
    let mut top = at + table_len;
    for (hash, rec) in &entries {
        let mut i = hash & (cap - 1);
        while engine::load(mem, at + ENTRY * i + 8)? != EMPTY {
            i = (i + 1) & (cap - 1);
        }
        engine::store(mem, at + ENTRY * i, *hash)?;
        engine::store(mem, at + ENTRY * i + 8, top)?;
        top += engine::copy_record(mem, rec, top)?;
    }
    w.publish_move(region, cap, table_len, top, count)
}

/// What an operation does with the key, given its current value.
pub(crate) enum Change<'v> {
    /// Nothing.
    Keep,
    /// Remove the key.
    Remove,
    /// Store this value.
    Set(&'v [u8]),
}

/// Runs one operation on `key` under the writer lock: `decide` sees the
/// current value and says what to do (and what to return). The whole
/// thing is one atomic step across processes.
pub(crate) fn modify<'v, R>(
    store: &Store,
    key: &[u8],
    decide: impl FnOnce(Option<&[u8]>) -> (Change<'v>, R),
) -> Result<R, ContainerError> {
    modify_with(store, key, true, decide)
}

/// [`modify`], where `read_old: false` skips copying the current value
/// out (`decide` then sees `None`): for blind writes.
fn modify_with<'v, R>(
    store: &Store,
    key: &[u8],
    read_old: bool,
    decide: impl FnOnce(Option<&[u8]>) -> (Change<'v>, R),
) -> Result<R, ContainerError> {
    check_item(key.len())?;
    let hash = engine::hash(key);
    let mut w = store.write()?;
    let found = probe(w.mem(), &w.root, hash, key)?;
    let old = match &found {
        Probe::Found { rec, .. } if read_old => {
            let mut v = Vec::new();
            engine::record_value(w.mem(), rec, &mut v)?;
            Some(v)
        }
        _ => None,
    };
    let (change, out) = decide(old.as_deref());
    match change {
        Change::Keep => {}
        Change::Remove => {
            if let Probe::Found { slot, rec } = found {
                let r = w.root;
                let len = r
                    .count()
                    .checked_sub(1)
                    .ok_or(Corrupt("map count too low"))?;
                w.commit(&[
                    (entry(&r, slot) + 8, TOMB),
                    (w.root_at(root::LEN), len),
                    (w.root_at(root::TOMBS), r.get(root::TOMBS) + 1),
                    (w.root_at(root::GARBAGE), r.get(root::GARBAGE) + rec.size()),
                ])?;
            }
        }
        Change::Set(value) => {
            check_item(value.len())?;
            put(&mut w, hash, key, value, found)?;
        }
    }
    Ok(out)
}

/// Stores `value` under `key` (at the probe's place), moving first if the
/// table or the arena lacks room.
fn put(
    w: &mut Writer<'_>,
    hash: u64,
    key: &[u8],
    value: &[u8],
    mut found: Probe,
) -> Result<(), ContainerError> {
    let need = engine::record_len(key.len(), value.len());
    for _ in 0..2 {
        let r = w.root;
        let room = |r: &Root| {
            !r.is_bare()
                && r.get(root::TOP)
                    .checked_add(need)
                    .is_some_and(|t| t <= r.get(root::END))
        };
        match found {
            Probe::Found { slot, rec } if room(&r) => {
                let top = r.get(root::TOP);
                engine::write_record(w.mem(), top, hash, key, value)?;
                return w.commit(&[
                    (entry(&r, slot) + 8, top),
                    (w.root_at(root::TOP), top + need),
                    (w.root_at(root::GARBAGE), r.get(root::GARBAGE) + rec.size()),
                ]);
            }
            Probe::Vacant { slot, tomb }
                if room(&r)
                    && (r.count() + r.get(root::TOMBS) + 1) * 4 <= r.get(root::INDEX_CAP) * 3 =>
            {
                let top = r.get(root::TOP);
                engine::write_record(w.mem(), top, hash, key, value)?;
                let tombs = r
                    .get(root::TOMBS)
                    .checked_sub(u64::from(tomb))
                    .ok_or(Corrupt("map tombstone count too low"))?;
                return w.commit(&[
                    (entry(&r, slot), hash),
                    (entry(&r, slot) + 8, top),
                    (w.root_at(root::LEN), r.count() + 1),
                    (w.root_at(root::TOMBS), tombs),
                    (w.root_at(root::TOP), top + need),
                ]);
            }
            _ => {
                let more = u64::from(!matches!(found, Probe::Found { .. }));
                relocate(w, more, need)?;
                found = probe(w.mem(), &w.root, hash, key)?;
            }
        }
    }
    Err(ContainerError::Corrupted("no room after growing"))
}

/// A key and its value, copied out of a [`SharedMap`].
pub type MapEntry = (Vec<u8>, Vec<u8>);

super::byte_container!(
    /// A map of byte keys to byte values in shared memory, used by any number
    /// of processes at once: Python's `Manager().dict()` without a server.
    ///
    /// Every operation is one atomic step across processes; a process killed
    /// at any instruction of any operation leaves the map as it was before it
    /// or as it is after it, and the next writer finishes the operation if it
    /// must (counted in [`repairs`](Self::repairs)). Readers take no lock and
    /// never wait for a writer (a seqlock, read through a commit in
    /// progress). The map grows as needed:
    /// when its table or record space fills, a writer moves the contents to a
    /// larger region of the same file and every process follows.
    ///
    /// ```
    /// use shmring::SharedMap;
    /// let d = SharedMap::anonymous()?;
    /// assert_eq!(d.insert(b"1", b"one")?, None);
    /// assert_eq!(d.insert(b"1", b"uno")?, Some(b"one".to_vec()));
    /// assert_eq!(d.get(b"1")?, Some(b"uno".to_vec()));
    /// d.update(b"hits", |old| {
    ///     let n = old.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    ///     Some((n + 1).to_le_bytes().to_vec())
    /// })?;
    /// assert_eq!(d.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    SharedMap,
    SharedMapBuilder,
    Kind::Map,
    check,
    "map"
);

impl SharedMap {
    /// The value of `key`, copied out.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ContainerError> {
        let mut out = Vec::new();
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    /// Copies the value of `key` into `out` (cleared first; its capacity is
    /// reused) and says whether the key was there.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, ContainerError> {
        let hash = engine::hash(key);
        self.store.read(|mem, root| {
            out.clear();
            match probe(mem, root, hash, key)? {
                Probe::Found { rec, .. } => {
                    engine::record_value(mem, &rec, out)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool, ContainerError> {
        let hash = engine::hash(key);
        self.store
            .read(|mem, root| Ok(matches!(probe(mem, root, hash, key)?, Probe::Found { .. })))
    }

    /// Stores `value` under `key`; returns the value it replaced.
    ///
    /// # Errors
    /// `TooLarge` (a key or value over 4 GiB), `Full` (the map's limit),
    /// `NoSpace` (the file system), `Corrupted`; nothing changed.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, ContainerError> {
        modify(&self.store, key, |old| {
            (Change::Set(value), old.map(<[u8]>::to_vec))
        })
    }

    /// Stores `value` under `key`, without copying out the value it
    /// replaces (Python's `d[k] = v`): [`insert`](Self::insert) without the
    /// copy.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); nothing changed.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), ContainerError> {
        modify_with(&self.store, key, false, |_| (Change::Set(value), ()))
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ContainerError> {
        modify(&self.store, key, |old| {
            (Change::Remove, old.map(<[u8]>::to_vec))
        })
    }

    /// Replaces the value of `key` with `f(current)` as one atomic step:
    /// no other process's write comes between the read and the write.
    /// `Some(v)` stores `v`, `None` removes the key. Returns the new value.
    ///
    /// `f` runs under the map's writer lock: keep it short, and do not use
    /// this map inside it.
    ///
    /// # Panics
    /// If `f` uses this map (it would wait for itself). If `f` panics, the
    /// map is unchanged and the lock is released.
    pub fn update(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, ContainerError> {
        let mut new: Option<Vec<u8>> = None;
        let slot = &mut new;
        modify(&self.store, key, move |old| {
            *slot = f(old);
            match slot {
                Some(v) => (Change::Set(&v[..]), ()),
                None => (Change::Remove, ()),
            }
        })?;
        Ok(new)
    }

    /// Stores `new` (`None`: removes the key) only if the current value of
    /// `key` is `current` (`None`: absent), as one atomic step.
    ///
    /// Returns `Ok(Ok(()))` when it swapped, `Ok(Err(actual))` with the
    /// value found when it did not.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        current: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>, ContainerError> {
        modify(&self.store, key, |old| {
            if old != current {
                return (Change::Keep, Err(old.map(<[u8]>::to_vec)));
            }
            match new {
                Some(v) => (Change::Set(v), Ok(())),
                None => (Change::Remove, Ok(())),
            }
        })
    }

    /// Removes every entry (one atomic step) and gives the memory back.
    pub fn clear(&self) -> Result<(), ContainerError> {
        self.store.write()?.clear()
    }

    /// A consistent snapshot of every entry, in no particular order.
    pub fn entries(&self) -> Result<Vec<MapEntry>, ContainerError> {
        self.store.read(|mem, root| {
            let mut out = Vec::with_capacity(root.count().min(1 << 16) as usize);
            for (_, rec) in live(mem, root)? {
                let (mut k, mut v) = (Vec::new(), Vec::new());
                engine::record_key(mem, &rec, &mut k)?;
                engine::record_value(mem, &rec, &mut v)?;
                out.push((k, v));
            }
            Ok(out)
        })
    }

    /// An iterator over a consistent snapshot of every entry (taken now;
    /// later writes are not seen).
    pub fn iter(&self) -> Result<std::vec::IntoIter<MapEntry>, ContainerError> {
        Ok(self.entries()?.into_iter())
    }

    /// A snapshot of every key.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, ContainerError> {
        Ok(self.entries()?.into_iter().map(|(k, _)| k).collect())
    }
}
