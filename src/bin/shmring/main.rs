//! `shmring`: the command-line tool of the shmring crate.
//!
//! `shmring bench` measures every transport (shared-memory SPSC and MPMC,
//! pipe, FIFO, Unix socket, TCP, Python `multiprocessing`) against the
//! floor, between two real processes pinned to separate CPUs. `shmring ls`,
//! `inspect`, `rm` and `gc` look after the segments in `/dev/shm`.

mod bench;
mod floor;
mod lifecycle;
mod plot;
mod python;
mod report;
mod sys;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Inter-process communication over shared memory: tools.
#[derive(Parser, Debug)]
#[command(name = "shmring", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure round-trip latency and throughput of every transport, against the floor
    Bench(bench::BenchArgs),
    /// List shmring segments (kind, flavor, capacity, occupancy, endpoints alive/dead, lost, size)
    Ls(lifecycle::LsArgs),
    /// Show one segment's full header and counters
    Inspect(lifecycle::InspectArgs),
    /// Remove segments by name (refuses ones in use unless --force)
    Rm(lifecycle::RmArgs),
    /// Remove segments no live process maps or holds an endpoint in
    Gc(lifecycle::GcArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Ls(args) => lifecycle::ls(args),
        Command::Inspect(args) => lifecycle::inspect(args),
        Command::Rm(args) => lifecycle::rm(args),
        Command::Gc(args) => lifecycle::gc(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmring: error: {e}");
            ExitCode::from(e.code())
        }
    }
}
