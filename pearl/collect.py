"""Vectorised rollouts: one env per task slot, all slots stepped in lockstep, one policy call per step.

Shapes:
    K: task slots collected at once, S: steps per slot, O/A/L: obs/action/latent dims.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from pearl.agent import PEARLAgent


class Rollouts(NamedTuple):
    """Transitions of ``K`` slots, ``S`` steps each: every field ``[K, S, dim]``.

    ``terminals`` marks true terminations only (time-limit truncation is not termination).
    ``episode_ids`` numbers the episodes of each slot, for per-episode returns.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    sparse_rewards: np.ndarray
    successes: np.ndarray
    episode_ids: np.ndarray

    def task(self, k: int) -> dict[str, np.ndarray]:
        """The transitions of slot ``k`` as keyword arguments of ``MultiTaskBuffer.add``."""
        return dict(
            observations=self.observations[k], actions=self.actions[k], rewards=self.rewards[k],
            next_observations=self.next_observations[k], terminals=self.terminals[k],
            sparse_rewards=self.sparse_rewards[k],
        )


# z source: called whenever a slot starts an episode; returns z [K, L], and the starting slots take theirs
ZSource = Callable[[], torch.Tensor]


def _one_thread_on_cpu(rollout: Callable[..., "Rollouts"]) -> Callable[..., "Rollouts"]:
    """Run a CPU rollout with one torch thread, then restore the count.

    Acting on a few rows is latency-bound: intra-op threads only add synchronisation (and spin
    against other processes on a busy machine); benchmarks/README.md has the figures.
    """

    @functools.wraps(rollout)
    def wrapper(self: "VectorCollector", *args, **kwargs) -> "Rollouts":
        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads == 1:
            return rollout(self, *args, **kwargs)
        torch.set_num_threads(1)
        try:
            return rollout(self, *args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


class VectorCollector:
    """A pool of envs of one task distribution, stepped together.

    Args:
        make_env: builds one env of the family (``task_distribution.make_env``).
        n_slots: how many envs (tasks collected at once).
        max_path_length: episode cap; reaching it truncates, it does not terminate.
        seed: seeds each env's own RNG (slot ``k`` gets ``seed + k``).
        device: where the policy runs.
    """

    def __init__(self, make_env: Callable[[], gym.Env], *, n_slots: int, max_path_length: int,
                 seed: int, device: torch.device) -> None:
        self.envs = [make_env() for _ in range(n_slots)]
        self.max_path_length, self.device = max_path_length, device
        space = self.envs[0].action_space
        assert isinstance(space, gym.spaces.Box), "continuous (Box) action spaces only"
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self._obs = [None] * n_slots
        for k, env in enumerate(self.envs):
            env.reset(seed=seed + k)  # seeds the env's RNG once; later resets continue it
            env.action_space.seed(seed + k)

    def scale_action(self, action: np.ndarray) -> np.ndarray:
        """Policy actions in [-1, 1] → the env's box."""
        return self._low + (action + 1.0) * 0.5 * (self._high - self._low)

    @_one_thread_on_cpu
    def rollout(
        self,
        agent: PEARLAgent | None,
        tasks: np.ndarray,
        n_steps: int,
        z_source: ZSource | None,
        *,
        deterministic: bool = False,
    ) -> Rollouts:
        """Run ``n_steps`` steps in each of ``len(tasks)`` slots.

        Every slot starts a fresh episode; episodes end on termination or at ``max_path_length``,
        and a new one starts (with a new z from ``z_source``) until the slot has ``n_steps``
        steps. ``agent=None`` acts uniformly at random (baselines).

        Shapes:
            tasks [K, P] -> Rollouts fields [K, n_steps, dim]
        """
        K = len(tasks)
        if K > len(self.envs):
            raise ValueError(f"{K} tasks but only {len(self.envs)} env slots")
        envs = self.envs[:K]
        obs = np.stack([self._reset(env, task) for env, task in zip(envs, tasks)])
        out = _empty_rollouts(K, n_steps, obs.shape[1], self._low.shape[0])
        episode_len = np.zeros(K, np.int64)
        episode_id = np.zeros(K, np.int64)
        starting = np.ones(K, bool)
        z = None
        for t in range(n_steps):
            if agent is None:
                action = np.stack([env.action_space.sample() for env in envs])
                action = 2.0 * (action - self._low) / (self._high - self._low) - 1.0
            else:
                if starting.any():  # a new z for the slots starting an episode
                    new_z = z_source()
                    z = new_z if z is None else torch.where(torch.as_tensor(starting, device=new_z.device)[:, None], new_z, z)
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
                action = agent.act(obs_t, z, deterministic=deterministic).cpu().numpy().astype(np.float64)
            out["observations"][:, t] = obs
            out["actions"][:, t] = action
            out["episode_ids"][:, t] = episode_id
            env_action = self.scale_action(action)
            for k, env in enumerate(envs):
                next_obs, terminated, truncated = self._step(env, env_action[k], out, k, t)
                episode_len[k] += 1
                starting[k] = terminated or truncated or episode_len[k] >= self.max_path_length
                if starting[k]:
                    episode_len[k] = 0
                    episode_id[k] += 1
                    next_obs = self._reset(env, None)
                obs[k] = next_obs
        return Rollouts(**out)

    @staticmethod
    def _step(env: gym.Env, action: np.ndarray, out: dict[str, np.ndarray], k: int, t: int) -> tuple[np.ndarray, bool, bool]:
        """Step slot ``k``'s env and record step ``t``; the next observation and how the step ended."""
        next_obs, reward, terminated, truncated, info = env.step(action)
        out["rewards"][k, t] = reward
        out["next_observations"][k, t] = next_obs
        out["terminals"][k, t] = float(terminated)
        out["sparse_rewards"][k, t] = info.get("sparse_reward", reward)
        out["successes"][k, t] = float(info.get("success", 0.0))
        return next_obs, terminated, truncated

    @staticmethod
    def _reset(env: gym.Env, task: np.ndarray | None) -> np.ndarray:
        if task is not None:
            env.unwrapped.set_task(task)
        obs, _ = env.reset()
        return np.asarray(obs, dtype=np.float32)


def _empty_rollouts(K: int, n_steps: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Zeroed arrays of every :class:`Rollouts` field, ``[K, n_steps, dim]``."""
    dims = {"observations": obs_dim, "actions": act_dim, "rewards": 1, "next_observations": obs_dim,
            "terminals": 1, "sparse_rewards": 1, "successes": 1}
    out = {name: np.zeros((K, n_steps, dim), np.float32) for name, dim in dims.items()}
    out["episode_ids"] = np.zeros((K, n_steps), np.int64)
    return out
