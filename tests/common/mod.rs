//! Helpers shared by the integration tests (the library's, and the tool's
//! `cli/tests/cli.rs`, which includes this file by path).
//!
//! - **Child processes** are the test binary itself, re-executed: a child
//!   entry point is a `#[test] #[ignore]` function named `child_*` that
//!   starts with [`child_main`], which reads its arguments from
//!   [`ARGS_ENV`] and does nothing when the variable is absent (so the
//!   function is harmless under `--include-ignored`). [`spawn_child`] runs
//!   `current_exe() --exact <name> --include-ignored --nocapture
//!   --test-threads=1`, which works the same under `cargo test` and
//!   `cargo nextest`. A failing child panics, so libtest exits non-zero, and
//!   [`wait_ok`] turns that into a failure of the parent that shows the
//!   child's output (kept in a log file, so that children never print into
//!   the parent's test report). The harness is multi-threaded, so nothing
//!   here forks without exec.
//! - **Watchdog**: [`run`] and [`watchdog`] run a test body on its own
//!   thread and fail the test if it has not finished within a generous
//!   limit, killing the child processes the body started. A hang is a
//!   failure; no test asserts a wall-clock bound.
//! - **Segment names**: [`Ctx::name`] makes unique `/dev/shm` names (test
//!   name, pid, counter) and guards them: the guard unlinks a name still
//!   present when it is dropped and reports it as leaked, and [`run`]
//!   asserts that nothing with the test's prefix is left in `/dev/shm`.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Environment variable that carries a child's arguments (one per line).
pub const ARGS_ENV: &str = "SHMRING_CHILD_ARGS";

/// How long a test body may run before the watchdog calls it a hang.
pub const LIMIT: Duration = Duration::from_secs(120);

/// How long a child's body may run (a little longer than its parent's, so
/// that the parent's watchdog, which knows more, normally fires first).
pub const CHILD_LIMIT: Duration = Duration::from_secs(150);

/// The directory under which `/dev/shm` names live.
pub const SHM_DIR: &str = "/dev/shm";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

struct ChildRecord {
    log: PathBuf,
    /// The watchdog under which it was spawned (0: none).
    owner: u64,
}

fn registry() -> &'static Mutex<HashMap<u32, ChildRecord>> {
    static R: std::sync::OnceLock<Mutex<HashMap<u32, ChildRecord>>> = std::sync::OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_registry() -> std::sync::MutexGuard<'static, HashMap<u32, ChildRecord>> {
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// The watchdog whose body runs on this thread (0: none).
    static CURRENT_WATCHDOG: Cell<u64> = const { Cell::new(0) };
}

/// Starts the test binary again, running only the ignored test `test_name`
/// with `args` in [`ARGS_ENV`]. Its stdout and stderr go to a log file that
/// [`wait_ok`] shows if it fails. The child is registered with the watchdog
/// of the calling thread, which kills it if the test hangs or panics.
pub fn spawn_child(test_name: &str, args: &[&str]) -> Child {
    assert!(
        test_name.starts_with("child_"),
        "child entry points are named child_*"
    );
    for a in args {
        assert!(
            !a.contains('\n'),
            "child arguments may not contain newlines"
        );
    }
    let exe = std::env::current_exe().expect("current_exe");
    let log = std::env::temp_dir().join(format!(
        "shmring-child-{}-{}-{}.log",
        std::process::id(),
        next_id(),
        test_name
    ));
    let out = File::create(&log).expect("create child log");
    let err = out.try_clone().expect("clone child log");
    let child = Command::new(exe)
        .args([
            "--exact",
            test_name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ARGS_ENV, args.join("\n"))
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn child {test_name}: {e}"));
    let owner = CURRENT_WATCHDOG.with(|w| w.get());
    lock_registry().insert(child.id(), ChildRecord { log, owner });
    child
}

/// Forgets a reaped child; returns its output.
fn finish_child(pid: u32) -> String {
    let rec = lock_registry().remove(&pid);
    match rec {
        Some(r) => {
            let out = fs::read_to_string(&r.log).unwrap_or_default();
            let _ = fs::remove_file(&r.log);
            out
        }
        None => String::new(),
    }
}

/// Waits for a child and asserts that it ran its test and passed.
pub fn wait_ok(child: &mut Child) {
    let pid = child.id();
    let status = child.wait().expect("wait for child");
    let out = finish_child(pid);
    // libtest exits 0 when the filter matched nothing: insist that the
    // child's test really ran.
    if !status.success() || !out.contains("1 passed") {
        panic!("child {pid} failed ({status}); its output:\n{out}");
    }
}

/// Waits for a child and returns how it ended and its output, for tests
/// that judge the exit status themselves.
#[allow(dead_code)]
pub fn wait_status(child: &mut Child) -> (std::process::ExitStatus, String) {
    let pid = child.id();
    let status = child.wait().expect("wait for child");
    (status, finish_child(pid))
}

/// Waits for a child that was sent SIGKILL and asserts that it died of it.
pub fn wait_killed(child: &mut Child) {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id();
    let status: ExitStatus = child.wait().expect("wait for child");
    let out = finish_child(pid);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child {pid} should have died of SIGKILL ({status}); its output:\n{out}"
    );
}

