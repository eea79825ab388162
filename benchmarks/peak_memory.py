"""Peak resident memory of a real training run, measured after a given number of environment steps.

Runs ``pearl train`` (the CLI, MLflow tracking into a throwaway store, checkpoints included) as a
child process for as many iterations as it takes to pass ``--env-steps`` environment steps, then
reads the child's peak RSS from ``getrusage(RUSAGE_CHILDREN)`` (the ``Maximum resident set size`` of
``/usr/bin/time -v``).

Usage::

    python benchmarks/peak_memory.py                              # paper point robot, 26,000 steps
    python benchmarks/peak_memory.py --train-steps 50             # same, fewer gradient steps (faster)

Prints one JSON line: ``{"benchmark": "peak_memory", "peak_rss_mib": ..., "env_steps": ..., ...}``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

from common import REPO, emit, load_average, machine

from pearl.config import load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=str(REPO / "experiments/paper/point_robot.yaml"), help="experiment YAML")
    p.add_argument("--env-steps", type=int, default=26_000, help="run until at least this many env steps")
    p.add_argument("--train-steps", type=int, default=None,
                   help="gradient steps per iteration (default: the config's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config overrides, as for pearl train")
    return p.parse_args(argv)


def iterations_for(cfg, env_steps: int) -> tuple[int, int]:
    """Iterations needed to pass ``env_steps``, and the env steps collected by then."""
    t = cfg.train
    n_train = cfg.env.n_train_tasks or 1
    initial = n_train * t.num_initial_steps
    per_iteration = t.num_tasks_sample * (t.num_steps_prior + t.num_steps_posterior + t.num_extra_rl_steps_posterior)
    n = max(1, math.ceil(max(env_steps - initial, 0) / max(per_iteration, 1)))
    return n, initial + n * per_iteration


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.train_steps is not None:
        overrides.append(f"train.num_train_steps_per_itr={args.train_steps}")
    cfg = load_config(args.config, overrides)
    n_iterations, env_steps = iterations_for(cfg, args.env_steps)
    overrides.append(f"train.num_iterations={n_iterations}")
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work}/mlflow.db", PYTHONPATH=str(REPO))
        command = [sys.executable, "-m", "pearl.cli", "train", str(args.config), "--no-progress"]
        for item in overrides:
            command += ["--set", item]
        load_start, start = load_average(), time.perf_counter()
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"pearl train failed with exit code {done.returncode}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    emit({
        "benchmark": "peak_memory",
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_rss_mb": round(peak_kib * 1024 / 1e6, 1),
        "env_steps": env_steps,
        "iterations": n_iterations,
        "wall_s": round(wall, 1),
        "config": str(args.config),
        "overrides": overrides,
        "machine": machine(),
        "load_avg": [load_start, load_average()],
    })


if __name__ == "__main__":
    main()
