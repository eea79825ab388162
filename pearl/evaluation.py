"""Meta-test protocol (posterior sampling exploration, then adaptation) and its summary.

For each task, starting from an empty context: episode ``e`` runs a deterministic policy (by
default; ``deterministic="last"`` samples actions in all but the last episode) with
z drawn from the prior for the first ``num_exp_traj_eval`` episodes, and from q(z|c) of all
context collected so far afterwards, re-inferred after every episode. ``num_runs`` independent
meta-tests per task are averaged per episode index (the official code's ``num_evals``).

:class:`Adaptation` is the protocol itself, one episode at a time; :func:`meta_test` scores it,
and latent inspection (:func:`pearl.latents.collect_contexts`) keeps the context it gathers.

Shapes:
    K: tasks, E: episodes per task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.distributions import Distribution

from pearl.agent import PEARLAgent
from pearl.buffers import TransitionBatch, make_context
from pearl.collect import Rollouts, VectorCollector


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
        """Flat metrics, e.g. ``eval/test/return_adapted``, ``eval/test/return_episode_0``, and where
        the env defines success ``eval/test/success_episode_0`` beside each episode's return."""
        out = {f"{prefix}/return_prior": self.return_prior, f"{prefix}/return_adapted": self.return_adapted}
        out.update({f"{prefix}/return_episode_{e}": float(r) for e, r in enumerate(self.curve)})
        if self.successes is not None:
            out[f"{prefix}/success_prior"] = float(self.successes[:, : self.num_exp_traj_eval].mean())
            if self.successes.shape[1] > self.num_exp_traj_eval:
                out[f"{prefix}/success_adapted"] = float(self.successes[:, -1].mean())
            out.update({f"{prefix}/success_episode_{e}": float(v) for e, v in enumerate(self.successes.mean(axis=0))})
        return out

    def table(self) -> str:
        """The adaptation curve as a small text table."""
        lines = ["episode  z from     mean return  std" + ("    success" if self.successes is not None else "")]
        for e, col in enumerate(self.returns.T):
            source = "prior" if e < self.num_exp_traj_eval else "posterior"
            success = f"  {self.successes[:, e].mean():>9.2f}" if self.successes is not None else ""
            lines.append(f"{e:>7}  {source:<9}  {col.mean():>11.3f}  {col.std():.3f}{success}")
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
    posterior: Callable[[torch.Tensor], Distribution] | None = None,
) -> MetaTestResult:
    """Run the meta-test protocol ``num_runs`` times on each of ``tasks``, averaged per task.

    All ``K * num_runs`` meta-tests run side by side, one env slot each, in groups of as many as
    the collector has slots. ``deterministic``: ``"all"`` episodes act with the policy's mean
    action (the paper's protocol), or only the ``"last"`` one, the earlier ones sampling actions
    from the policy. ``posterior`` maps a context ``[1 or K, N, C]`` to the distribution that the
    posterior episodes draw z from (default: the agent's q(z|c)).

    Returns are summed over the reward the context sees: the sparse reward on sparse tasks (as the
    paper reports them), the env reward otherwise.

    Shapes:
        tasks [K, P] -> MetaTestResult with returns [K, num_episodes]
    """
    rows = np.repeat(np.asarray(tasks), num_runs, axis=0)  # [K * R, P]: the runs of a task together
    returns, successes = np.zeros((len(rows), num_episodes)), np.zeros((len(rows), num_episodes))
    for start, group in in_groups(rows, len(collector.envs)):
        adaptation = Adaptation(agent, collector, group, num_exp_traj_eval=num_exp_traj_eval,
                                use_next_obs=use_next_obs, sparse_rewards=sparse_rewards, posterior=posterior)
        for e in range(num_episodes):
            ro, first = adaptation.run_episode(collector.max_path_length,
                                               deterministic=acts_deterministically(e, num_episodes, deterministic))
            reward = ro.sparse_rewards if sparse_rewards else ro.rewards
            returns[start : start + len(group), e] = (reward[..., 0] * first).sum(axis=1)
            successes[start : start + len(group), e] = (ro.successes[..., 0] * first).max(axis=1) > 0
    def per_task(x: np.ndarray) -> np.ndarray:  # [K * R, E] -> [K, E], the mean over a task's runs
        return x.reshape(len(tasks), num_runs, num_episodes).mean(axis=1)

    return MetaTestResult(per_task(returns), per_task(successes) if has_success else None, num_exp_traj_eval,
                          num_runs)


