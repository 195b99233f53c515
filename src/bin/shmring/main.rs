//! `shmring`: the command-line tool of the shmring crate.
//!
//! `shmring bench` measures every transport (shared-memory SPSC and MPMC,
//! pipe, FIFO, Unix socket, TCP, Python `multiprocessing`) against the
//! floor, between two real processes pinned to separate CPUs.

mod bench;
mod floor;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmring: error: {e}");
            ExitCode::from(e.code())
        }
    }
}
