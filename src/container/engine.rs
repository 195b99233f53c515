//! The containers' shared-memory protocol, over words at byte offsets: the
//! published root, the seqlock that readers validate against, the redo
//! record that makes every commit all-or-nothing across a crash, and the
//! records and index entries both containers store.
//!
//! Everything here goes through a [`Mem`]: the mapped file in normal builds
//! (`container::heap`), a plain vector of loom atomics in the models. It
//! makes no system call and holds no lock: the caller holds the writer lock
//! for [`commit`] and [`repair`]; [`read`] needs none.
//!
//! # Trust
//! Every word read here may have been scribbled by a peer. Offsets and
//! lengths are bounds-checked (through `Mem::words`, which refuses what lies
//! outside the file) before anything is addressed, every loop is bounded by
//! a count taken before it starts, and a failed check is [`Corrupt`] — which
//! a reader only reports once the seqlock says it read a stable snapshot (a
//! torn read of a moving container is retried instead).

use crate::loom::{fence, spin_loop, AtomicU64, Ordering};

/// A failed check of shared state: what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

/// Words of shared memory, addressed by byte offset from the file's start.
pub trait Mem {
    /// The `n` words from byte offset `off` (8-aligned), if the memory has
    /// all of them; `None` otherwise (never an access outside it).
    fn words(&self, off: u64, n: u64) -> Option<&[AtomicU64]>;

    /// One word, as [`words`](Self::words).
    fn word(&self, off: u64) -> Option<&AtomicU64> {
        self.words(off, 1).map(|w| &w[0])
    }

    /// The value of the word at `off` (Relaxed: see [`read`], or the writer
    /// lock), as this view of the memory shows it: an [`Overlay`] shows a
    /// commit's stores on top.
    fn load(&self, off: u64) -> Option<u64> {
        self.word(off).map(|w| w.load(Ordering::Relaxed))
    }
}

/// Memory seen with a commit's stores applied on top: what a reader that
/// arrives while a commit is being applied (the seqlock odd) reads, so that
/// it needs neither wait for the writer nor repair a dead one. Records are
/// never targets of a commit's stores (they are written before it), so
/// only word loads (`load`) see the overlay; byte copies read the memory.
pub struct Overlay<'a, M> {
    mem: &'a M,
    n: usize,
    stores: [(u64, u64); REDO_MAX],
}

impl<'a, M: Mem> Overlay<'a, M> {
    /// The memory as it is.
    pub fn none(mem: &'a M) -> Self {
        Overlay {
            mem,
            n: 0,
            stores: [(0, 0); REDO_MAX],
        }
    }
}

impl<M: Mem> Mem for Overlay<'_, M> {
    fn words(&self, off: u64, n: u64) -> Option<&[AtomicU64]> {
        self.mem.words(off, n)
    }

    fn load(&self, off: u64) -> Option<u64> {
        // The last store to a word wins, as when applied in order.
        match self.stores[..self.n].iter().rev().find(|s| s.0 == off) {
            Some(&(_, val)) => self.mem.word(off).map(|_| val),
            None => self.mem.load(off),
        }
    }
}

/// The complete redo record, as an overlay of `mem`; `None` if there is
/// none or it fails its checks (a scribbled record, or a reader that read
/// it while it changed: the seqlock re-check tells).
fn recorded<M: Mem>(mem: &M, ctl: Ctl) -> Option<Overlay<'_, M>> {
    let n = mem.load(ctl.redo_len())?;
    if n == 0 || n > REDO_MAX as u64 {
        return None;
    }
    let mut o = Overlay::none(mem);
    o.n = n as usize;
    let slots = mem.words(ctl.redo(0), 2 * REDO_MAX as u64)?;
    for (i, s) in o.stores.iter_mut().enumerate().take(o.n) {
        // Relaxed: ordered by the caller's Acquire load of the odd
        // seqlock word, which the record's stores happen-before.
        *s = (
            slots[2 * i].load(Ordering::Relaxed),
            slots[2 * i + 1].load(Ordering::Relaxed),
        );
    }
    let sum = mem.load(ctl.redo_sum())?;
    (sum == redo_checksum(&o.stores[..o.n])).then_some(o)
}

