//! The worker process: what [`init`](super::init) runs when this program
//! was re-executed by a pool. It reopens the inherited segments, says it is
//! ready, then serves tasks in order until its task queue is closed (the
//! pool shuts down) or its parent is gone, and returns the exit status.

use super::task::Registry;
use super::wire::{
    frame_len, write_frame, Assembly, Doorbell, Frame, WorkerCtl, WorkerSpec, FAILED, OK, PANICKED,
    RESULT_HDR, TASK_HDR, UNREGISTERED,
};
use crate::channel::{ByteQueue, ByteReceiver, ByteSender};
use crate::shared::Shared;
use crate::wait::WakeMode;
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// Exit status: the pool shut down, or the parent is gone.
const EXIT_DONE: i32 = 0;
/// Exit status: the start-up description or the inherited segments are bad.
const EXIT_SETUP: i32 = 71;
/// Exit status: the worker's registry differs from its parent's.
const EXIT_REGISTRY: i32 = 72;
/// Exit status: a frame broke the protocol (a scribbled queue).
const EXIT_PROTOCOL: i32 = 73;

/// Runs the worker described by `spec`; returns its exit status.
pub(super) fn run(spec: &str, reg: &'static Registry) -> i32 {
    let spec = match WorkerSpec::decode(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shmring pool worker: {e}");
            return EXIT_SETUP;
        }
    };
    if nix::unistd::getppid().as_raw() as u32 != spec.parent {
        // The parent died before we got here (PR_SET_PDEATHSIG was set
        // before exec, but it may have died before that).
        return EXIT_DONE;
    }
    if reg.fingerprint() != spec.registry {
        eprintln!(
            "shmring pool worker {}: this program registered other tasks than its parent \
             (shmring::pool::init must get the same list in every process)",
            spec.slot
        );
        return EXIT_REGISTRY;
    }
    let Some(mut w) = Worker::open(&spec, reg) else {
        return EXIT_SETUP;
    };
    w.serve()
}

/// Takes an inherited fd.
fn inherited(fd: i32) -> Option<OwnedFd> {
    // The fd must be open (F_GETFD fails with EBADF otherwise).
    // SAFETY: fcntl on an integer fd touches no memory.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        eprintln!("shmring pool worker: inherited fd {fd} is not open");
        return None;
    }
    // SAFETY: the parent cleared FD_CLOEXEC on exactly these fds for this
    // process, and nothing in it has taken them: `init` runs first in
    // `main`, and each number is taken once (the spec's four are checked
    // distinct by the caller).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

struct Worker {
    reg: &'static Registry,
    rx: ByteReceiver,
    tx: ByteSender,
    ctl: Shared<WorkerCtl>,
    bell: Shared<Doorbell>,
    max_payload: usize,
    slot: usize,
    // Keep the queues mapped while the endpoints live.
    _queues: (ByteQueue, ByteQueue),
}

