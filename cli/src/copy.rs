//! The copy references of a message size, measured in the same run as the
//! shm rows they are compared with (spin mode, sizes of [`MIN_SIZE`] and
//! more):
//!
//! - `memcpy`: one core copying `size` bytes between two buffers of its own,
//!   cache-hot: what this machine's `memcpy` does at that size. Its p50 is
//!   the time of one copy (batches of copies, divided), its msgs/s copies
//!   per second.
//! - `xcopy`: the cross-core copy floor. Two processes and nothing but the
//!   copies: the round trip copies `size` bytes into a bare shared buffer,
//!   the peer copies them out and back into another, and the first copies
//!   them out; the stream is a bare ring of `size`-byte slots (a stamp line
//!   before each payload, the head on its own line, a cached head), one copy
//!   in by the producer (the child) and one out by the consumer (the
//!   parent), as the shm rows do.
//!
//! A copying queue cannot beat `xcopy` (it moves the same bytes between the
//! same two cores); how far `xcopy` falls below `memcpy` is the machine's
//! cost of moving bytes between its cores at all.

use crate::floor::{spin_until, Line};
use crate::sys::{self, Forked, Peer};
use crate::types::{new_histogram, Config, Failure, Latency, Mode, Row};
use shmring::futex_wake;
use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
    /// Bumped by the parent for each command (the child sleeps on it).
    cmd_seq: Line<AtomicU32>,
    cmd_op: AtomicU32,
    cmd_count: AtomicU64,
    /// Round trips: the number of the last message in each buffer.
    ping: Line<AtomicU64>,
    pong: Line<AtomicU64>,
    /// The ring's next position to read (written by the consumer).
    head: Line<AtomicU64>,
}