/// Words of the published root, in order after the seqlock word.
pub mod root {
    /// Moves to a new region so far (a generation number).
    pub const GEN: usize = 0;
    /// The region's offset in the file (0: no region yet, the container is
    /// empty).
    pub const REGION: usize = 1;
    /// The region's length in bytes.
    pub const REGION_LEN: usize = 2;
    /// The index: the map's hash table, the list's first position array.
    pub const INDEX: usize = 3;
    /// Entries in the index (the list: in each of its two arrays).
    pub const INDEX_CAP: usize = 4;
    /// The list: which of its two position arrays is current (0 or 1).
    pub const ACTIVE: usize = 5;
    /// Entries in the container.
    pub const LEN: usize = 6;
    /// The map: deleted entries still occupying table slots.
    pub const TOMBS: usize = 7;
    /// The arena (records) start.
    pub const ARENA: usize = 8;
    /// The arena's first unused byte: records below it are published ones
    /// (or garbage), bytes above it belong to no one until a commit.
    pub const TOP: usize = 9;
    /// The arena's end.
    pub const END: usize = 10;
    /// Bytes of the arena below `TOP` that no entry refers to any more.
    pub const GARBAGE: usize = 11;
    /// Root words.
    pub const WORDS: usize = 12;
}

/// The most word stores one commit publishes.
pub const REDO_MAX: usize = 14;

/// Where the control words are: `at` is the byte offset of the seqlock word
/// (the writer lock precedes it in the control block).
#[derive(Clone, Copy, Debug)]
pub struct Ctl {
    /// The seqlock word's byte offset.
    pub at: u64,
}

impl Ctl {
    /// Bytes of control words from `at`: the seqlock, the root, the redo
    /// record's length and checksum and entries, the repair counter.
    pub const LEN: u64 = 8 * (1 + root::WORDS as u64 + 2 + 2 * REDO_MAX as u64 + 1);

    fn seq(self) -> u64 {
        self.at
    }
    /// The byte offset of root word `i`.
    pub fn root(self, i: usize) -> u64 {
        self.at + 8 * (1 + i as u64)
    }
    fn redo_len(self) -> u64 {
        self.root(root::WORDS)
    }
    fn redo_sum(self) -> u64 {
        self.redo_len() + 8
    }
    fn redo(self, i: usize) -> u64 {
        self.redo_sum() + 8 + 16 * i as u64
    }
    fn repairs(self) -> u64 {
        self.redo(REDO_MAX)
    }
}

/// A snapshot of the root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Root {
    /// The words, indexed by the [`root`] constants.
    pub w: [u64; root::WORDS],
}

impl Root {
    /// Root word `i`.
    pub fn get(&self, i: usize) -> u64 {
        self.w[i]
    }
    /// The entry count.
    pub fn count(&self) -> u64 {
        self.w[root::LEN]
    }
    /// Whether the container has no region (nothing was ever stored, or it
    /// was cleared).
    pub fn is_bare(&self) -> bool {
        self.w[root::REGION_LEN] == 0
    }

    /// The kind-specific half of a root's check: an index of `INDEX_CAP`
    /// slots of `width` bytes from `INDEX` ends at or before the arena, and
    /// `used` slots (`None`: an overflowed count) fit in it. `Ok` for a
    /// bare root.
    pub fn check_index(
        &self,
        width: u64,
        used: Option<u64>,
        what: &'static str,
    ) -> Result<(), Corrupt> {
        if self.is_bare() {
            return Ok(());
        }
        let cap = self.get(root::INDEX_CAP);
        let end = cap
            .checked_mul(width)
            .and_then(|b| b.checked_add(self.get(root::INDEX)));
        if end.is_some_and(|e| e <= self.get(root::ARENA)) && used.is_some_and(|n| n <= cap) {
            Ok(())
        } else {
            Err(Corrupt(what))
        }
    }

