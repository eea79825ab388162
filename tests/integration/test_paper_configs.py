"""Each paper config's smoke variant (experiments/paper/*_smoke.yaml) trains two iterations in-process.

The smoke configs extend the paper configs (``base:``), so this runs every paper family and its
settings (next-state context, KL weight, meta-batch, ...) end to end at a tiny size.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

from pearl.config import load_config
from pearl.trainer import Trainer
from tests.conftest import EXPERIMENTS

PAPER = EXPERIMENTS / "paper"

_no_mujoco = importlib.util.find_spec("mujoco") is None
_no_metaworld = importlib.util.find_spec("metaworld") is None
mujoco = [pytest.mark.mujoco, pytest.mark.skipif(_no_mujoco, reason="needs the mujoco extra")]
metaworld = [*mujoco, pytest.mark.skipif(_no_metaworld, reason="needs the metaworld extra")]

# Measured on a loaded 2-core CPU: each MuJoCo one under 1 s, Meta-World ML1 4 s, ML10 12 s (most
# of it building metaworld.ML10's 750 goals), so none is marked slow (mark any past ~15 s).
SMOKE = [
    pytest.param("cheetah_vel", marks=mujoco),
    pytest.param("cheetah_dir", marks=mujoco),
    pytest.param("ant_dir", marks=mujoco),
    pytest.param("ant_goal", marks=mujoco),
    pytest.param("humanoid_dir", marks=mujoco),
    pytest.param("walker_rand_params", marks=mujoco),
    pytest.param("hopper_rand_params", marks=mujoco),
    pytest.param("metaworld_ml1", marks=metaworld),
    pytest.param("metaworld_ml10", marks=metaworld),
]


def test_every_paper_config_has_a_smoke_config() -> None:
    paper = {p.stem for p in PAPER.glob("*.yaml") if not p.stem.endswith("_smoke")}
    smoke = {p.stem.removesuffix("_smoke") for p in PAPER.glob("*_smoke.yaml")}
    assert smoke <= paper
    tested = {p.values[0] for p in SMOKE}
    assert tested == smoke
    assert paper - smoke <= {"point_robot", "sparse_point_robot"}  # covered by the point-robot tests


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_config_trains_two_iterations(name: str) -> None:
    path = PAPER / f"{name}_smoke.yaml"
    cfg = load_config(path)
    paper = load_config(PAPER / f"{name}.yaml")
    assert cfg.env.name == paper.env.name
    assert cfg.encoder.use_next_obs == paper.encoder.use_next_obs
    assert cfg.algo.kl_lambda == paper.algo.kl_lambda
    trainer = Trainer(cfg)
    for _ in range(2):
        result = trainer.run_iteration()
    metrics = result.metrics
    assert result.iteration == 2
    losses = {k: v for k, v in metrics.items() if k.startswith("train/loss_")}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    assert math.isfinite(metrics["eval/test/return_adapted"])
    if trainer.tasks.has_success:
        assert 0.0 <= metrics["eval/test/success_adapted"] <= 1.0, sorted(metrics)
