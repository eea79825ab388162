"""Shared plumbing of the MuJoCo-based envs; importing this module imports ``mujoco``.

- :func:`route_mujoco_warnings`: MuJoCo's default warning handler prints to stdout and appends to
  ``MUJOCO_LOG.TXT`` in the working directory (e.g. "Nan, Inf or huge value in QACC" when a
  randomised model goes unstable). We send those messages to the ``envs.mujoco`` logger instead.
- :class:`MujocoTaskEnv`: the task interface on top of gymnasium's v5 ``MujocoEnv`` classes, with
  float32 observations.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium.utils import EzPickle

from envs.base import TaskEnv

__all__ = ["MUJOCO_LOGGER", "MujocoTaskEnv", "route_mujoco_warnings"]

MUJOCO_LOGGER = logging.getLogger("envs.mujoco")
"""Where MuJoCo's own warnings go (level WARNING) once :func:`route_mujoco_warnings` ran.

A library does not print on its own: the messages reach whatever handlers the application
configures (e.g. the CLI's logging setup), and are silent otherwise.
"""
MUJOCO_LOGGER.addHandler(logging.NullHandler())


def _log_mujoco_warning(message: str) -> None:
    MUJOCO_LOGGER.warning("MuJoCo: %s", message.strip())


def route_mujoco_warnings() -> bool:
    """Sends MuJoCo's C-level warnings to the ``envs.mujoco`` logger instead of stdout + file.

    The handler is process-wide in MuJoCo, so it is installed only when no one else has
    installed one; calling this again is harmless.

    Returns:
        True when our handler is (now) the active one.
    """
    current = mujoco.get_mju_user_warning()
    if current is None:
        mujoco.set_mju_user_warning(_log_mujoco_warning)
        return True
    return current is _log_mujoco_warning


class MujocoTaskEnv(TaskEnv):
    """Task interface for a gymnasium v5 MuJoCo env (to be listed before the v5 class).

    The subclass names its v5 class in ``v5``, calls its ``__init__`` and then :meth:`_finish_init`.
    A task set with ``set_task`` is applied at the start of ``reset()``, before the simulation
    state is reset, so model changes (rand-params) are in place for the whole episode.
    """

    model: mujoco.MjModel
    data: mujoco.MjData
    v5: ClassVar[type]

    def _finish_init(self, task: np.ndarray | None, kwargs: dict[str, Any]) -> None:
        """Casts the observation space to float32, applies the first task, fixes pickling.

        Args:
            task: the first task, or None for ``default_task``.
            kwargs: the keyword arguments the v5 class got, kept for pickling.
        """
        route_mujoco_warnings()
        shape = self.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(
            -np.inf, np.inf, shape=shape, dtype=np.float32
        )
        self._init_task(task)
        self.apply_task(self._task)
        # The v5 classes record their own positional arguments for EzPickle, which would rebuild
        # the wrong signature; record ours instead.
        EzPickle.__init__(self, task=None if task is None else self._task.copy(), **kwargs)

    def _get_obs(self) -> np.ndarray:
        return super()._get_obs().astype(np.float32)  # type: ignore[misc]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Applies a pending task, then resets as the v5 env does."""
        self._activate_pending_task()
        return super().reset(seed=seed, options=options)  # type: ignore[misc]