    /// Checks the relations every root keeps, for a region that starts at
    /// or after `data_start`: the index and the arena inside the region,
    /// `arena <= top <= end`, garbage no more than the arena holds. (The
    /// kind-specific index size is checked by the container.)
    pub fn check(&self, data_start: u64) -> Result<(), Corrupt> {
        let g = |i| self.w[i];
        if self.is_bare() {
            return if g(root::LEN) == 0 && g(root::INDEX_CAP) == 0 {
                Ok(())
            } else {
                Err(Corrupt("an empty root with entries"))
            };
        }
        let region_end = g(root::REGION)
            .checked_add(g(root::REGION_LEN))
            .ok_or(Corrupt("region out of range"))?;
        let ok = g(root::REGION) >= data_start
            && g(root::INDEX) >= g(root::REGION)
            && g(root::INDEX).is_multiple_of(8)
            && g(root::ARENA) >= g(root::INDEX)
            && g(root::ARENA) <= g(root::TOP)
            && g(root::TOP) <= g(root::END)
            && g(root::END) <= region_end
            && g(root::TOP).is_multiple_of(8)
            && g(root::GARBAGE) <= g(root::TOP) - g(root::ARENA)
            && g(root::INDEX_CAP).is_power_of_two()
            && g(root::ACTIVE) <= 1;
        if ok {
            Ok(())
        } else {
            Err(Corrupt("root fields out of range"))
        }
    }
}

/// Checks that the root's region lies inside the file, so that every walk
/// over it (bounded by its length) is bounded by the file's real size, not
/// by a number a peer could scribble.
pub fn check_in_file<M: Mem>(mem: &M, root: &Root) -> Result<(), Corrupt> {
    if root.is_bare() {
        return Ok(());
    }
    let end = root.get(root::REGION) + root.get(root::REGION_LEN);
    match end.checked_sub(8).and_then(|last| mem.word(last)) {
        Some(_) => Ok(()),
        None => Err(Corrupt("region outside the file")),
    }
}

/// Reads the root words (Relaxed: the seqlock orders them, see [`read`]).
pub fn load_root<M: Mem>(mem: &M, ctl: Ctl) -> Result<Root, Corrupt> {
    let mut r = Root::default();
    for (i, out) in r.w.iter_mut().enumerate() {
        *out = mem
            .load(ctl.root(i))
            .ok_or(Corrupt("control block out of range"))?;
    }
    Ok(r)
}

/// How a seqlock read ended.
pub enum Read<R> {
    /// A stable snapshot was read: `f`'s result, checks included.
    Done(Result<R, Corrupt>),
    /// Writers kept the snapshot moving (or one is inside a commit): take
    /// the writer lock and read under it.
    Busy,
}

/// Attempts of an optimistic read before falling back to the lock.
const READ_ATTEMPTS: u32 = 64;

