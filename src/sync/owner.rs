//! Who holds a lock: a thread, named for life.
//!
//! An owner word packs the thread's id (`gettid`, 23 bits: `pid_max` is at
//! most 2^22) with the low 40 bits of its start time in clock ticks
//! (`/proc/<tid>/stat` field 22), so it is never 0 and a reused tid is
//! never mistaken for the thread that used to hold it. A lock stores the
//! word with one CAS, so a waiter always sees a whole identity.
//!
//! Liveness is proven, never guessed: a thread counts as dead only when
//! `/proc/<tid>` is a zombie, names a thread that started at another time,
//! or is missing while `kill(tid, 0)` confirms that no task has that id
//! (`ESRCH`). A stopped (SIGSTOP) or slow owner is alive, and so is one that
//! `/proc` hides (`hidepid`): `kill` then answers `EPERM` or `0`. Such a
//! hidden owner cannot be told from a hidden task that reused its tid, so a
//! dead owner whose tid was reused by another user's task keeps its lock
//! until that task ends: the price of never calling a live owner dead.

const TID_BITS: u32 = 23;
const TID_MASK: u64 = (1 << TID_BITS) - 1;
const START_MASK: u64 = (1 << 40) - 1;

/// Packs a thread identity into an owner word.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn encode(tid: u32, start: u64) -> u64 {
    ((start & START_MASK) << TID_BITS) | (tid as u64 & TID_MASK)
}

#[cfg(not(loom))]
mod imp {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Bumped in a forked child: the forking thread's cached identity
    /// (copied into the child) belongs to the parent.
    static FORK_GEN: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// (fork generation, owner word) of this thread, 0 until computed.
        static ME: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    /// Part of the fork child handler (`process::watch_fork_for`).
    fn forget_in_child() {
        // Relaxed: the child runs one thread at this point.
        FORK_GEN.fetch_add(1, Ordering::Relaxed);
    }

    /// This thread's owner word. Cached: no system call after the first.
    #[inline]
    pub(crate) fn current() -> u64 {
        // Relaxed: only this process's fork handler writes it, before any
        // other thread of the child exists.
        let gen = FORK_GEN.load(Ordering::Relaxed);
        let (g, me) = ME.with(Cell::get);
        if g == gen && me != 0 {
            return me;
        }
        compute(gen)
    }

    #[cold]
    fn compute(gen: u64) -> u64 {
        crate::process::watch_fork_for(crate::process::ForkCache::LockOwner, forget_in_child);
        let tid = nix::unistd::gettid().as_raw() as u32;
        let start = crate::process::read_stat(tid).map_or(0, |(_, s)| s);
        let me = encode(tid, start);
        ME.with(|c| c.set((gen, me)));
        me
    }

    /// Whether the thread named by `owner` is proven gone.
    pub(crate) fn is_dead(owner: u64) -> bool {
        let tid = (owner & TID_MASK) as u32;
        let start = owner >> TID_BITS;
        if tid == 0 {
            return true;
        }
        let seen = match crate::process::stat_of(tid) {
            Ok(Some((state, s))) => Seen::Stat(state, s),
            Ok(None) => Seen::Unparsable,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
            Err(_) => Seen::Unreadable,
        };
        // kill accepts a tid as well as a pid; a tid has at most 23 bits.
        judge(seen, start, || crate::process::no_such_task(tid as i32))
    }
}

/// What `/proc/<tid>/stat` showed of an owner thread.
#[cfg_attr(loom, allow(dead_code))]
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// Its state letter and start time.
    Stat(char, u64),
    /// It was read but did not parse.
    Unparsable,
    /// No such entry: the task is gone, or `/proc` hides it (`hidepid=1/2`
    /// or `subset=pid` hide other users' tasks; a missing `/proc` hides all).
    Missing,
    /// It exists but could not be read (permissions, resources).
    Unreadable,
}

/// The liveness verdict, given what `/proc` showed and, asked only when
/// `/proc` shows nothing, `no_such_task()`: whether `kill(tid, 0)` failed
/// with `ESRCH`. A task `/proc` does not show is dead only when the kernel
/// confirms that no task has its id: under `hidepid`, `kill` answers `0` or
/// `EPERM` for another user's live task, which therefore stays alive.
#[cfg_attr(loom, allow(dead_code))]
fn judge(seen: Seen, start: u64, no_such_task: impl FnOnce() -> bool) -> bool {
    match seen {
        Seen::Stat('Z' | 'X' | 'x', _) => true,
        // A start of 0 was recorded without a readable `/proc`: unknown,
        // so only the kernel's word that no such task exists proves death.
        Seen::Stat(_, _) if start == 0 => no_such_task(),
        Seen::Stat(_, s) => s & START_MASK != start,
        Seen::Missing => no_such_task(),
        Seen::Unparsable | Seen::Unreadable => false,
    }
}

#[cfg(loom)]
mod imp {
    use std::sync::atomic::{AtomicU32, Ordering};

    static NEXT: AtomicU32 = AtomicU32::new(1);

    loom::thread_local! {
        static ME: u64 = super::encode(NEXT.fetch_add(1, Ordering::Relaxed), 1);
    }

    /// A distinct owner word per loom thread.
    pub(crate) fn current() -> u64 {
        ME.with(|m| *m)
    }

    /// Nobody dies in the models.
    pub(crate) fn is_dead(_owner: u64) -> bool {
        false
    }
}

pub(crate) use imp::{current, is_dead};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn this_thread_lives_and_a_stale_identity_is_dead() {
        let me = current();
        assert_ne!(me, 0);
        assert_eq!(current(), me, "cached");
        assert!(!is_dead(me));
        // Same tid, another start time: a reused tid.
        assert!(is_dead(me ^ (1 << TID_BITS)));
        let other = std::thread::spawn(current).join().unwrap();
        assert_ne!(other, me);
        assert!(is_dead(other), "an exited thread is dead");
    }

    /// Issue 10, item 2: under `hidepid=2` another user's live owner has no
    /// `/proc/<tid>` entry; it must not be called dead unless the kernel
    /// says that no task has its id.
    #[test]
    fn issue10_missing_proc_entry_is_dead_only_when_kill_agrees() {
        let start = 1234;
        // Hidden by hidepid: kill(tid, 0) gives EPERM (or 0), not ESRCH.
        assert!(!judge(Seen::Missing, start, || false));
        // Really gone.
        assert!(judge(Seen::Missing, start, || true));
        // Visible: /proc decides, kill is not asked.
        let unasked = || panic!("kill asked although /proc answered");
        assert!(!judge(Seen::Stat('S', start), start, unasked));
        assert!(!judge(Seen::Stat('T', start), start, unasked));
        assert!(judge(Seen::Stat('S', start + 1), start, unasked));
        assert!(judge(Seen::Stat('Z', start), start, unasked));
        assert!(!judge(Seen::Unreadable, start, unasked));
        assert!(!judge(Seen::Unparsable, start, unasked));
    }
}
