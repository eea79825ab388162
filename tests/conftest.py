"""Shared fixtures: --runslow, a throwaway MLflow store per test, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"

# Small enough to run a full iteration in about a second on a 2-core CPU.
TINY = {
    "env": {"name": "point-robot", "n_train_tasks": 6, "n_test_tasks": 3},
    "encoder": {"name": "mlp", "latent_dim": 3, "kwargs": {"hidden_sizes": [16, 16]}},
    "algo": {"hidden_sizes": [16, 16], "meta_batch": 4, "batch_size": 8, "embedding_batch_size": 8},
    "train": {"num_iterations": 2, "num_initial_steps": 20, "num_tasks_sample": 2, "num_steps_prior": 20,
              "num_extra_rl_steps_posterior": 20, "num_train_steps_per_itr": 5, "replay_buffer_size": 1000},
    "eval": {"every": 1, "num_episodes": 2, "num_exp_traj_eval": 1, "n_train_tasks_evaluated": 2},
    "tracking": {"progress": False, "checkpoint_every": 1},
    "num_threads": 1,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _outside_the_checkout(tmp_path_factory: pytest.TempPathFactory):
    """Module- and session-scoped fixtures run in a throwaway folder too: MLflow roots a new
    experiment's artifacts (``mlruns/``) in the working directory, which must stay the checkout's."""
    outputs = ("mlruns", "mlflow.db", "checkpoints", "latents", "comparisons", "MUJOCO_LOG.TXT")
    there = {name for name in outputs if (REPO / name).exists()}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("workdir"))
        yield
    written = [name for name in outputs if name not in there and (REPO / name).exists()]
    assert not written, f"the tests wrote {written} into the checkout {REPO}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder with its own MLflow store, and single-threaded torch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PYTHONWARNINGS", os.environ.get("PYTHONWARNINGS", ""))
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow store shared by the session's tests, copied by ``tests.helpers.new_store``."""
    from tests.helpers import template_db

    return template_db(tmp_path_factory.mktemp("mlflow_template"))


@pytest.fixture
def tiny_config_dict() -> dict:
    """A plain mapping of the tiny config (deep copy, free to modify)."""
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_config(tiny_config_dict: dict):
    from pearl.config import config_from_dict

    return config_from_dict(tiny_config_dict, "tiny")
