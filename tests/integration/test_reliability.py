"""Failures around a run, reported as one clear line: an unreachable tracking server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TINY

UNREACHABLE = "http://127.0.0.1:9"  # loopback, discard port: nothing listens, the refusal is immediate


def test_unreachable_tracking_server_is_reported_at_start_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": UNREACHABLE}
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        env.pop(key, None)  # the code's own short first-contact settings are under test
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pearl.cli", "train", "tiny.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: cannot reach the MLflow tracking server at {UNREACHABLE} ([Errno 111] Connection refused); "
        "check tracking.tracking_uri or $MLFLOW_TRACKING_URI, and that the server is running"
    ]
    assert elapsed < 60, f"took {elapsed:.0f} s to give up"
    assert not (tmp_path / "checkpoints").exists()


def test_unreachable_server_is_not_mistaken_for_an_unknown_run(capsys: pytest.CaptureFixture) -> None:
    from pearl.cli import main

    assert main(["resume", "0123456789abcdef", "--tracking-uri", UNREACHABLE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the MLflow tracking server at {UNREACHABLE}"), err
