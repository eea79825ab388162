"""Normalised point-robot score of a config: train one seed, meta-test it, compare with baselines.

normalised score = (adapted return - random return) / (oracle return - random return), where the
random policy acts uniformly in the action box and the oracle knows the goal and moves straight to
it; both are measured on the same test tasks as the agent, from starts drawn as the env draws them
(uniform in [-1, 1]^2 on the dense point robot), 10 episodes per task.

Used by tests/learning/test_point_robot.py, and as a command for any config and seeds; it prints
one JSON line per seed and protocol, appends them to ``--out``, and ``--report`` renders such a file
as the markdown tables of docs/point_robot.md::

    python benchmarks/point_robot_score.py --config experiments/point_robot_fast.yaml --seeds 0 1 2
    python benchmarks/point_robot_score.py --config experiments/point_robot_fast_explore.yaml \
        --protocol 3:1 --set env.kwargs.start=origin     # also under the paper's protocol, origin starts
    python benchmarks/point_robot_score.py --report docs/point_robot_scores.jsonl > docs/point_robot.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import envs
from pearl.config import load_config
from pearl.latents.context import collect_contexts
from pearl.latents.measures import contraction_curve
from pearl.trainer import Trainer, TrainingDiverged

# Independent meta-tests of every test task, averaged. Posterior sampling makes one meta-test of 20
# tasks a noisy measure (its score varies with a standard deviation of about 0.05 for one trained
# agent); the mean of 5 meta-tests, about 0.02.
TRIALS = 5


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


def first_path_posterior(trainer: Trainer, tasks: np.ndarray) -> dict:
    """q(z|c) of each task after one episode with z from the prior (the first of the paper's meta-test),
    averaged over tasks: its standard deviation (mean over latent dims), its KL to the prior and, for a
    mixture, the components with weight at least 5%. A posterior that keeps the goal and its mirror
    image apart after one straight path shows two modes, or a spread that stays wide."""
    cfg = trainer.cfg
    contexts = collect_contexts(trainer.agent, trainer.collector, tasks, n_transitions=trainer.max_path_length,
                                num_exp_traj_eval=1, use_next_obs=cfg.encoder.use_next_obs,
                                sparse_rewards=trainer.sparse_rewards)
    curve = contraction_curve(trainer.agent, contexts, [min(len(c) for c in contexts)])
    return {"std": round(float(curve.mean_std[0]), 3), "kl": round(float(curve.kl_to_prior[0]), 2),
            "n_modes": None if curve.n_modes is None else round(float(curve.n_modes[0]), 2)}


def train_and_score(
    config: str | Path, seed: int, overrides: list[str] | None = None, *, protocols: list[tuple[int, int]] = ()
) -> list[dict]:
    """Trains ``config`` with ``seed`` (evaluating once, at the end), then scores ``TRIALS`` meta-tests
    of the config's protocol on the test tasks, and then of each other protocol asked for.

    Args:
        protocols: further ``(num_episodes, num_exp_traj_eval)`` meta-tests of the same agent.

    Returns:
        One record per protocol, the config's first: the scores and returns, per trial and
        averaged, and the adaptation curve (mean return per meta-test episode index).
    """
    start = time.perf_counter()
    cfg = load_config(config, [*(overrides or []), f"seed={seed}", "tracking.progress=false"])
    cfg.eval.every = cfg.train.num_iterations  # evaluate once, at the end
    trainer = Trainer(cfg)
    trainer.train()
    minutes = round((time.perf_counter() - start) / 60, 1)
    tasks = trainer.test_tasks
    meta_tests = [[trainer.evaluate(tasks) for _ in range(TRIALS)]]  # each from an empty context
    low, high = random_return(trainer, tasks), oracle_return(trainer, tasks)
    first_path = first_path_posterior(trainer, tasks)
    for episodes, exploring in protocols:  # after the baselines: the config's own figures stay as without
        cfg.eval.num_episodes, cfg.eval.num_exp_traj_eval = episodes, exploring
        meta_tests.append([trainer.evaluate(tasks) for _ in range(TRIALS)])

    def score(value: float) -> float:
        return round((value - low) / (high - low), 3)

    records = []
    for results in meta_tests:
        adapted = float(np.mean([r.return_adapted for r in results]))
        records.append({
            "config": str(config), "overrides": overrides or [], "seed": seed, "score": score(adapted),
            "protocol": f"{results[0].returns.shape[1]} episodes, {results[0].num_exp_traj_eval} from the prior",
            "trials": [score(r.return_adapted) for r in results], "adapted": round(adapted, 3),
            "prior": round(float(np.mean([r.return_prior for r in results])), 3),
            "random": round(low, 3), "oracle": round(high, 3),
            "curve": [round(float(v), 3) for v in np.mean([r.curve for r in results], axis=0)],
            "env_steps": trainer.env_steps, "train_minutes": minutes, "iterations": cfg.train.num_iterations,
            "first_path_posterior": first_path,
        })
    return records


def report(records: list[dict]) -> str:
    """Markdown: one table per config, overrides and protocol, a row per seed and their mean."""
    groups: dict[tuple, list[dict]] = {}
    for r in (r for r in records if "diverged" not in r):
        groups.setdefault((r["config"], " ".join(r["overrides"]), r["protocol"]), []).append(r)
    lines = ["# Point-robot scores", "", "Generated by `python benchmarks/point_robot_score.py --report "
             "docs/point_robot_scores.jsonl` from the records the same script appended to that file "
             "(its docstring gives the commands). Score: 0 a uniformly random policy, 1 an oracle that "
             "knows the goal; each seed's is the mean of 5 meta-tests after training. A second protocol "
             "(`--protocol`) scores the same trained agent under another meta-test: `point_robot_fast.yaml` "
             "trains as `point_robot_fast_explore.yaml` and meta-tests with 3 episodes, 1 from the prior "
             "(the paper's protocol).", ""]
    for (config, overrides, protocol), rows in groups.items():
        lines += [f"## `{config}` {f'`--set {overrides}`' if overrides else ''}: {protocol}", "",
                  "| seed | score | the 5 meta-tests | adapted | prior z | random | oracle | adaptation curve "
                  "(mean return per episode) | train min | load |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: r["seed"]):
            lines.append(f"| {r['seed']} | **{r['score']:.2f}** | {', '.join(f'{t:.2f}' for t in r['trials'])} | "
                         f"{r['adapted']:.2f} | {r['prior']:.2f} | {r['random']:.2f} | {r['oracle']:.2f} | "
                         f"{', '.join(f'{c:.1f}' for c in r['curve'])} | {r['train_minutes']} | "
                         f"{r.get('load', '')} |")
        mean = np.mean([r["score"] for r in rows])
        lines += [f"| mean | **{mean:.2f}** | | | | | | | | |", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="experiments/point_robot_fast.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--protocol", action="append", default=[], metavar="EPISODES:PRIOR",
                   help="also score the same agent under this meta-test, e.g. 3:1 (repeatable)")
    p.add_argument("--out", type=Path, help="append the JSON records to this file")
    p.add_argument("--report", type=Path, help="print the markdown report of a records file, and train nothing")
    args = p.parse_args()
    if args.report:
        print(report([json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]))
        return
    protocols = [tuple(int(x) for x in item.split(":")) for item in args.protocol]
    for seed in args.seeds:
        load = os.getloadavg()[0]
        try:
            records = train_and_score(args.config, seed, args.overrides, protocols=protocols)
        except TrainingDiverged as e:  # recorded, so that a report counts it rather than drops it
            records = [{"config": str(args.config), "overrides": args.overrides, "seed": seed, "diverged": str(e)}]
        for record in records:
            record["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # 1-minute load, start and end
            print(json.dumps(record), flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
