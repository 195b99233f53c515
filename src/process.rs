//! Process identity and liveness: a pid plus the process's start time, so a
//! reused pid is never mistaken for the process that used to hold it.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

/// A process, identified for life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks after the host's boot (`/proc/<pid>/stat`
    /// field 22, less this process's time-namespace boot-time offset, so
    /// that processes in different time namespaces agree on it). 0: unknown
    /// (`/proc` could not be read when it was recorded); such a process is
    /// judged dead only when its pid is gone.
    pub start: u64,
}

/// What a liveness check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The process exists and is the one recorded (or cannot be told apart).
    Alive,
    /// The process is gone, a zombie, or the pid belongs to a newer process.
    Dead,
}

/// Parses `(state, starttime)` out of `/proc/<pid>/stat` content.
pub(crate) fn parse_stat(stat: &[u8]) -> Option<(char, u64)> {
    // The command name (field 2) may hold any bytes, spaces, parentheses
    // and invalid UTF-8 included: fields resume after the last ')' and are
    // ASCII from there on.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is field 22: 19 further fields on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Reads and parses `/proc/<id>/stat` (a process, or a thread by its tid).
/// `Err`: it could not be opened or read (`NotFound`: no such task);
/// `Ok(None)`: unparsable. Allocation-free (stack buffers), so liveness
/// checks may run on paths that promise no allocation.
pub(crate) fn stat_of(id: u32) -> std::io::Result<Option<(char, u64)>> {
    if !proc_is_ours() {
        // This `/proc` belongs to another pid namespace: `/proc/<id>` would
        // describe some other task. As far as it can tell, there is none.
        return Err(std::io::ErrorKind::NotFound.into());
    }
    // "/proc/4294967295/stat" is 21 bytes.
    let mut path = [0u8; 32];
    let mut w = &mut path[..];
    write!(w, "/proc/{id}/stat")?;
    let len = 32 - w.len();
    let mut file = fs::File::open(OsStr::from_bytes(&path[..len]))?;
    // A stat line is a few hundred bytes (the command name is at most 64);
    // the fields parsed come within the first 1 KiB whatever the name.
    let mut buf = [0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(parse_stat(&buf[..got]).map(|(state, start)| (state, host_ticks(start))))
}

/// Converts a start time read from `/proc` (which the kernel shifts by the
/// reader's time-namespace boot-time offset) to ticks after the host's
/// boot. Never 0 for a readable value (0 means "unknown").
fn host_ticks(read: u64) -> u64 {
    read.saturating_sub(timens_boot_offset_ticks()).max(1)
}

/// This process's time-namespace boot-time offset in clock ticks (0 in the
/// initial time namespace, or when `/proc/self/timens_offsets` is absent).
/// Read once: a process cannot change its own time namespace.
fn timens_boot_offset_ticks() -> u64 {
    use std::sync::atomic::Ordering;
    // Relaxed: a cache of a value every thread computes identically.
    let v = OFFSET.load(Ordering::Relaxed);
    if v != UNSET {
        return v;
    }
    // Registers the fork handler that forgets the cache in a child (which
    // may have been forked into another time namespace).
    current_pid();
    let v = fs::read("/proc/self/timens_offsets")
        .ok()
        .and_then(|t| parse_timens_boot_offset(&t))
        .unwrap_or(0);
    // Relaxed: as above.
    OFFSET.store(v, Ordering::Relaxed);
    v
}

/// The `boottime` line of `/proc/<pid>/timens_offsets` in clock ticks
/// (100 per second on Linux, `USER_HZ`), rounded down. Negative offsets
/// (allowed by the kernel) count as 0: start times are then not shifted
/// below the host's.
pub(crate) fn parse_timens_boot_offset(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let name = f.next()?;
        if name != "boottime" && name != "7" {
            continue;
        }
        let secs: i64 = f.next()?.parse().ok()?;
        let nanos: i64 = f.next()?.parse().ok()?;
        let ticks = secs.checked_mul(100)?.checked_add(nanos / 10_000_000)?;
        return Some(u64::try_from(ticks).unwrap_or(0));
    }
    None
}

/// `(state, starttime)` of `pid`, if readable and well-formed.
pub(crate) fn read_stat(pid: u32) -> Option<(char, u64)> {
    stat_of(pid).ok().flatten()
}

/// This process's identity. Read afresh each call (a forked child is a new
/// process); call it on setup paths only.
pub fn current() -> ProcId {
    let pid = std::process::id();
    let start = read_stat(pid).map_or(0, |(_, s)| s);
    ProcId { pid, start }
}

/// This process's pid, cached and refreshed in a forked child (a
/// `pthread_atfork` child handler): one relaxed load, for the check every
/// endpoint call makes that it runs in the process that attached it.
#[inline(always)]
pub fn current_pid() -> u32 {
    use std::sync::atomic::Ordering;
    // Relaxed: written by this process only, before any other thread of a
    // child exists (fork) or once per process (first call).
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    current_pid_slow()
}

/// `OFFSET` not computed yet.
const UNSET: u64 = u64::MAX;
/// Cache of [`timens_boot_offset_ticks`].
static OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(UNSET);

static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cold]
fn current_pid_slow() -> u32 {
    use std::sync::atomic::Ordering;
    watch_fork();
    let pid = std::process::id();
    // Relaxed: see `current_pid`.
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// A per-process cache kept by a higher layer, which a forked child must
/// forget as well: the identity of the forking thread as a lock owner
/// (`sync::owner`) and the `membarrier` registration (`wait`). Each layer
/// hands its own forgetting function to [`watch_fork_for`], so that this
/// layer names no higher one.
#[derive(Clone, Copy)]
pub(crate) enum ForkCache {
    /// `sync::owner`: the owner word of the forking thread.
    LockOwner,
    /// `wait`: this process's `membarrier` registration.
    Membarrier,
    /// `container::heap`: the table of this process's container mappings
    /// (its lock may be held by a thread the child does not have).
    ContainerHeaps,
}

/// The forgetting functions of the higher layers' caches, by [`ForkCache`].
static FORK_HOOKS: [std::sync::OnceLock<fn()>; 3] = [
    std::sync::OnceLock::new(),
    std::sync::OnceLock::new(),
    std::sync::OnceLock::new(),
];

/// [`watch_fork`], for a higher layer's cache: `forget` runs in the forked
/// child's handler too. Called before the cache is first filled.
pub(crate) fn watch_fork_for(cache: ForkCache, forget: fn()) {
    watch_fork();
    // Another thread may have set it first: the same function.
    let _ = FORK_HOOKS[cache as usize].set(forget);
}

/// Registers, once per process, the `pthread_atfork` child handler that
/// makes a forked child forget every per-process cache: its pid, its time
/// and pid namespaces and its view of `/proc` (here), and those of higher
/// layers registered with [`watch_fork_for`], all of which belong to the
/// parent. Every cache calls this before it first fills itself.
pub(crate) fn watch_fork() {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a child handler that only stores to atomics,
        // which is async-signal-safe as a fork child handler must be. (nix
        // has no wrapper for pthread_atfork.)
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
    });
}

