//! Test hooks of `shmring._shmring`: private functions for the Python test
//! suite only, never part of the package's API (not in `_shmring.pyi`,
//! not re-exported by `shmring`).
//!
//! `_forbid_syscalls(report_fd=-1)` forbids the calling thread every
//! system call for the rest of the process's life, so that a test can
//! check that the queues' and pipes' hot paths make none while nobody has
//! to sleep (python/tests/test_syscalls.py; the Rust side's check is
//! tests/syscalls.rs). It installs a seccomp filter on the calling thread
//! only (`prctl(PR_SET_SECCOMP)` without `TSYNC`; other threads are not
//! affected) that lets through `exit_group`, `exit`, `rt_sigreturn` and a
//! `write` to `report_fd`, and traps everything else (`SECCOMP_RET_TRAP`):
//! the `SIGSYS` handler writes `"forbidden system call <nr>\n"` to
//! `report_fd` (if not negative) and ends the process with status
//! `1 + nr % 250`. Calling it outside such a throw-away process ends that
//! process at its next system call.

use pyo3::prelude::*;

/// Adds the test hooks to the module, as attributes only: not in its
/// `__all__` (`from shmring._shmring import *` does not bring them).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.setattr("_forbid_syscalls", wrap_pyfunction!(_forbid_syscalls, m)?)?;
    Ok(())
}

/// TEST HOOK, NOT API: ends the process at the calling thread's next
/// system call (see python/src/testhooks.rs).
#[pyfunction]
#[pyo3(signature = (report_fd=-1))]
fn _forbid_syscalls(report_fd: i32) -> PyResult<()> {
    imp::forbid(report_fd)
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use pyo3::prelude::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    /// Where the `SIGSYS` handler reports the call's number (-1: nowhere).
    static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;

    /// Offset of `si_syscall` in a `SIGSYS` siginfo on 64-bit Linux:
    /// `si_signo`, `si_errno`, `si_code` (3 x i32), padding, `si_call_addr`
    /// (8 bytes), then the system call's number (i32).
    const SI_SYSCALL: usize = 24;

    /// `SIGSYS` handler: async-signal-safe only (one `write`, then
    /// `exit_group`, both let through by the filter); never returns.
    extern "C" fn on_sigsys(
        _sig: libc::c_int,
        info: *mut libc::siginfo_t,
        _ctx: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO
        // handler; `SI_SYSCALL` lies inside its 128 bytes.
        let nr = unsafe { *(info as *const u8).add(SI_SYSCALL).cast::<i32>() };
        let fd = REPORT_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            const PREFIX: &[u8] = b"forbidden system call ";
            let mut buf = [0u8; PREFIX.len() + 12];
            buf[..PREFIX.len()].copy_from_slice(PREFIX);
            let mut digits = [0u8; 11];
            let mut n = i64::from(nr).unsigned_abs();
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let mut len = PREFIX.len();
            if nr < 0 {
                buf[len] = b'-';
                len += 1;
            }
            let d = &digits[i..];
            buf[len..len + d.len()].copy_from_slice(d);
            len += d.len();
            buf[len] = b'\n';
            len += 1;
            // SAFETY: `buf` holds `len` initialised bytes; `write` is
            // async-signal-safe, and the filter allows it on this fd.
            unsafe { libc::write(fd, buf.as_ptr().cast(), len) };
        }
        let code = 1 + nr.rem_euclid(250);
        // SAFETY: exit_group takes an integer and does not return; the
        // filter allows it.
        unsafe { libc::syscall(libc::SYS_exit_group, libc::c_long::from(code)) };
    }

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }

    pub(super) fn forbid(report_fd: i32) -> PyResult<()> {
        const LD_W: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        const RET: u32 = libc::BPF_RET | libc::BPF_K;
        // Offsets in `struct seccomp_data`: nr, arch, then args[0] (low
        // half on little-endian: write's fd is an `unsigned int`).
        let prog = [
            /* 0 */ stmt(LD_W, 4),
            /* 1 */ jeq(AUDIT_ARCH, 0, 7), // another ABI: trap
            /* 2 */ stmt(LD_W, 0),
            /* 3 */ jeq(libc::SYS_exit_group as u32, 6, 0),
            /* 4 */ jeq(libc::SYS_exit as u32, 5, 0),
            /* 5 */ jeq(libc::SYS_rt_sigreturn as u32, 4, 0),
            /* 6 */ jeq(libc::SYS_write as u32, 0, 2),
            /* 7 */ stmt(LD_W, 16),
            /* 8 */ jeq(report_fd as u32, 1, 0),
            /* 9 */ stmt(RET, libc::SECCOMP_RET_TRAP),
            /* 10 */ stmt(RET, libc::SECCOMP_RET_ALLOW),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr().cast_mut(),
        };
        REPORT_FD.store(report_fd, Ordering::Relaxed);
        // SAFETY: a zeroed sigaction (empty mask) with our SA_SIGINFO
        // handler, then the two prctl calls of a seccomp filter: the kernel
        // copies the program, which outlives the call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(PyErr::from(std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use pyo3::exceptions::PyNotImplementedError;
    use pyo3::prelude::*;

    pub(super) fn forbid(_report_fd: i32) -> PyResult<()> {
        Err(PyNotImplementedError::new_err(
            "_forbid_syscalls: Linux x86_64 / aarch64 only",
        ))
    }
}
