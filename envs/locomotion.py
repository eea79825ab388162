"""MuJoCo locomotion task families (DESIGN.md section 5); mujoco is imported only when built.

A family is one class: its tasks, and where its robot's reward differs from gymnasium's v5 env,
the reward. The families on one robot share an env (:mod:`envs.locomotion_envs`, reached through
gymnasium entry points, so ``import envs`` works without the ``mujoco`` extra); the env asks its
family for the forward term of the reward and keeps the v5 control, contact and healthy terms:

=================  ============================  =================================================
family             task vector                   reward
=================  ============================  =================================================
cheetah-vel        (target_velocity,)            -|v_x - v_target| - 0.05 ||a||^2
cheetah-dir        (direction,) in {+1, -1}      direction * v_x - 0.05 ||a||^2
ant-dir            (direction,) in {+1, -1}      direction * v_x + 1 - 0.5 ||a||^2 - contact
ant-goal           (goal_x, goal_y)              -||xy - goal||_1 - 0.1 ||a||^2 - contact
humanoid-dir       (direction_angle,)            1.25 <v_xy, (cos, sin)> + 5 - ctrl - contact
walker/hopper      see RandParamsEnv             the v5 reward (forward velocity + alive - ctrl)
=================  ============================  =================================================

Building a family without ``mujoco`` raises :class:`~envs.base.EnvError` naming the extra to install.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from envs.base import EnvError, TaskDistribution, register_task_family

__all__ = [
    "AntDirTasks",
    "AntGoalTasks",
    "CheetahDirTasks",
    "CheetahVelTasks",
    "HopperRandParamsTasks",
    "HumanoidDirTasks",
    "MujocoTaskDistribution",
    "RewardTasks",
    "Walker2dRandParamsTasks",
]

_CHEETAH, _ANT, _HUMANOID = (f"envs.locomotion_envs:{name}" for name in ("CheetahEnv", "AntEnv", "HumanoidEnv"))


class MujocoTaskDistribution(TaskDistribution):
    """Base of the MuJoCo families: needs the ``mujoco`` extra, 200-step episodes.

    Attributes:
        robot_kwargs: keyword arguments of the robot's v5 env for this family (registered with
            gymnasium, so ``gymnasium.make(gym_id)`` builds the family's env).
    """

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("mujoco", "mujoco"),)
    max_episode_steps: ClassVar[int] = 200
    robot_kwargs: ClassVar[dict[str, Any]] = {}

    @classmethod
    def registered_env_kwargs(cls) -> dict[str, Any]:
        return dict(cls.robot_kwargs)


class RewardTasks(MujocoTaskDistribution):
    """A family whose env is its robot's v5 env with the forward term of the reward replaced.

    The env calls :meth:`task_state` when a task becomes active and :meth:`forward_reward` after
    every step; both are the family's, so the family is all that differs between two families on
    one robot.

    Attributes:
        default_task: the task of an env built without one.
    """

    default_task: ClassVar[tuple[float, ...]]

    @classmethod
    def registered_env_kwargs(cls) -> dict[str, Any]:
        return {"family": cls.name, **cls.robot_kwargs}

    @staticmethod
    def task_state(task: np.ndarray) -> Any:
        """What the reward needs of a task (checked); by default the task vector itself."""
        return task.copy()

    @staticmethod
    def forward_reward(state: Any, env: Any, info: dict[str, Any]) -> float:
        """The task's forward term after a step, from the v5 ``info`` (or the env's state)."""
        raise NotImplementedError


class _UniformTasks(RewardTasks):
    """One task parameter, uniform in ``[low, high)``."""

    low: ClassVar[float]
    high: ClassVar[float]

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """``[n_tasks, 1]`` uniform in ``[low, high)``."""
        return rng.uniform(self.low, self.high, size=(n_tasks, 1))


class _DirectionTasks(RewardTasks):
    """Run forward (+1) or backward (-1) along x: two tasks, used for training and testing alike
    (as in the paper).

    Train task ``i`` is ``[+1, -1][i % 2]``, and so is test task ``i``: the split is not disjoint
    because the benchmark defines only two tasks. The seed has nothing to draw.
    """

    continuous: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ("direction",)
    default_task: ClassVar[tuple[float, ...]] = (1.0,)
    default_n_train_tasks: ClassVar[int] = 2
    default_n_test_tasks: ClassVar[int] = 2

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """``[n_tasks, 1]`` alternating +1, -1 (no randomness)."""
        return np.where(np.arange(n_tasks) % 2 == 0, 1.0, -1.0)[:, None]

    def split_tasks(self, rng: np.random.Generator, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
        """Both splits alternate +1, -1."""
        return self.sample_tasks(rng, n_train), self.sample_tasks(rng, n_test)

    @staticmethod
    def task_state(task: np.ndarray) -> float:
        if task[0] not in (1.0, -1.0):
            raise EnvError(f"a direction task is +1 or -1, got {task[0]}")
        return float(task[0])

    @staticmethod
    def forward_reward(state: float, env: Any, info: dict[str, Any]) -> float:
        """``direction * v_x``."""
        return state * float(info["x_velocity"])


@register_task_family("cheetah-vel")
class CheetahVelTasks(_UniformTasks):
    """HalfCheetah, target velocity U[0, 3]; 100 train / 30 test tasks."""

    gym_id: ClassVar[str] = "pearl/CheetahVel-v0"
    env_entry_point: ClassVar[str] = _CHEETAH
    robot_kwargs: ClassVar[dict[str, Any]] = {"ctrl_cost_weight": 0.05}  # the paper's
    param_names: ClassVar[tuple[str, ...]] = ("target_velocity",)
    default_task: ClassVar[tuple[float, ...]] = (1.0,)
    default_n_train_tasks: ClassVar[int] = 100
    default_n_test_tasks: ClassVar[int] = 30
    low, high = 0.0, 3.0

    @staticmethod
    def task_state(task: np.ndarray) -> float:
        return float(task[0])

    @staticmethod
    def forward_reward(state: float, env: Any, info: dict[str, Any]) -> float:
        """``-|v_x - v_target|``."""
        return -abs(float(info["x_velocity"]) - state)


@register_task_family("cheetah-dir")
class CheetahDirTasks(_DirectionTasks):
    """HalfCheetah, run forward (+1) or backward (-1); 2 / 2 tasks."""

    gym_id: ClassVar[str] = "pearl/CheetahDir-v0"
    env_entry_point: ClassVar[str] = _CHEETAH
    robot_kwargs: ClassVar[dict[str, Any]] = {"ctrl_cost_weight": 0.05}  # the paper's


@register_task_family("ant-dir")
class AntDirTasks(_DirectionTasks):
    """Ant, walk forward (+1) or backward (-1) along x; 2 / 2 tasks; ends when unhealthy."""

    gym_id: ClassVar[str] = "pearl/AntDir-v0"
    env_entry_point: ClassVar[str] = _ANT
    robot_kwargs: ClassVar[dict[str, Any]] = {"include_cfrc_ext_in_observation": False}  # 27-dim observations


@register_task_family("ant-goal")
class AntGoalTasks(RewardTasks):
    """Ant, walk to a goal uniform in the disk of radius 3; 150 train / 30 test tasks.

    As in PEARL's ant-goal: no survive bonus, the episode never terminates, and the observation
    includes the torso's x-y position (29 dims), which the agent needs to navigate.
    """

    gym_id: ClassVar[str] = "pearl/AntGoal-v0"
    env_entry_point: ClassVar[str] = _ANT
    robot_kwargs: ClassVar[dict[str, Any]] = {
        "include_cfrc_ext_in_observation": False, "exclude_current_positions_from_observation": False,
        "ctrl_cost_weight": 0.1, "healthy_reward": 0.0, "terminate_when_unhealthy": False,
    }
    param_names: ClassVar[tuple[str, ...]] = ("goal_x", "goal_y")
    default_task: ClassVar[tuple[float, ...]] = (2.0, 0.0)
    default_n_train_tasks: ClassVar[int] = 150
    default_n_test_tasks: ClassVar[int] = 30

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Goals ``[n_tasks, 2]`` uniform in area on the disk of radius 3."""
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n_tasks)
        radius = 3.0 * np.sqrt(rng.uniform(0.0, 1.0, size=n_tasks))  # sqrt: uniform in area
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)

    @staticmethod
    def forward_reward(state: np.ndarray, env: Any, info: dict[str, Any]) -> float:
        """``-||xy - goal||_1``; ``info["goal_distance"]`` is the Euclidean distance."""
        xy = env.data.qpos[:2]  # the torso's free joint after the step (body xpos lags one substep)
        info["goal_distance"] = float(np.linalg.norm(xy - state))
        return -float(np.sum(np.abs(xy - state)))


