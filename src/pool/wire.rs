//! What travels between a pool's parent and its workers: the framing of
//! tasks and results into byte-queue messages, the control blocks in shared
//! memory, and the worker's start-up description (an environment variable).
//!
//! A *logical message* is a task (`seq u64`, `task id u64`, encoded input)
//! or a result (`seq u64`, `status u8`, encoded output or error text). It
//! travels as one frame when it fits a slot, else as a run of frames:
//!
//! ```text
//! WHOLE  [1][message ...]                        the whole message
//! FIRST  [2][total u64][first part ...]          the start of a long one
//! MORE   [3][next part ...]                      its continuation(s)
//! ```
//!
//! Every queue is SPSC and has one sender, so the frames of one message are
//! never interleaved with another's: the receiver appends MORE frames until
//! it holds `total` bytes. Lengths read from a frame are checked against the
//! pool's maximum payload before anything is allocated.

use crate::shared::ShmSafe;
use crate::wait::WaitCell;
use std::sync::atomic::AtomicU64;

/// Frame tag: a whole logical message.
pub(super) const WHOLE: u8 = 1;
/// Frame tag: the first part of a long message, with its total length.
pub(super) const FIRST: u8 = 2;
/// Frame tag: a continuation of a long message.
pub(super) const MORE: u8 = 3;

/// A task's header: `seq`, task id.
pub(super) const TASK_HDR: usize = 16;
/// A result's header: `seq`, status.
pub(super) const RESULT_HDR: usize = 9;

/// Result status: the payload is the encoded output.
pub(super) const OK: u8 = 0;
/// Result status: the function panicked; the payload is the message.
pub(super) const PANICKED: u8 = 1;
/// Result status: no task of that id is registered in the worker.
pub(super) const UNREGISTERED: u8 = 2;
/// Result status: the input did not decode or the output did not encode.
pub(super) const FAILED: u8 = 3;

/// The environment variable that makes a re-executed program a worker.
pub(super) const WORKER_ENV: &str = "SHMRING_POOL_WORKER";

/// Layout version of this file's formats (checked by the worker).
pub(super) const WIRE_VERSION: u32 = 1;

/// A worker's control block (its own anonymous segment).
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct WorkerCtl {
    /// The `seq` of the last task whose function the worker started (0:
    /// none). Stored (Release) before the function is called; the parent
    /// reads it (Acquire) only after the worker is reaped, so it names
    /// exactly the task a dead worker was running.
    pub started: AtomicU64,
    /// Non-zero once the worker has attached its queue endpoints.
    pub ready: AtomicU64,
}

// SAFETY: repr(C), two atomics: no pointers, every bit pattern valid.
unsafe impl ShmSafe for WorkerCtl {}

/// The pool's doorbell (one anonymous segment, shared by every worker):
/// the parent's supervisor sleeps on it when it has nothing to do; a
/// worker rings it after each result (and after taking each part of a
/// long task, which frees room for the next).
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Doorbell {
    /// The wait cell: announce / re-check / sleep, as every queue waits.
    pub cell: WaitCell,
}

// SAFETY: repr(C); a WaitCell is two atomics (outside loom builds, and the
// pool exists only outside them): no pointers, every bit pattern valid (a
// scribbled count costs a useless or a missed wake, and every sleep is
// bounded by a liveness slice).
unsafe impl ShmSafe for Doorbell {}

/// What a worker needs to start, passed in [`WORKER_ENV`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct WorkerSpec {
    /// The parent's pid: the worker leaves if its parent is another.
    pub parent: u32,
    /// The worker's slot in the pool (for messages only).
    pub slot: u32,
    /// Inherited fds: task queue, result queue, control block, doorbell.
    pub fds: [i32; 4],
    /// The registry's fingerprint in the parent: the worker must have the
    /// same tasks under the same ids.
    pub registry: u64,
    /// The largest logical message, in bytes.
    pub max_payload: u64,
}

