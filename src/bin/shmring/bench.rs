//! `shmring bench`: every transport against the floor, between two real
//! processes pinned to separate CPUs.

use crate::report::{self, Latency, Row};
use crate::sys::{self, Forked, Peer};
use crate::{floor, plot, python};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmring::transport::{
    BoxedTransport, Link, LinkOptions, ShmTransport, Transport, TransportError, TransportKind,
};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The largest message size `--sizes` accepts.
pub const MAX_SIZE: usize = 16 << 20;

const AFTER_HELP: &str = "\
Every measurement forks a child process: the parent runs on the first CPU of
--cpus, the child on the second. Round trips (RTT) are timed one by one into
an HdrHistogram; throughput is one-way, child to parent, for about 200 ms
(30 ms with --quick) after a short calibration run.

Rows: `floor` spin is a busy-poll ping-pong through one shared cache line
(throughput: a minimal busy-poll ring); `floor` block is a raw futex
ping-pong (FUTEX_WAIT/FUTEX_WAKE on two shared words; throughput: the same
ring sleeping on a futex). Each floor is measured right before and right
after shm-spsc at 8 B in its mode (spin rows all come first); the lower is
kept, and a note says when the two differ by more than 25% (the machine's
state changed during the run). shm transports run in both modes (spin:
try_send/try_recv loops; block: spin 0, blocking send/recv); the kernel
transports and Python (`multiprocessing.Queue` and `Pipe`, through the
script shipped as scripts/bench_python.py, when python3 is on the PATH) in
mode block only. Ratios: p50 over the floor of the same mode and over
shm-spsc of the same mode and size; throughput likewise (higher is faster).

shm rows also come as loan rows (`loan` column: loan + commit in place,
recv_ref in place, only an 8-byte header written). Loan rows are in the
table and the plot but not in --json, whose lines carry exactly: transport,
mode, size, rtt_p50_ns, rtt_p99_ns, rtt_p999_ns, rtt_max_ns, msgs_per_s,
bytes_per_s.

Exit status: 0 done, 1 a measurement failed (a child died, the watchdog
fired), 2 bad arguments (or fewer than two CPUs).";

/// Options of `shmring bench`.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Transports to measure, comma-separated: floor, shm-spsc, shm-mpmc,
    /// pipe, fifo, unix, tcp, python-queue, python-pipe (the floor is always
    /// measured)
    #[arg(
        long,
        short = 't',
        value_delimiter = ',',
        value_parser = parse_target,
        default_value = "floor,shm-spsc,shm-mpmc,pipe,fifo,unix,tcp,python-queue,python-pipe",
        hide_default_value = true
    )]
    pub transports: Vec<Target>,

    /// Modes, comma-separated: spin (busy-poll), block (futex sleep); the
    /// kernel transports and Python run in block only
    #[arg(
        long,
        short = 'm',
        value_delimiter = ',',
        value_enum,
        default_value = "spin,block"
    )]
    pub modes: Vec<Mode>,

    /// Message sizes, comma-separated, in bytes or with a suffix
    /// (K/KiB = 1024, M/MiB = 1024²), 1 B to 16 MiB
    #[arg(long, short = 's', value_delimiter = ',', value_parser = parse_size, default_value = "8,1K,64K")]
    pub sizes: Vec<usize>,

    /// Round trips per measurement (default: 20,000 up to 4 KiB, 5,000 up
    /// to 256 KiB, 1,000 above; --quick: a tenth)
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub iterations: Option<u64>,

    /// A short run: the default matrix in well under a minute on 2 cores
    #[arg(long, short = 'q')]
    pub quick: bool,

    /// Print one JSON object per line (no table, no progress bar, no loan rows)
    #[arg(long)]
    pub json: bool,

    /// Draw latency percentile curves per transport into an SVG file
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// The two CPUs to pin the parent and the child to (default 0,1 or the
    /// first two this process may use)
    #[arg(long, value_name = "A,B", value_parser = parse_cpus)]
    pub cpus: Option<CpuPair>,

    /// Seconds one measurement may take before the watchdog ends the run
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// The Python interpreter for the python-* rows
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: String,

    /// Measure the shared-memory rows with the builders' default wake
    /// protocol, Strict (a fence per message), instead of the opt-in Fast
    /// (no fence per message; its sleepers interrupt every CPU running a
    /// registered process)
    #[arg(long)]
    pub strict: bool,
}

