"""MuJoCo locomotion task families (DESIGN.md section 5); mujoco is imported only when built.

The envs live in :mod:`envs.locomotion_envs` and are reached through gymnasium entry points, so
``import envs`` works without the ``mujoco`` extra; building one of these families without it
raises :class:`~envs.base.EnvError` naming the extra to install.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from envs.base import TaskDistribution, register_task_family

__all__ = [
    "AntDirTasks",
    "AntGoalTasks",
    "CheetahDirTasks",
    "CheetahVelTasks",
    "HopperRandParamsTasks",
    "HumanoidDirTasks",
    "MujocoTaskDistribution",
    "Walker2dRandParamsTasks",
]


class MujocoTaskDistribution(TaskDistribution):
    """Base of the MuJoCo families: needs the ``mujoco`` extra, 200-step episodes."""

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("mujoco", "mujoco"),)
    max_episode_steps: ClassVar[int] = 200


class _DirectionTasks(MujocoTaskDistribution):
    """Two directions, +1 and -1, used for training and for testing alike (as in the paper).

    Train task ``i`` is ``[+1, -1][i % 2]``, and so is test task ``i``: the split is not disjoint
    because the benchmark defines only two tasks. The seed has nothing to draw.
    """

    continuous: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ("direction",)
    default_n_train_tasks: ClassVar[int] = 2
    default_n_test_tasks: ClassVar[int] = 2

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """``[n_tasks, 1]`` alternating +1, -1 (no randomness)."""
        return np.where(np.arange(n_tasks) % 2 == 0, 1.0, -1.0)[:, None]

    def split_tasks(
        self, rng: np.random.Generator, n_train: int, n_test: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both splits alternate +1, -1."""
        return self.sample_tasks(rng, n_train), self.sample_tasks(rng, n_test)


@register_task_family("cheetah-vel")
class CheetahVelTasks(MujocoTaskDistribution):
    """HalfCheetah, target velocity U[0, 3]; 100 train / 30 test tasks."""

    gym_id: ClassVar[str] = "pearl/CheetahVel-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:CheetahVelEnv"
    param_names: ClassVar[tuple[str, ...]] = ("target_velocity",)
    default_n_train_tasks: ClassVar[int] = 100
    default_n_test_tasks: ClassVar[int] = 30

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Target velocities ``[n_tasks, 1]`` uniform in [0, 3]."""
        return rng.uniform(0.0, 3.0, size=(n_tasks, 1))


@register_task_family("cheetah-dir")
class CheetahDirTasks(_DirectionTasks):
    """HalfCheetah, run forward (+1) or backward (-1); 2 / 2 tasks."""

    gym_id: ClassVar[str] = "pearl/CheetahDir-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:CheetahDirEnv"


@register_task_family("ant-dir")
class AntDirTasks(_DirectionTasks):
    """Ant, walk forward (+1) or backward (-1) along x; 2 / 2 tasks."""

    gym_id: ClassVar[str] = "pearl/AntDir-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:AntDirEnv"


@register_task_family("ant-goal")
class AntGoalTasks(MujocoTaskDistribution):
    """Ant, walk to a goal uniform in the disk of radius 3; 150 train / 30 test tasks."""

    gym_id: ClassVar[str] = "pearl/AntGoal-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:AntGoalEnv"
    param_names: ClassVar[tuple[str, ...]] = ("goal_x", "goal_y")
    default_n_train_tasks: ClassVar[int] = 150
    default_n_test_tasks: ClassVar[int] = 30

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Goals ``[n_tasks, 2]`` uniform in area on the disk of radius 3."""
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n_tasks)
        radius = 3.0 * np.sqrt(rng.uniform(0.0, 1.0, size=n_tasks))  # sqrt: uniform in area
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)


@register_task_family("humanoid-dir")
class HumanoidDirTasks(MujocoTaskDistribution):
    """Humanoid, move in the direction of an angle U[0, 2 pi); 100 train / 30 test tasks."""

    gym_id: ClassVar[str] = "pearl/HumanoidDir-v0"
    env_entry_point: ClassVar[str] = "envs.locomotion_envs:HumanoidDirEnv"
    param_names: ClassVar[tuple[str, ...]] = ("direction_angle",)
    default_n_train_tasks: ClassVar[int] = 100
    default_n_test_tasks: ClassVar[int] = 30

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Angles ``[n_tasks, 1]`` uniform in [0, 2 pi)."""
        return rng.uniform(0.0, 2.0 * np.pi, size=(n_tasks, 1))


class _RandParamsTasks(MujocoTaskDistribution):
    """Randomised mass, inertia, damping, friction; 40 train / 10 test tasks.

    A task is ``(log_mass_scale, log_inertia_scale, log_damping_scale, log_friction_scale,
    param_seed)``: the seed (drawn from the family's generator) fixes every per-element factor,
    the four summaries describe them for latent inspection (see
    :class:`envs.locomotion_envs.RandParamsEnv`).
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
