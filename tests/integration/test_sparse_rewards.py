"""Sparse rewards end to end (sparse-point-robot): the context sees the sparse reward in collection,
in the gradient step and in the meta-test; the critic learns from the dense one; returns and success
are the sparse task's, logged to the run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from pearl import runs
from pearl.config import config_from_dict
from pearl.trainer import Trainer


def test_the_context_sees_sparse_rewards_the_critic_dense_ones(tiny_config_dict: dict) -> None:
    tiny_config_dict["env"]["name"] = "sparse-point-robot"
    tiny_config_dict["train"]["num_iterations"] = 1
    cfg = config_from_dict(tiny_config_dict, "tiny")
    contexts: list[torch.Tensor] = []  # every context q(z|c) is inferred from
    critic_rewards: list[torch.Tensor] = []
    with runs.start(cfg) as run:
        agent, learner = run.trainer.agent, run.trainer.learner
        posterior, update = agent.posterior, learner.update

        def recording_posterior(context: torch.Tensor):
            contexts.append(context.clone())
            return posterior(context)

        def recording_update(batch, context: torch.Tensor):
            critic_rewards.append(batch.rewards.clone())
            return update(batch, context)

        agent.posterior, learner.update = recording_posterior, recording_update
        outcome = run.train()
    assert outcome.status == "FINISHED"
    assert contexts and critic_rewards
    for context in contexts:  # (x, y, a_x, a_y, r): the sparse reward is 0 outside the goal radius, 1 - distance inside
        r = context[..., 4]
        assert torch.all((r == 0) | (r > 0.8))
    assert all(torch.all(r < 0) for r in critic_rewards)  # dense: -distance, never 0
    metrics = MlflowClient(run.tracking_uri).get_run(outcome.run_id).data.metrics
    for split in ("test", "train"):
        assert metrics[f"eval/{split}/return_adapted"] >= 0  # summed sparse rewards; a dense return is < 0
        assert 0 <= metrics[f"eval/{split}/success_adapted"] <= 1 and f"eval/{split}/success_prior" in metrics


def test_critic_reward_sparse_gives_the_critic_the_rewards_the_context_sees(tiny_config_dict: dict) -> None:
    tiny_config_dict["env"]["name"] = "sparse-point-robot"
    tiny_config_dict["train"]["num_iterations"] = 1
    tiny_config_dict["algo"]["critic_reward"] = "sparse"
    cfg = config_from_dict(tiny_config_dict, "tiny")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (the critic's rewards, the batch's sparse rewards)
    with runs.start(cfg) as run:
        learner = run.trainer.learner
        update = learner.update

        def recording_update(batch, context: torch.Tensor):
            seen.append((batch.rewards.clone(), batch.sparse_rewards.clone()))
            return update(batch, context)

        learner.update = recording_update
        assert run.train().status == "FINISHED"
    assert seen and all(torch.equal(r, s) for r, s in seen)
    assert all(torch.all((r == 0) | (r > 0.8)) for r, _ in seen)  # sparse: never a dense -distance


def test_critic_reward_dense_plus_sparse_gives_the_critic_the_weighted_sum(tiny_config_dict: dict) -> None:
    tiny_config_dict["env"]["name"] = "sparse-point-robot"
    tiny_config_dict["env"]["kwargs"] = {"goal_radius": 0.9}  # many steps inside: both terms show
    tiny_config_dict["train"]["num_iterations"] = 1
    tiny_config_dict["algo"].update(critic_reward="dense+sparse", critic_sparse_weight=5.0)
    cfg = config_from_dict(tiny_config_dict, "tiny")
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (critic's, buffer's dense, buffer's sparse)
    with runs.start(cfg) as run:
        trainer = run.trainer
        sample, update = trainer.rl_buffer.sample, trainer.learner.update
        drawn = []

        def recording_sample(*args, **kwargs):
            drawn.append(sample(*args, **kwargs))
            return drawn[-1]

        def recording_update(batch, context: torch.Tensor):
            seen.append((batch.rewards.clone(), drawn[-1].rewards.clone(), drawn[-1].sparse_rewards.clone()))
            return update(batch, context)

        trainer.rl_buffer.sample, trainer.learner.update = recording_sample, recording_update
        assert run.train().status == "FINISHED"
    assert seen
    for critic, dense, sparse in seen:
        torch.testing.assert_close(critic, dense + 5.0 * sparse)
    sparse = torch.cat([s.flatten() for _, _, s in seen])
    assert (sparse > 0).any() and (sparse == 0).any()


@pytest.mark.parametrize("critic_reward", ["sparse", "dense+sparse"])
def test_a_sparse_critic_reward_is_refused_on_a_family_without_a_sparse_reward(
    tiny_config_dict: dict, critic_reward: str
) -> None:
    from pearl.config import ConfigError

    tiny_config_dict["algo"]["critic_reward"] = critic_reward
    expected = f"algo.critic_reward: '{critic_reward}' needs a task family with a sparse reward"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_from_dict(tiny_config_dict, "tiny")


def test_critic_sparse_weight_is_refused_without_dense_plus_sparse(tiny_config_dict: dict) -> None:
    from pearl.config import ConfigError

    tiny_config_dict["env"]["name"] = "sparse-point-robot"
    tiny_config_dict["algo"].update(critic_reward="sparse", critic_sparse_weight=5.0)
    with pytest.raises(ConfigError, match="algo.critic_sparse_weight: weighs the sparse reward of critic_reward"):
        config_from_dict(tiny_config_dict, "tiny")


@pytest.fixture
def sparse_meta_test(monkeypatch):
    """benchmarks/sparse_meta_test.py, imported as a module."""
    from tests.conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import sparse_meta_test

    return sparse_meta_test


def _one_sparse_iteration(config: dict) -> tuple[Path, Trainer]:
    """Train ``config`` on the sparse point robot for one iteration: its checkpoint folder and trainer."""
    config["env"]["name"] = "sparse-point-robot"
    config["train"]["num_iterations"] = 1
    with runs.start(config_from_dict(config, "tiny")) as run:
        run.train()
    return run.trainer.checkpoint_dir, run.trainer


def test_the_sparse_meta_test_diagnosis_follows_the_tasks_not_yet_solved(
    tiny_config_dict: dict, capsys, sparse_meta_test, tmp_path
) -> None:
    """benchmarks/sparse_meta_test.py: one line per meta-test episode, the count of meta-tests whose goal
    no earlier episode found never grows, and the summary counts what the episodes found."""
    import json

    tiny_config_dict["eval"].update(num_episodes=4, num_exp_traj_eval=2)
    folder, trainer = _one_sparse_iteration(tiny_config_dict)
    capsys.readouterr()
    sparse_meta_test.main([str(folder), "--runs", "2", "--out", str(tmp_path / "diagnoses.jsonl")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    episodes, summary = lines[:-1], lines[-1]
    assert [x["episode"] for x in episodes] == [0, 1, 2, 3] and [x["z"] for x in episodes] == ["prior"] * 2 + ["posterior"] * 2
    open_ = [x["not_found_before"] for x in episodes]
    assert open_[0] == summary["meta_tests"] and all(a >= b for a, b in zip(open_, open_[1:]))
    assert all(0 <= x["success"] <= 1 for x in episodes)
    assert episodes[0]["their_posterior_std"] is None
    assert summary["never_found"] <= open_[-1] and summary["found_while_exploring"] == summary["meta_tests"] - open_[2]
    assert summary["found_while_exploring"] + summary["found_later"] + summary["never_found"] == summary["meta_tests"]
    assert 0 <= summary["found_then_missed_last"] <= summary["meta_tests"] - summary["never_found"]
    drift = summary["closest_to_goal_of_found_then_missed"]
    assert (drift is None) == (summary["found_then_missed_last"] == 0)
    assert drift is None or drift[1] >= 0.2  # a missed last episode never came within the goal radius
    assert sum(summary["end_sectors_of_exploring_episodes"]) == 2 * summary["meta_tests"]  # 2 exploring episodes each
    assert json.loads((tmp_path / "diagnoses.jsonl").read_text()) == summary
    sparse_meta_test.main([str(folder), "--runs", "2", "--per-goal"])  # the same meta-tests, seeded alike
    goals = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"goal_deg"' in line]
    angles = [g["goal_deg"] for g in goals]
    assert len(goals) == len(trainer.test_tasks) and angles == sorted(angles)
    assert sum(g["meta_tests"] for g in goals) == summary["meta_tests"]
    assert sum(g["never_found"] for g in goals) == summary["never_found"]
    assert all((g["posterior_end_deg_of_never_found"] is None) == (g["never_found"] == 0) for g in goals)
    assert summary["prior_until_found"] is False


def test_the_sparse_meta_test_diagnosis_replays_with_the_decoder_posterior(
    tiny_config_dict: dict, capsys, sparse_meta_test
) -> None:
    """--posterior decoder: the posterior episodes draw z from the reward decoder's grid posterior (q(z|c) is
    not asked), whose width the episode lines report; the summary says which posterior it was."""
    tiny_config_dict["encoder"]["latent_dim"] = 1
    tiny_config_dict["algo"]["reward_decoder_weight"] = 1.0
    tiny_config_dict["eval"].update(num_episodes=3, num_exp_traj_eval=1)
    folder, _ = _one_sparse_iteration(tiny_config_dict)
    capsys.readouterr()
    asked: list[int] = []
    original = sparse_meta_test.load_run

    def load_run(*args, **kwargs):
        loaded = original(*args, **kwargs)
        loaded.trainer.agent.posterior = lambda context: asked.append(1)  # type: ignore[method-assign]
        return loaded

    sparse_meta_test.load_run = load_run
    try:
        sparse_meta_test.main([str(folder), "--runs", "2", "--posterior", "decoder"])
    finally:
        sparse_meta_test.load_run = original
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert not asked and lines[-1]["posterior"] == "decoder"
    assert all(0 < x["their_posterior_std"] <= 4 for x in lines[1:-1] if x["not_found_before"])  # within the grid


def test_prior_until_found_draws_z_from_the_prior_only_while_no_reward_was_seen(sparse_meta_test, monkeypatch) -> None:
    """The counterfactual meta-test: a task whose context holds a sparse reward keeps q(z|c); one without
    draws z from the prior; the exploring episodes are untouched."""
    from pearl.evaluation import Adaptation

    class Agent:  # a prior far from every posterior z below
        def prior(self, n: int):
            return torch.distributions.Independent(torch.distributions.Normal(torch.full((n, 1), 100.0), 1e-6), 1)

    posterior_z = torch.tensor([[1.0], [2.0]])  # [K, L]
    monkeypatch.setattr(Adaptation, "next_z", lambda self: posterior_z if self.episodes >= 1 else torch.zeros(2, 1))
    adaptation = sparse_meta_test.PriorUntilFound(Agent(), None, np.zeros((2, 2)), num_exp_traj_eval=1,
                                                  use_next_obs=False, sparse_rewards=True, reward_column=4)
    with_reward = torch.tensor([[0.0, 0.0, 0.1, 0.1, 0.0], [0.1, 0.1, 0.1, 0.1, 0.9]])  # [N, C]: (s, a, r)
    without = torch.tensor([[0.0, 0.0, 0.1, 0.1, 0.0]])
    adaptation._chunks = [[with_reward], [without]]
    assert adaptation.next_z().tolist() == [[0.0], [0.0]]  # exploring: the protocol's own z
    adaptation.episodes = 1
    z = adaptation.next_z()
    assert z[0].item() == 1.0 and abs(z[1].item() - 100.0) < 1e-3


def test_the_diagnosis_averages_finite_stds_and_records_null_without_a_warning(sparse_meta_test) -> None:
    """A mixture posterior has no standard deviation: its NaNs are left out of the mean, and all-NaN is null
    (JSON has no NaN) without numpy's "mean of empty slice" warning."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sparse_meta_test._finite_mean(np.array([np.nan, np.nan])) is None
        assert sparse_meta_test._finite_mean(np.array([1.0, np.nan, 2.0])) == 1.5


