//! The system calls `shmring bench` needs around its measurements: CPU
//! affinity, a shared anonymous mapping, fork and reaping, and the
//! per-measurement watchdog (`alarm`). (Futex waits and wakes are the
//! library's: `shmring::futex_wait` and `futex_wake`.)

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

/// The CPUs this process may run on (its affinity mask, a subset of the
/// online CPUs), ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        set
    };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads bit `c` of the set, `c` < CPU_SETSIZE.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread (the whole process while it has one thread) to `cpu`.
pub fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes bit
    // `cpu` (< CPU_SETSIZE, checked by the caller's CPU list);
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A fresh shared, zero-filled, page-aligned anonymous mapping of `len`
/// bytes, inherited across `fork`; the caller unmaps it (`munmap`).
pub fn map_shared(len: usize) -> io::Result<*mut u8> {
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
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// A shared, zero-filled anonymous mapping of a `T`, inherited across `fork`.
pub struct SharedMap<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> SharedMap<T> {
    /// Maps one `T`.
    ///
    /// # Safety
    /// All-zero bytes must be a valid `T`, `T`'s alignment at most a page,
    /// and `T` must be shared across processes through atomics only.
    pub unsafe fn new() -> io::Result<Self> {
        let len = std::mem::size_of::<T>();
        let p = map_shared(len)?;
        Ok(SharedMap { ptr: p.cast(), len })
    }
}

impl<T> std::ops::Deref for SharedMap<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mapping is live while `self` is, page-aligned, `len`
        // bytes, zero-filled (valid per `new`'s contract) and only accessed
        // through shared references (atomics).
        unsafe { &*self.ptr }
    }
}

impl<T> Drop for SharedMap<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference
        // into it outlives `self` (they borrow from it).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------
// The child process and the watchdog

/// The pid of the live child (0: none), for the watchdog's handler.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// What is being measured, for the watchdog's message.
static LABEL: [AtomicU8; 96] = [const { AtomicU8::new(0) }; 96];
static LABEL_LEN: AtomicUsize = AtomicUsize::new(0);

/// Records what is being measured, for the watchdog's message.
pub fn set_label(label: &str) {
    let b = label.as_bytes();
    let n = b.len().min(LABEL.len());
    for (slot, &c) in LABEL.iter().zip(&b[..n]) {
        slot.store(c, Ordering::Relaxed);
    }
    LABEL_LEN.store(n, Ordering::Relaxed);
}

fn write_stderr(b: &[u8]) {
    // SAFETY: write(2) from a valid buffer; async-signal-safe.
    unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
}

extern "C" fn on_alarm(_sig: libc::c_int) {
    // Only async-signal-safe calls here: kill, write, _exit.
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) of our own child, by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    write_stderr(b"\nshmring: error: the watchdog fired: ");
    let n = LABEL_LEN.load(Ordering::Relaxed);
    let mut buf = [0u8; 96];
    for (b, slot) in buf.iter_mut().zip(&LABEL[..n]) {
        *b = slot.load(Ordering::Relaxed);
    }
    write_stderr(&buf[..n]);
    write_stderr(b" did not finish in time (see --timeout)\n");
    // SAFETY: _exit ends the process without running anything else.
    unsafe { libc::_exit(1) };
}

/// Installs the SIGALRM handler (once, at start).
pub fn install_watchdog() -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask;
    // the handler only makes async-signal-safe calls.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Arms the watchdog for `secs` seconds (0 disarms it).
pub fn alarm(secs: u64) {
    // SAFETY: alarm(2) takes a plain integer.
    unsafe { libc::alarm(secs.min(u32::MAX as u64) as libc::c_uint) };
}

/// What `fork` returned.
pub enum Forked {
    /// In the child.
    Child,
    /// In the parent: the child's handle.
    Parent(ChildProc),
}

/// Forks. The process must be single-threaded (it is: `shmring bench` never
/// starts a thread).
pub fn fork() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        return Err(io::Error::other(format!(
            "this process has {threads} threads: refusing to fork"
        )));
    }
    // SAFETY: the process is single-threaded here (no progress-bar ticker,
    // no helper threads), so the child starts with consistent memory.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            CHILD.store(pid, Ordering::Relaxed);
            Ok(Forked::Parent(ChildProc {
                pid,
                reaped: std::cell::Cell::new(None),
            }))
        }
    }
}