/// The `pthread_atfork` child handler (see [`watch_fork`]). The child runs
/// one thread here; only atomics are touched (async-signal-safe).
extern "C" fn forget_in_child() {
    use std::sync::atomic::Ordering;
    // Relaxed: the child runs one thread here.
    PID.store(0, Ordering::Relaxed);
    // Relaxed: as above; the child may live in another time namespace.
    OFFSET.store(UNSET, Ordering::Relaxed);
    PID_NS.store(UNSET, Ordering::Relaxed);
    PROC_OURS.store(0, Ordering::Relaxed);
    // A set hook is read with one atomic load (`OnceLock::get`), no lock:
    // async-signal-safe.
    for hook in &FORK_HOOKS {
        if let Some(forget) = hook.get() {
            forget();
        }
    }
}

/// Whether the kernel says that no task has id `id` (a pid or a tid):
/// `kill(id, 0)` fails with `ESRCH`. Signal 0 sends nothing; any other
/// answer (`0`, `EPERM`: a task exists, perhaps another user's) is false.
pub(crate) fn no_such_task(id: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    kill(Pid::from_raw(id), None) == Err(nix::errno::Errno::ESRCH)
}

/// The pid namespace this process lives in: the inode number of
/// `/proc/self/ns/pid`, or 0 when it cannot be read (no `/proc`).
///
/// A pid, and `/proc/<pid>`, mean something only inside one pid namespace:
/// processes that share a segment (containers sharing `/dev/shm` without
/// sharing pids) but live in different ones cannot judge each other's
/// liveness, so endpoints refuse to attach across them.
pub fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::Ordering;
    // Relaxed: a cache of a value every thread computes identically; reset
    // in a forked child (which `unshare(CLONE_NEWPID)` may have moved).
    let v = PID_NS.load(Ordering::Relaxed);
    if v != UNSET {
        return v;
    }
    current_pid(); // registers the fork handler
    let v = fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino());
    // Relaxed: as above.
    PID_NS.store(v, Ordering::Relaxed);
    v
}

