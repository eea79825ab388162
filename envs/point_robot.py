"""Point robots (PEARL's 2-D navigation tasks), pure numpy.

A point moves by its (clipped) action each step; the task is the goal position.
``point-robot``: goals uniform in ``[-1, 1]^2``, each episode starts at a position uniform in
``[-1, 1]^2`` (drawn from the env's seeded generator, as the official env resets), reward
``-||position - goal||``. ``sparse-point-robot``: goals on the upper unit half-circle, each
episode starts at the origin (as the official one); the env reward stays dense, and
``info["sparse_reward"]`` is ``1 - distance`` within ``goal_radius`` of the goal, else 0 (PEARL
feeds the sparse reward to the context and the dense one to the critic). Either env takes
``start="uniform"`` or ``start="origin"``.

Shapes:
    N: batch of points.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np

from envs.base import EnvError, TaskDistribution, TaskEnv, register_task_family

__all__ = [
    "MAX_ACTION",
    "PointRobotEnv",
    "PointRobotTasks",
    "SparsePointRobotEnv",
    "SparsePointRobotTasks",
    "oracle_action",
]

MAX_ACTION = 0.1
"""Bound of each action coordinate (the paper's point robot moves at most 0.1 per axis and step)."""

STARTS = ("uniform", "origin")
"""Where an episode starts: uniform in ``[-1, 1]^2`` (from the env's generator) or at the origin."""


def _check_start(start: Any) -> str:
    if start not in STARTS:
        raise EnvError(f"start must be one of {', '.join(map(repr, STARTS))}, got {start!r}")
    return start


def oracle_action(
    position: np.ndarray, goal: np.ndarray, *, max_action: float = MAX_ACTION
) -> np.ndarray:
    """Scripted oracle: the largest in-bounds step straight toward the goal, without overshooting.

    ``action = d * min(1, max_action / max_i |d_i|)`` with ``d = goal - position``: the direction
    is kept (unlike per-axis clipping), and the goal is reached exactly once it is within a step.

    Args:
        position: ``[N, 2]`` (or ``[2]``) current positions.
        goal: ``[N, 2]`` (or ``[2]``) goals, broadcast against ``position``.
        max_action: the action bound per coordinate.

    Returns:
        ``[N, 2]`` (broadcast shape) float32 actions inside ``[-max_action, max_action]``.

    Examples:
        >>> oracle_action(np.zeros((1, 2)), np.array([[1.0, 0.5]]))
        array([[0.1 , 0.05]], dtype=float32)
    """
    delta = np.asarray(goal, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    largest = np.max(np.abs(delta), axis=-1, keepdims=True)
    scale = np.minimum(1.0, max_action / np.maximum(largest, 1e-12))
    action = np.clip(delta * scale, -max_action, max_action)
    return action.astype(np.float32)


class PointRobotEnv(TaskEnv):
    """2-D point mass that moves toward a goal; dense reward ``-||position - goal||``.

    Observation: position ``[2]`` float32. Action: displacement ``[2]`` in
    ``[-0.1, 0.1]^2`` (clipped). Never terminates; episodes are capped by the caller (20 steps
    for the benchmark).

    Info keys: ``dense_reward`` (the reward), ``distance`` (to the goal after the step).

    Args:
        task: goal ``(goal_x, goal_y)``; None for the default goal ``(1, 0)``.
        start: ``"uniform"``: each episode starts uniform in ``[-1, 1]^2``, drawn from the env's
            generator (seed it with ``reset(seed=...)``); ``"origin"``: at ``(0, 0)``.
        render_mode: unsupported; must be None.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    param_names: ClassVar[tuple[str, ...]] = ("goal_x", "goal_y")
    default_task: ClassVar[tuple[float, ...]] = (1.0, 0.0)
    default_start: ClassVar[str] = "uniform"

    def __init__(
        self,
        task: np.ndarray | None = None,
        start: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise EnvError(f"{type(self).__name__} does not render (render_mode={render_mode!r})")
        self.start = _check_start(self.default_start if start is None else start)
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(
            -MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32
        )
        self._init_task(task)
        self._position = np.zeros(2, dtype=np.float64)
        self.apply_task(self._task)

    @property
    def goal(self) -> np.ndarray:
        """The active goal ``[2]``."""
        return self._task.copy()

    @property
    def position(self) -> np.ndarray:
        """The current position ``[2]`` (float64)."""
        return self._position.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Applies a pending task and puts the point at its start (see ``start``)."""
        super().reset(seed=seed)
        self._activate_pending_task()
        if self.start == "uniform":
            self._position = self.np_random.uniform(-1.0, 1.0, size=2)
        else:
            self._position = np.zeros(2, dtype=np.float64)
        return self._observation(), {"distance": self._distance()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Moves by the clipped action and returns the distance-based reward."""
        move = np.clip(np.asarray(action, dtype=np.float64), -MAX_ACTION, MAX_ACTION)
        if move.shape != (2,):
            raise EnvError(f"{type(self).__name__} action must have shape (2,), got {move.shape}")
        self._position = self._position + move
        distance = self._distance()
        reward = -distance
        return self._observation(), reward, False, False, self._info(reward, distance)

    def _info(self, dense_reward: float, distance: float) -> dict[str, Any]:
        return {"dense_reward": dense_reward, "distance": distance}

    def _distance(self) -> float:
        return float(np.linalg.norm(self._position - self._task))

    def _observation(self) -> np.ndarray:
        return self._position.astype(np.float32)  # astype copies: never hand out our state


class SparsePointRobotEnv(PointRobotEnv):
    """Point robot whose info adds a sparse reward: ``1 - distance`` within the goal radius, else 0.

    The returned reward is the dense one (for the critic); ``info["sparse_reward"]`` is for the
    context, ``info["success"]`` says whether the point is within ``goal_radius`` of the goal.
    Episodes start at the origin by default, as in the official sparse point robot.

    Args:
        task: goal ``(goal_x, goal_y)``; None for the default goal ``(0, 1)``.
        goal_radius: radius around the goal inside which the sparse reward is non-zero.
        start: ``"origin"`` (default) or ``"uniform"``, as for :class:`PointRobotEnv`.
        render_mode: unsupported; must be None.
    """

    default_task: ClassVar[tuple[float, ...]] = (0.0, 1.0)
    default_start: ClassVar[str] = "origin"

    def __init__(
        self,
        task: np.ndarray | None = None,
        goal_radius: float = 0.2,
        start: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not goal_radius > 0:
            raise EnvError(f"goal_radius must be > 0, got {goal_radius!r}")
        self.goal_radius = float(goal_radius)
        super().__init__(task=task, start=start, render_mode=render_mode)

    def _info(self, dense_reward: float, distance: float) -> dict[str, Any]:
        success = distance <= self.goal_radius
        # PEARL's sparsification: keep -distance inside the radius, shift it by +1 so that
        # entering the goal region is always rewarded, and give 0 everywhere else.
        sparse_reward = dense_reward + 1.0 if success else 0.0
        return {
            "dense_reward": dense_reward,
            "sparse_reward": sparse_reward,
            "success": bool(success),
            "distance": distance,
        }


class _PointRobotFamily(TaskDistribution):
    """What the two point-robot families share: 2-D goals, 20-step episodes, 80 train / 20 test tasks.

    Args:
        seed: see :class:`TaskDistribution`.
        n_train_tasks: see :class:`TaskDistribution`.
        n_test_tasks: see :class:`TaskDistribution`.
    """

    param_names: ClassVar[tuple[str, ...]] = PointRobotEnv.param_names
    max_episode_steps: ClassVar[int] = 20
    default_n_train_tasks: ClassVar[int] = 80
    default_n_test_tasks: ClassVar[int] = 20


@register_task_family("point-robot")
class PointRobotTasks(_PointRobotFamily):
    """Goals uniform in ``[-1, 1]^2``; 80 train / 20 test tasks; episodes of 20 steps.

    Args:
        start: where episodes start: ``"uniform"`` in ``[-1, 1]^2`` (the official env's reset,
            the default) or ``"origin"``.
    """

    gym_id: ClassVar[str] = "pearl/PointRobot-v0"
    env_entry_point: ClassVar[str] = "envs.point_robot:PointRobotEnv"

    def __init__(self, *, seed: int, n_train_tasks: int | None = None, n_test_tasks: int | None = None,
                 start: str = PointRobotEnv.default_start) -> None:
        self.start = _check_start(start)
        super().__init__(seed=seed, n_train_tasks=n_train_tasks, n_test_tasks=n_test_tasks)

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Goals ``[n_tasks, 2]`` uniform in the square ``[-1, 1]^2``."""
        return rng.uniform(-1.0, 1.0, size=(n_tasks, 2))

    def env_kwargs(self) -> dict[str, Any]:
        """Passes ``start`` to the env."""
        return {"start": self.start}


@register_task_family("sparse-point-robot")
class SparsePointRobotTasks(_PointRobotFamily):
    """Goals evenly spaced on the upper unit half-circle, shuffled; 80 train / 20 test; 20 steps;
    episodes start at the origin.

    Args:
        goal_radius: radius of the sparse-reward region around the goal (the paper's 0.2).
    """

    gym_id: ClassVar[str] = "pearl/SparsePointRobot-v0"
    env_entry_point: ClassVar[str] = "envs.point_robot:SparsePointRobotEnv"
    sparse_reward: ClassVar[bool] = True
    has_success: ClassVar[bool] = True

    def __init__(self, *, seed: int, n_train_tasks: int | None = None, n_test_tasks: int | None = None,
                 goal_radius: float = 0.2) -> None:
        if not (isinstance(goal_radius, (int, float)) and goal_radius > 0):
            raise EnvError(f"goal_radius must be a number > 0, got {goal_radius!r}")
        self.goal_radius = float(goal_radius)
        super().__init__(seed=seed, n_train_tasks=n_train_tasks, n_test_tasks=n_test_tasks)

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Goals ``[n_tasks, 2]`` at ``n_tasks`` evenly spaced angles of ``[0, pi]`` on the unit
        circle, in an order shuffled by ``rng`` (as the official env lays them out; the train/test
        split then takes the first ``n_train`` and the rest)."""
        angle = rng.permutation(np.linspace(0.0, np.pi, num=n_tasks))
        return np.stack([np.cos(angle), np.sin(angle)], axis=-1)

    def env_kwargs(self) -> dict[str, Any]:
        """Passes ``goal_radius`` to the env."""
        return {"goal_radius": self.goal_radius}
