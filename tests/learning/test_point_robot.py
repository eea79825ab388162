"""Learning: PEARL adapts to held-out point-robot goals, judged against a random policy and an oracle.

normalised score = (adapted return - random return) / (oracle return - random return), where the
random policy acts uniformly in the action box and the oracle knows the goal and moves straight to
it; both are measured by this test on the same test tasks as the agent, from starts drawn as the
env draws them (uniform in [-1, 1]^2 on the dense point robot), 10 episodes per task.
"""

from __future__ import annotations

import numpy as np
import pytest

import envs
from pearl.config import load_config
from pearl.trainer import Trainer
from tests.conftest import EXPERIMENTS


def oracle_return(trainer: Trainer, tasks: np.ndarray, episodes: int = 10) -> float:
    """Mean return of the scripted oracle, ``episodes`` episodes per task from the env's start states
    (random starts: drawn from a generator seeded by the run's seed)."""
    env = trainer.tasks.make_env()
    env.reset(seed=trainer.cfg.seed + 10_000)
    returns = []
    for task in tasks:
        env.unwrapped.set_task(task)
        for _ in range(episodes):
            obs, _ = env.reset()
            total = 0.0
            for _ in range(trainer.max_path_length):
                obs, reward, terminated, truncated, _ = env.step(envs.oracle_action(obs, task))
                total += reward
                if terminated or truncated:
                    break
            returns.append(total)
    return float(np.mean(returns))


def random_return(trainer: Trainer, tasks: np.ndarray, episodes: int = 10) -> float:
    """Mean return of a uniformly random policy, ``episodes`` episodes per task."""
    rollouts = trainer.collector.rollout(None, tasks, episodes * trainer.max_path_length, None)
    return float(rollouts.rewards.sum() / (len(tasks) * episodes))


# Independent meta-tests of every test task, averaged. Posterior sampling makes one meta-test of 20
# tasks a noisy measure (its score varies with a standard deviation of about 0.05 for one trained
# agent); the mean of 5 meta-tests, about 0.02.
TRIALS = 5


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_robot_fast_adapts_to_test_goals(seed: int) -> None:
    cfg = load_config(EXPERIMENTS / "point_robot_fast.yaml", [f"seed={seed}", "tracking.progress=false"])
    cfg.eval.every = cfg.train.num_iterations  # evaluate once, at the end
    trainer = Trainer(cfg)
    trainer.train()

    tasks = trainer.test_tasks
    # the config's meta-test (eval.num_episodes episodes), TRIALS times from an empty context
    results = [trainer.evaluate(tasks) for _ in range(TRIALS)]
    adapted = float(np.mean([r.return_adapted for r in results]))
    prior = float(np.mean([r.return_prior for r in results]))
    low, high = random_return(trainer, tasks), oracle_return(trainer, tasks)
    score = (adapted - low) / (high - low)
    trials = ", ".join(f"{(r.return_adapted - low) / (high - low):.2f}" for r in results)
    print(f"seed {seed}: adapted {adapted:.2f}, prior {prior:.2f}, random {low:.2f}, oracle {high:.2f}, "
          f"score {score:.2f} (trials {trials})")
    assert score >= 0.8
    assert adapted > prior + 0.1 * (high - low)