/// Runs `f` on a consistent snapshot without taking the writer lock: `f`
/// reads the root and whatever it names with Relaxed loads, and its result
/// is kept only if the seqlock word did not move meanwhile.
///
/// A reader that arrives while a commit is being applied (the word odd)
/// does not wait: the commit's complete redo record is there, so it reads
/// the memory with the record's stores on top ([`Overlay`]), the state
/// after the commit, whether the writer is running, stopped, or dead.
///
/// `f` must be prepared for anything (it may see a half-moved container):
/// every check it makes returns `Corrupt` rather than trusting a word, and
/// such a result counts only if the snapshot was stable.
pub fn read<M: Mem, R>(
    mem: &M,
    ctl: Ctl,
    mut f: impl FnMut(&Overlay<'_, M>, &Root) -> Result<R, Corrupt>,
) -> Read<R> {
    let Some(seq) = mem.word(ctl.seq()) else {
        return Read::Done(Err(Corrupt("control block out of range")));
    };
    for _ in 0..READ_ATTEMPTS {
        // Acquire: pairs with the Release store that ended the last commit
        // (even), so everything it published (root, index, records) is
        // visible; or with the Release store that began this one (odd), so
        // its complete redo record is.
        let s1 = seq.load(Ordering::Acquire);
        let view = if s1 & 1 == 1 {
            match recorded(mem, ctl) {
                Some(o) => o,
                None => {
                    // No valid record behind an odd word: a scribble. The
                    // lock path repairs it.
                    spin_loop();
                    continue;
                }
            }
        } else {
            Overlay::none(mem)
        };
        let r = load_root(&view, ctl).and_then(|root| f(&view, &root));
        // Acquire fence: if any load above saw a store a writer made after
        // its odd store (and Release fence), that odd store happens-before
        // the re-check below, which then differs.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        if seq.load(Ordering::Relaxed) == s1 {
            return Read::Done(r);
        }
    }
    Read::Busy
}

/// A cheap checksum of a redo record (length and entries).
fn redo_checksum(entries: &[(u64, u64)]) -> u64 {
    let mut h = 0x5348_4d52_494e_4721u64 ^ entries.len() as u64;
    for &(off, val) in entries {
        h = mix(h ^ off);
        h = mix(h ^ val);
    }
    h
}

/// A 64-bit finalizer (xor-shift-multiply), the mixing step of [`hash`].
fn mix(mut x: u64) -> u64 {
    x ^= x >> 31;
    x = x.wrapping_mul(0x7fb5_d329_728e_a185);
    x ^= x >> 27;
    x = x.wrapping_mul(0x81da_def4_bc2d_d44d);
    x ^ (x >> 33)
}

/// The hash of a map key: the same in every process and every build (it is
/// stored in the segment).
pub fn hash(key: &[u8]) -> u64 {
    let mut h = mix(0x6d61_7020_6b65_7973 ^ key.len() as u64);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(w) ^ 0xff00);
    }
    h
}

/// Publishes `stores` as one step. The caller holds the writer lock and
/// has checked (or [`repair`]ed) that no record is pending.
///
/// 1. The stores are written to the redo record, then its length (a crash
///    from here on is finished by [`repair`]: the "after" state).
/// 2. The seqlock goes odd, the stores are applied, it goes even: readers
///    that overlap retry.
/// 3. The record is cleared.
///
/// Every target is checked before anything is written, so the commit
/// either happens whole or returns `Corrupt` having changed nothing.
pub fn commit<M: Mem>(mem: &M, ctl: Ctl, stores: &[(u64, u64)]) -> Result<(), Corrupt> {
    commit_until(mem, ctl, stores, Stage::Done)
}

/// Points in a commit, where tests stop a writer (its process killed, or a
/// loom thread that stops there as if killed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The record's entries are written, its length not yet: nothing counts.
    Staged = 1,
    /// The record is complete; nothing applied yet.
    Recorded = 2,
    /// The seqlock is odd and the first half of the stores are applied.
    Applying = 3,
    /// The seqlock is even again; the record is not cleared yet.
    Applied = 4,
    /// The commit is over.
    Done = 5,
}

/// Hooks for tests: `HOOK`, if set, runs at every [`Stage`] of every commit
/// this process makes (a test sets one that kills the process).
#[cfg(not(loom))]
pub mod commit_hooks {
    /// Called with the stage reached.
    pub static HOOK: std::sync::OnceLock<fn(super::Stage)> = std::sync::OnceLock::new();
}

