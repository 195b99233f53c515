"""The Python examples run and agree with themselves (small sizes)."""

import pathlib
import subprocess
import sys
import os

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_embedding_pipeline_aggregates_the_same_over_both_queues():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/python/embedding_pipeline.py"),
            "--batches", "20", "--batch", "64", "--dim", "32",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    assert "same aggregate: True" in out.stdout
    assert "shmring.Queue" in out.stdout and "vectors/s" in out.stdout
