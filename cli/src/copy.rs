//! The copy references of a message size, measured in the same run as the
//! shm rows they are compared with (spin mode, sizes of [`MIN_SIZE`] and
//! more):
//!
//! - `memcpy`: one core copying `size` bytes between two buffers of its own,
//!   cache-hot: what this machine's `memcpy` does at that size. Its p50 is
//!   the time of one copy (batches of copies, divided), its msgs/s copies
//!   per second.
//! - `xcopy`: the cross-core copy floor. Two processes and nothing but the
//!   copies, through bare cells (a stamp word, then the payload, from the
//!   stamp's line on, as the shm rows lay out a byte message): the round
//!   trip copies `size` bytes into one cell, the peer copies them out and
//!   into another, and the first copies them out; the stream is a bare ring
//!   of such cells (the head on its own line, a cached head), one copy in
//!   by the producer (the child) and one out by the consumer (the parent).
//!   Every message is stamped and checked as the shm rows do theirs.
//!
//! A copying queue moves the same bytes between the same two cores and
//! does more besides, so `xcopy` is its floor; how far `xcopy` falls below
//! `memcpy` is the machine's cost of moving bytes between its cores at all.

use crate::floor::{spin_until, Commands, Line};
use crate::link::{stamp, stamped};
use crate::sys::{self, Forked, Peer};
use crate::types::{new_histogram, Config, Failure, Latency, Mode, Row};
use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The smallest size with copy references: below it, a message is a word or
/// two and a `memcpy` call says nothing.
pub const MIN_SIZE: usize = 64;

const OP_RTT: u32 = 1;
const OP_STREAM: u32 = 2;
const OP_EXIT: u32 = 3;

/// The control block at the start of the shared region.
#[repr(C)]
struct Ctl {
    /// The parent's commands to the child.
    cmd: Commands,
    /// The parent's next position to read from [`TO_PARENT`] (it stores it
    /// after every message it takes; the child reads it to know which
    /// cells are free while it streams).
    head: Line<AtomicU64>,
}

/// A line-aligned length.
const fn lines(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Payload bytes in a cell's first line, beside its stamp: written last,
/// so that a reader polling the stamp does not pull the line away while
/// the rest is copied (as the shm rows write a byte message).
const FIRST: usize = 64 - 8;

/// The ring of cells from the parent to the child (round trips' requests).
const TO_CHILD: usize = 0;
/// The ring of cells from the child to the parent (round trips' answers,
/// then the stream), as the shm rows use one queue each way.
const TO_PARENT: usize = 1;

/// The shared region: [`Ctl`], then two rings of `slots` cells each
/// ([`TO_CHILD`], [`TO_PARENT`]). A cell is a stamp word (position + 1 once
/// that position's message is in it) and the payload right after it,
/// line-aligned.
struct Region {
    base: *mut u8,
    len: usize,
    size: usize,
    slots: u64,
}

/// One cell: its stamp and its payload.
struct Cell<'a> {
    stamp: &'a AtomicU64,
    payload: *mut u8,
}

impl Region {
    fn new(size: usize, slots: u64) -> io::Result<Region> {
        let len = lines(std::mem::size_of::<Ctl>()) + 2 * slots as usize * lines(8 + size);
        let p = sys::map_shared(len)?;
        Ok(Region {
            base: p,
            len,
            size,
            slots,
        })
    }

    fn ctl(&self) -> &Ctl {
        // SAFETY: the region starts with a `Ctl` (page-aligned, zero-filled:
        // atomics only, valid all-zero), live while `self` is.
        unsafe { &*self.base.cast::<Ctl>() }
    }