/// Sends SIGKILL to a child (`Child::kill`) and reaps it.
pub fn kill_child(child: &mut Child) {
    child.kill().expect("kill child");
    wait_killed(child);
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Kills and reaps every child registered by watchdog `owner` that was not
/// waited for; returns the output of each.
fn kill_children(owner: u64) -> String {
    let pids: Vec<u32> = lock_registry()
        .iter()
        .filter(|(_, r)| r.owner == owner)
        .map(|(&p, _)| p)
        .collect();
    let mut report = String::new();
    for pid in pids {
        // Only a child of ours that has not been reaped keeps its pid: one
        // whose parent is someone else is a stranger that reused the number.
        if parent_of(pid) == Some(std::process::id()) {
            // Our own unreaped child (checked just above).
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        let out = finish_child(pid);
        let _ = write!(report, "\n--- child {pid} (killed by the watchdog):\n{out}");
    }
    report
}

/// The arguments of this process, if it was started by [`spawn_child`].
pub fn child_args() -> Option<Args> {
    let raw = std::env::var(ARGS_ENV).ok()?;
    Some(Args(raw.split('\n').map(str::to_string).collect()))
}

/// A child's arguments.
#[derive(Clone, Debug)]
pub struct Args(pub Vec<String>);

impl Args {
    /// Argument `i` as a string.
    pub fn str(&self, i: usize) -> &str {
        self.0
            .get(i)
            .unwrap_or_else(|| panic!("missing child argument {i} in {:?}", self.0))
    }

    /// Argument `i`, parsed.
    pub fn get<T: FromStr>(&self, i: usize) -> T {
        let s = self.str(i);
        s.parse()
            .unwrap_or_else(|_| panic!("child argument {i} ({s:?}) does not parse"))
    }
}

/// The body of a `child_*` test: runs `f` under a watchdog when this
/// process was started by [`spawn_child`], and does nothing otherwise.
pub fn child_main(name: &str, f: impl FnOnce(Args) + Send + 'static) {
    let Some(args) = child_args() else {
        return;
    };
    watchdog(name, CHILD_LIMIT, move || f(args));
}

// ---------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------

/// Runs `f` on its own thread; panics if it has not finished within
/// `limit`, after killing the children it spawned. A panic in `f` is passed
/// on. Children that `f` spawned and did not wait for are killed either way.
pub fn watchdog<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    static WATCHDOGS: AtomicU64 = AtomicU64::new(1);
    let id = WATCHDOGS.fetch_add(1, Ordering::Relaxed);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let body = thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            CURRENT_WATCHDOG.with(|w| w.set(id));
            let r = f();
            // On a panic `done_tx` is dropped instead: the watchdog wakes too.
            let _ = done_tx.send(());
            r
        })
        .expect("spawn test body thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            let r = body.join();
            kill_children(id);
            match r {
                Ok(v) => v,
                Err(p) => panic::resume_unwind(p),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let children = kill_children(id);
            panic!(
                "watchdog: {what} did not finish within {limit:?}: it hangs \
                 (its children were killed){children}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Segment names
// ---------------------------------------------------------------------------

/// A test's context: where its segment names come from.
pub struct Ctx {
    test: String,
    prefix: String,
    leaked: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    fn new(test: &str) -> Self {
        Ctx {
            test: test.to_string(),
            prefix: prefix_of(test),
            leaked: Arc::default(),
        }
    }

    /// The test's name.
    pub fn test(&self) -> &str {
        &self.test
    }

    /// A fresh `/dev/shm` name for a segment this test creates. Names stay
    /// until removed (the library's rule), so the guard removes it when it
    /// drops; a test of a removal asserts `!name.exists()` itself.
    pub fn name(&self, tag: &str) -> ShmName {
        self.make(tag, false)
    }

    /// A fresh name the library must have removed by the time the guard
    /// drops (a stream that ended, a `persist(false)` creator): the test
    /// fails if the guard finds it still there.
    pub fn removed_name(&self, tag: &str) -> ShmName {
        self.make(tag, true)
    }

    /// A fresh `/dev/shm` name for a file the test makes or keeps itself:
    /// the guard removes it silently.
    pub fn raw_name(&self, tag: &str) -> ShmName {
        self.make(tag, false)
    }

    fn make(&self, tag: &str, strict: bool) -> ShmName {
        ShmName {
            name: format!("{}{}-{}", self.prefix, next_id(), tag),
            strict,
            leaked: self.leaked.clone(),
        }
    }
}

/// The `/dev/shm` prefix of every name test `test` makes in this process.
pub fn prefix_of(test: &str) -> String {
    format!("shmring-it-{}-{}-", test, std::process::id())
}

/// A unique `/dev/shm` name; unlinks it on drop if it is still there.
#[derive(Debug)]
pub struct ShmName {
    name: String,
    strict: bool,
    leaked: Arc<Mutex<Vec<String>>>,
}

impl ShmName {
    /// The name, as passed to `Queue::create` / `Queue::open`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// `/dev/shm/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(SHM_DIR).join(&self.name)
    }

    /// Whether `/dev/shm/<name>` exists.
    pub fn exists(&self) -> bool {
        self.path().symlink_metadata().is_ok()
    }
}

impl Deref for ShmName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        // A pipe's halves, `<name>.0` and `<name>.1`, stay too.
        for half in [".0", ".1"] {
            let _ = fs::remove_file(Path::new(SHM_DIR).join(format!("{}{half}", self.name)));
        }
        if fs::remove_file(self.path()).is_ok() && self.strict && !thread::panicking() {
            self.leaked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.name.clone());
        }
    }
}

