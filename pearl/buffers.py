"""Per-task transition storage, preallocated and sampled in one vectorised call per meta-batch.

Every field is one contiguous ``float32`` array of shape ``[n_tasks, rows, dim]``. ``rows`` grows
geometrically with the data, up to ``capacity``, so memory follows what is stored rather than the
configured capacity (relying on lazily backed ``np.zeros`` is not enough: NumPy asks for huge pages
on large arrays, and one written transition then costs 2 MB per task and field). Each task is a
ring buffer: once full, the oldest transitions are overwritten.

Shapes:
    T: tasks in a meta-batch, B: transitions per task, O: observation dim, A: action dim.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class TransitionBatch(NamedTuple):
    """A meta-batch of transitions; every field is ``[T, B, dim]`` float32."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    sparse_rewards: torch.Tensor


_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "sparse_rewards")


class MultiTaskBuffer:
    """One ring buffer per task, stored as ``[n_tasks, capacity, dim]`` arrays.

    Args:
        n_tasks: number of tasks (one buffer each).
        capacity: transitions kept per task.
        obs_dim: observation size.
        action_dim: action size.

    Examples:
        >>> buf = MultiTaskBuffer(n_tasks=2, capacity=10, obs_dim=3, action_dim=1)
        >>> buf.add(0, np.ones((4, 3)), np.ones((4, 1)), np.ones(4), np.ones((4, 3)), np.zeros(4))
        >>> buf.sizes.tolist()
        [4, 0]
    """

    def __init__(self, *, n_tasks: int, capacity: int, obs_dim: int, action_dim: int) -> None:
        self.n_tasks, self.capacity = n_tasks, capacity
        dims = {"observations": obs_dim, "actions": action_dim, "rewards": 1,
                "next_observations": obs_dim, "terminals": 1, "sparse_rewards": 1}
        self._rows = 0  # allocated rows per task, grows up to capacity
        self.data = {k: np.zeros((n_tasks, 0, d), dtype=np.float32) for k, d in dims.items()}
        self.sizes = np.zeros(n_tasks, dtype=np.int64)  # valid transitions per task
        self.heads = np.zeros(n_tasks, dtype=np.int64)  # next write position per task

    def add(
        self,
        task_id: int,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminals: np.ndarray,
        sparse_rewards: np.ndarray | None = None,
    ) -> None:
        """Append ``N`` transitions of one task (arrays ``[N, dim]`` or ``[N]``)."""
        n = len(observations)
        if n == 0:
            return
        if n > self.capacity:  # keep only what fits, as a ring buffer would
            sl = slice(n - self.capacity, n)
            observations, actions, rewards = observations[sl], actions[sl], rewards[sl]
            next_observations, terminals = next_observations[sl], terminals[sl]
            sparse_rewards = None if sparse_rewards is None else sparse_rewards[sl]
            n = self.capacity
        if sparse_rewards is None:
            sparse_rewards = rewards
        self._reserve(int(self.sizes[task_id]) + n)
        idx = (self.heads[task_id] + np.arange(n)) % self.capacity
        values = (observations, actions, rewards, next_observations, terminals, sparse_rewards)
        for name, value in zip(_FIELDS, values):
            self.data[name][task_id, idx] = np.asarray(value, dtype=np.float32).reshape(n, -1)
        self.heads[task_id] = (self.heads[task_id] + n) % self.capacity
        self.sizes[task_id] = min(self.sizes[task_id] + n, self.capacity)

    def _reserve(self, rows: int) -> None:
        """Make room for ``rows`` transitions per task (doubling, at most ``capacity``)."""
        if rows <= self._rows or self._rows == self.capacity:
            return
        new_rows = min(self.capacity, max(rows, 2 * self._rows, 64))
        for key, old in self.data.items():
            grown = np.zeros((self.n_tasks, new_rows, old.shape[2]), dtype=np.float32)
            grown[:, : self._rows] = old
            self.data[key] = grown
        self._rows = new_rows

    def clear(self, task_id: int) -> None:
        """Forget every transition of a task (its arrays are zeroed, so old data cannot leak back)."""
        size = self.sizes[task_id]
        for arr in self.data.values():
            arr[task_id, :size] = 0.0
        self.sizes[task_id] = 0
        self.heads[task_id] = 0

    def sample(
        self,
        task_ids: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
        *,
        sequential: bool = False,
        device: torch.device | str = "cpu",
    ) -> TransitionBatch:
        """Sample ``batch_size`` transitions for each task in ``task_ids`` in one vectorised gather.

        Uniform with replacement by default. With ``sequential=True`` each task gets a contiguous,
        time-ordered window (for recurrent encoders), wrapping around the ring where needed.

        Shapes:
            task_ids: [T] -> every field [T, batch_size, dim].
        """
        task_ids = np.asarray(task_ids, dtype=np.int64)
        sizes = self.sizes[task_ids]
        if (sizes == 0).any():
            empty = task_ids[sizes == 0].tolist()
            raise ValueError(f"cannot sample from empty buffers of tasks {empty}")
        if sequential:
            # oldest transition of each task sits at (head - size) mod capacity
            start = (self.heads[task_ids] - sizes) % self.capacity
            span = np.maximum(sizes - batch_size, 0) + 1
            offset = (rng.random(len(task_ids)) * span).astype(np.int64)
            steps = np.arange(batch_size)[None, :] % sizes[:, None]
            idx = (start[:, None] + offset[:, None] + steps) % self.capacity
        else:
            idx = (rng.random((len(task_ids), batch_size)) * sizes[:, None]).astype(np.int64)
            # logical index -> physical slot (identity until the ring wraps)
            idx = (self.heads[task_ids, None] - sizes[:, None] + idx) % self.capacity
        rows = task_ids[:, None]
        return TransitionBatch(*(torch.from_numpy(self.data[k][rows, idx]).to(device) for k in _FIELDS))

    def all_of(self, task_id: int, *, device: torch.device | str = "cpu") -> TransitionBatch:
        """Every stored transition of one task in time order, as a batch with ``T = 1``."""
        size = int(self.sizes[task_id])
        idx = (self.heads[task_id] - size + np.arange(size)) % self.capacity
        return TransitionBatch(*(torch.from_numpy(self.data[k][task_id, idx][None]).to(device) for k in _FIELDS))

    def task_snapshot(self, task_id: int) -> dict[str, np.ndarray]:
        """A copy of one task's stored rows and counters, for :meth:`restore_task`."""
        out = {k: v[task_id, : self._rows].copy() for k, v in self.data.items()}
        out["size"], out["head"] = np.array(self.sizes[task_id]), np.array(self.heads[task_id])
        return out

    def restore_task(self, task_id: int, snapshot: dict[str, np.ndarray]) -> None:
        """Put back one task's rows and counters as :meth:`task_snapshot` copied them (other tasks untouched)."""
        for k, arr in self.data.items():
            rows = snapshot[k].shape[0]  # rows only grow, so the snapshot fits
            arr[task_id, :rows] = snapshot[k]
            arr[task_id, rows:] = 0.0
        self.sizes[task_id], self.heads[task_id] = int(snapshot["size"]), int(snapshot["head"])

    def holds_nonzero(self, field: str) -> np.ndarray:
        """``[n_tasks]`` bool: whether any stored transition of each task has a non-zero ``field`` (a slot
        holds no transition only while zero: never written, or zeroed by :meth:`clear`)."""
        return (self.data[field][:, : self._rows, 0] != 0).any(axis=1)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The used part of every array plus the counters (for checkpoints)."""
        top = int(self.sizes.max()) if self.n_tasks else 0
        out = {f"data.{k}": v[:, :top].copy() for k, v in self.data.items()}
        out["sizes"], out["heads"] = self.sizes.copy(), self.heads.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k, arr in self.data.items():
            saved = state[f"data.{k}"]
            if saved.shape[0] != self.n_tasks or saved.shape[2] != arr.shape[2] or saved.shape[1] > self.capacity:
                raise ValueError(
                    f"buffer field {k}: saved shape {saved.shape} does not fit "
                    f"[{self.n_tasks}, <= {self.capacity}, {arr.shape[2]}]"
                )
        self._reserve(max(state[f"data.{k}"].shape[1] for k in self.data))
        for k, arr in self.data.items():
            saved = state[f"data.{k}"]
            arr[:, : saved.shape[1]] = saved
            arr[:, saved.shape[1] :] = 0.0  # slots without a transition stay zero, as after clear()
        self.sizes[:] = state["sizes"]
        self.heads[:] = state["heads"]


def make_context(batch: TransitionBatch, *, use_next_obs: bool, sparse_rewards: bool) -> torch.Tensor:
    """Concatenate a batch into encoder context ``(s, a, r)`` or ``(s, a, r, s')``.

    With ``sparse_rewards`` the context sees the sparse reward, as PEARL does on sparse tasks.

    Shapes:
        every field [T, N, dim] -> context [T, N, C] with C = O + A + 1 (+ O).
    """
    reward = batch.sparse_rewards if sparse_rewards else batch.rewards
    parts = [batch.observations, batch.actions, reward]
    if use_next_obs:
        parts.append(batch.next_observations)
    return torch.cat(parts, dim=-1)


def context_reward_index(obs_dim: int, action_dim: int) -> int:
    """Column of the reward in a context row ``(s, a, r, ...)`` of :func:`make_context`."""
    return obs_dim + action_dim


def context_dim(obs_dim: int, action_dim: int, *, use_next_obs: bool) -> int:
    """Size C of one context transition."""
    return obs_dim + action_dim + 1 + (obs_dim if use_next_obs else 0)
