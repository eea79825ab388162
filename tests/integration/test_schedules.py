"""Every config that validates, runs: collection schedules and evaluation settings at their edges.

Each case is the tiny config with a few keys changed. Either validation refuses it, naming the key,
or the trainer builds it and trains two iterations with finite losses.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from pearl.config import ConfigError, config_from_dict
from pearl.runs import build_trainer
from pearl.trainer import Trainer, visit_rounds
from tests.conftest import TINY


def _config(changes: dict) -> dict:
    data = copy.deepcopy(TINY)
    for section, values in changes.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return data


REFUSED = [
    pytest.param({"train": {"num_steps_prior": 0, "num_steps_posterior": 0}}, "train.num_steps_prior",
                 id="visits-refill-no-context"),
    pytest.param({"train": {"num_initial_steps": 0}}, "train.num_initial_steps", id="no-initial-data"),
    pytest.param({"algo": {"sparse_rewards": True}}, "algo.sparse_rewards", id="sparse-on-a-dense-family"),
    pytest.param({"env": {"name": "sparse-point-robot"}, "algo": {"sparse_rewards": False}}, "algo.sparse_rewards",
                 id="dense-on-a-sparse-family"),
    pytest.param({"train": {"lr_decay_start": 2}}, "train.lr_decay_start", id="decay-after-the-last-iteration"),
]


@pytest.mark.parametrize(("changes", "key"), REFUSED)
def test_schedules_that_cannot_run_are_refused(changes: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"tiny: {key}: expected"):
        config_from_dict(_config(changes), "tiny")


RUNS = [
    pytest.param({"train": {"num_tasks_sample": 15}}, id="more-visits-than-tasks"),
    pytest.param({"train": {"num_tasks_sample": 0}}, id="no-collection-after-the-initial"),
    pytest.param({"train": {"num_initial_steps": 0, "num_train_steps_per_itr": 0}}, id="collection-only"),
    pytest.param({"train": {"num_steps_prior": 0, "num_steps_posterior": 20}}, id="posterior-only"),
    pytest.param({"train": {"num_steps_posterior": 45, "posterior_phase_start": "prior"}}, id="posterior-from-prior"),
    pytest.param({"train": {"num_steps_prior": 7, "num_extra_rl_steps_posterior": 3}}, id="partial-episodes"),
    pytest.param({"eval": {"num_episodes": 2, "num_exp_traj_eval": 2}}, id="exploration-only-meta-test"),
    pytest.param({"eval": {"num_runs": 4, "n_train_tasks_evaluated": 0}}, id="several-runs"),
    pytest.param({"eval": {"n_test_tasks": 50}}, id="more-eval-tasks-than-test-tasks"),
    pytest.param({"eval": {"latent_every": 1}}, id="latent-summary-on-few-tasks"),
    pytest.param({"algo": {"embedding_batch_size": 500, "meta_batch": 20}}, id="batches-larger-than-buffers"),
    pytest.param({"encoder": {"name": "gru", "kwargs": {"hidden_size": 8}}, "algo": {"embedding_batch_size": 500}},
                 id="recurrent-context-longer-than-the-buffer"),
    pytest.param({"env": {"name": "sparse-point-robot"}}, id="sparse-family"),
    pytest.param({"env": {"name": "point-robot", "kwargs": {"start": "origin"}}}, id="origin-start"),
]


@pytest.mark.parametrize("changes", RUNS)
def test_every_config_that_validates_trains(changes: dict) -> None:
    cfg = config_from_dict(_config(changes), "tiny")
    trainer = build_trainer(cfg)  # with the hooks the config asks for (the latent summary)
    for _ in range(2):
        result = trainer.run_iteration()
    losses = {k: v for k, v in result.metrics.items() if k.startswith("train/loss_")}
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert "eval/test/return_prior" in result.metrics


def test_visit_rounds_keep_each_tasks_visits_in_order() -> None:
    rounds = visit_rounds(np.array([3, 1, 3, 0, 3, 1]))
    assert [r.tolist() for r in rounds] == [[0, 1, 3], [1, 3], [3]]
    assert visit_rounds(np.array([], dtype=np.int64)) == []


def test_tasks_are_drawn_with_replacement_and_every_visit_collects(tiny_config_dict: dict) -> None:
    """``num_tasks_sample`` may exceed the training tasks; a task drawn twice gets two visits' steps."""
    tiny_config_dict["train"].update(num_tasks_sample=15, num_steps_prior=4, num_extra_rl_steps_posterior=6)
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    rl_before = trainer.rl_buffer.sizes.copy()
    ids = trainer.collect_iteration()
    assert len(ids) == 15 and len(np.unique(ids)) < 15  # with replacement: 15 draws of 6 tasks repeat
    visits = np.bincount(ids, minlength=trainer.n_train)
    np.testing.assert_array_equal(trainer.rl_buffer.sizes - rl_before, visits * (4 + 6))
    # each visit clears the context buffer first: a task keeps only its last visit's prior steps
    np.testing.assert_array_equal(trainer.enc_buffer.sizes[visits > 0], 4)
    assert trainer.env_steps == 20 * trainer.n_train + 15 * 10


@pytest.mark.parametrize("variant", ["pearl", "modern"])
def test_learning_rates_decay_linearly_from_their_start_and_follow_the_schedule_after_a_resume(variant: str) -> None:
    """lr_decay_start 1, factor 0.25 over 4 iterations: iterations 0..3 train at 1, 1, 0.75, 0.5 times
    every configured rate (the factor would reach 0.25 at iteration 4), a restored trainer included."""
    changes = {"train": {"num_iterations": 4, "lr_decay_start": 1, "lr_decay_factor": 0.25},
               "algo": {"variant": variant, "policy_lr": 1e-3, "qf_lr": 2e-3, "context_lr": 3e-3, "vf_lr": 4e-3,
                        "alpha_lr": 5e-3},
               "eval": {"every": 10}}
    cfg = config_from_dict(_config(changes), "tiny")
    trainer = Trainer(cfg)
    names = {"pearl": {"policy", "qf", "context", "vf"}, "modern": {"policy", "qf", "context", "alpha"}}[variant]
    assert set(trainer.learner.optimizers) == names

    def check(trainer: Trainer, factor: float) -> None:
        result = trainer.run_iteration()
        assert result.metrics["train/lr_factor"] == pytest.approx(factor)
        for name, opt in trainer.learner.optimizers.items():
            assert opt.lr == pytest.approx(factor * getattr(cfg.algo, f"{name}_lr")), name

    for factor in (1.0, 1.0, 0.75):
        check(trainer, factor)
    restored = Trainer(cfg)
    restored.load_state_dict(trainer.state_dict())  # the saved optimisers carry the rate of iteration 2
    check(restored, 0.5)


def test_without_a_decay_the_rates_stay_and_no_factor_is_logged() -> None:
    trainer = Trainer(config_from_dict(_config({}), "tiny"))
    result = trainer.run_iteration()
    assert "train/lr_factor" not in result.metrics
    assert trainer.learner.optimizers["policy"].lr == trainer.cfg.algo.policy_lr