@pytest.fixture
def sparse_explorers(monkeypatch):
    """benchmarks/sparse_explorers.py, imported as a module."""
    from tests.conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import sparse_explorers

    return sparse_explorers


def _goal_env(angle: float):
    from envs.point_robot import SparsePointRobotEnv

    return SparsePointRobotEnv(task=np.array([np.cos(angle), np.sin(angle)]))


def test_the_exact_posterior_explorer_finds_every_goal_and_stays(sparse_explorers) -> None:
    """Each episode without reward rules out the goals near its path and never the true one, so
    posterior sampling with the exact posterior finds any goal of the half-circle within 20 episodes;
    once found, every later episode returns to it."""
    rng = np.random.default_rng(0)
    for angle in np.linspace(0.0, np.pi, 9):
        success = sparse_explorers.play_meta_test(_goal_env(angle), explorer="thompson", num_episodes=20,
                                                  num_exploring=0, max_steps=20, rng=rng)
        assert success.any(), angle
        assert success[success.argmax():].all(), (angle, success)


def test_the_explorers_differ_only_after_the_exploring_episodes(sparse_explorers) -> None:
    """While exploring (z from the prior) both draw their points from the whole half-circle: with the
    same seed and only exploring episodes they play the same meta-test; after them the exact
    posterior finds at least as many goals over many meta-tests."""
    def play(explorer: str, num_exploring: int) -> np.ndarray:
        rng = np.random.default_rng(3)
        return np.array([sparse_explorers.play_meta_test(_goal_env(angle), explorer=explorer, num_episodes=8,
                                                         num_exploring=num_exploring, max_steps=20, rng=rng)
                         for angle in np.linspace(0.0, np.pi, 30)])

    np.testing.assert_array_equal(play("random", 8), play("thompson", 8))
    found = {name: (play(name, 2).cumsum(axis=1) > 0)[:, -1].mean() for name in ("random", "thompson")}
    assert found["thompson"] > found["random"], found


def test_the_explorer_benchmark_plays_the_configs_meta_test(sparse_explorers, tmp_path, capsys) -> None:
    """One JSON line per explorer, appended to --out: the config's test tasks, one meta-test each, its
    20 episodes, success of the last no more than found by the last."""
    out = tmp_path / "explorers.jsonl"
    sparse_explorers.main(["--meta-tests", "1", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["explorer"] for r in records] == ["random", "thompson"]
    assert capsys.readouterr().out.count("\n") == 2
    for r in records:
        assert r["config"] == "experiments/sparse_point_robot_fast.yaml" and r["meta_tests"] == r["test_tasks"] == 20
        assert len(r["success_per_episode"]) == 20
        assert r["success_last"] <= r["found_by_last"] and r["found_while_exploring"] <= r["found_by_last"]


def test_the_explorer_benchmark_refuses_another_family(sparse_explorers) -> None:
    from tests.conftest import REPO

    with pytest.raises(SystemExit, match="the explorers play the sparse point robot, not 'point-robot'"):
        sparse_explorers.main([str(REPO / "experiments" / "point_robot_fast.yaml"), "--meta-tests", "1"])