    /// The cell of position `pos` in ring `ring` ([`TO_CHILD`] or
    /// [`TO_PARENT`]).
    fn cell(&self, ring: usize, pos: u64) -> Cell<'_> {
        debug_assert!(ring < 2, "ring {ring}");
        let i = ring.min(1) * self.slots as usize + (pos % self.slots) as usize;
        let off = lines(std::mem::size_of::<Ctl>()) + i * lines(8 + self.size);
        // SAFETY: `i < 2 * slots`, the cells `new` counts, so the cell lies
        // within the region; its stamp is 8-aligned (the offset is a
        // multiple of 64 from a page) and only ever accessed as an
        // `AtomicU64`; its payload follows it.
        unsafe {
            let p = self.base.add(off);
            Cell {
                stamp: &*p.cast::<AtomicU64>(),
                payload: p.add(8),
            }
        }
    }
}

impl Cell<'_> {
    /// Copies `msg` in, its first line last, then publishes it as `stamp`.
    ///
    /// # Safety
    /// The cell is the caller's to write: its reader is done with it and
    /// looks again only after seeing the new stamp; `msg` fits the payload.
    #[inline(always)]
    unsafe fn put(&self, msg: &[u8], stamp: u64) {
        let first = msg.len().min(FIRST);
        // SAFETY: the caller's contract: the payload is ours and `msg.len()`
        // bytes long.
        unsafe {
            copy(
                msg[first..].as_ptr(),
                self.payload.add(first),
                msg.len() - first,
            );
            copy(msg.as_ptr(), self.payload, first);
        }
        // Release: the payload's bytes happen-before a reader's Acquire
        // load that sees this stamp.
        self.stamp.store(stamp, Ordering::Release);
    }

    /// Waits until the cell carries `stamp`, then copies its payload out.
    ///
    /// # Safety
    /// The cell's writer writes it again only after we are done (the
    /// protocol says so); `out` fits the payload.
    #[inline(always)]
    unsafe fn take(&self, stamp: u64, out: &mut [u8], peer: &Peer) -> Result<(), String> {
        // Acquire: pairs with `put`'s Release store, so the payload is
        // visible.
        spin_until(|| self.stamp.load(Ordering::Acquire) == stamp, peer)?;
        // SAFETY: the caller's contract; the stamp says the payload is
        // whole.
        unsafe { copy(self.payload, out.as_mut_ptr(), out.len()) };
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing borrowed
        // from it outlives `self`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Copies `len` bytes.
///
/// # Safety
/// `src` readable and `dst` writable for `len` bytes, not overlapping, and
/// nobody else writing either meanwhile (the stamps and sequence numbers
/// of this module's protocols order every access).
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}

/// Measures both copy references at `size`: the `memcpy` row, then the
/// `xcopy` row.
pub fn measure(cfg: &Config, size: usize) -> Result<Vec<Row>, Failure> {
    let mut rows = vec![
        memcpy(cfg, size),
        xcopy(cfg, size, crate::link::capacity_for(size))?,
    ];
    for (r, name) in rows.iter_mut().zip(["memcpy", "xcopy"]) {
        r.transport = name.into();
        r.mode = Mode::Spin;
        r.size = size;
    }
    Ok(rows)
}

