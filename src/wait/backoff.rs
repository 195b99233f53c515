//! Spinning before sleeping: a futex hand-off costs tens of busy-poll round
//! trips, so a short spin catches a peer that answers quickly.

use super::Deadline;
use crate::loom::spin_loop;
use std::time::Duration;

/// Spins with `pause` until a time budget is spent.
#[derive(Debug)]
pub(crate) struct Spin {
    until: Option<Deadline>,
    /// The caller's deadline, if any: spinning stops there too.
    cap: Option<Deadline>,
    budget_ns: u64,
    iter: u32,
}

impl Spin {
    /// A spinner that gives up after `budget` (zero: never spins) or at
    /// `cap`, whichever comes first.
    pub(crate) fn until(budget: Duration, cap: Option<Deadline>) -> Self {
        Spin {
            until: None,
            cap,
            budget_ns: u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
            iter: 0,
        }
    }

    /// Spins a little; returns `false` once the budget is spent or the cap
    /// has passed (checked every 64 rounds).
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        if cfg!(loom) || self.budget_ns == 0 {
            return false;
        }
        self.iter = self.iter.wrapping_add(1);
        // Read the clock only every 64 rounds, and not at all in the first
        // 64: a receiver that is merely a little ahead of its sender finds
        // the ring empty on most calls, and a clock read costs more than the
        // message it is waiting for.
        if self.iter.is_multiple_of(64) {
            let now = Deadline::now();
            match self.until {
                None => {
                    let until = Deadline(now.0.saturating_add(self.budget_ns));
                    // A caller's deadline ends the spinning too: a zero
                    // timeout looks briefly, it does not spin the budget.
                    let until = self.cap.map_or(until, |cap| until.min(cap));
                    if now >= until {
                        return false;
                    }
                    self.until = Some(until);
                }
                Some(u) if now >= u => return false,
                Some(_) => {}
            }
        }
        spin_loop();
        true
    }
}
