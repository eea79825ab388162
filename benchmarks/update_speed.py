"""Gradient steps per second of ``SACLearner.update``, next to a plain eager step with the same arithmetic.

The default configuration is the paper's point robot (meta-batch 16 x batch 256, context 64,
networks 3x300, encoder 3x200, latent 5, obs 2, action 2). Inputs are random tensors already on
the device, so only the gradient step is timed (buffer sampling is measured separately with
``--with-sampling``).

The baseline (on by default, ``--no-baseline`` to skip) is the step as a plain PyTorch program
would write it, and as the official implementation does: five separate ``nn.Sequential`` MLPs
(encoder, policy, Q1, Q2, V) plus a target V, one default ``torch.optim.Adam`` each, eager, no
compile, and the policy loss backpropagated through the Q networks' weights as well. Ours and the
baseline run alternately in every repeat, so a change in machine load hits both; the ratio is the
median of the per-repeat ratios.

Usage::

    python benchmarks/update_speed.py                       # paper point robot, fp32, pearl variant
    python benchmarks/update_speed.py --variant modern --compile --repeats 9
    python benchmarks/update_speed.py --dtype bfloat16      # bf16 autocast (CPUs with AVX512-BF16/AMX)
    python benchmarks/update_speed.py --device cuda --cuda-graph

Prints one JSON line: ``{"benchmark": "update_speed", "steps_per_s": ..., "baseline_steps_per_s": ...,
"ratio": ..., "config": {...}, ...}``.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from typing import Callable

from common import emit, load_average, machine

import torch
import torch.nn.functional as F
from torch import nn

import encoders
from pearl.agent import PEARLAgent
from pearl.buffers import MultiTaskBuffer, TransitionBatch, context_dim, make_context
from pearl.config import AlgoConfig
from pearl.sac import SACLearner, make_learner

MIN_VAR = 1e-7  # the encoder's variance floor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variant", choices=("pearl", "modern"), default="pearl", help="SAC variant")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16 = autocast the matmuls to bf16 (parameters and optimiser stay fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the update (AlgoConfig.compile)")
    p.add_argument("--cuda-graph", action="store_true", help="compile with mode='reduce-overhead' (CUDA graphs)")
    p.add_argument("--meta-batch", type=int, default=16, help="tasks per step")
    p.add_argument("--batch-size", type=int, default=256, help="RL transitions per task")
    p.add_argument("--context", type=int, default=64, help="context transitions per task")
    p.add_argument("--hidden", type=int, nargs="+", default=[300, 300, 300], help="policy/Q/V hidden sizes")
    p.add_argument("--encoder-hidden", type=int, nargs="+", default=[200, 200, 200], help="encoder hidden sizes")
    p.add_argument("--latent", type=int, default=5, help="latent dim")
    p.add_argument("--obs-dim", type=int, default=2, help="observation dim")
    p.add_argument("--action-dim", type=int, default=2, help="action dim")
    p.add_argument("--steps", type=int, default=20, help="gradient steps per timed repeat")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="time only the project's step")
    p.add_argument("--with-sampling", action="store_true",
                   help="also time the trainer's whole step: buffer sampling + context + update")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# inputs


def random_inputs(
    args: argparse.Namespace, device: torch.device, n: int, gen: torch.Generator
) -> list[tuple[TransitionBatch, torch.Tensor]]:
    """``n`` meta-batches of random transitions with their contexts, already on ``device``."""
    T, B, N, O, A = args.meta_batch, args.batch_size, args.context, args.obs_dim, args.action_dim
    out = []
    for _ in range(n):
        def field(*shape: int, kind: str = "normal") -> torch.Tensor:
            if kind == "action":
                x = torch.rand(*shape, generator=gen) * 2 - 1
            elif kind == "zero":
                x = torch.zeros(*shape)
            else:
                x = torch.randn(*shape, generator=gen)
            return x.to(device)

        batch = TransitionBatch(
            observations=field(T, B, O), actions=field(T, B, A, kind="action"), rewards=field(T, B, 1),
            next_observations=field(T, B, O), terminals=field(T, B, 1, kind="zero"), sparse_rewards=field(T, B, 1),
        )
        ctx = TransitionBatch(
            observations=field(T, N, O), actions=field(T, N, A, kind="action"), rewards=field(T, N, 1),
            next_observations=field(T, N, O), terminals=field(T, N, 1, kind="zero"), sparse_rewards=field(T, N, 1),
        )
        out.append((batch, make_context(ctx, use_next_obs=False, sparse_rewards=False)))
    return out


def algo_config(args: argparse.Namespace) -> AlgoConfig:
    """The paper's point-robot algo settings at the requested sizes."""
    extra = {}
    fields = AlgoConfig.__dataclass_fields__
    if args.compile or args.cuda_graph:
        if "compile" not in fields:
            raise SystemExit("this version of AlgoConfig has no 'compile' field")
        extra["compile"] = True
        if args.cuda_graph:
            extra["compile_mode"] = "reduce-overhead"
    if args.dtype == "bfloat16":
        if "autocast_bf16" not in fields:
            raise SystemExit("this version of AlgoConfig has no 'autocast_bf16' field")
        extra["autocast_bf16"] = True
    return AlgoConfig(
        variant=args.variant, hidden_sizes=list(args.hidden), reward_scale=100.0, kl_lambda=0.1,
        meta_batch=args.meta_batch, batch_size=args.batch_size, embedding_batch_size=args.context, **extra,
    )