impl WorkerSpec {
    /// The variable's value.
    pub fn encode(&self) -> String {
        format!(
            "{WIRE_VERSION}:{}:{}:{}:{}:{}:{}:{:016x}:{}",
            self.parent,
            self.slot,
            self.fds[0],
            self.fds[1],
            self.fds[2],
            self.fds[3],
            self.registry,
            self.max_payload
        )
    }

    /// Parses the variable's value.
    pub fn decode(s: &str) -> Result<WorkerSpec, String> {
        let p: Vec<&str> = s.split(':').collect();
        if p.len() != 9 {
            return Err(format!("malformed {WORKER_ENV}={s:?}"));
        }
        let num = |i: usize| -> Result<u64, String> {
            p[i].parse::<u64>()
                .map_err(|_| format!("malformed field {i} of {WORKER_ENV}={s:?}"))
        };
        if num(0)? != u64::from(WIRE_VERSION) {
            return Err(format!(
                "{WORKER_ENV} has wire version {}, this build {WIRE_VERSION}",
                p[0]
            ));
        }
        let fd = |i: usize| -> Result<i32, String> {
            i32::try_from(num(i)?).map_err(|_| format!("bad fd in {WORKER_ENV}={s:?}"))
        };
        Ok(WorkerSpec {
            parent: u32::try_from(num(1)?).map_err(|_| "bad parent pid".to_string())?,
            slot: u32::try_from(num(2)?).map_err(|_| "bad slot".to_string())?,
            fds: [fd(3)?, fd(4)?, fd(5)?, fd(6)?],
            registry: u64::from_str_radix(p[7], 16)
                .map_err(|_| format!("bad registry fingerprint in {WORKER_ENV}={s:?}"))?,
            max_payload: num(8)?,
        })
    }
}

/// The frame for bytes `off..off + n` of the logical message `head ++ body`
/// (the head is a task's or a result's header), written into `out`:
/// returns the frame's length. `out` must hold it (see [`frame_len`]).
pub(super) fn write_frame(head: &[u8], body: &[u8], off: usize, n: usize, out: &mut [u8]) -> usize {
    let total = head.len() + body.len();
    let mut at = if off == 0 && n == total {
        out[0] = WHOLE;
        1
    } else if off == 0 {
        out[0] = FIRST;
        out[1..9].copy_from_slice(&(total as u64).to_le_bytes());
        9
    } else {
        out[0] = MORE;
        1
    };
    let (mut from, end) = (off, off + n);
    while from < end {
        let (src, base) = if from < head.len() {
            (head, 0)
        } else {
            (body, head.len())
        };
        let stop = end.min(base + src.len());
        let k = stop - from;
        out[at..at + k].copy_from_slice(&src[from - base..stop - base]);
        at += k;
        from = stop;
    }
    at
}

/// How many bytes of a `total`-byte message starting at `off` the next
/// frame carries, with slots of `slot` bytes; and that frame's length.
pub(super) fn frame_len(total: usize, off: usize, slot: usize) -> (usize, usize) {
    let left = total - off;
    if off == 0 && left < slot {
        (left, left + 1)
    } else if off == 0 {
        let n = left.min(slot - 9);
        (n, n + 9)
    } else {
        let n = left.min(slot - 1);
        (n, n + 1)
    }
}

/// A long message being reassembled from its frames.
#[derive(Debug, Default)]
pub(super) struct Assembly {
    buf: Vec<u8>,
    total: usize,
}

/// What a frame amounted to.
#[derive(Debug)]
pub(super) enum Frame<'a> {
    /// A whole message, in place.
    Whole(&'a [u8]),
    /// The last part of a long message: here it is, whole.
    Done(Vec<u8>),
    /// A part of a long message; more follow.
    Partial,
}

impl Assembly {
    /// Whether a long message is in progress.
    pub fn in_progress(&self) -> bool {
        self.total != 0
    }

