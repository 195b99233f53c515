//! The Python rows: `scripts/bench_python.py`, embedded, run with
//! `python3 -c` once per (kind, mode, size), in its own process group
//! (killed whole if it overruns the deadline); and finding an interpreter
//! that imports shmring for the python-shmring-* rows ([`shmring_python`]).

use crate::types::{Config, Failure, Latency, Mode, Row, Target};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script, as shipped in the repository's `scripts/`.
pub const SCRIPT: &str = include_str!("../../scripts/bench_python.py");

/// The checkout this binary was built from (the workspace root: scripts/,
/// target/), if it is still there.
fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    root.join("Cargo.toml")
        .is_file()
        .then(|| root.to_path_buf())
}

/// Whether `python` runs and imports shmring.
fn imports_shmring(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import shmring"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How to get the python-shmring-* rows, for the note of a run without them.
const HOW_TO_ENABLE: &str = "to measure them, run scripts/python-env in a checkout (it makes \
     target/python-venv with the package built into it), or pass --shmring-python PATH of an \
     interpreter where shmring is installed (pip install . from a checkout)";

/// The interpreter for the python-shmring-* rows and how it was found, or
/// why there is none and how to get one. `explicit`: --shmring-python
/// (already resolved: None inside if not found); `fallback`: --python, if
/// found; `setup`: whether scripts/python-env may be run. The order:
/// --shmring-python, this checkout's target/python-venv, --python, then
/// what scripts/python-env makes (it says on stderr that it runs).
pub fn shmring_python(
    explicit: Option<(&str, Option<PathBuf>)>,
    fallback: Option<&Path>,
    setup: bool,
) -> Result<(PathBuf, String), String> {
    if let Some((name, found)) = explicit {
        let p = found.ok_or_else(|| {
            format!("--shmring-python {name}: not found or not executable; {HOW_TO_ENABLE}")
        })?;
        if !imports_shmring(&p) {
            return Err(format!(
                "--shmring-python {name} cannot import shmring; {HOW_TO_ENABLE}"
            ));
        }
        return Ok((p, "--shmring-python".into()));
    }
    let root = checkout();
    if let Some(venv) = root
        .as_ref()
        .map(|r| r.join("target/python-venv/bin/python"))
    {
        if venv.is_file() && imports_shmring(&venv) {
            return Ok((venv, "this checkout's target/python-venv".into()));
        }
    }
    if let Some(p) = fallback.filter(|p| imports_shmring(p)) {
        return Ok((p.to_path_buf(), "--python".into()));
    }
    let script = root.as_ref().map(|r| r.join("scripts/python-env"));
    let Some(script) = script.filter(|s| s.is_file() && setup) else {
        let why = if setup {
            "no interpreter here imports shmring and scripts/python-env is not there (no checkout)"
        } else {
            "no interpreter here imports shmring (and --no-python-setup)"
        };
        return Err(format!("{why}; {HOW_TO_ENABLE}"));
    };
    eprintln!(
        "shmring bench: no Python interpreter here imports shmring (tried target/python-venv \
         and {}): running {} to make target/python-venv (pip install maturin pytest numpy, \
         maturin develop --release: minutes the first time) for the python-shmring-* rows",
        fallback.map_or("python3".into(), |p| p.display().to_string()),
        script.display()
    );
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("starting {}: {e}; {HOW_TO_ENABLE}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}; its messages are above); {HOW_TO_ENABLE}",
            script.display(),
            out.status
        ));
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let p = PathBuf::from(printed.lines().last().unwrap_or("").trim());
    if !imports_shmring(&p) {
        return Err(format!(
            "{} printed {:?}, which cannot import shmring; {HOW_TO_ENABLE}",
            script.display(),
            p.display().to_string()
        ));
    }
    Ok((p, "made just now by scripts/python-env".into()))
}

/// Measures one Python row (`multiprocessing.Queue` or `Pipe`, block;
/// `shmring.Queue` or `Pipe`, spin or block) at `size`.
pub fn measure(
    cfg: &Config,
    python: &Path,
    target: Target,
    mode: Mode,
    size: usize,
) -> Result<Row, Failure> {
    let kind = match target {
        Target::PythonQueue => "queue",
        Target::PythonShmringQueue => "shmring-queue",
        Target::PythonShmringPipe => "shmring-pipe",
        _ => "pipe",
    };
    let label = format!("python-{kind} {} {size} B", mode.name());
    let fail = |m: String| Failure::Run(format!("{label}: {m}"));
    let n = cfg.rtt_iterations(size);
    let mut cmd = Command::new(python);
    if mode == Mode::Spin {
        // `python -c SCRIPT ARGS`: the script's arguments follow it.
        cmd.arg("-c").arg(SCRIPT).arg("--spin");
    } else {
        cmd.arg("-c").arg(SCRIPT);
    }
    let mut child = cmd
        .args(["--kinds", kind])
        .args(["--sizes", &size.to_string()])
        .args(["--rtt", &n.to_string()])
        .args(["--warmup", &cfg.warmup(n).to_string()])
        .args(["--calibrate", &cfg.calibration_messages().to_string()])
        .args(["--target-ms", &cfg.stream_target().as_millis().to_string()])
        .args(["--cpus", &format!("{},{}", cfg.cpus.0, cfg.cpus.1)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("starting {}: {e}", python.display())))?;
    let pgid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // SAFETY: kill(2) of the process group we made for the
                // interpreter (it and its multiprocessing child).
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let _ = child.wait();
                return Err(fail(format!(
                    "did not finish within {} s (see --timeout); killed",
                    cfg.timeout
                )));
            }
            Err(e) => return Err(fail(format!("waiting for python: {e}"))),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(fail(format!(
            "the script failed ({status}):\n{}",
            err.trim_end()
        )));
    }
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| fail(format!("the script printed no result:\n{out}{err}")))?;
    parse(line).map_err(|e| fail(format!("{e} in {line:?}")))
}

fn parse(line: &str) -> Result<Row, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("bad JSON ({e})"))?;
    let u = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("missing {k}"))
    };
    let f = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("missing {k}"))
    };
    let curve = v
        .get("curve")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let lat = Latency {
        p50: u("rtt_p50_ns")?,
        p99: u("rtt_p99_ns")?,
        p999: u("rtt_p999_ns")?,
        max: u("rtt_max_ns")?,
        count: u("count").unwrap_or(0),
        curve,
    };
    let mut row = Row::new(lat, f("msgs_per_s")?);
    row.transport = v
        .get("transport")
        .and_then(serde_json::Value::as_str)
        .ok_or("missing transport")?
        .to_string();
    row.size = u("size")? as usize;
    row.mode = match v.get("mode").and_then(serde_json::Value::as_str) {
        Some("spin") => Mode::Spin,
        Some("block") => Mode::Block,
        _ => return Err("missing mode".into()),
    };
    Ok(row)
}
