//! The shmring transports' rows: one forked child per (transport, mode,
//! size) serving commands over a [`Link`], the parent timing round trips and
//! one-way throughput through it, copying (`send` / `recv`) and, for shared
//! memory, with loans (`loan` + commit, `recv_ref`).

use crate::sys::{self, Forked, Peer};
use crate::types::{new_histogram, Config, Failure, Latency, Mode, Row};
use crate::{floor, report};
use shmring::transport::{
    BoxedTransport, Link, LinkOptions, ShmTransport, Transport, TransportError, TransportKind,
};
use std::time::{Duration, Instant};

pub(crate) const OP_RTT: u64 = 1;
pub(crate) const OP_STREAM: u64 = 2;
const OP_LOAN_RTT: u64 = 3;
const OP_LOAN_STREAM: u64 = 4;
pub(crate) const OP_EXIT: u64 = 5;
/// Commands are 16 bytes: op, count (little-endian u64s).
pub(crate) const CMD_LEN: usize = 16;

fn terr(what: &str, e: TransportError) -> String {
    format!("{what}: {e}")
}

/// Sends `msg`: blocking, or `try_send` in a loop (spin).
#[inline(always)]
pub(crate) fn send<T: Transport + ?Sized>(
    t: &mut T,
    spin: bool,
    msg: &[u8],
    peer: &Peer,
) -> Result<(), String> {
    if !spin {
        return t.send(msg).map_err(|e| terr("send", e));
    }
    let mut spins = 0u32;
    loop {
        match t.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TransportError::WouldBlock) => {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 20) {
                    peer.check()?;
                }
            }
            Err(e) => return Err(terr("send", e)),
        }
    }
}

/// Receives into `buf`: blocking, or `try_recv` in a loop (spin).
#[inline(always)]
fn recv<T: Transport + ?Sized>(
    t: &mut T,
    spin: bool,
    buf: &mut Vec<u8>,
    peer: &Peer,
) -> Result<usize, String> {
    if !spin {
        return t.recv(buf).map_err(|e| terr("recv", e));
    }
    let mut spins = 0u32;
    loop {
        match t.try_recv(buf) {
            Ok(n) => return Ok(n),
            Err(TransportError::WouldBlock) => {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 20) {
                    peer.check()?;
                }
            }
            Err(e) => return Err(terr("recv", e)),
        }
    }
}

/// Writes `seq` into the first (up to) 8 bytes of `msg`.
#[inline(always)]
pub(crate) fn stamp(msg: &mut [u8], seq: u64) {
    let b = seq.to_le_bytes();
    // One word store when it fits (no `memcpy` call per message), as the
    // floor writes its slots.
    match msg.first_chunk_mut::<8>() {
        Some(w) => *w = b,
        None => {
            let n = msg.len();
            msg.copy_from_slice(&b[..n]);
        }
    }
}

/// Whether `msg` is `size` bytes and carries `seq`.
#[inline(always)]
pub(crate) fn stamped(msg: &[u8], size: usize, seq: u64) -> bool {
    if msg.len() != size {
        return false;
    }
    // One word compare when it fits (no `memcmp` call per message), as the
    // floor checks its slot values.
    match msg.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w) == seq,
        None => read_seq(msg) == seq & ((1u64 << (8 * size)) - 1),
    }
}

pub(crate) fn read_seq(msg: &[u8]) -> u64 {
    if let Some(w) = msg.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    let mut b = [0u8; 8];
    b[..msg.len()].copy_from_slice(msg);
    u64::from_le_bytes(b)
}

pub(crate) fn command(op: u64, count: u64) -> [u8; CMD_LEN] {
    let mut c = [0u8; CMD_LEN];
    c[..8].copy_from_slice(&op.to_le_bytes());
    c[8..].copy_from_slice(&count.to_le_bytes());
    c
}

/// One end of a link: the concrete shm type (for loans), or any transport.
// One per measurement, on the stack: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum End {
    Shm(ShmTransport),
    Other(BoxedTransport),
}

