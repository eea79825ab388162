"""Context for latent inspection: fresh rollouts with posterior sampling, or a task's replay buffer.

Both sources return, for each task, its context transitions in time order, so that a prefix of
the first ``n`` transitions is what the agent had seen after ``n`` steps (and a recurrent encoder
gets its context in order).

Shapes:
    K: tasks, N: context transitions, C: context dim, L: latent dim, P: task parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.distributions import Distribution

from pearl.agent import PEARLAgent
from pearl.buffers import MultiTaskBuffer, context_dim, make_context
from pearl.collect import VectorCollector
from pearl.evaluation import Adaptation, acts_deterministically, in_groups

SPLITS = ("train", "test")


class LatentError(ValueError):
    """Latent inspection cannot run as asked (no tasks, no context, unknown option)."""


@dataclass
class TaskContexts:
    """Context of a set of tasks, with what each task is.

    Attributes:
        tasks: [K, P] true task parameters.
        task_ids: [K] index of each task within its split.
        splits: [K] ``"train"`` or ``"test"``.
        contexts: K tensors [N_k, C], each in time order.
    """

    tasks: np.ndarray
    task_ids: np.ndarray
    splits: np.ndarray
    contexts: list[torch.Tensor]

    def __post_init__(self) -> None:
        self.tasks = np.asarray(self.tasks, dtype=np.float64)
        if self.tasks.ndim == 1:
            self.tasks = self.tasks.reshape(len(self.contexts), -1)
        self.task_ids = np.asarray(self.task_ids, dtype=np.int64)
        self.splits = np.asarray(self.splits, dtype=object)
        if not (len(self.tasks) == len(self.task_ids) == len(self.splits) == len(self.contexts)):
            raise ValueError(
                f"TaskContexts: {len(self.tasks)} tasks, {len(self.task_ids)} ids, {len(self.splits)} splits "
                f"and {len(self.contexts)} contexts; expected one of each per task"
            )

    def __len__(self) -> int:
        return len(self.contexts)

    @property
    def n_context(self) -> np.ndarray:
        """[K] context transitions of each task."""
        return np.array([len(c) for c in self.contexts], dtype=np.int64)

    def select(self, mask: np.ndarray) -> TaskContexts:
        """The tasks where ``mask`` [K] is True."""
        keep = np.flatnonzero(mask)
        return TaskContexts(self.tasks[keep], self.task_ids[keep], self.splits[keep],
                            [self.contexts[i] for i in keep])

    @staticmethod
    def concat(parts: list[TaskContexts]) -> TaskContexts:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise LatentError("no tasks to concatenate")
        return TaskContexts(
            np.concatenate([p.tasks for p in parts]), np.concatenate([p.task_ids for p in parts]),
            np.concatenate([p.splits for p in parts]), [c for p in parts for c in p.contexts],
        )


def posterior_of_prefixes(agent: PEARLAgent, contexts: list[torch.Tensor], n: int | None = None,
                          *, batch_size: int = 256) -> list[tuple[np.ndarray, Distribution]]:
    """q(z|c) of each task from its first ``n`` context transitions (all of them when ``n`` is None).

    Tasks with equal prefix lengths go through the encoder together; a task with fewer than ``n``
    transitions uses all it has.

    Returns:
        ``(indices, posterior)`` pairs covering every task once: posterior batch [len(indices)].

    Shapes:
        contexts: K tensors [N_k, C] -> posteriors with event [L].
    """
    lengths = np.array([len(c) if n is None else min(len(c), n) for c in contexts], dtype=np.int64)
    if (lengths == 0).any():
        empty = np.flatnonzero(lengths == 0).tolist()
        raise LatentError(f"tasks at positions {empty} have no context transitions")
    out = []
    for length in np.unique(lengths):
        group = np.flatnonzero(lengths == length)
        for start in range(0, len(group), batch_size):
            ids = group[start : start + batch_size]
            batch = torch.stack([contexts[i][:length] for i in ids])  # [k, length, C]
            out.append((ids, agent.posterior(batch)))
    return out


@torch.no_grad()
def collect_contexts(
    agent: PEARLAgent,
    collector: VectorCollector,
    tasks: np.ndarray,
    *,
    n_transitions: int,
    num_exp_traj_eval: int,
    use_next_obs: bool,
    sparse_rewards: bool,
    deterministic: str = "all",
    posterior: Callable[[torch.Tensor], Distribution] | None = None,
) -> list[torch.Tensor]:
    """Context of each task from fresh rollouts with posterior sampling: the meta-test protocol
    (:class:`pearl.evaluation.Adaptation`), keeping what each task gathers.

    Each task starts with an empty context. Episodes run for at most ``collector.max_path_length``
    steps; the first ``num_exp_traj_eval`` draw z from the prior, later ones draw z from q(z|c) (or
    from ``posterior``, as the meta-test's ``eval.posterior`` says) on all context gathered so far.
    ``deterministic`` is the meta-test's (``eval.deterministic_episodes``): with ``"last"`` only the
    last of the ``ceil(n_transitions / max_path_length)`` episodes acts with the mean action.
    Collection stops once every task has ``n_transitions`` transitions (the last episode may be cut
    short); tasks are run ``len(collector.envs)`` at a time.

    Returns:
        K tensors [n_transitions, C] (fewer only if episodes end after a single step throughout).

    Shapes:
        tasks [K, P] -> K tensors [N, C]
    """
    if n_transitions < 1:
        raise LatentError(f"n_transitions: expected at least 1, got {n_transitions}")
    planned = math.ceil(n_transitions / collector.max_path_length)  # episodes, if none ends early
    out: list[torch.Tensor] = []
    for _, group in in_groups(np.asarray(tasks), len(collector.envs)):
        adaptation = Adaptation(agent, collector, group, num_exp_traj_eval=num_exp_traj_eval,
                                use_next_obs=use_next_obs, sparse_rewards=sparse_rewards, posterior=posterior)
        # every episode adds at least one transition per task, so n_transitions episodes always suffice
        while adaptation.n_context.min() < n_transitions and adaptation.episodes < n_transitions:
            steps = int(min(collector.max_path_length, n_transitions - adaptation.n_context.min()))
            mean_action = acts_deterministically(adaptation.episodes, planned, deterministic)
            adaptation.run_episode(steps, deterministic=mean_action)
        out.extend(c[:n_transitions] for c in adaptation.contexts())
    return out


def buffer_contexts(
    buffer: MultiTaskBuffer,
    task_ids: np.ndarray,
    *,
    n_transitions: int | None,
    use_next_obs: bool,
    sparse_rewards: bool,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Context of each training task read from a buffer (the trainer's context buffer, usually).

    Takes the first ``n_transitions`` stored transitions in time order (all when None); a task
    may have fewer, or none (an empty tensor).

    Shapes:
        task_ids [K] -> K tensors [N_k, C]
    """
    obs_dim, action_dim = buffer.data["observations"].shape[2], buffer.data["actions"].shape[2]
    empty = torch.zeros(0, context_dim(obs_dim, action_dim, use_next_obs=use_next_obs), device=device)
    out = []
    for task_id in np.asarray(task_ids, dtype=np.int64):
        if buffer.sizes[task_id] == 0:
            out.append(empty)
            continue
        context = make_context(buffer.all_of(int(task_id), device=device), use_next_obs=use_next_obs,
                               sparse_rewards=sparse_rewards)[0]
        out.append(context if n_transitions is None else context[:n_transitions])
    return out
