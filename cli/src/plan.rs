//! The plan of a run: which measurements ([`Job`]s), in which order. Spin
//! rows come first, and each floor is measured twice, right before and right
//! after shm-spsc at 8 B in its mode (or its mode's other rows); see [`plan`].
//! Under `--repeat N` the floor and the shm rows are instead measured N times
//! per (mode, size), round-robin; see [`repeated`].

use crate::report;
use crate::types::{Mode, Target};
use shmring::transport::TransportKind;

/// One measurement of the plan.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// What is measured.
    pub target: Target,
    /// Spin or block.
    pub mode: Mode,
    /// Message size in bytes (8 for the floor).
    pub size: usize,
    /// The floor measured again at the end of the run.
    pub again: bool,
    /// Under `--repeat`: the size of the (mode, size) group and the round's
    /// number in it, from 0.
    pub round: Option<(usize, u32)>,
}

impl Job {
    /// What the progress bar and the watchdog call it.
    pub fn label(&self) -> String {
        format!(
            "{} {} {}{}{}",
            self.target.name(),
            self.mode.name(),
            report::human_size(self.size),
            if self.again { " (again)" } else { "" },
            match self.round {
                Some((_, i)) => format!(" (round {})", i + 1),
                None => String::new(),
            }
        )
    }
}

/// The measurements of `targets` in `modes` at `sizes` (the floor at 8 B
/// only), in the order they run, with each floor's second measurement
/// (`again`) placed; with `repeat` > 1, the floor and the shm rows are
/// measured `repeat` times each instead (see [`repeated`]).
pub fn plan(targets: &[Target], modes: &[Mode], sizes: &[usize], repeat: u32) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &target in targets {
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
                    round: None,
                });
            } else {
                for &size in sizes {
                    if target == Target::Copy && size < crate::copy::MIN_SIZE {
                        continue;
                    }
                    jobs.push(Job {
                        target,
                        mode,
                        size,
                        again: false,
                        round: None,
                    });
                }
            }
        }
    }
    if repeat > 1 {
        return repeated(jobs, modes, repeat);
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
        for &mode in modes {
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
    jobs
}

/// `--repeat N`, N > 1: in each mode (spin first), for each size, N rounds
/// of the floor then that size's copy references and shm rows (floor, copy,
/// shm-spsc, shm-mpmc, floor, copy, shm-spsc, shm-mpmc, ...), so that each
/// round's ratios compare measurements a moment apart; the kernel transports and Python follow,
/// measured once. A mode with no shm row measures the floor N times alone.
fn repeated(jobs: Vec<Job>, modes: &[Mode], repeat: u32) -> Vec<Job> {
    // The copy references go round with the shm rows they are compared
    // with.
    let is_shm =
        |j: &Job| matches!(j.target, Target::Link(k) if k.is_shm()) || j.target == Target::Copy;
    let mut rest = jobs;
    rest.sort_by_key(|j| j.mode);
    let mut ordered = Vec::new();
    for &mode in modes {
        let Some(f) = rest
            .iter()
            .position(|j| j.target == Target::Floor && j.mode == mode)
        else {
            continue;
        };
        let floor = rest.remove(f);
        let shm: Vec<Job> = rest
            .iter()
            .filter(|j| j.mode == mode && is_shm(j))
            .copied()
            .collect();
        rest.retain(|j| !(j.mode == mode && is_shm(j)));
        // The rows of the modes before this one.
        let at = rest
            .iter()
            .position(|j| j.mode >= mode)
            .unwrap_or(rest.len());
        ordered.extend(rest.drain(..at));
        let mut groups: Vec<usize> = shm.iter().map(|j| j.size).collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() {
            groups.push(8);
        }
        for g in groups {
            for i in 0..repeat {
                let round = Some((g, i));
                ordered.push(Job { round, ..floor });
                for j in shm.iter().filter(|j| j.size == g) {
                    ordered.push(Job { round, ..*j });
                }
            }
        }
    }
    ordered.extend(rest);
    ordered
}
