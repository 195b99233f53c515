//! The command line of `shmring bench`: [`BenchArgs`], its long help, and
//! the parsers of `--transports`, `--sizes` and `--cpus`.

use crate::types::{Mode, Target};
use clap::Args;
use std::path::PathBuf;

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
transports and Python's multiprocessing (`multiprocessing.Queue` and `Pipe`,
through the script shipped as scripts/bench_python.py, when python3 is on
the PATH) in mode block only. Ratios: p50 over the floor of the same mode
and over shm-spsc of the same mode and size; throughput likewise (higher is
faster).

With the shm rows in spin mode, each size of 64 B and up also gets its copy
references: `memcpy` (one core copying that size between two buffers of its
own, cache-hot: the machine's memcpy bandwidth at that size) and `xcopy` (the
cross-core copy floor: two processes and only the copies, round trips through
two bare buffers and a stream through a bare ring of as many slots as the shm
rows', stamped and checked as theirs are). The targets compare shm-spsc's 1 KiB and 64 KiB streams with memcpy,
and a line under them gives each stream over xcopy. The shm rows and xcopy
have 1024 slots per direction for messages of up to 32 B (as the floor's
ring), else 8 MiB of slots (at most 1024, at least 4).

python-shmring-queue and python-shmring-pipe measure this repository's
Python package (`shmring.Queue`, two of them, one each way; `shmring.Pipe`,
duplex) through the same script, with the same method and sizes as
python-queue and python-pipe: block is the default (spin 20 µs, then sleep
on a futex), spin is `spin=True` (busy-poll while blocked). The interpreter:
--shmring-python if given, else this checkout's target/python-venv/bin/python
if it imports shmring, else --python if it does; else, from a checkout,
`shmring bench` runs scripts/python-env (it makes target/python-venv from
PyPI and builds the extension into it: minutes the first time; it says so on
stderr), unless --no-python-setup. When no interpreter is found the two rows
are skipped, with a note saying how to enable them (not a failure).

--repeat N (N > 1) measures, in each mode and for each size, the floor, the
copy references and the shm rows N times, round-robin (floor, memcpy and
xcopy, shm-spsc, shm-mpmc, floor, ...) instead of the floor before and after
shm-spsc; the kernel transports and the Python rows are measured once. The
shm and floor rows then show the median of the N rounds (p50, p99, ..., msgs/s), and each ratio is
computed per round, against the floor (or shm-spsc) of the same round, and
shown as median (min–max): `1.32 (1.25–1.41)`. A wide range says the
machine was noisy during the run. In --json these rows also carry `rounds`
(each round's figures and ratios) and `spread` ({median, min, max} of
rtt_p50_ns, msgs_per_s and the ratios).

shm rows also come as loan rows (`loan` column: loan + commit in place,
recv_ref in place, only an 8-byte header written). Loan rows are in the
table and the plot but not in --json, whose lines carry exactly: transport,
mode, size, rtt_p50_ns, rtt_p99_ns, rtt_p999_ns, rtt_max_ns, msgs_per_s,
bytes_per_s (and, under --repeat, rounds and spread).

rabbitmq (added by --amqp URL, or named in -t with the broker of
$SHMRING_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/%2f) measures the
same round trips and throughput through a RabbitMQ broker, block mode only:
the child consumes one queue and publishes to another, which the parent
consumes; transient messages, no publisher confirms, no acks (the broker's
fastest path). rabbitmq-bridge (added with it) measures the same between two
processes that use only local shmring queues, four `shmring bridge`
processes carrying each message through the broker and back (publisher
confirms, acks after the local commit): over rabbitmq, what the bridges add.
A broker that does not answer skips both rows with a note.
scripts/rabbitmq start installs and starts a local one.

--scaling LIST (e.g. --scaling 1,2,4,8) measures MPMC scaling instead of
the rows above: for every P and C in LIST (the full grid P × C, each 1 to
31), P producers and C consumers of u64 messages, busy-polling (spin, and
sched_yield after 128 failed polls, so that more participants than CPUs
still finish), through three queues of 1024 slots: shm-mpmc (shmring's MPMC
Queue, anonymous, between forked processes), arrayqueue (crossbeam's
ArrayQueue between threads of one process) and shm-mpmc-threads (shmring's
queue between threads: what processes cost, apart from the queue). -n is
the messages per cell (default 5,000,000; --quick 500,000); producer p sends
p, p + P, p + 2P, ... below n, and the consumers' tallies (count, sum, xor,
a sum of hashes) must make 0..n once each, or the run fails. Time runs from
the start (every participant attached, then go) to the last consumer's
stop. Participants are pinned, producers then consumers, each to its own
CPU of those this process may use (choose them with taskset -c) when P + C
fits; otherwise unpinned, and the table's `pinned` column says no
(oversubscribed: not a scaling figure).
Columns: msgs/s of each queue, shm ÷ arrayqueue and threads ÷ arrayqueue.
--repeat N measures each cell N times, the three queues in turn, and shows
median rates and ratios as median (min–max) of the per-round ratios;
--json prints one line per cell (producers, consumers, pinned, messages,
the three msgs_per_s, the two ratios, exactly_once; with --repeat, rounds
and spread). --transports, --modes, --sizes, --cpus, --plot and the Python
and rabbitmq options do not apply.