impl Worker {
    fn open(spec: &WorkerSpec, reg: &'static Registry) -> Option<Worker> {
        let mut fds = spec.fds;
        fds.sort_unstable();
        if fds.windows(2).any(|w| w[0] == w[1]) {
            eprintln!("shmring pool worker: inherited fds repeat: {:?}", spec.fds);
            return None;
        }
        let [t, r, c, b] = spec.fds;
        let (t, r, c, b) = (inherited(t)?, inherited(r)?, inherited(c)?, inherited(b)?);
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            eprintln!("shmring pool worker: cannot open the {what}: {e}");
        };
        let tq = ByteQueue::builder()
            .from_fd(t)
            .map_err(|e| fail("task queue", &e))
            .ok()?;
        let rq = ByteQueue::builder()
            .from_fd(r)
            .map_err(|e| fail("result queue", &e))
            .ok()?;
        let ctl = Shared::<WorkerCtl>::builder()
            .from_fd(c)
            .map_err(|e| fail("control block", &e))
            .ok()?;
        let bell = Shared::<Doorbell>::builder()
            .from_fd(b)
            .map_err(|e| fail("doorbell", &e))
            .ok()?;
        let rx = tq
            .receiver()
            .map_err(|e| fail("task queue's receiver", &e))
            .ok()?;
        let tx = rq
            .sender()
            .map_err(|e| fail("result queue's sender", &e))
            .ok()?;
        let max_payload = usize::try_from(spec.max_payload).unwrap_or(usize::MAX);
        if tx.max_message_size() < RESULT_HDR + 16 {
            eprintln!("shmring pool worker: the result queue's slots are too small");
            return None;
        }
        // Release: the parent that reads `ready` (Acquire) finds our
        // endpoints attached.
        ctl.ready.store(1, Ordering::Release);
        bell.cell.notify(WakeMode::Strict);
        Some(Worker {
            reg,
            rx,
            tx,
            ctl,
            bell,
            max_payload,
            slot: spec.slot as usize,
            _queues: (tq, rq),
        })
    }

    fn serve(&mut self) -> i32 {
        let mut asm = Assembly::default();
        let mut out = Vec::new();
        loop {
            // Closed (the pool shuts down), Disconnected (the parent is
            // gone), Corrupted: every way out of `recv_ref` ends the worker.
            let Ok(msg) = self.rx.recv_ref() else {
                return EXIT_DONE;
            };
            let got = match asm.take(&msg, self.max_payload) {
                Err(e) => {
                    eprintln!("shmring pool worker {}: {e}", self.slot);
                    return EXIT_PROTOCOL;
                }
                Ok(Frame::Whole(_)) => None,
                Ok(Frame::Done(v)) => Some(v),
                Ok(Frame::Partial) => {
                    drop(msg);
                    // A slot freed in the middle of a long task: the parent
                    // may be waiting for room to send the rest.
                    self.bell.cell.notify(WakeMode::Strict);
                    continue;
                }
            };
            let ran = match got {
                // A whole task is read in place; its slot is freed after.
                None => {
                    let r = run_task(self.reg, &self.ctl, &msg[1..], &mut out);
                    drop(msg);
                    r
                }
                Some(long) => {
                    drop(msg);
                    self.bell.cell.notify(WakeMode::Strict);
                    run_task(self.reg, &self.ctl, &long, &mut out)
                }
            };
            if ran.is_err() {
                eprintln!(
                    "shmring pool worker {}: a task shorter than its header",
                    self.slot
                );
                return EXIT_PROTOCOL;
            }
            if out.len() > self.max_payload {
                let why = format!(
                    "the result's encoding ({} bytes) exceeds the pool's maximum payload of {} bytes",
                    out.len() - RESULT_HDR,
                    self.max_payload
                );
                out.truncate(RESULT_HDR);
                out[8] = FAILED;
                out.extend_from_slice(why.as_bytes());
            }
            if !self.send(&out) {
                return EXIT_DONE;
            }
            self.bell.cell.notify(WakeMode::Strict);
        }
    }

    /// Sends one logical message, in as many frames as it needs, waiting
    /// for room (the parent always drains results). False if the parent is
    /// gone.
    fn send(&mut self, msg: &[u8]) -> bool {
        let slot = self.tx.max_message_size();
        let (head, body) = msg.split_at(RESULT_HDR);
        let mut off = 0;
        while off < msg.len() {
            let (n, flen) = frame_len(msg.len(), off, slot);
            let Ok(mut loan) = self.tx.loan(flen) else {
                return false;
            };
            write_frame(head, body, off, n, &mut loan);
            loan.commit();
            off += n;
            if off < msg.len() {
                // The parent takes long results part by part.
                self.bell.cell.notify(WakeMode::Strict);
            }
        }
        true
    }
}

/// Runs one task (`seq`, id, input) and leaves its result message (`seq`,
/// status, payload) in `out`. `Err` if the task is shorter than its header.
fn run_task(reg: &Registry, ctl: &WorkerCtl, task: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    if task.len() < TASK_HDR {
        return Err(());
    }
    let seq = u64::from_le_bytes(task[0..8].try_into().expect("8 bytes"));
    let id = u64::from_le_bytes(task[8..16].try_into().expect("8 bytes"));
    // Release: a parent that reaps this process and then reads `started`
    // (Acquire) knows that this task's function began.
    ctl.started.store(seq, Ordering::Release);
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(OK);
    let status = match reg.get(id) {
        None => {
            out.extend_from_slice(b"no task of this id is registered in the worker");
            UNREGISTERED
        }
        Some(t) => {
            let input = &task[TASK_HDR..];
            match panic::catch_unwind(AssertUnwindSafe(|| t.run_encoded(input, out))) {
                Ok(Ok(())) => OK,
                Ok(Err(why)) => {
                    out.truncate(RESULT_HDR);
                    out.extend_from_slice(why.as_bytes());
                    FAILED
                }
                Err(payload) => {
                    out.truncate(RESULT_HDR);
                    out.extend_from_slice(panic_message(&*payload).as_bytes());
                    PANICKED
                }
            }
        }
    };
    out[8] = status;
    Ok(())
}

/// The message of a panic payload (`panic!("...")` gives a `&str` or a
/// `String`).
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