/// Slots per direction for `size`-byte messages: as many as the floor's
/// ring ([`floor::RING`]) for messages of up to 32 bytes, so that the
/// small-message rows and the floor they are compared with absorb the same
/// bursts; above that, 8 MiB of slots, at most 1024 and at least 4 (as the
/// criterion benches size theirs). A ring of 64 × 1 KiB streamed 1 KiB
/// messages 4–10× slower than one of 1024 on the 2-vCPU test machine,
/// copying queue and bare `xcopy` ring alike (docs/benchmarks.md).
pub(crate) fn capacity_for(size: usize) -> u64 {
    if size <= 32 {
        return u64::from(floor::RING);
    }
    ((8usize << 20) / size).clamp(4, 1024).next_power_of_two() as u64
}

/// Measures one transport in one mode at one size: the copy row, and for
/// shm the loan row.
pub fn measure(
    cfg: &Config,
    kind: TransportKind,
    mode: Mode,
    size: usize,
) -> Result<Vec<Row>, Failure> {
    let label = format!(
        "{} {} {}",
        kind.name(),
        mode.name(),
        report::human_size(size)
    );
    let opts = LinkOptions {
        max_message_size: size.max(CMD_LEN),
        capacity: capacity_for(size),
        fifo_dir: None,
        // The shared-memory rows measure the opt-in Fast protocol (no
        // fence per message); `--strict` measures the default.
        wake_mode: cfg.wake_mode,
    };
    let link = Link::new(kind, &opts)
        .map_err(|e| Failure::Run(format!("{label}: making the link: {e}")))?;
    let spin = mode == Mode::Spin;
    match sys::fork().map_err(|e| Failure::Run(format!("fork: {e}")))? {
        Forked::Child => sys::child_main(&label, cfg.cpus.1, cfg.timeout, |peer| {
            let end = if kind.is_shm() {
                End::Shm(link.right_shm().map_err(|e| terr("attaching", e))?)
            } else {
                End::Other(link.right().map_err(|e| terr("attaching", e))?)
            };
            serve(end, spin, size, peer)
        }),
        Forked::Parent(child) => {
            // A failure names the child's end if it died.
            let run = |e: String| match child.check_alive() {
                Ok(()) => Failure::Run(format!("{label}: {e}")),
                Err(dead) => Failure::Run(format!("{label}: {e} ({dead})")),
            };
            let peer = Peer::Child(&child);
            let mut end = if kind.is_shm() {
                End::Shm(link.left_shm().map_err(|e| run(terr("attaching", e)))?)
            } else {
                End::Other(link.left().map_err(|e| run(terr("attaching", e)))?)
            };
            let mut rows = Vec::new();
            match &mut end {
                End::Shm(t) => {
                    if !spin {
                        t.set_spin(Duration::ZERO);
                    }
                    rows.push(client(cfg, t, spin, size, &peer).map_err(run)?);
                    rows.push(loan_client(cfg, t, spin, size, &peer).map_err(run)?);
                    send(t, spin, &command(OP_EXIT, 0), &peer).map_err(run)?;
                }
                End::Other(t) => {
                    rows.push(client(cfg, t.as_mut(), spin, size, &peer).map_err(run)?);
                    send(t.as_mut(), spin, &command(OP_EXIT, 0), &peer).map_err(run)?;
                }
            }
            drop(end);
            child
                .reap()
                .map_err(|e| Failure::Run(format!("{label}: {e}")))?;
            for r in &mut rows {
                r.transport = kind.name().into();
                r.mode = mode;
                r.size = size;
            }
            Ok(rows)
        }
    }
}

