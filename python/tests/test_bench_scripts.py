"""The benchmark scripts run (small counts) and say what they promise:
scripts/bench_python.py's shmring rows in both modes (the rows of
`shmring bench`), and scripts/bench_python_queues.py's rows, skipped
transports and target checks. No timing is asserted."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run(args, timeout=240):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                         timeout=timeout, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_bench_python_measures_shmring_queue_and_pipe_in_both_modes():
    rows = []
    for spin in ([], ["--spin"]):
        out = run([str(ROOT / "scripts/bench_python.py"), "--kinds", "shmring-queue,shmring-pipe",
                   "--sizes", "8,1024", "--rtt", "50", "--warmup", "10", "--calibrate", "50",
                   "--target-ms", "5", *spin])
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    seen = sorted((r["transport"], r["mode"], r["size"]) for r in rows)
    assert seen == sorted((f"python-shmring-{k}", m, s) for k in ("queue", "pipe")
                          for m in ("block", "spin") for s in (8, 1024))
    for r in rows:
        assert 0 < r["rtt_p50_ns"] <= r["rtt_p99_ns"] <= r["rtt_max_ns"], r
        assert r["msgs_per_s"] > 0 and r["count"] == 50, r


def test_bench_python_refuses_spin_for_multiprocessing():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/bench_python.py"), "--kinds",
                          "queue", "--spin"], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode != 0 and "no busy-polling mode" in out.stderr


def test_bench_python_queues_runs_and_skips_what_is_not_installed(tmp_path):
    only = "shmring.Queue,shmring.Queue spin,mp.Queue,faster_fifo.Queue,iceoryx2,iceoryx2 spin"
    report = tmp_path / "rows.json"
    out = run([str(ROOT / "scripts/bench_python_queues.py"), "--quick", "--rounds", "2",
               "--payloads", "small", "--only", only, "--shmring-bin", "/nonexistent/shmring",
               "--json", str(report)])
    assert "Rust rows skipped: /nonexistent/shmring not found" in out
    data = json.loads(report.read_text())
    measured = {r["transport"] for r in data["rows"]}
    for name in only.split(","):
        package = name.split(".")[0].split()[0]
        if package in ("faster_fifo", "iceoryx2") and importlib.util.find_spec(package) is None:
            assert data["skipped"][name].startswith("skipped: not installed"), data["skipped"]
            assert f"{name:27} skipped: not installed" in out
        else:
            assert name in measured, (name, measured)
    for r in data["rows"]:
        assert len(r["rounds"]) == 2, r
    checks = {c["target"]: c for c in data["checks"]}
    mq = checks["small round trip p50: mp.Queue / shmring.Queue (target >= 10)"]
    assert mq["min"] <= mq["median"] <= mq["max"]
    assert checks["small round trip p50: shmring.Queue / rust shm-mpmc block (target <= 1.3)"][
        "measured"] is None
