//! `shmring`: the command-line tool of shmring (the `shmring-cli` package;
//! the library is the `shmring` package).
//!
//! `shmring bench` measures every transport (shared-memory SPSC and MPMC,
//! pipe, FIFO, Unix socket, TCP, Python `multiprocessing`) against the
//! floor, between two real processes pinned to separate CPUs. `shmring ls`,
//! `inspect`, `rm` and `gc` look after the segments in `/dev/shm`.
//!
//! This file holds the command line and dispatches on it. The modules have
//! one job each, and each uses only modules listed before it (no circle):
//!
//! - `types`: what the others share (failure and exit status, target,
//!   mode, settings, rows);
//! - `sys`: CPU affinity, shared mapping, fork, reaping, the watchdog;
//! - `report`: the table, the verdicts, the `--json` lines;
//! - `plot`: the `--plot` SVG;
//! - `args`: the command line of `shmring bench`;
//! - `plan`: which measurements, in which order;
//! - `floor`, `link`, `copy`, `python`: measuring the floor, the shmring
//!   transports, the copy references (`memcpy`, `xcopy`), Python's
//!   `multiprocessing`;
//! - `scale`: `shmring bench --scaling`, MPMC scaling (P producers × C
//!   consumers) against crossbeam's `ArrayQueue`;
//! - `bench`: `shmring bench` itself, running the plan;
//! - `lifecycle`: `shmring ls`, `inspect`, `rm`, `gc`;
//! - `bridge`: `shmring bridge out|in` (the `shmring-bridge` crate's
//!   bridges to an AMQP broker, with signals and `--stats`).

mod amqp;
mod args;
mod bench;
mod bridge;
mod copy;
mod floor;
mod lifecycle;
mod link;
mod plan;
mod plot;
mod python;
mod report;
mod scale;
mod sys;
mod types;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Inter-process communication over shared memory: tools.
#[derive(Parser, Debug)]
// The about line is the library's description, as before the tool had a
// package of its own.
#[command(
    name = "shmring",
    version,
    about = "Inter-process queues, pipes, shared cells and locks over lock-free ring buffers \
             in shared memory, blocking with Linux futexes",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure round-trip latency and throughput of every transport, against the floor
    Bench(args::BenchArgs),
    /// List shmring segments (kind, flavor, capacity, occupancy, endpoints alive/dead, lost, size)
    Ls(lifecycle::LsArgs),
    /// Show one segment's full header and counters
    Inspect(lifecycle::InspectArgs),
    /// Remove segments by name (refuses ones in use unless --force)
    Rm(lifecycle::RmArgs),
    /// Remove segments no live process maps or holds an endpoint in
    Gc(lifecycle::GcArgs),
    /// Bridge a local byte queue to or from an AMQP broker (RabbitMQ), at least once
    Bridge(bridge::BridgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Ls(args) => lifecycle::ls(args),
        Command::Inspect(args) => lifecycle::inspect(args),
        Command::Rm(args) => lifecycle::rm(args),
        Command::Gc(args) => lifecycle::gc(args),
        Command::Bridge(args) => bridge::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmring: error: {e}");
            ExitCode::from(e.code())
        }
    }
}
