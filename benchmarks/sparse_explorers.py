"""What the sparse point robot's bar asks of exploration: scripted explorers under its meta-test.

A config's meta-test (experiments/sparse_point_robot_fast.yaml: 20 episodes of 20 steps from the
origin, the first 5 exploring with z from the prior, success counted in the last) is played on the
config's test tasks by scripted agents that steer straight for a point (``envs.point_robot.oracle_action``)
instead of a learned policy, so that the success rate measures the exploration strategy alone:

- ``random``: every episode heads for a point drawn uniformly on the goals' half-circle until the
  context holds a sparse reward; from then on it heads for the rewarded position with the highest
  reward. Posterior sampling whose posterior learns nothing from episodes without reward.
- ``thompson``: as ``random``, but after the exploring episodes it draws its point uniformly among
  the goals that the context has not ruled out (a goal is ruled out when a visited position lay
  within the goal radius of it without a reward): posterior sampling with the exact posterior.

Both exploit perfectly once they have seen a reward, so their last-episode success bounds what a
learned agent with the same exploration can reach. Usage::

    python benchmarks/sparse_explorers.py                       # the fast config, 50 meta-tests per task
    python benchmarks/sparse_explorers.py CONFIG --meta-tests 100 --out docs/sparse_explorers.jsonl

Prints one JSON line per explorer (appended to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import REPO, emit, load_average

import envs
from envs.point_robot import SparsePointRobotTasks, oracle_action
from pearl.config import load_config

EXPLORERS = ("random", "thompson")
_ANGLES = np.linspace(0.0, np.pi, 1801)
CANDIDATES = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=-1)
"""[G, 2] goals of the half-circle, 0.1 degree apart, that the ``thompson`` explorer keeps or rules out."""


def play_meta_test(env, *, explorer: str, num_episodes: int, num_exploring: int, max_steps: int,
                   rng: np.random.Generator) -> np.ndarray:
    """One meta-test on ``env`` (its task already set): ``[num_episodes]`` bool, whether each episode
    entered the goal radius."""
    point = env.unwrapped  # the point robot under any wrappers: its position and goal radius
    alive = np.ones(len(CANDIDATES), dtype=bool)  # goals the context has not ruled out
    best_reward, best_position = 0.0, None
    success = np.zeros(num_episodes, dtype=bool)
    for episode in range(num_episodes):
        if best_position is not None and episode >= num_exploring:
            target = best_position
        else:
            pool = CANDIDATES[alive] if explorer == "thompson" and episode >= num_exploring else CANDIDATES
            target = pool[rng.integers(len(pool))]
        env.reset()
        unrewarded = []  # positions visited without a sparse reward
        for _ in range(max_steps):
            _, _, terminated, truncated, info = env.step(oracle_action(point.position, target))
            position = point.position
            if info["sparse_reward"] == 0:
                unrewarded.append(position)
            success[episode] |= bool(info["success"])
            if info["sparse_reward"] > best_reward:
                best_reward, best_position = info["sparse_reward"], position
            if terminated or truncated:
                break
        if unrewarded:
            distance = np.linalg.norm(CANDIDATES[:, None] - np.array(unrewarded)[None], axis=-1)  # [G, n]
            alive &= distance.min(axis=1) > point.goal_radius
        if not alive.any():  # the grid's last goals can fall between visited points: start afresh
            alive[:] = True
    return success


def measure(config: Path, *, meta_tests: int, seed: int) -> list[dict]:
    """Both explorers on every test task of ``config``, ``meta_tests`` times each."""
    cfg = load_config(config)
    tasks = envs.make_task_distribution(cfg.env.name, seed=cfg.seed, n_train_tasks=cfg.env.n_train_tasks,
                                        n_test_tasks=cfg.env.n_test_tasks, **cfg.env.kwargs)
    if not isinstance(tasks, SparsePointRobotTasks):
        raise SystemExit(f"{config}: the explorers play the sparse point robot, not {cfg.env.name!r}")
    test_tasks = tasks.test_tasks[: cfg.eval.n_test_tasks]
    exploring = cfg.eval.num_exp_traj_eval
    max_steps = cfg.env.max_path_length or tasks.max_episode_steps
    path = config.resolve()
    name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(config)
    records = []
    for explorer in EXPLORERS:
        rng, start = np.random.default_rng(seed), time.perf_counter()
        success = np.array([play_meta_test(env, explorer=explorer, num_episodes=cfg.eval.num_episodes,
                                           num_exploring=exploring, max_steps=max_steps, rng=rng)
                            for env in map(tasks.make_env, test_tasks) for _ in range(meta_tests)])  # [K * M, E]
        found = success.cumsum(axis=1) > 0  # found by the end of each episode
        records.append({
            "explorer": explorer, "config": name, "test_tasks": len(test_tasks), "meta_tests": int(len(success)),
            "success_last": round(float(success[:, -1].mean()), 4),
            "found_while_exploring": round(float(found[:, exploring - 1].mean()), 4) if exploring else 0.0,
            "found_by_last": round(float(found[:, -1].mean()), 4),
            "success_per_episode": [round(float(v), 3) for v in success.mean(axis=0)],
            "seed": seed, "seconds": round(time.perf_counter() - start, 1), "load_avg": load_average(),
        })
    return records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, nargs="?", default=REPO / "experiments" / "sparse_point_robot_fast.yaml",
                   help="the experiment whose env, test tasks and meta-test are played")
    p.add_argument("--meta-tests", type=int, default=50, help="meta-tests per test task and explorer")
    p.add_argument("--seed", type=int, default=0, help="seeds the explorers' draws")
    p.add_argument("--out", type=Path, default=None, help="append the JSON lines to this file too")
    args = p.parse_args(argv)
    if args.meta_tests < 1:
        p.error(f"--meta-tests must be at least 1, got {args.meta_tests}")
    for record in measure(args.config, meta_tests=args.meta_tests, seed=args.seed):
        emit(record)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