/// Times round trips, then one-way throughput (copying `send` / `recv`).
pub(crate) fn client<T: Transport + ?Sized>(
    cfg: &Config,
    t: &mut T,
    spin: bool,
    size: usize,
    peer: &Peer,
) -> Result<Row, String> {
    let n = cfg.rtt_iterations(size);
    let warm = cfg.warmup(n);
    let mut out = vec![0xa5u8; size];
    let mut buf = Vec::with_capacity(size.max(CMD_LEN));
    let mut hist = new_histogram();
    send(t, spin, &command(OP_RTT, warm + n), peer)?;
    for i in 0..warm + n {
        stamp(&mut out, i);
        let t0 = Instant::now();
        send(t, spin, &out, peer)?;
        recv(t, spin, &mut buf, peer)?;
        let dt = t0.elapsed();
        if !stamped(&buf, size, i) {
            return Err(format!("round trip {i}: a wrong reply came back"));
        }
        if i >= warm {
            hist.saturating_record(dt.as_nanos() as u64);
        }
    }
    let mut stream = |count: u64| -> Result<Duration, String> {
        send(t, spin, &command(OP_STREAM, count), peer)?;
        let t0 = Instant::now();
        for i in 0..count {
            recv(t, spin, &mut buf, peer)?;
            if !stamped(&buf, size, i) {
                return Err(format!("stream message {i}: wrong length or content"));
            }
        }
        Ok(t0.elapsed())
    };
    let n0 = cfg.calibration_messages();
    let d0 = stream(n0)?;
    let count = cfg.stream_messages(n0, d0);
    let d = stream(count)?;
    Ok(Row::new(
        Latency::from_histogram(&hist),
        count as f64 / d.as_secs_f64(),
    ))
}

/// Loans a `size`-byte message, stamps its header, commits.
#[inline(always)]
fn loan_send(
    t: &mut ShmTransport,
    spin: bool,
    size: usize,
    seq: u64,
    peer: &Peer,
) -> Result<(), String> {
    let tx = t.sender();
    if !spin {
        let mut l = tx.loan(size).map_err(|e| format!("loan: {e}"))?;
        stamp(&mut l, seq);
        l.commit();
        return Ok(());
    }
    let mut spins = 0u32;
    loop {
        match tx.try_loan(size) {
            Ok(mut l) => {
                stamp(&mut l, seq);
                l.commit();
                return Ok(());
            }
            Err(shmring::error::ByteSendError::Full) => {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 20) {
                    peer.check()?;
                }
            }
            Err(e) => return Err(format!("loan: {e}")),
        }
    }
}

/// Takes the next message in place and reads its header (and length).
#[inline(always)]
fn ref_recv(t: &mut ShmTransport, spin: bool, peer: &Peer) -> Result<(usize, u64), String> {
    let rx = t.receiver();
    if !spin {
        let r = rx.recv_ref().map_err(|e| format!("recv_ref: {e}"))?;
        return Ok((r.len(), read_seq(&r)));
    }
    let mut spins = 0u32;
    loop {
        match rx.try_recv_ref() {
            Ok(r) => return Ok((r.len(), read_seq(&r))),
            Err(shmring::error::TryRecvError::Empty) => {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 20) {
                    peer.check()?;
                }
            }
            Err(e) => return Err(format!("recv_ref: {e}")),
        }
    }
}

/// As [`client`] with loans: `loan` + commit out, `recv_ref` in.
fn loan_client(
    cfg: &Config,
    t: &mut ShmTransport,
    spin: bool,
    size: usize,
    peer: &Peer,
) -> Result<Row, String> {
    let n = cfg.rtt_iterations(size);
    let warm = cfg.warmup(n);
    let mask = if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    };
    let mut hist = new_histogram();
    send(t, spin, &command(OP_LOAN_RTT, warm + n), peer)?;
    for i in 0..warm + n {
        let t0 = Instant::now();
        loan_send(t, spin, size, i, peer)?;
        let (len, seq) = ref_recv(t, spin, peer)?;
        let dt = t0.elapsed();
        if len != size || seq != i & mask {
            return Err(format!("loan round trip {i}: a wrong reply came back"));
        }
        if i >= warm {
            hist.saturating_record(dt.as_nanos() as u64);
        }
    }
    let mut stream = |count: u64| -> Result<Duration, String> {
        send(t, spin, &command(OP_LOAN_STREAM, count), peer)?;
        let t0 = Instant::now();
        for i in 0..count {
            let (len, seq) = ref_recv(t, spin, peer)?;
            if len != size || seq != i & mask {
                return Err(format!(
                    "loaned stream message {i}: wrong length or content"
                ));
            }
        }
        Ok(t0.elapsed())
    };
    let n0 = cfg.calibration_messages();
    let d0 = stream(n0)?;
    let count = cfg.stream_messages(n0, d0);
    let d = stream(count)?;
    let mut row = Row::new(
        Latency::from_histogram(&hist),
        count as f64 / d.as_secs_f64(),
    );
    row.loan = true;
    Ok(row)
}