/// What one table row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The floor (busy-poll cache line / raw futex ping-pong).
    Floor,
    /// A shmring transport.
    Link(TransportKind),
    /// Python `multiprocessing.Queue`.
    PythonQueue,
    /// Python `multiprocessing.Pipe`.
    PythonPipe,
}

impl Target {
    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::Floor => "floor",
            Target::Link(k) => k.name(),
            Target::PythonQueue => "python-queue",
            Target::PythonPipe => "python-pipe",
        }
    }

    fn modes(self) -> &'static [Mode] {
        match self {
            Target::Floor => &[Mode::Spin, Mode::Block],
            Target::Link(k) if k.is_shm() => &[Mode::Spin, Mode::Block],
            _ => &[Mode::Block],
        }
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s.trim() {
        "floor" => Ok(Target::Floor),
        "python-queue" => Ok(Target::PythonQueue),
        "python-pipe" => Ok(Target::PythonPipe),
        other => other.parse().map(Target::Link).map_err(|_| {
            format!(
                "unknown transport {other:?} (known: floor, shm-spsc, shm-mpmc, pipe, fifo, \
                 unix, tcp, python-queue, python-pipe)"
            )
        }),
    }
}

/// Busy-poll or sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum Mode {
    /// Busy-poll: `try_send` / `try_recv` in a loop.
    Spin,
    /// Sleep in the kernel (shm: futex, spin 0).
    Block,
}

impl Mode {
    /// `spin` or `block`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Spin => "spin",
            Mode::Block => "block",
        }
    }
}

/// Parses `8`, `8B`, `1K`, `1KiB`, `64k`, `1M`, `1MiB`: 1 B to [`MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("bad size {s:?} (examples: 8, 1K, 64KiB, 1M)")),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (examples: 8, 1K, 64KiB, 1M)"))?;
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if size == 0 {
        return Err("a message size must be at least 1 byte".into());
    }
    if size > MAX_SIZE {
        return Err(format!(
            "size {s:?} ({size} bytes) is beyond the limit of 16 MiB ({MAX_SIZE} bytes)"
        ));
    }
    Ok(size)
}

/// Two distinct CPUs: the parent's and the child's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPair(pub usize, pub usize);

fn parse_cpus(s: &str) -> Result<CpuPair, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let cpu = |p: &str| {
        p.parse::<usize>()
            .map_err(|_| format!("bad CPU {p:?} in {s:?}: expected two CPU numbers, as in 0,1"))
    };
    match parts.as_slice() {
        [a, b] => {
            let (a, b) = (cpu(a)?, cpu(b)?);
            if a == b {
                Err(format!(
                    "--cpus names CPU {a} twice: the two processes need two different CPUs"
                ))
            } else {
                Ok(CpuPair(a, b))
            }
        }
        [_] => Err(format!(
            "--cpus {s:?} names one CPU: give two, the parent's and the child's, as in 0,1"
        )),
        _ => Err(format!("--cpus {s:?}: give exactly two CPUs, as in 0,1")),
    }
}

/// How a run failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or an unsuitable machine (exit status 2).
    Usage(String),
    /// A measurement failed (exit status 1).
    Run(String),
}

impl Failure {
    /// The exit status.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Run(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Run(m) => f.write_str(m),
        }
    }
}

/// Settings every measurement reads.
#[derive(Clone, Debug)]
pub struct Config {
    /// The parent's and the child's CPU.
    pub cpus: (usize, usize),
    /// `--quick`.
    pub quick: bool,
    /// `--iterations`.
    pub iterations: Option<u64>,
    /// Watchdog seconds per measurement.
    pub timeout: u64,
    /// The shared-memory rows' wake protocol.
    pub wake_mode: shmring::WakeMode,
}

impl Config {
    /// Round trips timed at `size`.
    pub fn rtt_iterations(&self, size: usize) -> u64 {
        if let Some(n) = self.iterations {
            return n;
        }
        let n = if size <= 4 << 10 {
            20_000
        } else if size <= 256 << 10 {
            5_000
        } else {
            1_000
        };
        if self.quick {
            n / 10
        } else {
            n
        }
    }

