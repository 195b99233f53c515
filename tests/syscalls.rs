//! No system call per message while nobody sleeps (issue 13): a child
//! process sets up queues of every kind, warms them up, then forbids its
//! own thread every system call but `exit_group` with a seccomp filter
//! (`SECCOMP_RET_TRAP`: the first system call raises `SIGSYS`, whose
//! handler exits with the call's number) and moves thousands of messages
//! through every copying, batch, blocking, loan and in-place path, with
//! both wake modes and both flavors, in bursts that never make a call
//! wait. Any `futex`, `membarrier`, clock or allocation system call on
//! those paths ends the child with a non-zero status.
#![cfg(all(not(loom), target_arch = "x86_64"))]

mod common;

use common::{child_main, run, spawn_child, wait_status, Args};
use shmring::{ByteQueue, Flavor, Queue, WakeMode};

/// Messages per path and configuration.
const ROUNDS: u64 = 500;
/// Messages per burst: below every capacity used, so no call waits.
const BURST: u64 = 8;

/// Typed queue: try calls, blocking calls, slices, in bursts.
fn typed_paths(tx: &shmring::Sender<u64>, rx: &shmring::Receiver<u64>) {
    let mut buf = [0u64; BURST as usize];
    let values: Vec<u64> = (0..BURST).collect();
    for r in 0..ROUNDS {
        for v in 0..BURST {
            tx.try_send(r * BURST + v).unwrap();
        }
        for v in 0..BURST {
            assert_eq!(rx.try_recv().unwrap(), r * BURST + v);
        }
        for v in 0..BURST {
            tx.send(v).unwrap();
        }
        for v in 0..BURST {
            assert_eq!(rx.recv().unwrap(), v);
        }
        tx.send_slice(&values).unwrap();
        assert_eq!(rx.recv_slice(&mut buf).unwrap(), BURST as usize);
        assert_eq!(&buf[..], &values[..]);
    }
}

/// Byte queue: try calls, blocking calls, loans and in-place reads.
fn byte_paths(tx: &mut shmring::ByteSender, rx: &mut shmring::ByteReceiver) {
    let mut out = Vec::with_capacity(64);
    for r in 0..ROUNDS {
        let msg = r.to_le_bytes();
        for _ in 0..BURST {
            tx.try_send(&msg).unwrap();
        }
        for _ in 0..BURST {
            assert_eq!(rx.try_recv_into(&mut out).unwrap(), 8);
            assert_eq!(out, msg);
        }
        for _ in 0..BURST {
            tx.send(&msg).unwrap();
        }
        for _ in 0..BURST {
            assert_eq!(rx.recv_into(&mut out).unwrap(), 8);
        }
        for _ in 0..BURST {
            let mut loan = tx.loan(8).unwrap();
            loan.copy_from_slice(&msg);
            loan.commit();
        }
        for _ in 0..BURST {
            let m = rx.recv_ref().unwrap();
            assert_eq!(&m[..], &msg[..]);
        }
    }
}

/// What the child's trap handler exits with: 1 + the system call's number
/// modulo 250 (0 stays "no system call").
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SIGSYS's siginfo: si_signo, si_errno, si_code (3 x i32), padding,
    // then the call address (8 bytes) and the system call number (i32).
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers;
    // offset 24 lies inside its 128 bytes.
    let nr = unsafe { *(info as *const u8).add(24).cast::<i32>() };
    let code = 1 + nr.rem_euclid(250);
    // SAFETY: exit_group takes an integer; the filter allows it.
    unsafe { libc::syscall(libc::SYS_exit_group, libc::c_long::from(code)) };
}

/// Forbids this thread every system call but `exit_group`: the next one
/// traps to `on_sigsys`.
fn forbid_system_calls() {
    // SAFETY: plain libc calls with valid arguments: a zeroed sigaction
    // with our handler, then the two prctl calls of a seccomp filter whose
    // program outlives the call (the kernel copies it).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()), 0);
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        let mut prog = [
            // seccomp_data.arch (offset 4): another ABI is trapped too.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
            jump(AUDIT_ARCH_X86_64, 0, 3),
            // seccomp_data.nr (offset 0).
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jump(libc::SYS_exit_group as u32, 1, 0),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_TRAP),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
            ),
            0
        );
    }
}

#[test]
#[ignore = "child process entry point"]
fn child_no_syscalls() {
    child_main("child_no_syscalls", |_: Args| {
        let mut typed = Vec::new();
        let mut bytes = Vec::new();
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for mode in [WakeMode::Fast, WakeMode::Strict] {
                let q = Queue::<u64>::builder()
                    .flavor(flavor)
                    .capacity(2 * BURST)
                    .wake_mode(mode)
                    .create_anonymous()
                    .unwrap();
                let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
                typed.push((q, tx, rx));
                let q = ByteQueue::builder()
                    .flavor(flavor)
                    .capacity(2 * BURST)
                    .max_message_size(64)
                    .wake_mode(mode)
                    .create_anonymous()
                    .unwrap();
                let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
                bytes.push((q, tx, rx));
            }
        }
        // Warm up: fault every page in, fill every lazily made cache.
        for (_, tx, rx) in &typed {
            typed_paths(tx, rx);
        }
        for (_, tx, rx) in &mut bytes {
            byte_paths(tx, rx);
        }
        forbid_system_calls();
        for (_, tx, rx) in &typed {
            typed_paths(tx, rx);
        }
        for (_, tx, rx) in &mut bytes {
            byte_paths(tx, rx);
        }
        // SAFETY: exit_group takes an integer; the filter allows it. The
        // only way out: anything else this thread could do is a system call.
        unsafe { libc::syscall(libc::SYS_exit_group, 0 as libc::c_long) };
    });
}

#[test]
fn no_system_call_per_message_while_nobody_sleeps() {
    run("no_syscalls", |_| {
        let mut child = spawn_child("child_no_syscalls", &[]);
        let (status, out) = wait_status(&mut child);
        // libtest exits 0 when its filter matches nothing: insist that the
        // child's test really ran (it leaves by exit_group, so it never
        // prints "1 passed").
        assert!(
            out.contains("running 1 test"),
            "the child ran nothing:\n{out}"
        );
        match status.code() {
            Some(0) => {}
            Some(code) => panic!(
                "a message path made a system call (number ≡ {} mod 250); child output:\n{out}",
                code - 1
            ),
            None => panic!("the child died of a signal ({status}); its output:\n{out}"),
        }
    });
}
