"""Where a trained sparse-point-robot agent's meta-test falls short: episode by episode, the tasks
whose goal no earlier episode has found, and where their episodes end.

Runs the meta-test (the run's own protocol: 20 episodes, the first 5 with z from the prior) on every
test task ``--runs`` times and prints, per episode: the success rate over all meta-tests; how many
have not found their goal in any earlier episode, their success in this episode, the distance from
the origin at which their episodes end (goals lie on the unit half-circle, inside radius 0.2 counts)
and the posterior's standard deviation (mean over latent dims) that their z was drawn from. An
episode that ends well inside the circle cannot find a goal, whatever its direction. The summary adds,
for the meta-tests that never find their goal, how close their posterior episodes came to it and how
widely their final directions spread; how many found their goal before the last episode and missed
it there, and how close to the goal those came in the first posterior episode after the find and in the
last; and where the exploring episodes end. ``--prior-until-found`` replays the meta-test with z from
the prior for every episode whose context holds no reward yet: the success that the learned policy and
encoder would reach if the belief after episodes without reward were the prior. Usage::

    python benchmarks/sparse_meta_test.py RUN            # a run id (with --tracking-uri) or a checkpoint folder
    python benchmarks/sparse_meta_test.py results/checkpoints/<run id> --runs 3 --per-goal
    python benchmarks/sparse_meta_test.py RUN --posterior encoder    # q(z|c), whatever the run's eval.posterior

Prints one JSON line per episode, with ``--per-goal`` one per test goal, then a summary line
(``"episode": "all"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from common import emit

from pearl.evaluation import Adaptation, in_groups
from pearl.runs import load_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run id, checkpoint folder or checkpoint file")
    p.add_argument("--tracking-uri", default=None, help="the MLflow store that holds RUN (for a run id)")
    p.add_argument("--runs", type=int, default=3, help="meta-tests per test task")
    p.add_argument("--seed", type=int, default=0, help="seeds torch and numpy before the meta-tests")
    p.add_argument("--per-goal", action="store_true",
                   help="also print a line per test goal (by its angle): how often it was found, and where the "
                        "posterior episodes of the meta-tests that never found it ended (median direction)")
    p.add_argument("--prior-until-found", action="store_true",
                   help="counterfactual: a posterior episode whose context holds no sparse reward yet draws z from "
                        "the prior instead of q(z|c), to measure what the belief after episodes without reward costs")
    p.add_argument("--posterior", choices=("encoder", "decoder"), default=None,
                   help="what the posterior episodes draw z from (default: the run's eval.posterior): q(z|c), or the "
                        "reward decoder's grid posterior (pearl/decoder_posterior.py)")
    p.add_argument("--out", type=Path, default=None,
                   help="append the summary line to this JSON-lines file (docs/sparse_meta_test.jsonl is drawn "
                        "in docs/results.md by benchmarks/results.py)")
    return p.parse_args(argv)


def _posterior_std(posterior, contexts: list[torch.Tensor]) -> np.ndarray:
    """[K] mean standard deviation of posterior(c_k) over latent dims (NaN where the posterior has none)."""
    out = np.full(len(contexts), np.nan)
    with torch.no_grad():
        for k, context in enumerate(contexts):
            try:
                out[k] = float(posterior(context[None]).stddev.mean())
            except (NotImplementedError, AttributeError):
                pass
    return out


class PriorUntilFound(Adaptation):
    """The meta-test with one change: while a task's context holds no sparse reward, its z comes from
    the prior in the posterior episodes too (what exploring without a belief would give).

    Shapes:
        each task's context [N_k, C]; its sparse reward is column ``reward_column``.
    """

    def __init__(self, *args, reward_column: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reward_column = reward_column

    def next_z(self) -> torch.Tensor:
        z = super().next_z()  # [K, L]
        if self.episodes < self.num_exp_traj_eval:
            return z
        found = torch.tensor([bool((c[:, self.reward_column] > 0).any()) for c in self.contexts()], device=z.device)
        return torch.where(found[:, None], z, self.agent.prior(len(self.tasks)).sample())


def _finite_mean(values: np.ndarray) -> float | None:
    """Mean of the finite entries, rounded; null when there are none (JSON has no NaN, and a posterior
    without a standard deviation, a mixture's, records NaN)."""
    finite = values[np.isfinite(values)]
    return round(float(finite.mean()), 3) if finite.size else None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    overrides = ["num_threads=1", *([f"eval.posterior={args.posterior}"] if args.posterior else [])]
    loaded = load_run(args.run, tracking_uri=args.tracking_uri, overrides=overrides)
    trainer, cfg = loaded.trainer, loaded.cfg
    posterior = trainer.acting_posterior()
    # a second one reads each task's width, so that the first keeps adding each episode to what it has summed
    width_of = trainer.acting_posterior()
    if cfg.env.name != "sparse-point-robot":
        sys.exit(f"the run trained {cfg.env.name}; this diagnosis is for sparse-point-robot")
    n_episodes, n_explore = cfg.eval.num_episodes, cfg.eval.num_exp_traj_eval
    rows = np.repeat(np.asarray(trainer.test_tasks), args.runs, axis=0)
    success = np.zeros((len(rows), n_episodes), bool)
    radius, std = np.full((len(rows), n_episodes), np.nan), np.full((len(rows), n_episodes), np.nan)
    angle, closest = np.full((len(rows), n_episodes), np.nan), np.full((len(rows), n_episodes), np.nan)
    goals = rows[:, :2]  # a sparse-point-robot task is its goal position
    for start, group in in_groups(rows, len(trainer.collector.envs)):
        kind, extra = (PriorUntilFound, {"reward_column": trainer.obs_dim + trainer.action_dim}) \
            if args.prior_until_found else (Adaptation, {})
        adaptation = kind(trainer.agent, trainer.collector, group, num_exp_traj_eval=n_explore,
                          use_next_obs=cfg.encoder.use_next_obs, sparse_rewards=trainer.sparse_rewards,
                          posterior=posterior, **extra)
        rows_here = slice(start, start + len(group))
        for e in range(n_episodes):
            if e >= n_explore:
                std[rows_here, e] = _posterior_std(width_of, adaptation.contexts())
            ro, first = adaptation.run_episode(trainer.collector.max_path_length, deterministic=True)
            last = first.sum(axis=1) - 1  # [K] the last step of each slot's first episode
            end = ro.next_observations[np.arange(len(group)), last, :2]
            radius[rows_here, e] = np.linalg.norm(end, axis=1)
            angle[rows_here, e] = np.degrees(np.arctan2(end[:, 1], end[:, 0]))
            gap = np.linalg.norm(ro.next_observations[..., :2] - goals[rows_here, None, :], axis=-1)  # [K, T]
            closest[rows_here, e] = np.where(first, gap, np.inf).min(axis=1)
            success[rows_here, e] = (ro.successes[..., 0] * first).max(axis=1) > 0
    for e in range(n_episodes):
        open_ = ~success[:, :e].any(axis=1)  # no earlier episode found the goal
        emit({"episode": e, "z": "prior" if e < n_explore else "posterior", "success": round(success[:, e].mean(), 3),
              "not_found_before": int(open_.sum()),
              "their_success": round(success[open_, e].mean(), 3) if open_.any() else None,
              "their_end_radius": round(float(np.mean(radius[open_, e])), 3) if open_.any() else None,
              "their_posterior_std": _finite_mean(std[open_, e]) if open_.any() and e >= n_explore else None})
    never = ~success.any(axis=1)
    missed = success[:, :-1].any(axis=1) & ~success[:, -1]  # found before the last episode, missed in it
    # [M] the first posterior episode after the first find (exploring episodes draw from the prior regardless)
    after_find = np.minimum(np.maximum(success.argmax(axis=1) + 1, n_explore), n_episodes - 1)
    if args.per_goal:
        goal_deg = np.round(np.degrees(np.arctan2(goals[:, 1], goals[:, 0])), 1)
        for g in np.unique(goal_deg):
            mine = goal_deg == g
            lost = mine & never
            emit({"goal_deg": float(g), "meta_tests": int(mine.sum()),
                  "found_while_exploring": int(success[mine, :n_explore].any(axis=1).sum()),
                  "never_found": int(lost.sum()), "success_last": round(float(success[mine, -1].mean()), 3),
                  "posterior_end_deg_of_never_found": round(float(np.median(angle[lost, n_explore:])), 1)
                  if lost.any() else None})
    summary = {
        "episode": "all", "run": loaded.title, "run_id": loaded.run_id, "iteration": loaded.iteration,
        "prior_until_found": args.prior_until_found, "posterior": cfg.eval.posterior,
        "meta_tests": len(rows), "success_last": round(float(success[:, -1].mean()), 3),
        "found_while_exploring": int(success[:, :n_explore].any(axis=1).sum()),
        "found_later": int((~success[:, :n_explore].any(axis=1) & ~never).sum()), "never_found": int(never.sum()),
        "found_then_missed_last": int(missed.sum()),
        # for those: how close to the goal the first posterior episode after the find and the last came (a return
        # that drifts away from a goal it found reads as a small first and a last just above 0.2)
        "closest_to_goal_of_found_then_missed":
            [round(float(closest[missed, after_find[missed]].mean()), 3), round(float(closest[missed, -1].mean()), 3)]
            if missed.any() else None,
        "end_radius_of_exploring_episodes": round(float(radius[:, :n_explore].mean()), 3),
        # where the exploring episodes end: counts per 30-degree sector of the goals' half-circle (0-30, ...,
        # 150-180), then those ending below it
        "end_sectors_of_exploring_episodes":
            [int(n) for n in np.histogram(angle[:, :n_explore], bins=np.arange(0, 181, 30))[0]]
            + [int((angle[:, :n_explore] < 0).sum())],
        "end_radius_of_never_found_posterior_episodes": round(float(radius[never, n_explore:].mean()), 3)
        if never.any() else None,
        "closest_to_goal_of_never_found": round(float(closest[never, n_explore:].min(axis=1).mean()), 3)
        if never.any() else None,
        "direction_span_of_never_found_deg": round(float(np.ptp(angle[never, n_explore:], axis=1).mean()), 1)
        if never.any() else None,
        "posterior_std_of_never_found": [_finite_mean(std[never, e]) for e in (n_explore, n_episodes - 1)]
        if never.any() else None,
    }
    emit(summary)
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
