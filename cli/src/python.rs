//! The Python rows: `scripts/bench_python.py`, embedded, run with
//! `python3 -c` once per (kind, size), in its own process group (killed
//! whole if it overruns the deadline).

use crate::types::{Config, Failure, Latency, Row, Target};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script, as shipped in the repository's `scripts/`.
pub const SCRIPT: &str = include_str!("../../scripts/bench_python.py");

/// Measures `multiprocessing.Queue` or `Pipe` at `size`: one row.
pub fn measure(cfg: &Config, python: &Path, target: Target, size: usize) -> Result<Row, Failure> {
    let kind = match target {
        Target::PythonQueue => "queue",
        _ => "pipe",
    };
    let label = format!("python-{kind} block {size} B");
    let fail = |m: String| Failure::Run(format!("{label}: {m}"));
    let n = cfg.rtt_iterations(size);
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
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
    Ok(row)
}
