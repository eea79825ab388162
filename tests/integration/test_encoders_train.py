"""Every built-in encoder trains; user encoders train by path and by entry point; errors are clear."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import yaml

import encoders
from pearl.config import config_from_dict
from pearl.trainer import Trainer
from tests.conftest import EXPERIMENTS
from tests.helpers import new_store, pip_install_encoder_package
from tests.integration.test_cli import _runs, run
from tests.integration.test_resume import assert_same_metrics, metrics_of, only_run, pearl, write_tiny


@pytest.mark.parametrize("name", sorted(encoders.registered_encoders()))
def test_each_builtin_trains_on_the_point_robot(name: str, tiny_config_dict: dict) -> None:
    tiny_config_dict["encoder"] = {"name": name, "latent_dim": 3, "kwargs": {}}
    trainer = Trainer(config_from_dict(tiny_config_dict))
    for _ in range(2):
        metrics = trainer.run_iteration().metrics
    assert all(math.isfinite(metrics[k]) for k in ("train/loss_critic", "train/loss_policy",
                                                  "eval/test/return_adapted"))
    if not trainer.agent.encoder.information_bottleneck:
        assert metrics["train/kl"] == 0.0
    else:
        assert metrics["train/kl"] > 0.0


@pytest.mark.parametrize("name", ["flow", "mixture"])
def test_posteriors_without_closed_form_train_resume_evaluate_and_embed(
    name: str, tmp_path: Path, mlflow_template: Path, capsys: pytest.CaptureFixture
) -> None:
    """The flow and mixture encoders (Monte Carlo KL, moments by sampling) through a run's whole life: a
    run stopped after 2 iterations and resumed to 3 logs exactly what an uninterrupted 3-iteration run
    does; the result evaluates and embeds."""
    template, config = mlflow_template, str(write_tiny(tmp_path))
    schedule = ["--set", f"encoder.name={name}", "--set", "seed=5", "--set", "train.num_iterations=3"]
    whole, split = new_store(tmp_path / "whole", template), new_store(tmp_path / "split", template)
    assert pearl("train", config, *schedule, "--set", f"tracking.tracking_uri={whole}")[0] == 0
    assert pearl("train", config, *schedule, "--set", "train.num_iterations=2",
                 "--set", f"tracking.tracking_uri={split}")[0] == 0
    run_id = only_run(split).info.run_id
    assert pearl("resume", run_id, "--set", "train.num_iterations=3", "--tracking-uri", split)[0] == 0
    want = metrics_of(whole, only_run(whole).info.run_id)
    assert want[("train/kl", max(step for key, step in want if key == "train/kl"))] > 0.0
    assert all(math.isfinite(v) and v > 0 for (key, _), v in want.items() if key == "latent/posterior_std")
    assert_same_metrics(metrics_of(split, run_id), want)

    capsys.readouterr()
    assert pearl("evaluate", run_id, "--episodes", "2", "--tracking-uri", split)[0] == 0
    assert "posterior" in capsys.readouterr().out
    out = tmp_path / "embed"
    assert pearl("embed", run_id, "--out", str(out), "--tracking-uri", split)[0] == 0
    import pandas as pd

    table = pd.read_csv(out / "latents.csv")
    assert len(table) == 9 and (table.filter(like="z_std_") > 0).all().all()
    assert ("n_modes" in table.columns) == (name == "mixture")
    if name == "mixture":
        assert table["n_modes"].between(1, 2).all()  # two components by default
        assert "mixture modes (weight >= 5%)" in capsys.readouterr().out


def test_worked_example_trains_by_path(tmp_path: Path) -> None:
    out = run("train", str(EXPERIMENTS / "custom_encoder" / "config.yaml"),
              "--set", "train.num_iterations=1", "--set", "train.num_train_steps_per_itr=5",
              "--set", "env.n_train_tasks=6", "--set", "env.n_test_tasks=2", "--set", "eval.n_train_tasks_evaluated=1",
              "--set", "train.num_initial_steps=20", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (finished,) = _runs(tmp_path)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["encoder.name"] == "my_encoders:MaxPoolEncoder"


THROWAWAY = '''
import pyro.distributions as dist
import torch
from encoders import ContextEncoder


class SumPoolEncoder(ContextEncoder):
    """A throwaway third-party encoder."""

    def __init__(self, *, context_dim, latent_dim, width=16):
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.net = torch.nn.Sequential(torch.nn.Linear(context_dim, width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, 2 * latent_dim))

    def forward(self, context):
        mu, raw = self.net(context).mean(1).split(self.latent_dim, -1)
        return dist.Normal(mu, torch.nn.functional.softplus(raw) + 1e-3).to_event(1)
'''


def test_installed_entry_point_trains_by_name(tmp_path: Path, tiny_config_dict: dict) -> None:
    site = pip_install_encoder_package(tmp_path, "sumpool_pkg", THROWAWAY, {"sum-pool": "SumPoolEncoder"})
    tiny_config_dict["encoder"] = {"name": "sum-pool", "latent_dim": 3, "kwargs": {"width": 8}}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict))
    out = run("train", str(cfg), cwd=tmp_path, env={"PYTHONPATH": f"{site}:{Path(__file__).resolve().parents[2]}"})
    assert out.returncode == 0, out.stderr
    (finished,) = _runs(tmp_path)
    assert finished.info.status == "FINISHED" and finished.data.params["encoder.name"] == "sum-pool"


BROKEN = '''
import torch
import pyro.distributions as dist
from encoders import ContextEncoder


class NotAnEncoder(torch.nn.Module):
    pass


class WrongShape(ContextEncoder):
    def __init__(self, *, context_dim, latent_dim):
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.lin = torch.nn.Linear(context_dim, latent_dim)

    def forward(self, context):
        return dist.Normal(self.lin(context), 1.0).to_event(1)   # batch [T, N]: forgot to pool


class Strict(ContextEncoder):
    def __init__(self, *, context_dim, latent_dim):
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
'''


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("no-such-encoder", {}, ["no-such-encoder", "mlp", "gru"]),
        ("missing_module_xyz:Enc", {}, ["missing_module_xyz"]),
        ("broken_encoders:NotAnEncoder", {}, ["NotAnEncoder", "ContextEncoder"]),
        ("broken_encoders:Strict", {"width": 3}, ["Strict", "width"]),
        ("broken_encoders:WrongShape", {}, ["WrongShape", "batch_shape"]),
    ],
)
def test_encoder_errors_exit_2_and_log_no_finished_run(
    name: str, kwargs: dict, expected: list[str], tmp_path: Path, tiny_config_dict: dict
) -> None:
    (tmp_path / "broken_encoders.py").write_text(textwrap.dedent(BROKEN))
    tiny_config_dict["encoder"] = {"name": name, "latent_dim": 3, "kwargs": kwargs}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict))
    out = run("train", str(cfg), cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for word in expected:
        assert word in out.stderr, (word, out.stderr)
    assert not (tmp_path / "mlflow.db").exists() or all(r.info.status != "FINISHED" for r in _runs(tmp_path))


@pytest.mark.parametrize("name", ["mlp", "mixture"])
def test_the_posterior_after_the_first_path_is_measured(name: str, tiny_config_dict: dict) -> None:
    """benchmarks/point_robot_score.py records q(z|c) after one prior-z episode; modes for a mixture only."""
    from benchmarks.point_robot_score import first_path_posterior

    tiny_config_dict["encoder"] = {"name": name, "latent_dim": 3, "kwargs": {}}
    trainer = Trainer(config_from_dict(tiny_config_dict))
    out = first_path_posterior(trainer, trainer.test_tasks)
    assert 0 < out["std"] < 10 and out["kl"] >= 0
    assert (out["n_modes"] is None) == (name == "mlp")
    if name == "mixture":
        assert 1 <= out["n_modes"] <= trainer.agent.encoder.n_components
