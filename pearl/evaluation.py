"""Meta-test protocol (posterior sampling exploration, then adaptation) and its summary.

For each task, starting from an empty context: episode ``e`` runs a deterministic policy (by
default; ``deterministic="last"`` samples actions in all but the last episode) with
z drawn from the prior for the first ``num_exp_traj_eval`` episodes, and from q(z|c) of all
context collected so far afterwards, re-inferred after every episode. ``num_runs`` independent
meta-tests per task are averaged per episode index (the official code's ``num_evals``).

Shapes:
    K: tasks, E: episodes per task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pearl.agent import PEARLAgent
from pearl.buffers import TransitionBatch, make_context
from pearl.collect import VectorCollector


@dataclass
class MetaTestResult:
    """Per-task, per-episode returns of one meta-test.

    Attributes:
        returns: [K, E] return of every episode index (the adaptation curve, "online" returns),
            the mean over ``num_runs`` meta-tests of the task.
        successes: [K, E] the fraction of runs whose episode reached success at any step, or None.
        num_exp_traj_eval: leading episodes that used z from the prior.
        num_runs: independent meta-tests averaged per task.
    """

    returns: np.ndarray
    successes: np.ndarray | None
    num_exp_traj_eval: int
    num_runs: int = 1

    @property
    def return_prior(self) -> float:
        """Mean return of the exploration episodes (z from the prior)."""
        return float(self.returns[:, : self.num_exp_traj_eval].mean())

    @property
    def return_adapted(self) -> float:
        """Return of the last episode, after adapting on all earlier ones, averaged over tasks: the
        headline number (the paper's code reports the same, its "final" return). NaN when every
        episode was exploration."""
        if self.returns.shape[1] <= self.num_exp_traj_eval:
            return float("nan")
        return float(self.returns[:, -1].mean())

    @property
    def curve(self) -> np.ndarray:
        """[E] mean return per episode index over tasks."""
        return self.returns.mean(axis=0)

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat metrics, e.g. ``eval/test/return_adapted``, ``eval/test/return_episode_0``."""
        out = {f"{prefix}/return_prior": self.return_prior, f"{prefix}/return_adapted": self.return_adapted}
        out.update({f"{prefix}/return_episode_{e}": float(r) for e, r in enumerate(self.curve)})
        if self.successes is not None:
            out[f"{prefix}/success_prior"] = float(self.successes[:, : self.num_exp_traj_eval].mean())
            if self.successes.shape[1] > self.num_exp_traj_eval:
                out[f"{prefix}/success_adapted"] = float(self.successes[:, -1].mean())
        return out

    def table(self) -> str:
        """The adaptation curve as a small text table."""
        lines = ["episode  z from     mean return  std"]
        for e, col in enumerate(self.returns.T):
            source = "prior" if e < self.num_exp_traj_eval else "posterior"
            lines.append(f"{e:>7}  {source:<9}  {col.mean():>11.3f}  {col.std():.3f}")
        return "\n".join(lines)


@torch.no_grad()
def meta_test(
    agent: PEARLAgent,
    collector: VectorCollector,
    tasks: np.ndarray,
    *,
    num_episodes: int,
    num_exp_traj_eval: int,
    use_next_obs: bool,
    sparse_rewards: bool,
    has_success: bool,
    deterministic: str = "all",
    num_runs: int = 1,
) -> MetaTestResult:
    """Run the meta-test protocol ``num_runs`` times on each of ``tasks``, averaged per task.

    All ``K * num_runs`` meta-tests run side by side, one env slot each, in groups of as many as
    the collector has slots. ``deterministic``: ``"all"`` episodes act with the policy's mean
    action (the paper's protocol), or only the ``"last"`` one, the earlier ones sampling actions
    from the policy.

    Returns are summed over the reward the context sees: the sparse reward on sparse tasks (as the
    paper reports them), the env reward otherwise.

    Shapes:
        tasks [K, P] -> MetaTestResult with returns [K, num_episodes]
    """
    rows = np.repeat(np.asarray(tasks), num_runs, axis=0)  # [K * R, P]: the runs of a task together
    slots = len(collector.envs)
    parts = [_meta_test_slots(agent, collector, rows[i : i + slots], num_episodes=num_episodes,
                              num_exp_traj_eval=num_exp_traj_eval, use_next_obs=use_next_obs,
                              sparse_rewards=sparse_rewards, has_success=has_success, deterministic=deterministic)
             for i in range(0, len(rows), slots)]
    returns = np.concatenate([r for r, _ in parts]) if parts else np.zeros((0, num_episodes))
    returns = returns.reshape(len(tasks), num_runs, num_episodes).mean(axis=1)
    successes = None
    if has_success:
        successes = np.concatenate([s for _, s in parts]) if parts else np.zeros((0, num_episodes))
        successes = successes.reshape(len(tasks), num_runs, num_episodes).mean(axis=1)
    return MetaTestResult(returns, successes, num_exp_traj_eval, num_runs)


def _meta_test_slots(
    agent: PEARLAgent,
    collector: VectorCollector,
    tasks: np.ndarray,
    *,
    num_episodes: int,
    num_exp_traj_eval: int,
    use_next_obs: bool,
    sparse_rewards: bool,
    has_success: bool,
    deterministic: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One meta-test of each of ``tasks``, side by side in the collector's first ``K`` slots.

    Shapes:
        tasks [K, P] -> (returns [K, E], successes [K, E] or None)
    """
    K, device = len(tasks), collector.device
    returns = np.zeros((K, num_episodes))
    successes = np.zeros((K, num_episodes)) if has_success else None
    contexts: list[list[torch.Tensor]] = [[] for _ in range(K)]  # per task, chunks [n, C]
    for e in range(num_episodes):
        if e < num_exp_traj_eval:
            z = agent.prior(K).sample()
        else:
            z = _posterior_samples(agent, [torch.cat(c) for c in contexts])
        mean_action = deterministic == "all" or e == num_episodes - 1
        ro = collector.rollout(agent, tasks, collector.max_path_length, lambda _mask: z, deterministic=mean_action)
        first = ro.episode_ids == 0  # [K, S]: only the first episode of each slot counts
        reward = ro.sparse_rewards if sparse_rewards else ro.rewards
        returns[:, e] = (reward[..., 0] * first).sum(axis=1)
        if successes is not None:
            successes[:, e] = ((ro.successes[..., 0] * first).max(axis=1) > 0).astype(float)
        for k in range(K):
            n = int(first[k].sum())
            batch = TransitionBatch(*(torch.as_tensor(x[k, :n][None], device=device) for x in (
                ro.observations, ro.actions, ro.rewards, ro.next_observations, ro.terminals, ro.sparse_rewards)))
            contexts[k].append(make_context(batch, use_next_obs=use_next_obs, sparse_rewards=sparse_rewards)[0])
    return returns, successes


def _posterior_samples(agent: PEARLAgent, contexts: list[torch.Tensor]) -> torch.Tensor:
    """One z ~ q(z|c_k) per task; batched when all contexts have the same length.

    Shapes:
        contexts: K tensors [n_k, C] -> z [K, L]
    """
    if len({c.shape[0] for c in contexts}) == 1:
        return agent.posterior(torch.stack(contexts)).sample()
    return torch.cat([agent.posterior(c[None]).sample() for c in contexts])
