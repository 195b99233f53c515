//! The types the parts of the tool share, and nothing else: how a command
//! fails ([`Failure`], with its exit status), what a measurement is
//! ([`Target`], [`Mode`]), the settings every measurement reads ([`Config`]),
//! and what it yields ([`Row`], [`Latency`], and under `--repeat` its
//! [`Round`]s and their [`Spread`]). Every other module may use this one; it
//! uses none of them.

use clap::ValueEnum;
use shmring::transport::TransportKind;
use std::fmt;
use std::time::Duration;

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

/// What one table row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The floor (busy-poll cache line / raw futex ping-pong).
    Floor,
    /// The copy references of a size (`memcpy` one core, `xcopy` across the
    /// two): added with the shm rows in spin mode at sizes of 64 B and up.
    Copy,
    /// A shmring transport.
    Link(TransportKind),
    /// Python `multiprocessing.Queue`.
    PythonQueue,
    /// Python `multiprocessing.Pipe`.
    PythonPipe,
    /// Python `shmring.Queue` (the Python package of this repository).
    PythonShmringQueue,
    /// Python `shmring.Pipe`.
    PythonShmringPipe,
    /// A RabbitMQ broker (`--amqp`): round trips and throughput through it.
    Rabbitmq,
    /// Two processes on local shmring queues, `shmring bridge` processes
    /// carrying every message through the broker (`--amqp`).
    RabbitmqBridge,
}

impl Target {
    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::Floor => "floor",
            Target::Copy => "copy",
            Target::Link(k) => k.name(),
            Target::PythonQueue => "python-queue",
            Target::PythonPipe => "python-pipe",
            Target::PythonShmringQueue => "python-shmring-queue",
            Target::PythonShmringPipe => "python-shmring-pipe",
            Target::Rabbitmq => "rabbitmq",
            Target::RabbitmqBridge => "rabbitmq-bridge",
        }
    }

    /// A Python row (run by `scripts/bench_python.py`).
    pub fn is_python(self) -> bool {
        matches!(
            self,
            Target::PythonQueue
                | Target::PythonPipe
                | Target::PythonShmringQueue
                | Target::PythonShmringPipe
        )
    }

    /// A row of the shmring Python package (needs an interpreter that
    /// imports it).
    pub fn is_python_shmring(self) -> bool {
        matches!(self, Target::PythonShmringQueue | Target::PythonShmringPipe)
    }

    /// The modes it runs in: both for the floor, shm and shmring's Python
    /// package (spin: `spin=True`), block for the rest.
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Target::Floor | Target::PythonShmringQueue | Target::PythonShmringPipe => {
                &[Mode::Spin, Mode::Block]
            }
            Target::Link(k) if k.is_shm() => &[Mode::Spin, Mode::Block],
            Target::Copy => &[Mode::Spin],
            _ => &[Mode::Block],
        }
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

/// Percentiles the plot draws (100 = the maximum).
pub const CURVE_PERCENTILES: [f64; 10] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// Round-trip latency, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
    /// Round trips timed.
    pub count: u64,
    /// (percentile, ns) at [`CURVE_PERCENTILES`].
    pub curve: Vec<(f64, u64)>,
}

impl Latency {
    /// From an HdrHistogram of round trips in nanoseconds.
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Self {
        let q = |p: f64| h.value_at_quantile(p / 100.0);
        Latency {
            p50: q(50.0),
            p99: q(99.0),
            p999: q(99.9),
            max: h.max(),
            count: h.len(),
            curve: CURVE_PERCENTILES
                .iter()
                .map(|&p| (p, if p >= 100.0 { h.max() } else { q(p) }))
                .collect(),
        }
    }
}

/// One measured (transport, mode, size[, loan]).
#[derive(Clone, Debug)]
pub struct Row {
    /// `floor`, `shm-spsc`, ..., `python-pipe`.
    pub transport: String,
    /// Spin or block.
    pub mode: Mode,
    /// Message size in bytes.
    pub size: usize,
    /// Loan + commit / in-place reads instead of copies (shm only).
    pub loan: bool,
    /// Round trips.
    pub lat: Latency,
    /// One-way throughput.
    pub msgs_per_s: f64,
    /// Under `--repeat N` (N > 1), the floor and the shm rows: each round's
    /// own figures, in the order measured (then `lat` and `msgs_per_s` hold
    /// the medians over the rounds). Empty for a row measured once.
    pub rounds: Vec<Round>,
}

/// One round of a row measured `--repeat` times.
#[derive(Clone, Debug)]
pub struct Round {
    /// The message size of the (mode, size) group the round belongs to: the
    /// floor (always 8 B) is measured once per round in every group.
    pub group: usize,
    /// The round's number in its group, from 0.
    pub index: u32,
    /// Round trips of this round.
    pub lat: Latency,
    /// One-way throughput of this round.
    pub msgs_per_s: f64,
}

/// The median and the range of a few values (the rounds of `--repeat`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; None if there are none (NaNs are left out).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n.is_multiple_of(2) {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        } else {
            v[n / 2]
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

impl Row {
    /// A row to be labelled by the caller.
    pub fn new(lat: Latency, msgs_per_s: f64) -> Self {
        Row {
            transport: String::new(),
            mode: Mode::Block,
            size: 0,
            loan: false,
            lat,
            msgs_per_s,
            rounds: Vec::new(),
        }
    }

    /// Bytes per second.
    pub fn bytes_per_s(&self) -> f64 {
        self.msgs_per_s * self.size as f64
    }

    /// `shm-spsc spin`, with ` loan` for loan rows.
    pub fn name(&self) -> String {
        format!(
            "{} {}{}",
            self.transport,
            self.mode.name(),
            if self.loan { " loan" } else { "" }
        )
    }
}