def build_learner(args: argparse.Namespace, cfg: AlgoConfig, device: torch.device) -> SACLearner:
    ctx_dim = context_dim(args.obs_dim, args.action_dim, use_next_obs=False)
    encoder = encoders.build_encoder("mlp", context_dim=ctx_dim, latent_dim=args.latent,
                                     kwargs={"hidden_sizes": list(args.encoder_hidden)})
    agent = PEARLAgent(encoder, obs_dim=args.obs_dim, action_dim=args.action_dim, hidden_sizes=cfg.hidden_sizes)
    return make_learner(agent.to(device), obs_dim=args.obs_dim, action_dim=args.action_dim, cfg=cfg).to(device)


# ----------------------------------------------------------------------------------------------
# the plain eager baseline


def sequential(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class PlainStep:
    """The PEARL gradient step written plainly: separate networks, separate default Adams, eager.

    Same losses and order as ``SACLearner.update``: critic + KL step on Q and encoder, then value
    and policy with Q after its update, then Polyak averaging.
    """

    def __init__(self, args: argparse.Namespace, cfg: AlgoConfig, device: torch.device) -> None:
        O, A, L, H = args.obs_dim, args.action_dim, args.latent, list(args.hidden)
        self.cfg, self.L = cfg, L
        self.encoder = sequential(O + A + 1, list(args.encoder_hidden), 2 * L).to(device)
        self.policy = sequential(O + L, H, 2 * A).to(device)
        self.qf1 = sequential(O + A + L, H, 1).to(device)
        self.qf2 = sequential(O + A + L, H, 1).to(device)
        self.opt = {
            "encoder": torch.optim.Adam(self.encoder.parameters(), lr=cfg.context_lr),
            "policy": torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr),
            "qf1": torch.optim.Adam(self.qf1.parameters(), lr=cfg.qf_lr),
            "qf2": torch.optim.Adam(self.qf2.parameters(), lr=cfg.qf_lr),
        }
        if cfg.variant == "pearl":
            self.vf = sequential(O + L, H, 1).to(device)
            self.target_vf = copy.deepcopy(self.vf)
            self.opt["vf"] = torch.optim.Adam(self.vf.parameters(), lr=cfg.vf_lr)
        else:
            self.target_qf1, self.target_qf2 = copy.deepcopy(self.qf1), copy.deepcopy(self.qf2)
            self.log_alpha = torch.zeros((), device=device, requires_grad=True)
            self.opt["alpha"] = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
            self.target_entropy = -float(A)

    def policy_sample(self, obs_z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, log_std = self.policy(obs_z).chunk(2, dim=-1)
        log_std = log_std.clamp(-20.0, 2.0)
        std = log_std.exp()
        pre_tanh = mean + std * torch.randn_like(mean)
        action = torch.tanh(pre_tanh)
        normal_lp = -0.5 * ((pre_tanh - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        squash = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return action, (normal_lp - squash).sum(-1, keepdim=True), mean, log_std, pre_tanh

    def step(self, batch: TransitionBatch, context: torch.Tensor) -> None:
        cfg = self.cfg
        T, B, _ = batch.observations.shape
        obs, actions = batch.observations.reshape(T * B, -1), batch.actions.reshape(T * B, -1)
        next_obs = batch.next_observations.reshape(T * B, -1)
        rewards, terminals = batch.rewards.reshape(T * B, 1), batch.terminals.reshape(T * B, 1)

        mu, raw_var = self.encoder(context).split(self.L, dim=-1)
        var = F.softplus(raw_var) + MIN_VAR
        post_var = 1.0 / (1.0 / var).sum(1)
        post_mu = post_var * (mu / var).sum(1)
        posterior = torch.distributions.Normal(post_mu, post_var.sqrt())
        z = posterior.rsample()
        prior = torch.distributions.Normal(torch.zeros_like(post_mu), torch.ones_like(post_mu))
        kl = torch.distributions.kl_divergence(posterior, prior).sum(-1)
        z = z.unsqueeze(1).expand(T, B, self.L).reshape(T * B, self.L)

        with torch.no_grad():
            if cfg.variant == "pearl":
                next_v = self.target_vf(torch.cat([next_obs, z], -1))
            else:
                a2, lp2, *_ = self.policy_sample(torch.cat([next_obs, z], -1))
                sa2 = torch.cat([next_obs, a2, z], -1)
                next_v = torch.min(self.target_qf1(sa2), self.target_qf2(sa2)) - self.log_alpha.exp() * lp2
            q_target = cfg.reward_scale * rewards + (1.0 - terminals) * cfg.discount * next_v
        sa = torch.cat([obs, actions, z], -1)
        loss_q = ((self.qf1(sa) - q_target) ** 2).mean() + ((self.qf2(sa) - q_target) ** 2).mean()
        loss_kl = cfg.kl_lambda * kl.sum()
        for name in ("qf1", "qf2", "encoder"):
            self.opt[name].zero_grad()
        (loss_q + loss_kl).backward()
        for name in ("qf1", "qf2", "encoder"):
            self.opt[name].step()

        z_bar = z.detach()
        action, log_prob, mean, log_std, pre_tanh = self.policy_sample(torch.cat([obs, z_bar], -1))
        s_new = torch.cat([obs, action, z_bar], -1)
        q_new = torch.min(self.qf1(s_new), self.qf2(s_new))
        if cfg.variant == "pearl":
            v_pred = self.vf(torch.cat([obs, z_bar], -1))
            loss_v = ((v_pred - (q_new - log_prob).detach()) ** 2).mean()
            loss_pi = (log_prob - q_new).mean() + (
                cfg.policy_mean_reg_weight * (mean**2).mean() + cfg.policy_std_reg_weight * (log_std**2).mean()
                + cfg.policy_pre_activation_weight * (pre_tanh**2).sum(-1).mean()
            )
            self.opt["vf"].zero_grad()
            self.opt["policy"].zero_grad()
            loss_v.backward()
            loss_pi.backward()
            self.opt["vf"].step()
            self.opt["policy"].step()
            targets = [(self.target_vf, self.vf)]
        else:
            alpha = self.log_alpha.exp()
            loss_pi = (alpha.detach() * log_prob - q_new).mean()
            loss_alpha = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.opt["policy"].zero_grad()
            self.opt["alpha"].zero_grad()
            (loss_pi + loss_alpha).backward()
            self.opt["policy"].step()
            self.opt["alpha"].step()
            targets = [(self.target_qf1, self.qf1), (self.target_qf2, self.qf2)]
        with torch.no_grad():
            for target, source in targets:
                for tp, sp in zip(target.parameters(), source.parameters()):
                    tp.mul_(1.0 - cfg.soft_target_tau).add_(sp, alpha=cfg.soft_target_tau)


# ----------------------------------------------------------------------------------------------
# timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(step: Callable[[int], None], n_steps: int, device: torch.device) -> tuple[float, float]:
    """Wall-clock steps/s, and CPU seconds per step of this process (all its threads)."""
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(n_steps):
        step(i)
    sync(device)
    return n_steps / (time.perf_counter() - start), (time.process_time() - cpu_start) / n_steps


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    inputs = random_inputs(args, device, 4, gen)
    cfg = algo_config(args)
    learner = build_learner(args, cfg, device)

    def ours(i: int) -> None:
        learner.update(*inputs[i % len(inputs)])

    runners: dict[str, Callable[[int], None]] = {"ours": ours}
    if args.baseline:
        plain = PlainStep(args, cfg, device)
        runners["baseline"] = lambda i: plain.step(*inputs[i % len(inputs)])
    if args.with_sampling:
        runners["ours_with_sampling"] = trainer_like_step(args, learner, device)

    load_start = load_average()
    warmup_s = {}
    for name, run in runners.items():
        start = time.perf_counter()
        for i in range(args.warmup):
            run(i)
        sync(device)
        warmup_s[name] = round(time.perf_counter() - start, 2)

    rates: dict[str, list[float]] = {name: [] for name in runners}
    cpu_s: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            rate, cpu = steps_per_second(run, args.steps, device)
            rates[name].append(rate)
            cpu_s[name].append(cpu)

    record = {
        "benchmark": "update_speed",
        "steps_per_s": round(statistics.median(rates["ours"]), 3),
    }
    if args.baseline:
        ratios = [a / b for a, b in zip(rates["ours"], rates["baseline"])]
        record["baseline_steps_per_s"] = round(statistics.median(rates["baseline"]), 3)
        record["ratio"] = round(statistics.median(ratios), 3)
        record["ratios"] = [round(r, 3) for r in ratios]
    if args.with_sampling:
        record["with_sampling_steps_per_s"] = round(statistics.median(rates["ours_with_sampling"]), 3)
    record["all_steps_per_s"] = {k: [round(r, 3) for r in v] for k, v in rates.items()}
    # CPU time per step: with --threads 1 a measure of the work itself, little affected by load
    record["cpu_s_per_step"] = {k: round(min(v), 4) for k, v in cpu_s.items()}
    record["warmup_s"] = warmup_s
    record["config"] = {
        "variant": args.variant, "device": str(device), "dtype": args.dtype, "compile": args.compile,
        "cuda_graph": args.cuda_graph, "meta_batch": args.meta_batch, "batch_size": args.batch_size,
        "context": args.context, "hidden": args.hidden, "encoder_hidden": args.encoder_hidden,
        "latent": args.latent, "obs_dim": args.obs_dim, "action_dim": args.action_dim,
        "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
    }
    record["machine"] = machine()
    record["load_avg"] = [load_start, load_average()]
    emit(record)


def trainer_like_step(args: argparse.Namespace, learner: SACLearner, device: torch.device) -> Callable[[int], None]:
    """The trainer's whole step: sample task ids, an RL batch and a context from filled buffers, update."""
    import numpy as np

    n_tasks, per_task = 80, 2000
    rng = np.random.default_rng(args.seed)
    buffers = [MultiTaskBuffer(n_tasks=n_tasks, capacity=per_task, obs_dim=args.obs_dim, action_dim=args.action_dim)
               for _ in range(2)]
    for buf in buffers:
        for t in range(n_tasks):
            buf.add(t, rng.normal(size=(per_task, args.obs_dim)), rng.uniform(-1, 1, (per_task, args.action_dim)),
                    rng.normal(size=per_task), rng.normal(size=(per_task, args.obs_dim)), np.zeros(per_task))
    rl, enc = buffers

    def step(_i: int) -> None:
        ids = rng.integers(0, n_tasks, args.meta_batch)
        batch = rl.sample(ids, args.batch_size, rng, device=device)
        ctx = enc.sample(ids, args.context, rng, device=device)
        learner.update(batch, make_context(ctx, use_next_obs=False, sparse_rewards=False))

    return step


if __name__ == "__main__":
    main()