@register_task_family("humanoid-dir")
class HumanoidDirTasks(_UniformTasks):
    """Humanoid, move in the direction of an angle U[0, 2 pi); 100 train / 30 test tasks."""

    gym_id: ClassVar[str] = "pearl/HumanoidDir-v0"
    env_entry_point: ClassVar[str] = _HUMANOID
    param_names: ClassVar[tuple[str, ...]] = ("direction_angle",)
    default_task: ClassVar[tuple[float, ...]] = (0.0,)
    default_n_train_tasks: ClassVar[int] = 100
    default_n_test_tasks: ClassVar[int] = 30
    low, high = 0.0, 2.0 * np.pi

    @staticmethod
    def task_state(task: np.ndarray) -> np.ndarray:
        """The direction's unit vector."""
        return np.array([np.cos(task[0]), np.sin(task[0])])

    @staticmethod
    def forward_reward(state: np.ndarray, env: Any, info: dict[str, Any]) -> float:
        """``1.25 <v_xy, direction>`` (v5's forward weight, which gymnasium keeps on the env)."""
        velocity = np.array([info["x_velocity"], info["y_velocity"]], dtype=np.float64)
        return env._forward_reward_weight * float(velocity @ state)


class _RandParamsTasks(MujocoTaskDistribution):
    """Randomised mass, inertia, damping, friction; 40 train / 10 test tasks.

    A task is ``(log_mass_scale, log_inertia_scale, log_damping_scale, log_friction_scale,
    param_seed)``: the seed (drawn from the family's generator) fixes every per-element factor,
    the four summaries describe them for latent inspection (see
    :class:`envs.locomotion_envs.RandParamsEnv`). The reward is the v5 env's own.
    """

    param_names: ClassVar[tuple[str, ...]] = (
        "log_mass_scale",
        "log_inertia_scale",
        "log_damping_scale",
        "log_friction_scale",
        "param_seed",
    )
    default_n_train_tasks: ClassVar[int] = 40
    default_n_test_tasks: ClassVar[int] = 10

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Draws distinct seeds, then computes each seed's summaries on the env's model."""
        seeds = rng.choice(2**31 - 1, size=n_tasks, replace=False)  # distinct: disjoint split
        env = self.make_env()
        try:
            task_for_seed = env.task_for_seed  # type: ignore[attr-defined]
            return np.stack([task_for_seed(int(seed)) for seed in seeds])
        finally:
            env.close()


@register_task_family("walker-rand-params")
class Walker2dRandParamsTasks(_RandParamsTasks):
    """Walker2d with randomised physical parameters; 40 / 10 tasks."""

    gym_id: ClassVar[str] = "pearl/WalkerRandParams-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:Walker2dRandParamsEnv"


@register_task_family("hopper-rand-params")
class HopperRandParamsTasks(_RandParamsTasks):
    """Hopper with randomised physical parameters; 40 / 10 tasks."""

    gym_id: ClassVar[str] = "pearl/HopperRandParams-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:HopperRandParamsEnv"