Exit status: 0 done, 1 a measurement failed (a child died, the watchdog
fired), 2 bad arguments (or fewer than two CPUs).";

/// Options of `shmring bench`.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Transports to measure, comma-separated: floor, shm-spsc, shm-mpmc,
    /// pipe, fifo, unix, tcp, python-queue, python-pipe, python-shmring-queue,
    /// python-shmring-pipe, rabbitmq, rabbitmq-bridge (the floor is always
    /// measured; --amqp adds the two rabbitmq rows)
    #[arg(
        long,
        short = 't',
        value_delimiter = ',',
        value_parser = parse_target,
        default_value = "floor,shm-spsc,shm-mpmc,pipe,fifo,unix,tcp,python-queue,python-pipe,\
                         python-shmring-queue,python-shmring-pipe",
        hide_default_value = true
    )]
    pub transports: Vec<Target>,

    /// Modes, comma-separated: spin (busy-poll), block (futex sleep); the
    /// kernel transports and multiprocessing run in block only
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
    /// to 256 KiB, 1,000 above; --quick: a tenth); with --scaling, messages
    /// per cell (default 5,000,000; --quick: a tenth)
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub iterations: Option<u64>,

    /// A short run: the default matrix in well under a minute on 2 cores
    /// (measured once: it does not change --repeat)
    #[arg(long, short = 'q')]
    pub quick: bool,

    /// Measure the floor and the shm rows N times per mode and size,
    /// interleaved (floor, shm-spsc, shm-mpmc, floor, ...), and report the
    /// median and the spread (min–max) of the per-round ratios
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub repeat: u32,

    /// MPMC scaling instead: P producers × C consumers for every P and C
    /// in LIST (e.g. 1,2,4,8), shmring's MPMC queue between processes
    /// against crossbeam's ArrayQueue between threads; see below
    #[arg(long, value_name = "LIST", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=31))]
    pub scaling: Option<Vec<u32>>,

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

    /// The Python interpreter for the python-queue and python-pipe rows
    /// (multiprocessing), and for the python-shmring-* rows if it imports
    /// shmring and this checkout's target/python-venv does not
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: String,

    /// The Python interpreter for the python-shmring-* rows (one that
    /// imports shmring); default: see below
    #[arg(long, value_name = "PATH")]
    pub shmring_python: Option<String>,

    /// A RabbitMQ broker (amqp://user:pass@host:port/vhost): adds the
    /// rabbitmq row, round trips and throughput through that broker
    #[arg(long, value_name = "URL")]
    pub amqp: Option<String>,

    /// Never run scripts/python-env: without an interpreter that imports
    /// shmring, skip the python-shmring-* rows
    #[arg(long)]
    pub no_python_setup: bool,

    /// Measure the shared-memory rows with the builders' default wake
    /// protocol, Strict (a fence per message), instead of the opt-in Fast
    /// (no fence per message; its sleepers interrupt every CPU running a
    /// registered process)
    #[arg(long)]
    pub strict: bool,
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s.trim() {
        "floor" => Ok(Target::Floor),
        "copy" => Ok(Target::Copy),
        "python-queue" => Ok(Target::PythonQueue),
        "python-pipe" => Ok(Target::PythonPipe),
        "python-shmring-queue" => Ok(Target::PythonShmringQueue),
        "python-shmring-pipe" => Ok(Target::PythonShmringPipe),
        "rabbitmq" => Ok(Target::Rabbitmq),
        "rabbitmq-bridge" => Ok(Target::RabbitmqBridge),
        other => other.parse().map(Target::Link).map_err(|_| {
            format!(
                "unknown transport {other:?} (known: floor, copy, shm-spsc, shm-mpmc, pipe, fifo, \
                 unix, tcp, python-queue, python-pipe, python-shmring-queue, \
                 python-shmring-pipe, rabbitmq, rabbitmq-bridge)"
            )
        }),
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
