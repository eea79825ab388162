"""Meta-test summary: prior, adapted (final episode) and per-episode returns."""

from __future__ import annotations

import math

import numpy as np

from pearl.evaluation import MetaTestResult


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
