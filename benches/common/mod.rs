//! Helpers shared by the cross-process benches: a shared anonymous
//! mapping for the control block, futex wait/wake on it, CPU pinning, and a
//! busy-wait that checks on its peer.
#![allow(dead_code)]

use std::hint::spin_loop;
use std::sync::atomic::AtomicU32;

/// A value alone on its 128-byte line (two 64-byte lines: the adjacent
/// line prefetcher pairs them).
#[repr(C, align(128))]
pub struct Line<T>(pub T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Written by the child of a bench: how far it got with the parent's
/// commands.
#[repr(C)]
pub struct Reply {
    /// The `seq` of the command the child is ready to run.
    pub ready: AtomicU32,
    /// The `seq` of the command the child has finished.
    pub done: AtomicU32,
}

/// Bytes of the sequence header at the start of a bench message.
pub const HEADER: usize = 8;

/// Writes the sequence header.
#[inline(always)]
pub fn put_seq(msg: &mut [u8], seq: u64) {
    msg[..HEADER].copy_from_slice(&seq.to_le_bytes());
}

/// Reads the sequence header.
#[inline(always)]
pub fn get_seq(msg: &[u8]) -> u64 {
    let mut h = [0u8; HEADER];
    h.copy_from_slice(&msg[..HEADER]);
    u64::from_le_bytes(h)
}
use std::time::Duration;

/// Maps a zero-filled `T` in a `MAP_SHARED | MAP_ANONYMOUS` region,
/// inherited by forked children. Never unmapped: it lives as long as the
/// process.
///
/// # Safety
/// All-zero bytes must be a valid `T` (atomics only), and `T`'s alignment
/// at most a page.
pub unsafe fn map_zeroed<T>() -> &'static T {
    let len = std::mem::size_of::<T>();
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(
        p != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: page-aligned, `len` bytes, zero-filled, valid as all-zero
    // (contract); never unmapped, hence 'static; shared with the child,
    // which only accesses it through atomics.
    unsafe { &*p.cast::<T>() }
}

/// Sleeps on `word` while it holds `expected`, at most `timeout`: the
/// library's shared futex wait (one futex wrapper for the library, the
/// tool and the benches). The caller re-checks.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    shmring::futex_wait(word, expected, Some(shmring::Deadline::after(timeout)));
}

/// Wakes every sleeper on `word`.
pub fn futex_wake(word: &AtomicU32) {
    shmring::futex_wake(word, u32::MAX);
}

/// Whether this process may run on CPUs 0 and 1.
pub fn can_pin() -> bool {
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity
    // fills at most `size_of::<cpu_set_t>()` bytes of it, and CPU_ISSET
    // reads within it (0 and 1 < CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && libc::CPU_ISSET(0, &set)
            && libc::CPU_ISSET(1, &set)
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: as in `can_pin`; sched_setaffinity(0, ..) changes only the
    // calling thread's mask and reads `size_of::<cpu_set_t>()` bytes.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(
        ok,
        "sched_setaffinity({cpu}): {}",
        std::io::Error::last_os_error()
    );
}

/// Busy-polls `cond`; every 2^24 failed polls (a second or so) calls
/// `stalled`, which checks that the peer still lives.
#[inline(always)]
pub fn spin_until(mut cond: impl FnMut() -> bool, stalled: &dyn Fn()) {
    let mut spins = 0u32;
    while !cond() {
        spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 24) {
            stalled();
        }
    }
}
