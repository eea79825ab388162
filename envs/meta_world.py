"""Meta-World ML1 and ML10 as task families (``metaworld`` imported only when built).

Meta-World varies a task by its *rand vec*: the initial object position and/or the goal
position of one manipulation environment (3 or 6 numbers). Our task vectors are:

- ``metaworld-ml1`` (``env_name``, e.g. ``"reach-v3"``): the rand vec, ``rand_vec_0..k``.
- ``metaworld-ml10``: ``(env_index, rand_vec_0, ..., rand_vec_5)``, where ``env_index``
  indexes :func:`ml10_env_names` (the 10 training environments, then the 5 test ones) and
  shorter rand vecs are padded with zeros.

Rand vecs are drawn the way Meta-World draws its benchmark goals (resetting the environment
with goal randomisation on, so each environment's own constraints, such as a minimum
object-goal distance, hold), but from a generator seeded by our task seed instead of NumPy's
global RNG. Counts follow the benchmark: 50 goals per environment, for training and for
testing; ML10 trains on the goals of its 10 training environments and tests on its 5 held-out
environments. The goal stays hidden from the observation (Meta-World's ML setting), episodes
last 500 steps, and ``info["success"]`` is a bool.
"""

from __future__ import annotations

import pickle
from typing import Any, ClassVar

import gymnasium
import numpy as np

from envs.base import EnvError, TaskDistribution, TaskEnv, register_task_family

__all__ = [
    "MetaWorldEnv",
    "MetaWorldML10Tasks",
    "MetaWorldML1Tasks",
    "ml1_env_names",
    "ml10_env_names",
    "sample_rand_vecs",
]

_GOALS_PER_ENV = 50
_ML10_RAND_VEC_DIM = 6
_BENCHMARKS = ("ML1", "ML10")


def _metaworld() -> Any:
    try:
        import metaworld  # noqa: PLC0415 - optional extra
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise EnvError(
            "Meta-World envs need the 'metaworld' package; install it with: "
            "pip install 'pearl-metarl[metaworld]'"
        ) from error
    return metaworld


def ml1_env_names() -> tuple[str, ...]:
    """Names of the Meta-World environments ML1 can be built on (e.g. ``"reach-v3"``)."""
    return tuple(_metaworld().env_dict.ALL_V3_ENVIRONMENTS)


def ml10_env_names() -> tuple[str, ...]:
    """ML10's environments: the 10 training ones, then the 5 test ones (``env_index`` order)."""
    ml10 = _metaworld().env_dict.ML10_V3
    return (*ml10["train"], *ml10["test"])


def _env_class(env_name: str) -> type:
    classes = _metaworld().env_dict.ALL_V3_ENVIRONMENTS
    if env_name not in classes:
        raise EnvError(f"unknown Meta-World environment {env_name!r}; known: {', '.join(classes)}")
    return classes[env_name]


def _new_env(env_name: str) -> Any:
    from envs.mujoco_utils import route_mujoco_warnings  # noqa: PLC0415 - imports mujoco

    route_mujoco_warnings()
    return _env_class(env_name)()


