"""Meta-test summary: prior, adapted (final episode) and per-episode returns."""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch

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
    assert [m[f"eval/test/success_episode_{e}"] for e in range(4)] == [0.0, 0.5, 0.5, 0.5]  # beside each return
    assert result.table().splitlines()[0].endswith("success") and result.table().splitlines()[2].endswith("0.50")
    assert "posterior" in result.table() and "prior" in result.table()


def test_no_adapted_episode_is_nan() -> None:
    result = MetaTestResult(np.ones((3, 1)), None, num_exp_traj_eval=1)
    assert math.isnan(result.return_adapted)
    assert "eval/x/success_prior" not in result.metrics("eval/x")


@pytest.mark.parametrize("mode, expected", [("all", [True] * 4), ("last", [False, False, False, True])])
def test_which_episodes_act_deterministically(tiny_config_dict: dict, mode: str, expected: list[bool]) -> None:
    tiny_config_dict["eval"].update(num_episodes=4, deterministic_episodes=mode)
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


def test_runs_are_independent_meta_tests_averaged_per_task(tiny_config_dict: dict) -> None:
    """eval.num_runs (the official num_evals): every run starts from an empty context and its own
    starts; the result is their mean per task and episode index."""
    tiny_config_dict["eval"].update(num_episodes=3, num_runs=4)
    trainer = Trainer(config_from_dict(tiny_config_dict))
    rows: list[np.ndarray] = []
    returns: list[np.ndarray] = []
    original = trainer.collector.rollout

    def rollout(agent, tasks, *args, **kwargs):
        ro = original(agent, tasks, *args, **kwargs)
        rows.append(np.asarray(tasks))
        returns.append(ro.rewards[..., 0].sum(axis=1))
        return ro

    trainer.collector.rollout = rollout
    tasks = trainer.test_tasks  # 3 tasks x 4 runs = 12 side by side (the trainer made the slots for them)
    result = trainer.evaluate(tasks)
    assert len(rows) == 3 and all(r.shape == (12, 2) for r in rows)
    np.testing.assert_array_equal(rows[0], np.repeat(tasks, 4, axis=0))
    per_run = np.stack(returns, axis=1).reshape(3, 4, 3)  # [K, R, E]
    assert not np.allclose(per_run[:, 0], per_run[:, 1])  # the runs differ (random starts, fresh z)
    np.testing.assert_allclose(result.returns, per_run.mean(axis=1))
    assert result.num_runs == 4


def test_more_meta_tests_than_slots_run_in_groups(tiny_config_dict: dict) -> None:
    trainer = Trainer(config_from_dict(tiny_config_dict))
    assert len(trainer.collector.envs) == 3  # the tiny config's 3 test tasks
    tasks = trainer.tasks.train_tasks  # 6 tasks: two groups of 3
    sizes: list[int] = []
    original = trainer.collector.rollout

    def rollout(agent, tasks, *args, **kwargs):
        sizes.append(len(tasks))
        return original(agent, tasks, *args, **kwargs)

    trainer.collector.rollout = rollout
    result = trainer.evaluate(tasks, num_episodes=2)
    assert result.returns.shape == (6, 2)
    assert sizes == [3, 3, 3, 3]  # group 1: episodes 0 and 1, then group 2


# ----------------------------------------------------------------------------------------------
# the protocol itself: which z each episode used, and the context it was inferred from

PRIOR_LOC, POSTERIOR_LOC = -100.0, 100.0


def _stand_in_distributions(agent: torch.nn.Module, latent_dim: int, seen: list[torch.Tensor]) -> None:
    """Prior and posterior that tell their source by z: the prior around -100, q(z|c) around
    100 + the context length. The contexts q(z|c) is asked about are recorded in ``seen``."""

    def prior(n_tasks: int) -> dist.Distribution:
        return dist.Normal(torch.full((n_tasks, latent_dim), PRIOR_LOC), 1e-3).to_event(1)

    def posterior(context: torch.Tensor) -> dist.Distribution:
        seen.append(context.clone())
        loc = POSTERIOR_LOC + context.shape[1]
        return dist.Normal(torch.full((context.shape[0], latent_dim), loc), 1e-3).to_event(1)

    agent.prior, agent.posterior = prior, posterior


def test_each_episode_uses_prior_z_then_the_posterior_of_all_earlier_episodes(tiny_config_dict: dict) -> None:
    tiny_config_dict["eval"].update(num_episodes=4, num_exp_traj_eval=2)
    trainer = Trainer(config_from_dict(tiny_config_dict))
    seen: list[torch.Tensor] = []
    _stand_in_distributions(trainer.agent, trainer.cfg.encoder.latent_dim, seen)
    episodes: list[tuple[torch.Tensor, object]] = []  # (z, rollouts) of each episode
    original = trainer.collector.rollout

    def rollout(agent, tasks, n_steps, z_source, **kwargs):
        z = z_source()
        ro = original(agent, tasks, n_steps, lambda: z, **kwargs)
        episodes.append((z, ro))
        return ro

    trainer.collector.rollout = rollout
    trainer.evaluate(trainer.test_tasks)
    steps = trainer.max_path_length
    locs = [float(z.mean()) for z, _ in episodes]
    assert locs == pytest.approx([PRIOR_LOC, PRIOR_LOC, POSTERIOR_LOC + 2 * steps, POSTERIOR_LOC + 3 * steps], abs=0.1)
    # episode 2 saw the transitions of episodes 0 and 1, episode 3 those of 0, 1 and 2, in order
    assert [c.shape[:2] for c in seen] == [(3, 2 * steps), (3, 3 * steps)]
    for context, n_before in zip(seen, (2, 3)):
        earlier = [ro for _, ro in episodes[:n_before]]
        observations = np.concatenate([ro.observations for ro in earlier], axis=1)  # [K, n * S, O]
        rewards = np.concatenate([ro.rewards for ro in earlier], axis=1)
        np.testing.assert_array_equal(context[..., :2].numpy(), observations)
        np.testing.assert_array_equal(context[..., -1:].numpy(), rewards)


@pytest.mark.parametrize("mode, expected", [("all", [True] * 3), ("last", [False, False, True])])
def test_latent_context_collection_follows_the_same_protocol(tiny_config_dict: dict, mode: str,
                                                             expected: list[bool]) -> None:
    """pearl.latents gathers its rollouts context with the meta-test's episodes, eval.deterministic_episodes included."""
    from pearl import latents

    tiny_config_dict["eval"].update(num_episodes=3, deterministic_episodes=mode)
    trainer = Trainer(config_from_dict(tiny_config_dict))
    seen: list[torch.Tensor] = []
    _stand_in_distributions(trainer.agent, trainer.cfg.encoder.latent_dim, seen)
    flags: list[bool] = []
    original = trainer.collector.rollout

    def rollout(*args, **kwargs):
        flags.append(kwargs["deterministic"])
        return original(*args, **kwargs)

    trainer.collector.rollout = rollout
    contexts = latents.gather_contexts(trainer, splits=("test",))
    assert flags == expected
    steps = trainer.max_path_length
    assert [c.shape[:2] for c in seen] == [(3, steps), (3, 2 * steps)]  # after episode 1 (exploration), then 2
    assert all(len(c) == 3 * steps for c in contexts.contexts)