/// A line-aligned length.
const fn lines(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// The shared region: [`Ctl`], the two round-trip buffers, then the ring's
/// slots (each a 64-byte stamp line, then the payload).
struct Region {
    base: *mut u8,
    len: usize,
    size: usize,
    slots: u64,
}

impl Region {
    fn new(size: usize, slots: u64) -> io::Result<Region> {
        let len = lines(std::mem::size_of::<Ctl>())
            + 2 * lines(size)
            + slots as usize * (64 + lines(size));
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

    /// Round-trip buffer 0 (parent to child) or 1 (child to parent).
    fn buf(&self, i: usize) -> *mut u8 {
        // SAFETY: within the region (`new` counts two line-rounded buffers
        // after the control block).
        unsafe {
            self.base
                .add(lines(std::mem::size_of::<Ctl>()) + i * lines(self.size))
        }
    }

    /// The ring slot of position `pos`: its stamp and its payload.
    fn slot(&self, pos: u64) -> (&AtomicU64, *mut u8) {
        let i = (pos % self.slots) as usize;
        let off =
            lines(std::mem::size_of::<Ctl>()) + 2 * lines(self.size) + i * (64 + lines(self.size));
        // SAFETY: slot `i < slots` lies within the region (`new`); its
        // first word is 8-aligned (the offset is a multiple of 64 from a
        // page) and only ever accessed as an `AtomicU64`.
        unsafe {
            let p = self.base.add(off);
            (&*p.cast::<AtomicU64>(), p.add(64))
        }
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
pub fn measure(cfg: &Config, size: usize, slots: u64) -> Result<Vec<Row>, Failure> {
    let mut rows = vec![memcpy(cfg, size), xcopy(cfg, size, slots)?];
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

/// Writes `seq` into the first (up to) 8 bytes of `msg`.
fn stamp(msg: &mut [u8], seq: u64) {
    let n = msg.len().min(8);
    msg[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Whether `msg` starts with `seq` (its first, up to, 8 bytes).
fn stamped(msg: &[u8], seq: u64) -> bool {
    let n = msg.len().min(8);
    msg[..n] == seq.to_le_bytes()[..n]
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
            let mut seq = 0u32;
            let mut post = |op: u32, count: u64| {
                seq = seq.wrapping_add(1);
                // Relaxed: published by the Release store of `cmd_seq`.
                ctl.cmd_op.store(op, Ordering::Relaxed);
                ctl.cmd_count.store(count, Ordering::Relaxed);
                // Release: the command's words happen-before the child's
                // Acquire load of the new sequence number.
                ctl.cmd_seq.store(seq, Ordering::Release);
                futex_wake(&ctl.cmd_seq, 1);
            };
            let mut out: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut back = vec![0u8; size];
            let n = cfg.rtt_iterations(size);
            let warm = cfg.warmup(n);
            let mut hist = new_histogram();
            post(OP_RTT, warm + n);
            for i in 1..=warm + n {
                stamp(&mut out, i);
                let t = Instant::now();
                // SAFETY: buffer 0 is ours until the Release store below
                // (the child reads it after its Acquire load of `ping`, and
                // we write it again only after its reply, which comes after
                // its read).
                unsafe { copy(out.as_ptr(), region.buf(0), size) };
                // Release: our copy into buffer 0 happens-before the
                // child's Acquire load that sees `i`.
                ctl.ping.store(i, Ordering::Release);
                // Acquire: pairs with the child's Release store of `pong`,
                // so its copy into buffer 1 is visible.
                spin_until(|| ctl.pong.load(Ordering::Acquire) == i, &peer).map_err(run)?;
                // SAFETY: buffer 1 holds the child's reply, and the child
                // writes it again only after our next `ping`.
                unsafe { copy(region.buf(1), back.as_mut_ptr(), size) };
                let dt = t.elapsed();
                if !stamped(&back, i) {
                    return Err(run(format!("round trip {i}: a wrong reply came back")));
                }
                if i > warm {
                    hist.saturating_record(dt.as_nanos() as u64);
                }
            }
            let mut pos = 0u64;
            let mut stream = |count: u64, pos: &mut u64| -> Result<Duration, String> {
                post(OP_STREAM, count);
                let t = Instant::now();
                consume(&region, pos, count, &mut back, &peer)?;
                Ok(t.elapsed())
            };
            let n0 = cfg.calibration_messages();
            let d0 = stream(n0, &mut pos).map_err(run)?;
            let count = cfg.stream_messages(n0, d0);
            let d = stream(count, &mut pos).map_err(run)?;
            post(OP_EXIT, 0);
            child.reap().map_err(run)?;
            Ok(Row::new(
                Latency::from_histogram(&hist),
                count as f64 / d.as_secs_f64(),
            ))
        }
    }
}

/// The ring's consumer (parent): `count` messages from position `pos`.
fn consume(
    region: &Region,
    pos: &mut u64,
    count: u64,
    into: &mut [u8],
    peer: &Peer,
) -> Result<(), String> {
    let ctl = region.ctl();
    for _ in 0..count {
        let p = *pos;
        let (stamp_word, payload) = region.slot(p);
        // Acquire: pairs with the producer's Release store of the stamp, so
        // its copy into the slot is visible.
        spin_until(|| stamp_word.load(Ordering::Acquire) == p + 1, peer)?;
        // SAFETY: the slot holds message `p` (its stamp says so) and the
        // producer writes it again only after our `head` passes it.
        unsafe { copy(payload, into.as_mut_ptr(), region.size) };
        if !stamped(into, p) {
            return Err(format!("stream message {p}: wrong content"));
        }
        *pos = p + 1;
        // Release: our copy out of the slot happens-before the producer's
        // Acquire load of `head` that lets it overwrite the slot.
        ctl.head.store(*pos, Ordering::Release);
    }
    Ok(())
}

/// The ring's producer (child): `count` messages from position `pos`.
fn produce(
    region: &Region,
    pos: &mut u64,
    count: u64,
    msg: &mut [u8],
    peer: &Peer,
) -> Result<(), String> {
    let ctl = region.ctl();
    // Acquire: as below.
    let mut cached_head = ctl.head.load(Ordering::Acquire);
    for _ in 0..count {
        let p = *pos;
        if p - cached_head == region.slots {
            // Acquire: pairs with the consumer's Release store of `head`,
            // so its copy out of the slot we overwrite happened before.
            spin_until(
                || {
                    cached_head = ctl.head.load(Ordering::Acquire);
                    p - cached_head < region.slots
                },
                peer,
            )?;
        }
        stamp(msg, p);
        let (stamp_word, payload) = region.slot(p);
        // SAFETY: the consumer is past this slot's last message (`head`,
        // Acquire) and reads it again only after the stamp below.
        unsafe { copy(msg.as_ptr(), payload, region.size) };
        // Release: our copy into the slot happens-before the consumer's
        // Acquire load that sees this stamp.
        stamp_word.store(p + 1, Ordering::Release);
        *pos = p + 1;
    }
    Ok(())
}

/// The child: serves commands until `OP_EXIT`.
fn child(region: &Region, peer: &Peer) -> Result<(), String> {
    let ctl = region.ctl();
    let mut seen = 0u32;
    let mut pos = 0u64;
    let mut mine = vec![0u8; region.size];
    loop {
        // Acquire: pairs with the parent's Release store of `cmd_seq`, so
        // the command's words are visible.
        spin_until(|| ctl.cmd_seq.load(Ordering::Acquire) != seen, peer)?;
        seen = ctl.cmd_seq.load(Ordering::Relaxed);
        // Relaxed: ordered by the Acquire load of `cmd_seq` above.
        let count = ctl.cmd_count.load(Ordering::Relaxed);
        match ctl.cmd_op.load(Ordering::Relaxed) {
            OP_RTT => {
                // Relaxed: our own last store (or zero).
                let base = ctl.pong.load(Ordering::Relaxed);
                for i in 1..=count {
                    let v = base + i;
                    // Acquire: pairs with the parent's Release store of
                    // `ping`, so its copy into buffer 0 is visible.
                    spin_until(|| ctl.ping.load(Ordering::Acquire) == v, peer)?;
                    // SAFETY: buffer 0 holds message `v`, and the parent
                    // writes it again only after our reply; buffer 1 is
                    // ours until the Release store below (the parent
                    // reads it after seeing `v`).
                    unsafe {
                        copy(region.buf(0), mine.as_mut_ptr(), region.size);
                        copy(mine.as_ptr(), region.buf(1), region.size);
                    }
                    // Release: our copy into buffer 1 happens-before the
                    // parent's Acquire load that sees `v`.
                    ctl.pong.store(v, Ordering::Release);
                }
            }
            OP_STREAM => produce(region, &mut pos, count, &mut mine, peer)?,
            OP_EXIT => return Ok(()),
            op => return Err(format!("unknown command {op}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_s_buffers_and_slots_do_not_overlap_and_fit() {
        for (size, slots) in [(64, 2), (100, 3), (1024, 64), (65536, 4)] {
            let r = Region::new(size, slots).unwrap();
            let end = r.base as usize + r.len;
            let ctl_end = r.base as usize + std::mem::size_of::<Ctl>();
            let mut spans = vec![
                (r.base as usize, ctl_end),
                (r.buf(0) as usize, r.buf(0) as usize + size),
                (r.buf(1) as usize, r.buf(1) as usize + size),
            ];
            for p in 0..slots {
                let (s, payload) = r.slot(p);
                let s = s as *const AtomicU64 as usize;
                assert_eq!(s % 64, 0);
                spans.push((s, s + 8));
                spans.push((payload as usize, payload as usize + size));
            }
            // Position `slots` is slot 0 again.
            assert!(std::ptr::eq(r.slot(slots).0, r.slot(0).0));
            spans.sort_unstable();
            for w in spans.windows(2) {
                assert!(w[0].1 <= w[1].0, "{size} × {slots}: {w:?} overlap");
            }
            assert!(spans.last().unwrap().1 <= end);
        }
    }

    #[test]
    fn stamps_say_which_message() {
        for size in [1, 7, 8, 64, 1024] {
            let mut m = vec![0u8; size];
            stamp(&mut m, 0x0102_0304_0506_0708);
            assert!(stamped(&m, 0x0102_0304_0506_0708));
            assert!(!stamped(&m, 0x0102_0304_0506_0709));
        }
    }
}
