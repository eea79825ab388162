"""A point robot trained with experiments/point_robot_fast.yaml encodes its goal in z (slow: minutes).

Criterion (issue 6): a linear probe from posterior mean to goal position scores R² >= 0.8 on test
tasks, and the posterior narrows as context grows; the same probe on the untrained agent reads far
less. Episodes start uniformly in [-1, 1]^2 (as the official point robot), so even an untrained
encoder's random features carry some of the goal (the rewards along a random-start path vary with
it; the untrained probe R² is about 0.3): the control is that training adds at least 0.4 to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import EXPERIMENTS


@pytest.mark.slow
def test_trained_point_robot_encodes_the_goal(tmp_path) -> None:
    from pearl import latents
    from pearl.config import load_config
    from pearl.trainer import Trainer

    cfg = load_config(EXPERIMENTS / "point_robot_fast.yaml", ["tracking.progress=false"])
    trainer = Trainer(cfg)
    untrained = latents.embed_trainer(trainer).summary()
    trainer.train()
    report = latents.embed_trainer(trainer)
    summary = report.summary()
    report.save(tmp_path, title=f"point_robot_fast · {cfg.env.name} · iteration {trainer.iteration}")
    print(report.summary_text())  # shown with -s: the numbers behind the assertions
    print(f"untrained: probe R² cv {untrained['probe_r2_cv']:.3f}, test {untrained['probe_r2_test']:.3f}")
    # diagnosis only: the contexts the encoder was trained on, against the ones it gathers itself above
    buffer = latents.embed_trainer(trainer, splits=("train",), source="buffer").summary()
    print(f"context buffer of the train tasks: probe R² cv {buffer['probe_r2_cv']:.3f}")

    assert summary["probe_r2_test"] >= untrained["probe_r2_test"] + 0.4
    assert summary["probe_r2_cv"] >= untrained["probe_r2_cv"] + 0.4
    assert summary["probe_r2_test"] >= 0.8, report.summary_text()
    assert summary["probe_r2_cv"] >= 0.8, report.summary_text()
    # the config's encoder need not be a product of Gaussians, so narrowing is not automatic
    std = report.contraction.mean_std
    assert std[-1] < 0.5 * std[0] and np.all(std[1:] <= 1.05 * std[:-1]), std
    # the narrowing is informative: more context, a better read-out of the goal
    r2 = report.contraction.probe_r2
    assert r2[-1] > r2[0] + 0.2, r2
    assert 1 <= summary["active_dims"] <= cfg.encoder.latent_dim