    /// Untimed round trips before the timed ones.
    pub fn warmup(&self, n: u64) -> u64 {
        (n / 10).clamp(50, 2_000)
    }

    /// Messages of the throughput calibration run.
    pub fn calibration_messages(&self) -> u64 {
        if self.quick {
            200
        } else {
            1_000
        }
    }

    /// How long a throughput run should take.
    pub fn stream_target(&self) -> Duration {
        Duration::from_millis(if self.quick { 30 } else { 200 })
    }

    /// Messages for a run of about [`stream_target`](Self::stream_target),
    /// given that `n0` took `d0`.
    pub fn stream_messages(&self, n0: u64, d0: Duration) -> u64 {
        let per = d0.as_secs_f64() / n0 as f64;
        let n = self.stream_target().as_secs_f64() / per.max(1e-10);
        (n as u64).clamp(n0, 200_000_000)
    }
}

/// A fresh histogram: 1 ns to an hour, 3 significant digits.
pub fn new_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("valid histogram bounds")
}

/// Busy-polls `cond`; every 2^20 failed polls checks that the peer lives.
#[inline(always)]
pub fn spin_until(mut cond: impl FnMut() -> bool, peer: &Peer) -> Result<(), String> {
    let mut spins = 0u32;
    while !cond() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 20) {
            peer.check()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Transports through a Link

const OP_RTT: u64 = 1;
const OP_STREAM: u64 = 2;
const OP_LOAN_RTT: u64 = 3;
const OP_LOAN_STREAM: u64 = 4;
const OP_EXIT: u64 = 5;
/// Commands are 16 bytes: op, count (little-endian u64s).
const CMD_LEN: usize = 16;

fn terr(what: &str, e: TransportError) -> String {
    format!("{what}: {e}")
}

/// Sends `msg`: blocking, or `try_send` in a loop (spin).
#[inline(always)]
fn send<T: Transport + ?Sized>(
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
fn stamp(msg: &mut [u8], seq: u64) {
    let b = seq.to_le_bytes();
    let n = msg.len().min(8);
    msg[..n].copy_from_slice(&b[..n]);
}

/// Whether `msg` is `size` bytes and carries `seq`.
#[inline(always)]
fn stamped(msg: &[u8], size: usize, seq: u64) -> bool {
    let b = seq.to_le_bytes();
    let n = size.min(8);
    msg.len() == size && msg[..n] == b[..n]
}

fn read_seq(msg: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = msg.len().min(8);
    b[..n].copy_from_slice(&msg[..n]);
    u64::from_le_bytes(b)
}

fn command(op: u64, count: u64) -> [u8; CMD_LEN] {
    let mut c = [0u8; CMD_LEN];
    c[..8].copy_from_slice(&op.to_le_bytes());
    c[8..].copy_from_slice(&count.to_le_bytes());
    c
}

/// One end of a link: the concrete shm type (for loans), or any transport.
// One per measurement, on the stack: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum End {
    Shm(ShmTransport),
    Other(BoxedTransport),
}

/// Slots per direction for `size`-byte messages: 64, fewer above 1 MiB
/// (at most 64 MiB of slots per direction).
fn capacity_for(size: usize) -> u64 {
    ((64usize << 20) / size.max(1))
        .clamp(2, 64)
        .next_power_of_two() as u64
}

/// Measures one transport in one mode at one size: the copy row, and for
/// shm the loan row.
fn measure_link(
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
fn client<T: Transport + ?Sized>(
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
fn serve(mut end: End, spin: bool, size: usize, peer: &Peer) -> Result<(), String> {
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

// ---------------------------------------------------------------------------
// The run

/// One measurement of the plan.
#[derive(Clone, Copy, Debug)]
struct Job {
    target: Target,
    mode: Mode,
    size: usize,
    /// The floor measured again at the end of the run.
    again: bool,
}

impl Job {
    fn label(&self) -> String {
        format!(
            "{} {} {}{}",
            self.target.name(),
            self.mode.name(),
            report::human_size(self.size),
            if self.again { " (again)" } else { "" }
        )
    }
}

/// Picks the two CPUs, or explains why there are not two.
fn choose_cpus(asked: Option<CpuPair>) -> Result<(usize, usize), Failure> {
    let allowed = sys::allowed_cpus()
        .map_err(|e| Failure::Run(format!("reading this process's CPU affinity: {e}")))?;
    let list = report::cpu_list(&allowed);
    if allowed.len() < 2 {
        return Err(Failure::Usage(format!(
            "shmring bench needs two CPUs, one for each process, and this process may run on \
             only one (CPU {list})"
        )));
    }
    match asked {
        None => Ok((allowed[0], allowed[1])),
        Some(CpuPair(a, b)) => {
            for c in [a, b] {
                if !allowed.contains(&c) {
                    return Err(Failure::Usage(format!(
                        "--cpus: CPU {c} is not online or not available to this process \
                         (available: {list})"
                    )));
                }
            }
            Ok((a, b))
        }
    }
}

/// Finds `prog` (a path, or a name looked up on the PATH).
fn find_program(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| exec(p))
}

/// `shmring bench`.
pub fn run(args: BenchArgs) -> Result<(), Failure> {
    let cpus = choose_cpus(args.cpus)?;
    let cfg = Config {
        cpus,
        quick: args.quick,
        iterations: args.iterations,
        timeout: args.timeout,
        wake_mode: if args.strict {
            shmring::WakeMode::Strict
        } else {
            shmring::WakeMode::Fast
        },
    };

    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut targets = args.transports.clone();
    if !targets.contains(&Target::Floor) {
        targets.push(Target::Floor);
    }
    targets.sort();
    targets.dedup();
    let mut modes = args.modes.clone();
    modes.sort();
    modes.dedup();

    let mut notes = Vec::new();
    notes.push(if args.strict {
        "shm rows: WakeMode::Strict, the builders' default (a fence per message)".to_string()
    } else {
        "shm rows: WakeMode::Fast, opt-in (no fence per message; --strict measures the default)"
            .to_string()
    });
    let python = find_program(&args.python);
    let wants_python = targets
        .iter()
        .any(|t| matches!(t, Target::PythonQueue | Target::PythonPipe));
    if wants_python && python.is_none() {
        let where_ = if args.python.contains('/') {
            "not found or not executable"
        } else {
            "not found on the PATH"
        };
        notes.push(format!(
            "{} {where_}: the python-queue and python-pipe rows are skipped",
            args.python
        ));
        targets.retain(|t| !matches!(t, Target::PythonQueue | Target::PythonPipe));
    }
    if !modes.contains(&Mode::Block)
        && targets.iter().any(|t| {
            !matches!(
                t,
                Target::Floor | Target::Link(TransportKind::ShmSpsc | TransportKind::ShmMpmc)
            )
        })
    {
        notes.push(
            "the kernel transports and Python run in mode block only: none measured with --modes spin"
                .into(),
        );
    }

    if args.json {
        for n in notes.drain(..) {
            eprintln!("note: {n}");
        }
    }

    let mut jobs = Vec::new();
    for &target in &targets {
        for &mode in target.modes() {
            if !modes.contains(&mode) {
                continue;
            }
            if target == Target::Floor {
                jobs.push(Job {
                    target,
                    mode,
                    size: 8,
                    again: false,
                });
            } else {
                for &size in &sizes {
                    jobs.push(Job {
                        target,
                        mode,
                        size,
                        again: false,
                    });
                }
            }
        }
    }
    // On a shared virtual machine the floor moves (vCPU placement, the
    // neighbours' load, whether the other CPU is idle-polling): each floor
    // is measured right before shm-spsc at 8 B in its mode and again right
    // after it, so that the ratios the targets need compare measurements
    // a moment apart; the lower floor is kept and a move is reported. (The
    // table lists rows in the usual order whatever the order measured.)
    if jobs.iter().any(|j| j.target != Target::Floor) {
        // Spin rows first: sleeping lets the host deschedule an idle vCPU
        // and place it elsewhere, which changes every busy-poll figure.
        let mut ordered = Vec::with_capacity(jobs.len() + 2);
        let mut rest = jobs.clone();
        rest.sort_by_key(|j| j.mode);
        for &mode in &modes {
            let Some(f) = rest
                .iter()
                .position(|j| j.target == Target::Floor && j.mode == mode)
            else {
                continue;
            };
            let floor = rest.remove(f);
            // Before this mode's other rows.
            let at = rest
                .iter()
                .position(|j| j.mode == mode)
                .unwrap_or(rest.len());
            ordered.extend(rest.drain(..at));
            ordered.push(floor);
            if let Some(i) = rest.iter().position(|j| {
                j.target == Target::Link(TransportKind::ShmSpsc) && j.mode == mode && j.size == 8
            }) {
                ordered.push(rest.remove(i));
                ordered.push(Job {
                    again: true,
                    ..floor
                });
            } else {
                // After this mode's other rows.
                let end = rest
                    .iter()
                    .rposition(|j| j.mode == mode)
                    .map_or(0, |i| i + 1);
                rest.insert(
                    end,
                    Job {
                        again: true,
                        ..floor
                    },
                );
            }
        }
        ordered.extend(rest);
        jobs = ordered;
    }
    let floor_final = |mode: Mode| {
        !jobs
            .iter()
            .any(|j| j.target == Target::Floor && j.again && j.mode == mode)
    };

    sys::pin(cpus.0).map_err(|e| Failure::Run(format!("pinning to CPU {}: {e}", cpus.0)))?;
    sys::install_watchdog().map_err(|e| Failure::Run(format!("installing the watchdog: {e}")))?;

    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        // No steady tick: that would start a thread, and children are forked.
        let b =
            ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix("shmring bench");
        b
    };

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let stdout = std::io::stdout();
    for job in &jobs {
        let label = job.label();
        bar.set_message(label.clone());
        sys::set_label(&label);
        sys::alarm(cfg.timeout);
        let got = match job.target {
            Target::Floor => floor::measure(&cfg, job.mode).map(|r| vec![r]),
            Target::Link(kind) => measure_link(&cfg, kind, job.mode, job.size),
            Target::PythonQueue | Target::PythonPipe => {
                let py = python.as_deref().expect("python3 found");
                // The Python run has its own deadline (it kills the
                // interpreter's process group): disarm the alarm.
                sys::alarm(0);
                python::measure(&cfg, py, job.target, job.size).map(|r| vec![r])
            }
        };
        sys::alarm(0);
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        let mut got = got;
        if job.again {
            // Keep the lower floor; say so if the two differ much.
            let new = got.remove(0);
            if let Some(old) = rows
                .iter_mut()
                .find(|r| r.transport == "floor" && r.mode == job.mode)
            {
                let (a, b) = (old.lat.p50 as f64, new.lat.p50 as f64);
                if a.max(b) > 1.25 * a.min(b) {
                    notes.push(format!(
                        "the floor ({}) moved during the run: p50 {} at the start, {} at the \
                         end; the lower is used. The machine's state changed (other load, \
                         vCPU placement): ratios from this run are less certain",
                        job.mode.name(),
                        report::human_ns(old.lat.p50),
                        report::human_ns(new.lat.p50)
                    ));
                }
                if b < a {
                    *old = new;
                }
                got.push(old.clone());
            }
        } else if job.target == Target::Floor && !floor_final(job.mode) {
            // Printed (JSON) once measured again.
            rows.extend(got);
            bar.inc(1);
            continue;
        }
        if args.json {
            let mut out = stdout.lock();
            for r in got.iter().filter(|r| !r.loan) {
                let _ = writeln!(out, "{}", r.json());
            }
            let _ = out.flush();
        }
        if !job.again {
            rows.extend(got);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    if args.json {
        for n in &notes {
            eprintln!("note: {n}");
        }
    }

    if !args.json {
        let table = report::table(&rows);
        println!("{table}");
        println!("{}", report::verdicts(&rows));
        for n in &notes {
            println!("note: {n}");
        }
        println!(
            "{} measurements in {:.1} s; parent on CPU {}, child on CPU {}{}",
            jobs.len(),
            wall.as_secs_f64(),
            cpus.0,
            cpus.1,
            if args.quick { " (--quick)" } else { "" }
        );
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &report::sorted(&rows), &sizes)
            .map_err(|e| Failure::Run(format!("drawing {}: {e}", path.display())))?;
        if !args.json {
            println!("plot written to {}", path.display());
        }
    }
    Ok(())
}