/// Whether `/proc` shows this process's own pid namespace: `/proc/self`
/// names this process's pid. It does not after `unshare -p -f` without a
/// fresh `/proc` mount, where `/proc` is the parent namespace's and
/// `/proc/<pid>` describes another task, or none. Then no start time is
/// recorded (0: unknown) and liveness rests on `kill(pid, 0)` alone.
/// Cached; forgotten in a forked child.
pub fn proc_is_ours() -> bool {
    use std::sync::atomic::Ordering;
    // Relaxed: a cache of a value every thread computes identically.
    match PROC_OURS.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let pid = current_pid();
    let ours = fs::read_link("/proc/self")
        .ok()
        .and_then(|l| l.to_str().and_then(|s| s.parse::<u32>().ok()))
        == Some(pid);
    // Relaxed: as above.
    PROC_OURS.store(if ours { 1 } else { 2 }, Ordering::Relaxed);
    ours
}

/// Cache of [`proc_is_ours`]: 0 unknown, 1 yes, 2 no.
static PROC_OURS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Cache of [`pid_namespace`].
static PID_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(UNSET);

/// Whether `p` is still running. Conservative: anything short of proof of
/// death counts as alive, because a paused (SIGSTOP) or merely slow process
/// must keep what it holds.
pub fn liveness(p: ProcId) -> Liveness {
    let Ok(pid) = i32::try_from(p.pid) else {
        return Liveness::Dead;
    };
    if pid <= 0 {
        return Liveness::Dead;
    }
    if no_such_task(pid) {
        return Liveness::Dead;
    }
    match read_stat(p.pid) {
        // Zombie or dead: it will never run again, whoever reaps it.
        Some(('Z' | 'X' | 'x', _)) => Liveness::Dead,
        // A recorded start of 0 is unknown (the owner could not read /proc):
        // only the pid's disappearance proves that owner dead.
        Some((_, start)) if p.start != 0 && !same_start(start, p.start) => Liveness::Dead,
        // Unreadable /proc (hidepid): kill() says it exists.
        _ => Liveness::Alive,
    }
}

/// Whether two normalised start times name the same process start. Exact in
/// the initial time namespace; within one tick otherwise (the kernel rounds
/// the shifted value, so a sub-tick offset can move it by one).
fn same_start(a: u64, b: u64) -> bool {
    if timens_boot_offset_ticks() == 0 {
        a == b
    } else {
        a.abs_diff(b) <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let s = "1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(parse_stat(s.as_bytes()), Some(('S', 987654)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
        // A name that is not UTF-8 (prctl accepts any bytes) still parses.
        let odd = b"77 (\xff\xfe)) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 42 20";
        assert_eq!(parse_stat(odd), Some(('Z', 42)));
    }

    #[test]
    fn this_process_is_alive_and_a_bogus_one_is_not() {
        let me = current();
        assert!(me.start > 0);
        assert_eq!(liveness(me), Liveness::Alive);
        let reused = ProcId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert_eq!(liveness(reused), Liveness::Dead);
        assert_eq!(liveness(ProcId { pid: 0, start: 0 }), Liveness::Dead);
        // Unknown start (recorded without /proc): alive while the pid is.
        assert_eq!(
            liveness(ProcId {
                pid: me.pid,
                start: 0
            }),
            Liveness::Alive
        );
    }

    #[test]
    fn time_namespace_offsets_parse() {
        let t = b"monotonic 0 0\nboottime 86400 500000000\n";
        assert_eq!(parse_timens_boot_offset(t), Some(8_640_050));
        assert_eq!(parse_timens_boot_offset(b"7 -5 0\n"), Some(0));
        assert_eq!(parse_timens_boot_offset(b"monotonic 3 0\n"), None);
    }

    #[test]
    fn cached_pid_follows_fork() {
        let parent = current_pid();
        assert_eq!(parent, std::process::id());
        // SAFETY: the child only calls async-signal-safe-enough code (an
        // atomic load and getpid) and leaves with _exit.
        let child = match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Parent { child } => child,
            nix::unistd::ForkResult::Child => {
                let ok = current_pid() == std::process::id() && current_pid() != parent;
                // SAFETY: _exit ends the child without running the parent's
                // atexit handlers (nix has no wrapper for it).
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
        };
        let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        assert_ne!(pid_namespace(), 0);
    }
}
