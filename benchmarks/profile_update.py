"""Where a gradient step's time goes: torch.profiler tables for ``SACLearner.update`` and the plain baseline.

Takes the same options as ``update_speed.py`` plus ``--top`` and ``--sort``; prints the operator
tables (self CPU time) of a few profiled steps after warm-up.

Usage::

    python benchmarks/profile_update.py --steps 5 --top 25
"""

from __future__ import annotations

import sys

import update_speed
from common import load_average

import torch
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    argv = sys.argv[1:]
    top, sort = 25, "self_cpu_time_total"
    for flag in ("--top", "--sort"):
        if flag in argv:
            i = argv.index(flag)
            value = argv[i + 1]
            del argv[i : i + 2]
            top, sort = (int(value), sort) if flag == "--top" else (top, value)
    args = update_speed.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    inputs = update_speed.random_inputs(args, device, 2, torch.Generator().manual_seed(args.seed))
    cfg = update_speed.algo_config(args)
    learner = update_speed.build_learner(args, cfg, device)
    runners = {"ours": lambda i: learner.update(*inputs[i % 2])}
    if args.baseline:
        plain = update_speed.PlainStep(args, cfg, device)
        runners["baseline"] = lambda i: plain.step(*inputs[i % 2])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for name, run in runners.items():
        for i in range(args.warmup):
            run(i)
        with profile(activities=activities) as prof:
            for i in range(args.steps):
                run(i)
            update_speed.sync(device)
        print(f"==== {name} ({args.steps} steps, load {load_average()})")
        print(prof.key_averages().table(sort_by=sort, row_limit=top))


if __name__ == "__main__":
    main()