/// Runs `body` in a freshly forked child and leaves with `_exit`: status 0
/// if it returned `Ok`, 1 (after a message on stderr) if it failed or
/// panicked. Never returns.
pub fn child_main(
    label: &str,
    cpu: usize,
    timeout: u64,
    body: impl FnOnce(&Peer) -> Result<(), String>,
) -> ! {
    child_main_on(label, Some(cpu), timeout, body)
}

/// As [`child_main`], pinned to `cpu` if there is one, else left on the
/// CPUs it inherited (`shmring bench --scaling` with more participants
/// than CPUs).
pub fn child_main_on(
    label: &str,
    cpu: Option<usize>,
    timeout: u64,
    body: impl FnOnce(&Peer) -> Result<(), String>,
) -> ! {
    let parent = child_setup();
    alarm(timeout);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(cpu) = cpu {
            pin(cpu).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
        }
        body(&Peer::Parent(parent))
    }));
    let code = match r {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            write_stderr(format!("\nshmring: error in the child ({label}): {e}\n").as_bytes());
            1
        }
        Err(_) => 1,
    };
    // SAFETY: _exit leaves without running the parent's atexit handlers or
    // flushing its inherited stdio buffers.
    unsafe { libc::_exit(code) }
}

/// In a new child: die with the parent, no inherited child pid for the
/// watchdog. Returns the parent's pid.
fn child_setup() -> libc::pid_t {
    CHILD.store(0, Ordering::Relaxed);
    // SAFETY: getppid and prctl(PR_SET_PDEATHSIG) take plain integers.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1); // the parent died before the prctl
        }
        parent
    }
}

/// The other process of a measurement, checked while waiting for it.
pub enum Peer<'a> {
    /// Seen from the child: the parent's pid.
    Parent(libc::pid_t),
    /// Seen from the parent: the child.
    Child(&'a ChildProc),
}

impl Peer<'_> {
    /// Errs if the peer is gone (called when a busy wait has gone on long).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Peer::Parent(p) => {
                // SAFETY: getppid takes nothing.
                if unsafe { libc::getppid() } != *p {
                    // SAFETY: leave at once: the parent is gone.
                    unsafe { libc::_exit(1) };
                }
                Ok(())
            }
            Peer::Child(c) => c.check_alive(),
        }
    }
}

/// The parent's handle on a forked child: reaped (killed first if need be)
/// when dropped.
pub struct ChildProc {
    pid: libc::pid_t,
    reaped: std::cell::Cell<Option<libc::c_int>>,
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("ended with wait status {status:#x}")
    }
}

impl ChildProc {
    fn wait(&self, flags: libc::c_int) -> Option<libc::c_int> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if r == self.pid {
                return Some(status);
            }
            if r == 0 {
                return None;
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                // ECHILD: nothing to wait for; treat as gone.
                return Some(-1);
            }
        }
    }

    /// Errs if the child has exited (reaping it).
    pub fn check_alive(&self) -> Result<(), String> {
        let s = match self.reaped.get() {
            Some(s) => s,
            None => match self.wait(libc::WNOHANG) {
                None => return Ok(()),
                Some(s) => {
                    self.reaped.set(Some(s));
                    CHILD.store(0, Ordering::Relaxed);
                    s
                }
            },
        };
        Err(format!("the child process {}", describe(s)))
    }

    /// Whether the child has ended, without waiting: None while it runs,
    /// then Ok if it exited with status 0 (reaped), else what became of it.
    /// For a parent of several children (`--scaling`), which polls them all.
    pub fn poll_exit(&self) -> Option<Result<(), String>> {
        let s = match self.reaped.get() {
            Some(s) => s,
            None => {
                let s = self.wait(libc::WNOHANG)?;
                self.reaped.set(Some(s));
                // Relaxed: the watchdog's own variable, read by its
                // handler in this thread; forget only this child's pid.
                let _ = CHILD.compare_exchange(self.pid, 0, Ordering::Relaxed, Ordering::Relaxed);
                s
            }
        };
        Some(if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 {
            Ok(())
        } else {
            Err(format!("the child process {}", describe(s)))
        })
    }

    /// Waits for the child to exit; errs unless it exited with status 0.
    pub fn reap(self) -> Result<(), String> {
        let s = match self.reaped.get() {
            Some(s) => s,
            None => self.wait(0).unwrap_or(-1),
        };
        self.reaped.set(Some(s));
        CHILD.store(0, Ordering::Relaxed);
        if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 {
            Ok(())
        } else {
            Err(format!("the child process {}", describe(s)))
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if self.reaped.get().is_none() {
            // SAFETY: kill(2) of our own, not yet reaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.wait(0);
        }
        CHILD.store(0, Ordering::Relaxed);
    }
}
