"""Meta-test summary: prior, adapted (final episode) and per-episode returns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pearl.config import config_from_dict
from pearl.evaluation import MetaTestResult
from pearl.trainer import Trainer


def test_summary_numbers() -> None:
    returns = np.array([[1.0, 2.0, 3.0, 10.0], [3.0, 4.0, 5.0, 20.0]])
    success = np.array([[0, 0, 1, 1], [0, 1, 0, 0]], dtype=float)
    result = MetaTestResult(returns, success, num_exp_traj_eval=2)
    assert result.return_prior == 2.5  # mean of the two exploration episodes
    assert result.return_adapted == 15.0  # the last episode, after adapting on all the others
    assert result.curve.tolist() == [2.0, 3.0, 4.0, 15.0]
    m = result.metrics("eval/test")
    assert m["eval/test/return_episode_3"] == 15.0 and m["eval/test/success_adapted"] == 0.5
    assert m["eval/test/success_prior"] == 0.25
    assert "posterior" in result.table() and "prior" in result.table()


def test_no_adapted_episode_is_nan() -> None:
    result = MetaTestResult(np.ones((3, 1)), None, num_exp_traj_eval=1)
    assert math.isnan(result.return_adapted)
    assert "eval/x/success_prior" not in result.metrics("eval/x")


@pytest.mark.parametrize("mode, expected", [("all", [True] * 4), ("last", [False, False, False, True])])
def test_which_episodes_act_deterministically(tiny_config_dict: dict, mode: str, expected: list[bool]) -> None:
    tiny_config_dict["eval"].update(num_episodes=4, deterministic=mode)
    trainer = Trainer(config_from_dict(tiny_config_dict))
    seen: list[bool] = []
    original = trainer.collector.rollout

    def rollout(*args, **kwargs):
        seen.append(kwargs["deterministic"])
        return original(*args, **kwargs)

    trainer.collector.rollout = rollout
    result = trainer.evaluate(trainer.test_tasks)
    assert seen == expected
    assert result.returns.shape == (len(trainer.test_tasks), 4)