/// The child's side: serves commands until `OP_EXIT`.
pub(crate) fn serve(mut end: End, spin: bool, size: usize, peer: &Peer) -> Result<(), String> {
    if let (End::Shm(t), false) = (&mut end, spin) {
        t.set_spin(Duration::ZERO);
    }
    let mut buf = Vec::with_capacity(size.max(CMD_LEN));
    let mut out = vec![0x5au8; size];
    loop {
        let cmd = match &mut end {
            End::Shm(t) => recv(t, spin, &mut buf, peer)?,
            End::Other(t) => recv(t.as_mut(), spin, &mut buf, peer)?,
        };
        if cmd != CMD_LEN {
            return Err(format!("expected a command, got {cmd} bytes"));
        }
        let op = read_seq(&buf[..8]);
        let count = read_seq(&buf[8..]);
        match (op, &mut end) {
            (OP_EXIT, _) => return Ok(()),
            (OP_RTT, End::Shm(t)) => echo(t, spin, count, &mut buf, peer)?,
            (OP_RTT, End::Other(t)) => echo(t.as_mut(), spin, count, &mut buf, peer)?,
            (OP_STREAM, End::Shm(t)) => produce(t, spin, count, &mut out, peer)?,
            (OP_STREAM, End::Other(t)) => produce(t.as_mut(), spin, count, &mut out, peer)?,
            (OP_LOAN_RTT, End::Shm(t)) => {
                for _ in 0..count {
                    // The request is released before the reply is loaned:
                    // `ShmTransport` lends its sender and receiver one at a
                    // time.
                    let (len, seq) = ref_recv(t, spin, peer)?;
                    if len != size {
                        return Err(format!("loaned request of {len} bytes, expected {size}"));
                    }
                    loan_send(t, spin, size, seq, peer)?;
                }
            }
            (OP_LOAN_STREAM, End::Shm(t)) => {
                for i in 0..count {
                    loan_send(t, spin, size, i, peer)?;
                }
            }
            (op, _) => return Err(format!("unknown command {op}")),
        }
    }
}

fn echo<T: Transport + ?Sized>(
    t: &mut T,
    spin: bool,
    count: u64,
    buf: &mut Vec<u8>,
    peer: &Peer,
) -> Result<(), String> {
    for _ in 0..count {
        recv(t, spin, buf, peer)?;
        send(t, spin, buf, peer)?;
    }
    Ok(())
}

fn produce<T: Transport + ?Sized>(
    t: &mut T,
    spin: bool,
    count: u64,
    out: &mut [u8],
    peer: &Peer,
) -> Result<(), String> {
    for i in 0..count {
        stamp(out, i);
        send(t, spin, out, peer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{capacity_for, read_seq, stamp, stamped};

    #[test]
    fn rings_hold_1024_small_slots_else_8_mib_of_slots_at_most_1024_at_least_4() {
        for size in [1, 8, 32] {
            assert_eq!(capacity_for(size), 1024, "{size}");
        }
        for (size, slots) in [
            (33, 1024),
            (1 << 10, 1024),
            (8 << 10, 1024),
            (16 << 10, 512),
            (64 << 10, 128),
            (1 << 20, 8),
            (2 << 20, 4),
            (16 << 20, 4),
        ] {
            assert_eq!(capacity_for(size), slots, "{size}");
        }
    }

    #[test]
    fn stamps_round_trip_at_every_small_size() {
        for size in 1..=24usize {
            let mut msg = vec![0xa5u8; size];
            let seq = 0x0102_0304_0506_0708u64;
            stamp(&mut msg, seq);
            let n = size.min(8);
            let want = if n == 8 {
                seq
            } else {
                seq & ((1u64 << (8 * n)) - 1)
            };
            assert_eq!(read_seq(&msg), want, "size {size}");
            assert!(stamped(&msg, size, seq), "size {size}");
            assert!(!stamped(&msg, size, seq ^ 1), "size {size}: wrong seq");
            assert!(!stamped(&msg[..size - 1], size, seq), "size {size}: short");
            // Bytes past the stamp are the caller's.
            assert!(msg[n..].iter().all(|&b| b == 0xa5), "size {size}");
        }
    }
}