/// `memcpy`: batches of copies in this process.
fn memcpy(cfg: &Config, size: usize) -> Row {
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut dst = vec![0u8; size];
    // About a microsecond a batch at tens of GB/s.
    let batch = (64usize << 10).div_ceil(size).clamp(1, 64) as u64;
    let mut once = |n: u64| {
        for _ in 0..n {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
    };
    let n = cfg.rtt_iterations(size);
    let mut hist = new_histogram();
    once(cfg.warmup(n) * batch);
    for _ in 0..n {
        let t = Instant::now();
        once(batch);
        hist.saturating_record((t.elapsed().as_nanos() as u64 / batch).max(1));
    }
    let n0 = cfg.calibration_messages();
    let t = Instant::now();
    once(n0);
    let count = cfg.stream_messages(n0, t.elapsed());
    let t = Instant::now();
    once(count);
    let d = t.elapsed();
    Row::new(
        Latency::from_histogram(&hist),
        count as f64 / d.as_secs_f64(),
    )
}

/// `xcopy`: round trips and a stream through the bare region, with a child.
fn xcopy(cfg: &Config, size: usize, slots: u64) -> Result<Row, Failure> {
    let label = format!("xcopy {}", crate::report::human_size(size));
    let region = Region::new(size, slots)
        .map_err(|e| Failure::Run(format!("{label}: mapping the region: {e}")))?;
    match sys::fork().map_err(|e| Failure::Run(format!("fork: {e}")))? {
        Forked::Child => {
            sys::child_main(&label, cfg.cpus.1, cfg.timeout, |peer| child(&region, peer))
        }
        Forked::Parent(child) => {
            let peer = Peer::Child(&child);
            let run = |e: String| Failure::Run(format!("{label}: {e}"));
            let ctl = region.ctl();
            let mut sent = 0u32;
            let mut post = |op: u32, count: u64| ctl.cmd.post(&mut sent, op, count);
            let mut out: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut back = vec![0u8; size];
            let n = cfg.rtt_iterations(size);
            let warm = cfg.warmup(n);
            let mut hist = new_histogram();
            // Our next positions: to write in TO_CHILD, to read in
            // TO_PARENT.
            let (mut ours, mut theirs) = (0u64, 0u64);
            post(OP_RTT, warm + n);
            for i in 0..warm + n {
                stamp(&mut out, ours);
                let t = Instant::now();
                // SAFETY: the child has taken the message `slots` before
                // this one from this cell (it answered it); it writes its
                // answer's cell again only after we store `head` past it.
                unsafe { region.cell(TO_CHILD, ours).put(&out, ours + 1) };
                ours += 1;
                take(&region, &mut theirs, &mut back, &peer).map_err(run)?;
                let dt = t.elapsed();
                if !stamped(&back, size, theirs - 1) {
                    return Err(run(format!("round trip {i}: a wrong reply came back")));
                }
                if i >= warm {
                    hist.saturating_record(dt.as_nanos() as u64);
                }
            }
            let mut stream = |count: u64, theirs: &mut u64| -> Result<Duration, String> {
                post(OP_STREAM, count);
                let t = Instant::now();
                for _ in 0..count {
                    take(&region, theirs, &mut back, &peer)?;
                    if !stamped(&back, size, *theirs - 1) {
                        return Err(format!("stream message {}: wrong content", *theirs - 1));
                    }
                }
                Ok(t.elapsed())
            };
            let n0 = cfg.calibration_messages();
            let d0 = stream(n0, &mut theirs).map_err(run)?;
            let count = cfg.stream_messages(n0, d0);
            let d = stream(count, &mut theirs).map_err(run)?;
            post(OP_EXIT, 0);
            child.reap().map_err(run)?;
            Ok(Row::new(
                Latency::from_histogram(&hist),
                count as f64 / d.as_secs_f64(),
            ))
        }
    }
}

/// The parent takes the message at `pos` in [`TO_PARENT`] into `into`, then
/// moves `pos` and `head` past it.
#[inline(always)]
fn take(region: &Region, pos: &mut u64, into: &mut [u8], peer: &Peer) -> Result<(), String> {
    let p = *pos;
    // SAFETY: the child writes this cell again only after `head` passes it
    // (below, after our copy).
    unsafe { region.cell(TO_PARENT, p).take(p + 1, into, peer)? };
    *pos = p + 1;
    // Release: our copy out of the cell happens-before the child's Acquire
    // load of `head` that lets it write the cell again.
    region.ctl().head.store(*pos, Ordering::Release);
    Ok(())
}

/// The child writes `msg` at `pos` in [`TO_PARENT`], once the parent has
/// taken what that cell held; `cached_head` is the parent's position last
/// seen.
#[inline(always)]
fn give(
    region: &Region,
    pos: &mut u64,
    cached_head: &mut u64,
    msg: &mut [u8],
    peer: &Peer,
) -> Result<(), String> {
    let p = *pos;
    if p - *cached_head >= region.slots {
        // Acquire: pairs with the parent's Release store of `head`, so its
        // copy out of the cell we overwrite happened before.
        spin_until(
            || {
                *cached_head = region.ctl().head.load(Ordering::Acquire);
                p - *cached_head < region.slots
            },
            peer,
        )?;
    }
    stamp(msg, p);
    // SAFETY: the parent is past this cell's last message (`head`, Acquire)
    // and reads it again only after the new stamp.
    unsafe { region.cell(TO_PARENT, p).put(msg, p + 1) };
    *pos = p + 1;
    Ok(())
}

/// The child: serves commands until `OP_EXIT`.
fn child(region: &Region, peer: &Peer) -> Result<(), String> {
    let ctl = region.ctl();
    let mut seen = 0u32;
    // Our next positions: to read in TO_CHILD, to write in TO_PARENT; the
    // parent's position in TO_PARENT last seen.
    let (mut theirs, mut ours, mut cached_head) = (0u64, 0u64, 0u64);
    let mut mine = vec![0u8; region.size];
    loop {
        let (op, count) = ctl.cmd.next(&mut seen, peer)?;
        match op {
            OP_RTT => {
                for _ in 0..count {
                    // SAFETY: the parent writes this cell again only after
                    // our answer to it (its next use is `slots` messages on).
                    unsafe {
                        region
                            .cell(TO_CHILD, theirs)
                            .take(theirs + 1, &mut mine, peer)?
                    };
                    theirs += 1;
                    // The answer: the request's bytes, restamped with the
                    // answer's position (as the shm rows echo).
                    give(region, &mut ours, &mut cached_head, &mut mine, peer)?;
                }
            }
            OP_STREAM => {
                for _ in 0..count {
                    give(region, &mut ours, &mut cached_head, &mut mine, peer)?;
                }
            }
            OP_EXIT => return Ok(()),
            op => return Err(format!("unknown command {op}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_s_cells_do_not_overlap_and_fit() {
        for (size, slots) in [(64, 2), (100, 3), (1024, 64), (65536, 4)] {
            let r = Region::new(size, slots).unwrap();
            let end = r.base as usize + r.len;
            let ctl_end = r.base as usize + std::mem::size_of::<Ctl>();
            let mut spans = vec![(r.base as usize, ctl_end)];
            for ring in [TO_CHILD, TO_PARENT] {
                for pos in 0..slots {
                    let c = r.cell(ring, pos);
                    let s = c.stamp as *const AtomicU64 as usize;
                    assert_eq!(s % 64, 0);
                    assert_eq!(c.payload as usize, s + 8);
                    spans.push((s, s + 8 + size));
                }
                // Position `slots` is the ring's first cell again.
                assert!(std::ptr::eq(
                    r.cell(ring, slots).stamp,
                    r.cell(ring, 0).stamp
                ));
            }
            spans.sort_unstable();
            for w in spans.windows(2) {
                assert!(w[0].1 <= w[1].0, "{size} × {slots}: {w:?} overlap");
            }
            assert!(spans.last().unwrap().1 <= end);
        }
    }

    #[test]
    fn a_cell_carries_a_message_whole_with_its_stamp() {
        for size in [64, 100, 1024] {
            let r = Region::new(size, 2).unwrap();
            let msg: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let mut out = vec![0u8; size];
            let peer = Peer::Parent(std::os::unix::process::parent_id() as libc::pid_t);
            // SAFETY: one thread, nobody else maps the region.
            unsafe {
                r.cell(TO_PARENT, 1).put(&msg, 9);
                r.cell(TO_PARENT, 1).take(9, &mut out, &peer).unwrap();
            }
            assert_eq!(out, msg, "{size}");
            assert_eq!(r.cell(TO_CHILD, 1).stamp.load(Ordering::Relaxed), 0);
        }
    }
}