/// Names in `/dev/shm` that start with `prefix`.
pub fn segments_with_prefix(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(SHM_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts that test `test` (in this process) left nothing in `/dev/shm`.
pub fn assert_no_segments(test: &str) {
    let left = segments_with_prefix(&prefix_of(test));
    assert!(
        left.is_empty(),
        "segments left in {SHM_DIR} by {test}: {left:?}"
    );
}

/// Runs a test body under the [`watchdog`] with a fresh [`Ctx`]; then
/// asserts that no guarded name had to be removed by its guard and that no
/// segment with the test's prefix remains. If the body fails, whatever it
/// left in `/dev/shm` is removed before the failure is passed on.
pub fn run(test: &'static str, f: impl FnOnce(&Ctx) + Send + 'static) {
    let ctx = Arc::new(Ctx::new(test));
    let body_ctx = ctx.clone();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        watchdog(test, LIMIT, move || f(&body_ctx))
    }));
    let left = segments_with_prefix(&ctx.prefix);
    if let Err(p) = r {
        for n in &left {
            let _ = fs::remove_file(Path::new(SHM_DIR).join(n));
        }
        panic::resume_unwind(p);
    }
    let leaked = ctx.leaked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        leaked.is_empty(),
        "{test}: the library left these segments behind (removed by the test's guards): {leaked:?}"
    );
    assert_no_segments(test);
}

