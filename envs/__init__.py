"""Task distributions for meta-RL: the contract, the benchmark families, gymnasium registration.

Importing the package registers every task family by name (for configs) and its env with
gymnasium under the ``pearl`` namespace (``gymnasium.make("pearl/PointRobot-v0")``). MuJoCo and
Meta-World families are registered too, but need their extras only when built.

Examples:
    >>> import envs
    >>> tasks = envs.make_task_distribution("sparse-point-robot", seed=3)
    >>> env = tasks.make_env(tasks.train_tasks[0])
    >>> obs, info = env.reset(seed=0)
    >>> obs.dtype, tasks.sparse_reward, tasks.max_episode_steps
    (dtype('float32'), True, 20)
"""

from envs.base import (
    EnvError,
    TaskDistribution,
    TaskEnv,
    make_task_distribution,
    register_gymnasium_envs,
    register_task_family,
    registered_task_families,
)
from envs import locomotion, meta_world  # noqa: F401  register the MuJoCo and Meta-World families
from envs.point_robot import oracle_action  # registers point-robot, sparse-point-robot

register_gymnasium_envs()

__all__ = [
    "EnvError",
    "TaskDistribution",
    "TaskEnv",
    "make_task_distribution",
    "oracle_action",
    "register_gymnasium_envs",
    "register_task_family",
    "registered_task_families",
]
