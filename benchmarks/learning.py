"""Wall-clock seconds and environment steps until meta-training reaches a target adapted return.

Trains with ``pearl.trainer.Trainer`` (no MLflow, no checkpoints) on a config, by default
``experiments/point_robot_fast.yaml``, evaluating on the held-out test tasks every
``--eval-every`` iterations; stops at the first evaluation whose adapted test return
(``eval/test/return_adapted``: the mean return of the episodes after the exploration ones) is at
least ``--target``, or after the config's ``train.num_iterations``.

``train_s`` counts collection and gradient steps only; ``wall_s`` adds evaluation.

Usage::

    python benchmarks/learning.py                                   # seed 0, target -8
    python benchmarks/learning.py --seeds 0 1 2 --target -7.5
    python benchmarks/learning.py --set algo.autocast_bf16=true     # any config override
    python benchmarks/learning.py --config experiments/paper/point_robot.yaml --full --max-seconds 300 \
        --set device=cuda --set algo.compile=true --set algo.compile_mode=reduce-overhead   # on a GPU

Prints one JSON line per seed and a summary line (``"seed": "all"``) with the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import REPO, emit, load_average, machine

import torch

from pearl.config import load_config
from pearl.trainer import Trainer

METRIC = "eval/test/return_adapted"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=str(REPO / "experiments/point_robot_fast.yaml"), help="experiment YAML")
    p.add_argument("--target", type=float, default=-8.0,
                   help="adapted test return to reach (point robot: about -17 for an untrained agent)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training run per seed")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every this many iterations")
    p.add_argument("--max-iterations", type=int, default=None, help="cap (default: train.num_iterations)")
    p.add_argument("--full", action="store_true", help="keep training after the target is reached")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop after the first iteration that ends this many wall seconds after the start")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, as for pearl train (repeatable)")
    return p.parse_args(argv)


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    overrides = [*args.overrides, f"seed={seed}", f"eval.every={args.eval_every}", "tracking.progress=false"]
    if args.max_iterations is not None:
        overrides.append(f"train.num_iterations={args.max_iterations}")
    cfg = load_config(args.config, overrides)
    start = time.perf_counter()
    trainer = Trainer(cfg)
    train_s, curve, reached = 0.0, [], None
    while trainer.iteration < cfg.train.num_iterations:
        result = trainer.run_iteration()
        train_s += result.metrics["time/collect_s"] + result.metrics["time/update_s"]
        if METRIC in result.metrics:
            value = result.metrics[METRIC]
            point = {"iteration": result.iteration, "env_steps": result.env_steps, "train_s": round(train_s, 1),
                     "wall_s": round(time.perf_counter() - start, 1), "return_adapted": round(value, 3),
                     "return_prior": round(result.metrics["eval/test/return_prior"], 3),
                     "grad_steps_per_s": round(result.metrics["time/grad_steps_per_s"], 1)}
            curve.append(point)
            print(f"seed {seed}: {point}", file=sys.stderr, flush=True)
            if reached is None and value >= args.target:
                reached = point
                if not args.full:
                    break
        if args.max_seconds is not None and time.perf_counter() - start >= args.max_seconds:
            break
    return {
        "benchmark": "learning", "config": str(args.config), "overrides": args.overrides, "seed": seed,
        "target": args.target, "reached": reached is not None,
        "iteration": reached and reached["iteration"], "env_steps": reached and reached["env_steps"],
        "train_s": reached and reached["train_s"], "wall_s": reached and reached["wall_s"],
        "best_return_adapted": max((p["return_adapted"] for p in curve), default=None),
        "eval_every": args.eval_every, "max_seconds": args.max_seconds, "machine": machine(),
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = load_average()
    results = []
    for seed in args.seeds:
        record = run_seed(args, seed)
        record["load_avg"] = [load_start, load_average()]
        emit(record)
        results.append(record)
    hits = [r for r in results if r["reached"]]
    median = lambda key: statistics.median(r[key] for r in hits) if hits else None  # noqa: E731
    emit({
        "benchmark": "learning", "seed": "all", "config": str(args.config), "overrides": args.overrides,
        "target": args.target, "reached": f"{len(hits)}/{len(results)}",
        "median_env_steps": median("env_steps"), "median_train_s": median("train_s"),
        "median_wall_s": median("wall_s"), "machine": machine(), "load_avg": [load_start, load_average()],
    })


if __name__ == "__main__":
    main()
