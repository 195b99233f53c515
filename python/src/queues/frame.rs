//! The message format of `put` / `send`: a pickle (protocol 5) and its
//! out-of-band buffers, laid out in one byte message.
//!
//! - Without out-of-band buffers, the message is the pickle itself (as
//!   `multiprocessing` sends it: `recv_bytes` of a `send`-ed object returns
//!   its pickle, and `recv` unpickles what `send_bytes` sent).
//! - With buffers, a frame that no pickle can start with (a pickle's first
//!   byte is the PROTO opcode 0x80):
//!
//! ```text
//! 0   MAGIC (8 bytes, starts with 0xff)
//! 8   n: u32 (buffers), 0u32
//! 16  pickle length: u64
//! 24  n buffer lengths: u64 each
//! ..  the pickle, then each buffer at an offset rounded up to 16
//! ```
//!
//! Everything is little-endian. A frame read from shared memory is
//! untrusted: every length and offset is checked against the message's
//! length before use, and a frame that does not add up is `CorruptedError`.

/// First bytes of a frame with out-of-band buffers.
pub(crate) const MAGIC: [u8; 8] = *b"\xffSHMOOB1";
/// Buffers start at offsets rounded up to this.
const ALIGN: usize = 16;
/// At most this many out-of-band buffers per message (a frame's header
/// must fit in any message).
pub(crate) const MAX_BUFFERS: usize = 1 << 16;

fn align_up(n: usize) -> Option<usize> {
    Some(n.checked_add(ALIGN - 1)? & !(ALIGN - 1))
}

/// The length of the message for a pickle of `pickle` bytes and buffers of
/// `bufs` bytes (`None`: overflows).
pub(crate) fn frame_len(pickle: usize, bufs: &[usize]) -> Option<usize> {
    if bufs.is_empty() {
        return Some(pickle);
    }
    let mut at = 24usize.checked_add(bufs.len().checked_mul(8)?)?;
    at = at.checked_add(pickle)?;
    for &b in bufs {
        at = align_up(at)?.checked_add(b)?;
    }
    Some(at)
}

/// Writes the message of `pickle` and `bufs` into `dst`, which is exactly
/// [`frame_len`] bytes long.
pub(crate) fn write(dst: &mut [u8], pickle: &[u8], bufs: &[&[u8]]) {
    if bufs.is_empty() {
        dst.copy_from_slice(pickle);
        return;
    }
    dst[..8].copy_from_slice(&MAGIC);
    dst[8..12].copy_from_slice(&(bufs.len() as u32).to_le_bytes());
    dst[12..16].copy_from_slice(&0u32.to_le_bytes());
    dst[16..24].copy_from_slice(&(pickle.len() as u64).to_le_bytes());
    let mut at = 24;
    for b in bufs {
        dst[at..at + 8].copy_from_slice(&(b.len() as u64).to_le_bytes());
        at += 8;
    }
    dst[at..at + pickle.len()].copy_from_slice(pickle);
    at += pickle.len();
    for b in bufs {
        let start = (at + ALIGN - 1) & !(ALIGN - 1);
        dst[at..start].fill(0);
        dst[start..start + b.len()].copy_from_slice(b);
        at = start + b.len();
    }
}

/// Where the parts of a received message are.
pub(crate) struct Parts {
    /// The pickle.
    pub pickle: std::ops::Range<usize>,
    /// Each out-of-band buffer.
    pub bufs: Vec<std::ops::Range<usize>>,
}

/// Splits a received message into its pickle and buffers.
///
/// # Errors
/// A description of what does not add up (the caller raises
/// `CorruptedError`).
pub(crate) fn parse(msg: &[u8]) -> Result<Parts, &'static str> {
    if msg.len() < 8 || msg[..8] != MAGIC {
        return Ok(Parts {
            pickle: 0..msg.len(),
            bufs: Vec::new(),
        });
    }
    let u64_at = |at: usize| -> Result<usize, &'static str> {
        let b = msg.get(at..at + 8).ok_or("frame header cut short")?;
        let v = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        usize::try_from(v).map_err(|_| "frame length beyond the address space")
    };
    let n_bytes = msg.get(8..12).ok_or("frame header cut short")?;
    let n = u32::from_le_bytes(n_bytes.try_into().expect("4 bytes")) as usize;
    if n == 0 || n > MAX_BUFFERS {
        return Err("frame with a bad buffer count");
    }
    let pickle_len = u64_at(16)?;
    let mut lens = Vec::with_capacity(n);
    for i in 0..n {
        lens.push(u64_at(24 + 8 * i)?);
    }
    let header = 24 + 8 * n;
    let pickle_end = header
        .checked_add(pickle_len)
        .filter(|&e| e <= msg.len())
        .ok_or("frame's pickle runs past the message")?;
    let mut at = pickle_end;
    let mut bufs = Vec::with_capacity(n);
    for len in lens {
        let start = align_up(at).ok_or("frame offset overflows")?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= msg.len())
            .ok_or("frame's buffer runs past the message")?;
        bufs.push(start..end);
        at = end;
    }
    if at != msg.len() {
        return Err("frame shorter than its message");
    }
    Ok(Parts {
        pickle: header..pickle_end,
        bufs,
    })
}
