//! The plan of a run: which measurements ([`Job`]s), in which order. Spin
//! rows come first, and each floor is measured twice, right before and right
//! after shm-spsc at 8 B in its mode (or its mode's other rows); see [`plan`].

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
}

impl Job {
    /// What the progress bar and the watchdog call it.
    pub fn label(&self) -> String {
        format!(
            "{} {} {}{}",
            self.target.name(),
            self.mode.name(),
            report::human_size(self.size),
            if self.again { " (again)" } else { "" }
        )
    }
}

/// The measurements of `targets` in `modes` at `sizes` (the floor at 8 B
/// only), in the order they run, with each floor's second measurement
/// (`again`) placed.
pub fn plan(targets: &[Target], modes: &[Mode], sizes: &[usize]) -> Vec<Job> {
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
                });
            } else {
                for &size in sizes {
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
