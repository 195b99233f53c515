//! Who holds a lock: a thread, named for life.
//!
//! An owner word packs the thread's id (`gettid`, 23 bits: `pid_max` is at
//! most 2^22) with the low 40 bits of its start time in clock ticks
//! (`/proc/<tid>/stat` field 22), so it is never 0 and a reused tid is
//! never mistaken for the thread that used to hold it. A lock stores the
//! word with one CAS, so a waiter always sees a whole identity.
//!
//! Liveness is proven, never guessed: a thread counts as dead only when
//! `/proc/<tid>` is gone, is a zombie, or names a thread that started at
//! another time. A stopped (SIGSTOP) or slow owner is alive.

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

    extern "C" fn bump_fork_gen() {
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
        static ATFORK: std::sync::Once = std::sync::Once::new();
        ATFORK.call_once(|| {
            // SAFETY: registers a handler that only bumps an atomic, which is
            // async-signal-safe as a fork child handler must be.
            unsafe { libc::pthread_atfork(None, None, Some(bump_fork_gen)) };
        });
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
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
        match crate::process::stat_of(tid) {
            Ok(Some(('Z' | 'X' | 'x', _))) => true,
            Ok(Some((_, s))) => s & START_MASK != start,
            Ok(None) => false,
            // No such thread, if /proc itself is there to say so.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::path::Path::new("/proc/self/stat").exists()
            }
            Err(_) => false,
        }
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
}
