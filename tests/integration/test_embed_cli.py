"""`pearl embed`: the happy path writes the table and plots and logs them to the run; bad input, run
as a subprocess the way a user runs it, exits 2 with one clear message.

The bad-input commands are independent, so the module starts them all at once (each spends seconds
importing torch and mlflow) and the happy path runs in-process meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TINY

PEARL = [sys.executable, "-m", "pearl.cli", "embed"]
MISSING_RUN = "0123456789abcdef0123456789abcdef"


def _checkpoints(root: Path, uri: str) -> dict[str, str]:
    """A run trained for one iteration, plus broken variants; returns the RUN argument of each case."""
    from mlflow import MlflowClient

    from pearl.checkpoint import save_checkpoint
    from pearl.config import config_from_dict
    from pearl.trainer import Trainer

    cfg = config_from_dict(TINY, "tiny")
    client = MlflowClient(uri)
    experiment = client.create_experiment("embed-test")
    trainer = Trainer(cfg)
    trainer.run_id, trainer.checkpoint_dir = client.create_run(experiment).info.run_id, root / "ok"
    client.set_tag(trainer.run_id, "pearl.checkpoint_dir", str(trainer.checkpoint_dir))
    trainer.run_iteration()
    trainer.save()

    fresh = Trainer(cfg)  # never collected: its context buffers are empty
    save_checkpoint(fresh.state_dict(), root / "empty_buffers", 0, keep=1)

    state = trainer.state_dict()
    saved = yaml.safe_load(state["config_yaml"])
    saved["env"]["kwargs"] = {"wind_speed": 3.0}  # point-robot takes no such argument
    state["config_yaml"] = yaml.safe_dump(saved)
    save_checkpoint(state, root / "bad_env", 1, keep=1)

    (root / "no_checkpoints").mkdir()
    bare = client.create_run(experiment).info.run_id
    client.set_tag(bare, "pearl.checkpoint_dir", str(root / "no_checkpoints"))
    return {"ok": trainer.run_id, "empty_buffers": str(root / "empty_buffers"), "bad_env": str(root / "bad_env"),
            "no_checkpoint": bare, "missing_run": MISSING_RUN}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The checkpoints, and the bad-input commands already running."""
    root = tmp_path_factory.mktemp("embed")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = _checkpoints(root, uri)
    extra = {"empty_buffers": ["--source", "buffer", "--tasks", "train"]}
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    procs = {case: subprocess.Popen([*PEARL, run, *extra.get(case, [])], cwd=root, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for case, run in runs.items() if case != "ok"}
    yield {"root": root, "uri": uri, "run_id": runs["ok"], "procs": procs, "done": {}}
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _result(setup: dict, case: str) -> subprocess.CompletedProcess:
    if case not in setup["done"]:
        proc = setup["procs"][case]
        stdout, stderr = proc.communicate(timeout=240)
        setup["done"][case] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return setup["done"][case]


def test_embed_writes_table_and_plots_and_logs_them_to_the_run(setup: dict, capsys: pytest.CaptureFixture) -> None:
    from pearl.cli import main

    out = setup["root"] / "out"
    assert main(["embed", setup["run_id"], "--out", str(out), "--tracking-uri", setup["uri"]]) == 0
    printed = capsys.readouterr().out
    assert "probe R²" in printed and "active latent dims" in printed and "contraction" in printed
    for name in ("latents.csv", "latents.npz", "contraction.csv", "summary.json", "projection.png",
                 "contraction.png", "probe.png"):
        assert (out / name).is_file(), name
    import pandas as pd

    table = pd.read_csv(out / "latents.csv")
    assert len(table) == TINY["env"]["n_train_tasks"] + TINY["env"]["n_test_tasks"]
    from mlflow import MlflowClient

    client = MlflowClient(setup["uri"])
    run = client.get_run(setup["run_id"])
    assert "embed/all/probe_r2_cv" in run.data.metrics and "embed/all/std_context_full" in run.data.metrics
    logged = {f.path for f in client.list_artifacts(setup["run_id"], "latents/all_rollouts")}
    assert "latents/all_rollouts/projection.png" in logged and "latents/all_rollouts/latents.csv" in logged


@pytest.mark.parametrize("case, message", [
    ("missing_run", f"{MISSING_RUN!r} is neither a checkpoint path nor a run id"),
    ("no_checkpoint", "no checkpoint"),
    ("bad_env", "got unknown argument(s) ['wind_speed']"),
    ("empty_buffers", "the task set is empty"),
])
def test_bad_input_is_one_message_and_exit_2(setup: dict, case: str, message: str) -> None:
    proc = _result(setup, case)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
