"""Environment steps per second of the collection path, next to one policy call per step per task.

Ours is ``VectorCollector.rollout``: the K task slots step in lockstep and one policy call acts for
all of them. The baseline is how the official implementation collects: one task after another,
one policy call (a batch of one observation) per environment step. Both use the same agent
(the paper's networks: policy 3x300, latent 5), the same envs and the same number of steps;
z is drawn from the prior once per episode. Storing into the replay buffers is not timed.

Usage::

    python benchmarks/collect_speed.py                        # point-robot and cheetah-vel
    python benchmarks/collect_speed.py --envs point-robot --slots 5 20 --steps 400

Prints one JSON line per (env, slots): ``{"benchmark": "collect_speed", "env": ..., "slots": K,
"steps_per_s": ..., "baseline_steps_per_s": ..., "ratio": ...}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import emit, load_average, machine

import numpy as np
import torch

import encoders
import envs
from pearl.agent import PEARLAgent
from pearl.buffers import context_dim
from pearl.collect import VectorCollector


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["point-robot", "cheetah-vel"], help="task families")
    p.add_argument("--slots", type=int, nargs="+", default=[5], help="tasks collected at once (paper: 5 per iteration)")
    p.add_argument("--steps", type=int, default=None, help="steps per task (default: 400 point robot, 200 MuJoCo)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--hidden", type=int, nargs="+", default=[300, 300, 300], help="policy hidden sizes")
    p.add_argument("--latent", type=int, default=5, help="latent dim")
    return p.parse_args(argv)


def one_call_per_step(agent: PEARLAgent, collector: VectorCollector, tasks: np.ndarray, n_steps: int) -> int:
    """The baseline: task after task, one policy call with a single observation per env step."""
    env = collector.envs[0]
    for task in tasks:
        env.unwrapped.set_task(task)
        obs, _ = env.reset()
        z = agent.prior(1).sample()
        length = 0
        for _ in range(n_steps):
            obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32))[None]
            action = agent.act(obs_t, z)[0].numpy().astype(np.float64)
            obs, _reward, terminated, truncated, _info = env.step(collector.scale_action(action))
            length += 1
            if terminated or truncated or length >= collector.max_path_length:
                obs, _ = env.reset()
                z = agent.prior(1).sample()
                length = 0
    return len(tasks) * n_steps


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.envs:
        tasks = envs.make_task_distribution(name, seed=0)
        probe = tasks.make_env(tasks.train_tasks[0])
        obs_dim, action_dim = int(np.prod(probe.observation_space.shape)), int(np.prod(probe.action_space.shape))
        probe.close()
        encoder = encoders.build_encoder("mlp", context_dim=context_dim(obs_dim, action_dim, use_next_obs=False),
                                         latent_dim=args.latent, kwargs={"hidden_sizes": [200, 200, 200]})
        agent = PEARLAgent(encoder, obs_dim=obs_dim, action_dim=action_dim, hidden_sizes=args.hidden)
        n_steps = args.steps or (400 if "point" in name else 200)
        for slots in args.slots:
            collector = VectorCollector(tasks.make_env, n_slots=slots, max_path_length=tasks.max_episode_steps,
                                        seed=0, device=torch.device("cpu"))
            batch_tasks = tasks.train_tasks[np.arange(slots) % len(tasks.train_tasks)]

            def ours() -> int:
                prior = agent.prior(slots)
                ro = collector.rollout(agent, batch_tasks, n_steps, prior.sample)
                return ro.rewards.shape[0] * ro.rewards.shape[1]

            def baseline() -> int:
                return one_call_per_step(agent, collector, batch_tasks, n_steps)

            load_start = load_average()
            rates: dict[str, list[float]] = {"ours": [], "baseline": []}
            ours(), baseline()  # warm-up
            for _ in range(args.repeats):
                for key, run in (("ours", ours), ("baseline", baseline)):
                    start = time.perf_counter()
                    steps = run()
                    rates[key].append(steps / (time.perf_counter() - start))
            ratios = [a / b for a, b in zip(rates["ours"], rates["baseline"])]
            emit({
                "benchmark": "collect_speed", "env": name, "slots": slots, "steps_per_task": n_steps,
                "steps_per_s": round(statistics.median(rates["ours"])),
                "baseline_steps_per_s": round(statistics.median(rates["baseline"])),
                "ratio": round(statistics.median(ratios), 2),
                "all_steps_per_s": {k: [round(r) for r in v] for k, v in rates.items()},
                "machine": machine(), "load_avg": [load_start, load_average()],
            })


if __name__ == "__main__":
    main()