/// Runs test `test` as the re-exec'd child entry point `child` (with
/// `args`, segment names made by `names` from the test's [`Ctx`]) and
/// waits for it to pass: for tests that fork, which must not fork the
/// multi-threaded harness itself (another test thread may hold a lock the
/// fork child then waits on for ever).
pub fn run_in_child(test: &'static str, child: &'static str, names: &'static [&'static str]) {
    run(test, move |ctx| {
        let names: Vec<ShmName> = names.iter().map(|n| ctx.name(n)).collect();
        let args: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let mut c = spawn_child(child, &args);
        wait_ok(&mut c);
    });
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// Polls `cond` every millisecond until it holds (the watchdog bounds it).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let mut n: u64 = 0;
    while !cond() {
        n += 1;
        if n.is_multiple_of(10_000) {
            eprintln!("still waiting for {what}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// This thread's id.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// The scheduler state (`R`, `S`, `T`, …) of thread `tid` of process `pid`.
pub fn task_state(pid: u32, tid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The scheduler state of thread `tid` of this process.
pub fn thread_state(tid: i32) -> Option<char> {
    task_state(std::process::id(), tid)
}

/// Whether thread `tid` of process `pid` is asleep, on several looks in a
/// row (a blocking call spins before it announces itself and sleeps).
pub fn task_asleep(pid: u32, tid: i32) -> bool {
    (0..5).all(|_| {
        let s = task_state(pid, tid) == Some('S');
        thread::sleep(Duration::from_millis(1));
        s
    })
}

/// Whether thread `tid` of this process is asleep, as [`task_asleep`].
pub fn asleep(tid: i32) -> bool {
    task_asleep(std::process::id(), tid)
}

/// In a process with a mount namespace of its own: makes `/` private (so
/// nothing propagates out) and mounts a fresh `/proc` (of this process's
/// pid namespace) with `options` (e.g. `hidepid=2`). False if not
/// permitted.
pub fn mount_private_proc(options: Option<&std::ffi::CStr>) -> bool {
    let opts = options.map_or(std::ptr::null(), |o| o.as_ptr().cast());
    // SAFETY: valid C strings (or null where allowed); affects only this
    // process's mount namespace.
    unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
            && libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                0,
                opts,
            ) == 0
    }
}

/// Sleeps until killed (the child's watchdog ends it eventually).
pub fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

/// A small deterministic generator (xorshift64*), for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Zeroed shared anonymous memory for `n` values of `T`, inherited by
/// forked children (ledgers of the kill loops). Never unmapped.
///
/// Only for types whose all-zero bytes are valid (atomics).
#[allow(dead_code)]
pub fn shared_mem<T>(n: usize) -> &'static [T] {
    let len = n * std::mem::size_of::<T>();
    // SAFETY: a fresh anonymous shared mapping of `len` bytes, zero-filled
    // and page-aligned; zeroed atomics are valid (contract), and it is never
    // unmapped, hence 'static.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::slice::from_raw_parts(p as *const T, n)
    }
}

/// Forks the calling process (a re-exec'd child of a test: the harness
/// itself never forks). The fork children use the library and leave with
/// `_exit`.
#[allow(dead_code)]
pub fn fork_raw() -> libc::pid_t {
    // SAFETY: called only inside a re-exec'd child process (see above); the
    // child of the fork touches nothing another thread could hold locked
    // before it leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    pid
}

/// Waits for a child forked by [`fork_raw`]: its exit status, or minus
/// the signal that killed it.
#[allow(dead_code)]
pub fn reap_raw(pid: libc::pid_t) -> i32 {
    let mut st = 0;
    // SAFETY: our own child; `st` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        -libc::WTERMSIG(st)
    }
}

/// A small tmpfs mounted at a fresh directory (`options`, e.g.
/// `"size=8m,mode=0700"`), unmounted on drop: a file system that fills.
/// `None` where this process may not mount (not root, no CAP_SYS_ADMIN).
#[allow(dead_code)]
pub struct SmallTmpfs {
    /// The mount point.
    pub dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl SmallTmpfs {
    /// Mounts one, if this process may.
    pub fn mount(options: &str) -> Option<SmallTmpfs> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().ok()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        let fs = CString::new("tmpfs").unwrap();
        let data = CString::new(options).ok()?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                fs.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        (r == 0).then_some(SmallTmpfs { dir })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