/// Runs a commit up to `stop` and returns there (the writer "dies": the
/// loom models use it; normal code commits to `Done`).
pub fn commit_until<M: Mem>(
    mem: &M,
    ctl: Ctl,
    stores: &[(u64, u64)],
    stop: Stage,
) -> Result<(), Corrupt> {
    assert!(
        stores.len() <= REDO_MAX,
        "a commit of more stores than the redo record holds"
    );
    let out_of_range = Corrupt("control block out of range");
    if stores.iter().any(|&(off, _)| mem.word(off).is_none()) {
        return Err(Corrupt("a store outside the file"));
    }
    let seq = mem.word(ctl.seq()).ok_or(out_of_range)?;
    let len = mem.word(ctl.redo_len()).ok_or(out_of_range)?;
    let sum = mem.word(ctl.redo_sum()).ok_or(out_of_range)?;
    let slots = mem
        .words(ctl.redo(0), 2 * REDO_MAX as u64)
        .ok_or(out_of_range)?;
    let reached = |stage: Stage| {
        #[cfg(not(loom))]
        if let Some(hook) = commit_hooks::HOOK.get() {
            hook(stage);
        }
        stage == stop
    };
    for (i, &(off, val)) in stores.iter().enumerate() {
        // Relaxed: published by the Release store of the length below.
        slots[2 * i].store(off, Ordering::Relaxed);
        slots[2 * i + 1].store(val, Ordering::Relaxed);
    }
    // Relaxed: as the entries.
    sum.store(redo_checksum(stores), Ordering::Relaxed);
    if reached(Stage::Staged) {
        return Ok(());
    }
    // Release: the entries and checksum happen-before a length that makes
    // them count (for a repairer, the writer lock orders them as well).
    len.store(stores.len() as u64, Ordering::Release);
    if reached(Stage::Recorded) {
        return Ok(());
    }
    // The seqlock write section: odd, the stores, even.
    // Relaxed: only the lock holder writes the seqlock word.
    let s = seq.load(Ordering::Relaxed) | 1;
    // Release: a reader that loads this odd value (Acquire) sees the
    // complete redo record and reads through it (see `read`). Then a
    // Release fence: a reader that sees any of the stores below sees this
    // odd value in its re-check.
    seq.store(s, Ordering::Release);
    fence(Ordering::Release);
    let half = stores.len() / 2;
    store_all(mem, &stores[..half]);
    if reached(Stage::Applying) {
        return Ok(());
    }
    store_all(mem, &stores[half..]);
    // Release: the stores (and every record and index entry written before
    // the commit) happen-before a reader's Acquire load of the even value.
    seq.store(s.wrapping_add(1), Ordering::Release);
    if reached(Stage::Applied) {
        return Ok(());
    }
    // Relaxed: only lock holders read it, and the lock orders them.
    len.store(0, Ordering::Relaxed);
    reached(Stage::Done);
    Ok(())
}

fn store_all<M: Mem>(mem: &M, stores: &[(u64, u64)]) {
    for &(off, val) in stores {
        if let Some(w) = mem.word(off) {
            // Relaxed: published by the Release store of the even value.
            w.store(val, Ordering::Relaxed);
        }
    }
}

/// The seqlock write section of a repair: odd, the stores, even (the
/// orderings as in [`commit_until`]).
fn apply<M: Mem>(mem: &M, seq: &AtomicU64, stores: &[(u64, u64)]) {
    // Relaxed: only the lock holder writes the seqlock word.
    let s = seq.load(Ordering::Relaxed) | 1;
    // Release, then a Release fence: as in `commit_until`.
    seq.store(s, Ordering::Release);
    fence(Ordering::Release);
    store_all(mem, stores);
    // Release: as in `commit_until`.
    seq.store(s.wrapping_add(1), Ordering::Release);
}

/// What [`repair`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Nothing was pending.
    Clean,
    /// A commit interrupted by its writer's death was finished (redone).
    Redone,
    /// A seqlock left odd without a pending record was closed.
    Closed,
}

/// Whether a commit was left unfinished (a pending redo record, or the
/// seqlock odd): two loads, under the writer lock.
pub fn pending<M: Mem>(mem: &M, ctl: Ctl) -> bool {
    let odd = mem
        .word(ctl.seq())
        // Relaxed: the writer lock orders what the last holder wrote.
        .is_none_or(|s| s.load(Ordering::Relaxed) & 1 == 1);
    let len = mem
        .word(ctl.redo_len())
        // Relaxed: as above.
        .is_none_or(|l| l.load(Ordering::Relaxed) != 0);
    odd || len
}