def sample_rand_vecs(env: Any, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
    """Draws ``n_tasks`` rand vecs of a Meta-World env as the benchmark does, from ``rng``.

    Meta-World's own task builder resets the env with goal randomisation on and keeps the rand
    vec each reset settled on (resets re-draw until the env's constraints hold); this does the
    same with the env's ``seeded_rand_vec`` switch, so the draws come from ``rng``.

    Args:
        env: a Meta-World env instance (its task state is changed).
        rng: the generator to draw from.
        n_tasks: how many rand vecs.

    Returns:
        ``[n_tasks, D]`` float64 rand vecs (D = 3 or 6, depending on the env).
    """
    env._set_task_called = True
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.np_random = np.random.default_rng(rng.integers(2**63))
    vectors = []
    for _ in range(n_tasks):
        env.reset()
        vectors.append(np.array(env._last_rand_vec, dtype=np.float64))
    return np.stack(vectors) if vectors else np.zeros((0, env._random_reset_space.shape[0]))


class MetaWorldEnv(TaskEnv):
    """A Meta-World ML1 or ML10 task as a gymnasium env with float32 observations.

    Holds one Meta-World env per environment name (made when first needed) and forwards to
    the one of the active task. ``info["success"]`` is a bool.

    Args:
        task: task vector (see the module docstring); None for the first goal drawn with seed 0
            (of the first environment, for ML10).
        benchmark: ``"ML1"`` or ``"ML10"``.
        env_name: the environment of ML1 (ignored by ML10).
        render_mode: unsupported; must be None.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        task: np.ndarray | None = None,
        benchmark: str = "ML1",
        env_name: str = "reach-v3",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise EnvError(f"{type(self).__name__} does not render (render_mode={render_mode!r})")
        if benchmark not in _BENCHMARKS:
            raise EnvError(f"benchmark must be one of {_BENCHMARKS}, got {benchmark!r}")
        self.render_mode = render_mode
        self.benchmark = benchmark
        self.env_names = ml10_env_names() if benchmark == "ML10" else (env_name,)
        self._envs: dict[str, Any] = {}
        first = self._env(self.env_names[0])
        if benchmark == "ML10":
            self.param_names = ("env_index", *(f"rand_vec_{i}" for i in range(_ML10_RAND_VEC_DIM)))
        else:
            dim = first._random_reset_space.shape[0]
            self.param_names = tuple(f"rand_vec_{i}" for i in range(dim))
        self.observation_space = gymnasium.spaces.Box(
            -np.inf, np.inf, shape=first.observation_space.shape, dtype=np.float32
        )
        self.action_space = gymnasium.spaces.Box(
            -1.0, 1.0, shape=first.action_space.shape, dtype=np.float32
        )
        if task is None:
            rand_vec = sample_rand_vecs(_new_env(self.env_names[0]), np.random.default_rng(0), 1)[0]
            task = self._encode(0, rand_vec)
        self._init_task(task)
        self._active: Any = None
        self.apply_task(self._task)

    def _env(self, env_name: str) -> Any:
        if env_name not in self._envs:
            self._envs[env_name] = _new_env(env_name)
        return self._envs[env_name]

    def _encode(self, env_index: int, rand_vec: np.ndarray) -> np.ndarray:
        if self.benchmark == "ML1":
            return np.asarray(rand_vec, dtype=np.float64)
        padded = np.zeros(_ML10_RAND_VEC_DIM)
        padded[: len(rand_vec)] = rand_vec
        return np.concatenate([[float(env_index)], padded])

    def _decode(self, task: np.ndarray) -> tuple[str, np.ndarray]:
        if self.benchmark == "ML1":
            return self.env_names[0], task
        index = task[0]
        if index != np.round(index) or not 0 <= index < len(self.env_names):
            raise EnvError(
                f"ML10 env_index must be an integer in [0, {len(self.env_names)}), got {index}"
            )
        env_name = self.env_names[int(index)]
        dim = self._env(env_name)._random_reset_space.shape[0]
        if np.any(task[1 + dim :] != 0):
            raise EnvError(
                f"{env_name} has a rand vec of {dim} numbers; the padding must be 0, got {task}"
            )
        return env_name, task[1 : 1 + dim]

    def _validate_task(self, task: Any) -> np.ndarray:
        array = super()._validate_task(task)
        self._decode(array)
        return array

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the Meta-World task (rand vec, hidden goal) on the task's environment."""
        env_name, rand_vec = self._decode(task)
        env = self._env(env_name)
        data = {"rand_vec": rand_vec.copy(), "env_cls": type(env), "partially_observable": True}
        env.set_task(_metaworld().Task(env_name=env_name, data=pickle.dumps(data)))
        self._active = env

    @property
    def env_name(self) -> str:
        """Name of the active task's Meta-World environment."""
        return self._decode(self._task)[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Applies a pending task and resets its environment (deterministic in Meta-World)."""
        super().reset(seed=seed)
        self._activate_pending_task()
        obs, info = self._active.reset()
        return obs.astype(np.float32), dict(info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Steps the active Meta-World env; its episodes are truncated after 500 steps."""
        step = self._active.step(np.asarray(action, dtype=np.float32))
        obs, reward, terminated, truncated, info = step
        info = dict(info)
        info["success"] = bool(info["success"])
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        """Closes every Meta-World env made so far."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()


class _MetaWorldTasks(TaskDistribution):
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("metaworld", "metaworld"),)
    gym_id: ClassVar[str]
    env_entry_point: ClassVar[str] = "envs.meta_world:MetaWorldEnv"
    max_episode_steps: ClassVar[int] = 500
    has_success: ClassVar[bool] = True
    default_n_train_tasks: ClassVar[int]
    default_n_test_tasks: ClassVar[int]

    def _draw(
        self,
        rng: np.random.Generator,
        env_names: tuple[str, ...],
        n_tasks: int,
        index_offset: int,
    ) -> np.ndarray:
        """Task ``i`` goes to environment ``i % len(env_names)`` (balanced); ``[n_tasks, P]``."""
        per_env = [len(range(k, n_tasks, len(env_names))) for k in range(len(env_names))]
        if max(per_env) > _GOALS_PER_ENV:
            raise EnvError(
                f"{self.name} has {_GOALS_PER_ENV} goals per environment, so at most "
                f"{_GOALS_PER_ENV * len(env_names)} tasks here; got {n_tasks}"
            )
        tasks = np.zeros((n_tasks, self.n_params))
        for k, (env_name, count) in enumerate(zip(env_names, per_env)):
            env = _new_env(env_name)
            try:
                vectors = sample_rand_vecs(env, rng, count)
            finally:
                env.close()
            for j, rand_vec in enumerate(vectors):
                tasks[k + j * len(env_names)] = self._encode(index_offset + k, rand_vec)
        return tasks

    def _encode(self, env_index: int, rand_vec: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_task_family("metaworld-ml1")
class MetaWorldML1Tasks(_MetaWorldTasks):
    """Meta-World ML1: one manipulation environment, 50 train / 50 test goals.

    Args:
        seed: see :class:`~envs.base.TaskDistribution`.
        n_train_tasks: at most 50.
        n_test_tasks: at most 50.
        env_name: the Meta-World environment, e.g. ``"reach-v3"`` or ``"pick-place-v3"``.
    """

    gym_id: ClassVar[str] = "pearl/MetaWorldML1-v0"
    default_n_train_tasks: ClassVar[int] = _GOALS_PER_ENV
    default_n_test_tasks: ClassVar[int] = _GOALS_PER_ENV

    def __init__(
        self,
        *,
        seed: int,
        n_train_tasks: int | None = None,
        n_test_tasks: int | None = None,
        env_name: str = "reach-v3",
    ) -> None:
        self._check_requirements()
        self.env_name = env_name
        env = _new_env(env_name)  # raises EnvError for an unknown name
        self.param_names = tuple(f"rand_vec_{i}" for i in range(env._random_reset_space.shape[0]))
        env.close()
        super().__init__(seed=seed, n_train_tasks=n_train_tasks, n_test_tasks=n_test_tasks)

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """``[n_tasks, D]`` rand vecs of the environment."""
        return self._draw(rng, (self.env_name,), n_tasks, 0)

    def split_tasks(
        self, rng: np.random.Generator, n_train: int, n_test: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Separate draws of at most 50 goals each for training and testing."""
        return self.sample_tasks(rng, n_train), self.sample_tasks(rng, n_test)

    def _encode(self, env_index: int, rand_vec: np.ndarray) -> np.ndarray:
        return rand_vec

    def env_kwargs(self) -> dict[str, Any]:
        """The benchmark and environment name."""
        return {"benchmark": "ML1", "env_name": self.env_name}


@register_task_family("metaworld-ml10")
class MetaWorldML10Tasks(_MetaWorldTasks):
    """Meta-World ML10: 50 goals of each of 10 training environments (500 train tasks) and of
    each of 5 held-out test environments (250 test tasks).

    Fewer tasks are spread evenly over the environments (task ``i`` belongs to environment
    ``i % 10``, or ``i % 5`` for testing).
    """

    gym_id: ClassVar[str] = "pearl/MetaWorldML10-v0"
    param_names: ClassVar[tuple[str, ...]] = (
        "env_index",
        *(f"rand_vec_{i}" for i in range(_ML10_RAND_VEC_DIM)),
    )
    default_n_train_tasks: ClassVar[int] = 10 * _GOALS_PER_ENV
    default_n_test_tasks: ClassVar[int] = 5 * _GOALS_PER_ENV

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """``[n_tasks, 7]`` tasks of the 10 training environments."""
        return self._draw(rng, ml10_env_names()[:10], n_tasks, 0)

    def split_tasks(
        self, rng: np.random.Generator, n_train: int, n_test: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Train on the 10 training environments, test on the 5 held-out ones."""
        train = self.sample_tasks(rng, n_train)
        return train, self._draw(rng, ml10_env_names()[10:], n_test, 10)

    def _encode(self, env_index: int, rand_vec: np.ndarray) -> np.ndarray:
        padded = np.zeros(_ML10_RAND_VEC_DIM)
        padded[: len(rand_vec)] = rand_vec
        return np.concatenate([[float(env_index)], padded])

    def env_kwargs(self) -> dict[str, Any]:
        """The benchmark."""
        return {"benchmark": "ML10"}
