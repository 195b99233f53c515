//! The shared (not process-private) futex: the only blocking system calls in
//! shmring, the `shmring` tool's included (public as [`super::futex_wait`]
//! and [`super::futex_wake`]).
//!
//! `FUTEX_PRIVATE_FLAG` is never passed: private futexes key on the calling
//! process's address space and silently never meet a waiter in another process.

use super::Deadline;
use crate::loom::AtomicU32;

/// Sleeps while `*word == expected`, until woken or `deadline` (absolute,
/// `CLOCK_MONOTONIC`). Returns `false` only when the deadline passed.
/// Spurious returns and `EINTR` return `true`; callers re-check their condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> bool {
    let ts = deadline.map(|d| libc::timespec {
        tv_sec: (d.as_nanos() / 1_000_000_000) as libc::time_t,
        tv_nsec: (d.as_nanos() % 1_000_000_000) as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, 4-byte aligned u32 for the duration of the call;
    // FUTEX_WAIT_BITSET reads it and takes `ts_ptr` as an absolute
    // CLOCK_MONOTONIC time (or null: no timeout).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == 0 {
        return true;
    }
    // EAGAIN: the word changed first; EINTR: a signal. Both mean "re-check".
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT)
}

/// Wakes up to `n` sleepers on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, n: i32) -> usize {
    // SAFETY: `word` is a live u32; FUTEX_WAKE only uses its address as a key.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}