/// Finishes what a writer that died holding the lock left: a complete redo
/// record is applied again (its stores are absolute values, so applying
/// twice is applying once), then cleared; a seqlock left odd is made even.
/// The caller holds the writer lock.
pub fn repair<M: Mem>(mem: &M, ctl: Ctl) -> Result<Repair, Corrupt> {
    let out_of_range = Corrupt("control block out of range");
    let seq = mem.word(ctl.seq()).ok_or(out_of_range)?;
    let len = mem.word(ctl.redo_len()).ok_or(out_of_range)?;
    // Acquire: pairs with the Release store of the length in `commit`.
    let n = len.load(Ordering::Acquire);
    let outcome = if n != 0 {
        if n > REDO_MAX as u64 {
            return Err(Corrupt("redo record length out of range"));
        }
        let slots = mem
            .words(ctl.redo(0), 2 * REDO_MAX as u64)
            .ok_or(out_of_range)?;
        let mut stores = [(0u64, 0u64); REDO_MAX];
        for (i, s) in stores.iter_mut().enumerate().take(n as usize) {
            // Relaxed: ordered by the Acquire load of the length.
            *s = (
                slots[2 * i].load(Ordering::Relaxed),
                slots[2 * i + 1].load(Ordering::Relaxed),
            );
        }
        let stores = &stores[..n as usize];
        let sum = mem.word(ctl.redo_sum()).ok_or(out_of_range)?;
        // Relaxed: as the entries.
        if sum.load(Ordering::Relaxed) != redo_checksum(stores) {
            return Err(Corrupt("redo record fails its checksum"));
        }
        if stores.iter().any(|&(off, _)| mem.word(off).is_none()) {
            return Err(Corrupt("a redo store outside the file"));
        }
        apply(mem, seq, stores);
        Repair::Redone
    } else if seq.load(Ordering::Relaxed) & 1 == 1 {
        // Relaxed above: lock-ordered. Closing it: Release, as in `apply`.
        seq.fetch_add(1, Ordering::Release);
        Repair::Closed
    } else {
        Repair::Clean
    };
    // Relaxed: lock holders only.
    len.store(0, Ordering::Relaxed);
    if outcome != Repair::Clean {
        if let Some(r) = mem.word(ctl.repairs()) {
            // Relaxed: a statistic.
            r.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(outcome)
}

/// Commits interrupted by a writer's death and finished by a later one.
pub fn repairs<M: Mem>(mem: &M, ctl: Ctl) -> u64 {
    // Relaxed: a statistic.
    mem.word(ctl.repairs())
        .map_or(0, |r| r.load(Ordering::Relaxed))
}

// Records: `hash`, then `key_len | value_len << 32`, then the key and the
// value, each padded with zeros to whole words.

/// Bytes of a record's head (hash and lengths).
pub const RECORD_HEAD: u64 = 16;

/// Whole words for `n` bytes.
pub fn words_for(n: u64) -> u64 {
    n.div_ceil(8)
}

/// The bytes a record of this key and value takes.
pub fn record_len(key_len: usize, value_len: usize) -> u64 {
    RECORD_HEAD + 8 * (words_for(key_len as u64) + words_for(value_len as u64))
}

/// A record's place and lengths, checked to lie within `[arena, top)`.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Where the record starts.
    pub off: u64,
    /// The key's hash (0 in lists).
    pub hash: u64,
    /// Bytes of key.
    pub key_len: u64,
    /// Bytes of value.
    pub value_len: u64,
}

impl Record {
    /// Bytes the record takes, padding included.
    pub fn size(&self) -> u64 {
        RECORD_HEAD + 8 * (words_for(self.key_len) + words_for(self.value_len))
    }
    fn key_at(&self) -> u64 {
        self.off + RECORD_HEAD
    }
    fn value_at(&self) -> u64 {
        self.key_at() + 8 * words_for(self.key_len)
    }
}

/// The record bytes a walk over every entry may find: the published part
/// of the arena. Live records never overlap, so their sizes add up to no
/// more; a scribbled index that names one record many times is caught here
/// before the walk copies (and allocates) more than the file holds.
#[derive(Clone, Copy, Debug)]
pub struct Budget(u64);

impl Budget {
    /// The budget of a checked root.
    pub fn of(root: &Root) -> Budget {
        Budget(root.get(root::TOP).saturating_sub(root.get(root::ARENA)))
    }

    /// Counts a record against the budget.
    pub fn take(&mut self, r: &Record) -> Result<(), Corrupt> {
        self.0 = self.0.checked_sub(r.size()).ok_or(Corrupt(
            "entries name more record bytes than the arena holds",
        ))?;
        Ok(())
    }
}

/// Reads and checks the head of the record at `off`.
pub fn record<M: Mem>(mem: &M, root: &Root, off: u64) -> Result<Record, Corrupt> {
    let bad = Corrupt("record out of range");
    if off < root.get(root::ARENA) || !off.is_multiple_of(8) || off >= root.get(root::TOP) {
        return Err(bad);
    }
    let head = mem.words(off, 2).ok_or(bad)?;
    // Relaxed: see `read` (readers) or the writer lock (writers).
    let hash = head[0].load(Ordering::Relaxed);
    let lens = head[1].load(Ordering::Relaxed);
    let r = Record {
        off,
        hash,
        key_len: lens & 0xffff_ffff,
        value_len: lens >> 32,
    };
    if off + r.size() > root.get(root::TOP) {
        return Err(bad);
    }
    Ok(r)
}

/// Copies `len` bytes stored from `off` (padded to words) into `out`.
pub fn read_bytes<M: Mem>(mem: &M, off: u64, len: u64, out: &mut Vec<u8>) -> Result<(), Corrupt> {
    let words = mem
        .words(off, words_for(len))
        .ok_or(Corrupt("bytes out of range"))?;
    out.reserve(len as usize);
    let mut left = len as usize;
    for w in words {
        // Relaxed: see `read` (readers) or the writer lock (writers).
        let b = w.load(Ordering::Relaxed).to_le_bytes();
        let n = left.min(8);
        out.extend_from_slice(&b[..n]);
        left -= n;
    }
    Ok(())
}

/// The word of `bytes` starting at byte `i`, zero-padded.
fn word_of(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    let end = (i + 8).min(bytes.len());
    w[..end - i].copy_from_slice(&bytes[i..end]);
    u64::from_le_bytes(w)
}

/// Whether the stored bytes from `off` equal `bytes` (lengths already
/// compared).
pub fn bytes_equal<M: Mem>(mem: &M, off: u64, bytes: &[u8]) -> Result<bool, Corrupt> {
    let n = words_for(bytes.len() as u64);
    let words = mem.words(off, n).ok_or(Corrupt("bytes out of range"))?;
    for (i, w) in words.iter().enumerate() {
        // Relaxed: see `read_bytes`.
        if w.load(Ordering::Relaxed) != word_of(bytes, 8 * i) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The key of a record.
pub fn record_key<M: Mem>(mem: &M, r: &Record, out: &mut Vec<u8>) -> Result<(), Corrupt> {
    read_bytes(mem, r.key_at(), r.key_len, out)
}

/// The value of a record.
pub fn record_value<M: Mem>(mem: &M, r: &Record, out: &mut Vec<u8>) -> Result<(), Corrupt> {
    read_bytes(mem, r.value_at(), r.value_len, out)
}

/// Whether a record's key is `key`.
pub fn key_is<M: Mem>(mem: &M, r: &Record, hash: u64, key: &[u8]) -> Result<bool, Corrupt> {
    if r.hash != hash || r.key_len != key.len() as u64 {
        return Ok(false);
    }
    bytes_equal(mem, r.key_at(), key)
}

/// Writes a record at `off` (an unpublished part of the arena: above `TOP`
/// or in a region no root names yet). The caller checked the room.
pub fn write_record<M: Mem>(
    mem: &M,
    off: u64,
    hash: u64,
    key: &[u8],
    value: &[u8],
) -> Result<u64, Corrupt> {
    let len = record_len(key.len(), value.len());
    let words = mem
        .words(off, len / 8)
        .ok_or(Corrupt("record outside the file"))?;
    let kw = words_for(key.len() as u64) as usize;
    // Relaxed throughout: published by the commit's Release store.
    words[0].store(hash, Ordering::Relaxed);
    words[1].store(
        key.len() as u64 | (value.len() as u64) << 32,
        Ordering::Relaxed,
    );
    for (i, w) in words[2..2 + kw].iter().enumerate() {
        w.store(word_of(key, 8 * i), Ordering::Relaxed);
    }
    for (i, w) in words[2 + kw..].iter().enumerate() {
        w.store(word_of(value, 8 * i), Ordering::Relaxed);
    }
    Ok(len)
}

/// Copies a checked record to `to` (unpublished space), word for word.
pub fn copy_record<M: Mem>(mem: &M, r: &Record, to: u64) -> Result<u64, Corrupt> {
    let n = r.size() / 8;
    let from = mem.words(r.off, n).ok_or(Corrupt("record out of range"))?;
    let dest = mem.words(to, n).ok_or(Corrupt("record outside the file"))?;
    for (d, s) in dest.iter().zip(from) {
        // Relaxed: under the writer lock; published by the commit.
        d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    Ok(r.size())
}

/// Stores zeros in `n` words from `off` (a fresh index).
pub fn zero<M: Mem>(mem: &M, off: u64, n: u64) -> Result<(), Corrupt> {
    let words = mem.words(off, n).ok_or(Corrupt("index outside the file"))?;
    for w in words {
        // Relaxed: unpublished; published by the commit.
        w.store(0, Ordering::Relaxed);
    }
    Ok(())
}

/// Loads one word (Relaxed; see `read` / the writer lock).
pub fn load<M: Mem>(mem: &M, off: u64) -> Result<u64, Corrupt> {
    mem.load(off).ok_or(Corrupt("index out of range"))
}

/// Stores one word into unpublished space (Relaxed: the commit publishes).
pub fn store<M: Mem>(mem: &M, off: u64, val: u64) -> Result<(), Corrupt> {
    mem.word(off)
        .map(|w| w.store(val, Ordering::Relaxed))
        .ok_or(Corrupt("index outside the file"))
}

/// Where a new region of `len` bytes goes: at `data_start` if it fits
/// below the current region, else right after it (page-aligned). Only the
/// current region is live, so the space of older ones is reused.
pub fn place(data_start: u64, current: &Root, len: u64, page: u64) -> Option<u64> {
    if current.is_bare() {
        return Some(data_start);
    }
    let cur = current.get(root::REGION);
    if data_start.checked_add(len)? <= cur {
        return Some(data_start);
    }
    let end = cur.checked_add(current.get(root::REGION_LEN))?;
    end.checked_add(page - 1).map(|e| e & !(page - 1))
}

/// The stores that publish a new region (every root word but `LEN`,
/// `TOMBS`, `ACTIVE`, which the caller adds as it needs).
pub fn region_stores(ctl: Ctl, r: &Root) -> [(u64, u64); 9] {
    let at = |i: usize| (ctl.root(i), r.get(i));
    [
        at(root::GEN),
        at(root::REGION),
        at(root::REGION_LEN),
        at(root::INDEX),
        at(root::INDEX_CAP),
        at(root::ARENA),
        at(root::TOP),
        at(root::END),
        at(root::GARBAGE),
    ]
}