    /// Takes one frame. Errors are protocol violations (a peer that is
    /// buggy, hostile or scribbled on): the caller treats the peer as
    /// broken.
    pub fn take<'a>(&mut self, frame: &'a [u8], max: usize) -> Result<Frame<'a>, &'static str> {
        let (&tag, rest) = frame.split_first().ok_or("empty frame")?;
        match (tag, self.in_progress()) {
            (WHOLE, false) => Ok(Frame::Whole(rest)),
            (FIRST, false) => {
                let (len, part) = rest.split_at_checked(8).ok_or("short FIRST frame")?;
                let total = u64::from_le_bytes(len.try_into().expect("8 bytes"));
                let total = usize::try_from(total).map_err(|_| "length out of range")?;
                if total > max || total <= part.len() {
                    return Err("long message length out of range");
                }
                self.buf = Vec::with_capacity(total);
                self.buf.extend_from_slice(part);
                self.total = total;
                Ok(Frame::Partial)
            }
            (MORE, true) => {
                if self.buf.len() + rest.len() > self.total {
                    return Err("continuation past the announced length");
                }
                self.buf.extend_from_slice(rest);
                if self.buf.len() == self.total {
                    let whole = std::mem::take(&mut self.buf);
                    self.total = 0;
                    Ok(Frame::Done(whole))
                } else {
                    Ok(Frame::Partial)
                }
            }
            _ => Err("frame out of sequence"),
        }
    }
}

/// A postcard output that appends to a `Vec` (postcard's own needs its
/// `alloc` feature, which the library does not enable).
pub(super) struct VecOut<'a>(pub &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecOut<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value`, encoded with postcard, to `out`.
pub(super) fn encode_into<V: serde::Serialize + ?Sized>(
    value: &V,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, VecOut(out))
}

/// FNV-1a, 64 bits: task ids and the registry's fingerprint.
pub(super) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let head = [7u8; TASK_HDR];
        for len in [0usize, 1, 5, 30, 31, 32, 100, 1000] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let total = head.len() + body.len();
            let slot = 32;
            let mut asm = Assembly::default();
            let mut off = 0;
            let mut got = None;
            while off < total {
                let (n, flen) = frame_len(total, off, slot);
                assert!(flen <= slot);
                let mut f = vec![0u8; flen];
                assert_eq!(write_frame(&head, &body, off, n, &mut f), flen);
                off += n;
                match asm.take(&f, 1 << 20).unwrap() {
                    Frame::Whole(w) => got = Some(w.to_vec()),
                    Frame::Done(w) => got = Some(w),
                    Frame::Partial => assert!(off < total),
                }
            }
            let mut want = head.to_vec();
            want.extend_from_slice(&body);
            assert_eq!(got.unwrap(), want);
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut asm = Assembly::default();
        assert!(asm.take(&[], 100).is_err());
        assert!(asm.take(&[MORE, 1], 100).is_err());
        let mut f = vec![FIRST];
        f.extend_from_slice(&(1000u64).to_le_bytes());
        assert!(asm.take(&f, 100).is_err(), "beyond the maximum");
        let mut f = vec![FIRST];
        f.extend_from_slice(&(10u64).to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        assert!(matches!(asm.take(&f, 100), Ok(Frame::Partial)));
        assert!(
            asm.take(&[WHOLE], 100).is_err(),
            "a whole frame mid-message"
        );
        assert!(
            asm.take(&[MORE, 0, 0, 0, 0, 0, 0, 0], 100).is_err(),
            "past the end"
        );
    }

    #[test]
    fn spec_round_trip() {
        let s = WorkerSpec {
            parent: 42,
            slot: 3,
            fds: [5, 6, 7, 8],
            registry: 0xdead_beef,
            max_payload: 1 << 30,
        };
        assert_eq!(WorkerSpec::decode(&s.encode()).unwrap(), s);
        assert!(WorkerSpec::decode("1:2").is_err());
    }
}