def acts_deterministically(episode: int, num_episodes: int, mode: str) -> bool:
    """Whether meta-test episode ``episode`` of ``num_episodes`` acts with the policy's mean action:
    every one with ``mode="all"``, only the last with ``"last"``."""
    return mode == "all" or episode == num_episodes - 1


def in_groups(rows: np.ndarray, size: int) -> list[tuple[int, np.ndarray]]:
    """``(start, rows[start : start + size])`` for consecutive groups of at most ``size`` rows."""
    return [(start, rows[start : start + size]) for start in range(0, len(rows), size)]


class Adaptation:
    """One meta-test of ``K`` tasks side by side, episode by episode: the protocol's core.

    Each task starts with an empty context. Episode ``e`` draws z from the prior while
    ``e < num_exp_traj_eval`` (posterior sampling exploration), afterwards from q(z|c) of all the
    context the task has gathered so far (or from ``posterior``, a map of such contexts to a
    distribution); one z per task and episode. Each episode's transitions (of its first episode in
    the slot, when it ends early) join the task's context.

    Shapes:
        tasks [K, P]; each task's context [N_k, C].
    """

    def __init__(self, agent: PEARLAgent, collector: VectorCollector, tasks: np.ndarray, *,
                 num_exp_traj_eval: int, use_next_obs: bool, sparse_rewards: bool,
                 posterior: Callable[[torch.Tensor], Distribution] | None = None) -> None:
        self.agent, self.collector, self.tasks = agent, collector, tasks
        self.posterior = posterior  # None: the agent's q(z|c)
        self.num_exp_traj_eval = num_exp_traj_eval
        self.use_next_obs, self.sparse_rewards = use_next_obs, sparse_rewards
        self.episodes = 0  # episodes run so far
        self._chunks: list[list[torch.Tensor]] = [[] for _ in range(len(tasks))]  # per task, [n, C] each

    @property
    def n_context(self) -> np.ndarray:
        """[K] context transitions gathered per task."""
        return np.array([sum(len(c) for c in chunks) for chunks in self._chunks], dtype=np.int64)

    def contexts(self) -> list[torch.Tensor]:
        """Each task's context so far, in time order: K tensors [N_k, C]."""
        return [torch.cat(chunks) for chunks in self._chunks]

    def next_z(self) -> torch.Tensor:
        """z of the next episode: [K, L], from the prior or from q(z|c) of the context so far."""
        if self.episodes < self.num_exp_traj_eval:
            return self.agent.prior(len(self.tasks)).sample()
        return _posterior_samples(self.posterior or self.agent.posterior, self.contexts())

    @torch.no_grad()
    def run_episode(self, n_steps: int, *, deterministic: bool) -> tuple[Rollouts, np.ndarray]:
        """One episode of at most ``n_steps`` steps per task; its transitions join the contexts.

        Returns:
            The rollouts ``[K, n_steps, dim]`` and ``first`` [K, n_steps]: the steps of the slot's
            first episode (the one that counts; a slot whose episode ends early starts another).
        """
        z = self.next_z()
        ro = self.collector.rollout(self.agent, self.tasks, n_steps, lambda: z, deterministic=deterministic)
        first = ro.episode_ids == 0
        device = self.collector.device
        for k, chunks in enumerate(self._chunks):
            n = int(first[k].sum())
            batch = TransitionBatch(*(torch.as_tensor(x[k, :n][None], device=device) for x in (
                ro.observations, ro.actions, ro.rewards, ro.next_observations, ro.terminals, ro.sparse_rewards)))
            chunks.append(make_context(batch, use_next_obs=self.use_next_obs, sparse_rewards=self.sparse_rewards)[0])
        self.episodes += 1
        return ro, first


def _posterior_samples(posterior: Callable[[torch.Tensor], Distribution],
                       contexts: list[torch.Tensor]) -> torch.Tensor:
    """One z ~ posterior(c_k) per task; batched when all contexts have the same length.

    Shapes:
        contexts: K tensors [n_k, C] -> z [K, L]
    """
    if len({c.shape[0] for c in contexts}) == 1:
        return posterior(torch.stack(contexts)).sample()
    return torch.cat([posterior(c[None]).sample() for c in contexts])
