"""The `pearl` command line, exercised as a subprocess (as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PEARL = [sys.executable, "-m", "pearl.cli"]


def run(*args: str, cwd: Path, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([*PEARL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def _runs(tmp_path: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.parametrize("command", ["train", "resume", "evaluate", "embed", "list", "check-encoder", "sweep",
                                     "compare"])
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    out = run(command, "--help", cwd=tmp_path)
    assert out.returncode == 0 and "usage: pearl" in out.stdout


def test_list_names_envs_and_encoders(tmp_path: Path) -> None:
    out = run("list", cwd=tmp_path)
    assert out.returncode == 0
    for name in ("point-robot", "sparse-point-robot", "cheetah-vel", "mlp", "gru", "attention", "deterministic"):
        assert name in out.stdout


def test_train_logs_a_finished_run(tmp_path: Path, tiny_config_dict: dict) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict))
    out = run("train", str(cfg), "--set", "seed=3", "--set", "algo.kl_lambda=0.5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mlflow ui" in out.stdout
    (run_info,) = _runs(tmp_path)
    assert run_info.info.status == "FINISHED"
    assert run_info.data.params["seed"] == "3" and run_info.data.params["algo.kl_lambda"] == "0.5"
    assert run_info.data.tags["pearl.version"]
    tags = run_info.data.tags  # how to repeat the run, and where it ran
    assert tags["pearl.config"] == str(cfg) and tags["pearl.overrides"] == "seed=3 algo.kl_lambda=0.5"
    assert "cores" in tags["pearl.machine"] and "torch" in tags["pearl.machine"]
    metrics = run_info.data.metrics
    for key in ("train/loss_critic", "train/loss_kl", "eval/test/return_adapted", "eval/test/return_prior",
                "eval/test/return_episode_0", "eval/train/return_adapted", "time/iteration_s"):
        assert key in metrics, key
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(run_info.info.run_id, "train/loss_critic")
    steps = sorted(m.step for m in history)
    assert len(steps) == 2 and steps[0] > 0 and steps[1] > steps[0]  # step = total env steps
    artifacts = {a.path for a in client.list_artifacts(run_info.info.run_id)}
    assert {"config.yaml", "plots", "model"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run_info.info.run_id, "plots")}
    assert {"plots/learning_curve.png", "plots/adaptation_curve.png"} <= plots


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["algo.kl_lambda=-1"], "algo.kl_lambda"),
        (["algo.discount=2"], "algo.discount"),
        (["algo.batch_size=lots"], "algo.batch_size"),
        (["algo.typo=1"], "algo.typo"),
        (["env.name=moon-lander"], "env.name"),
        (["encoder.name=nope"], "encoder.name"),
        (["train.num_steps_prior=0", "train.num_steps_posterior=0"], "train.num_steps_prior"),
        (["train.num_initial_steps=0"], "train.num_initial_steps"),
        (["algo.sparse_rewards=true"], "algo.sparse_rewards"),
        (["env.name=sparse-point-robot", "algo.sparse_rewards=false"], "algo.sparse_rewards"),
        (["eval.num_runs=0"], "eval.num_runs"),
        (["train.posterior_phase_start=sometimes"], "train.posterior_phase_start"),
    ],
)
def test_bad_config_exits_2_names_key_and_creates_no_run(
    overrides: list[str], key: str, tmp_path: Path, tiny_config_dict: dict
) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict))
    args = [a for o in overrides for a in ("--set", o)]
    out = run("train", str(cfg), *args, cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert key in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") <= 2  # one clear message
    assert not (tmp_path / "mlflow.db").exists() or _runs(tmp_path) == []


def test_missing_config_file(tmp_path: Path) -> None:
    out = run("train", "does/not/exist.yaml", cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "no such config file" in out.stderr


def test_embed_and_check_encoder_exit_codes(tmp_path: Path) -> None:
    out = run("check-encoder", "mlp", cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run("check-encoder", "no-such-encoder", cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "mlp" in out.stderr
