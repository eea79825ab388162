"""Meta-World ML1 and ML10 as task families (``metaworld`` imported only when built).

The tasks are the benchmark's own: a family builds ``metaworld.ML1(env_name, seed=seed)`` or
``metaworld.ML10(seed=seed)`` with the family's seed and takes the goals of the benchmark's
``train_tasks`` and ``test_tasks``, so results compare with other Meta-World results of that
seed. A Meta-World task (``metaworld.Task``) is an environment name plus pickled data whose only
varying part is the *rand vec*: the initial object position and/or the goal position (3 or 6
numbers). Our task vectors are:

- ``metaworld-ml1`` (``env_name``, e.g. ``"reach-v3"``): the rand vec, ``rand_vec_0..k``.
- ``metaworld-ml10``: ``(env_index, rand_vec_0, ..., rand_vec_5)``, where ``env_index``
  indexes :func:`ml10_env_names` (the 10 training environments, then the 5 test ones) and
  shorter rand vecs are padded with zeros.

The env turns a vector back into the benchmark's ``Task`` (the same data: the rand vec, the
environment class, ``partially_observable=True``) and hands it to the Meta-World env's public
``set_task``, so it behaves as the benchmark's own env for that task: the goal is hidden from the
observation (Meta-World's ML setting), episodes last 500 steps, and ``info["success"]`` is a bool.

The benchmark holds 50 goals per environment, for training and for testing (ML1 draws its test
goals with ``seed + 1``); ML10 trains on its 10 training environments and tests on its 5 held-out
ones. A family with fewer tasks takes, in the benchmark's order, the first goals of each
environment, spread evenly over the environments (the first ``n % n_envs`` environments get one
goal more); asking for more tasks than the benchmark holds is an :class:`~envs.base.EnvError`.
"""

from __future__ import annotations

import pickle
from types import MappingProxyType
from typing import Any, ClassVar

import gymnasium
import numpy as np

from envs.base import EnvError, TaskDistribution, TaskEnv, register_task_family

__all__ = [
    "MetaWorldEnv",
    "MetaWorldML10Tasks",
    "MetaWorldML1Tasks",
    "benchmark_task",
    "ml1_env_names",
    "ml10_env_names",
]

_ML10_RAND_VEC_DIM = 6
# Size of the rand vec of each ML10 environment, to strip a task vector's padding without
# reaching into the Meta-World env; tests/unit/test_meta_world.py checks it against the
# benchmark's tasks.
_ML10_RAND_VEC_SIZES = MappingProxyType(
    {
        "reach-v3": 6,
        "push-v3": 6,
        "pick-place-v3": 6,
        "door-open-v3": 3,
        "drawer-close-v3": 3,
        "button-press-topdown-v3": 3,
        "peg-insert-side-v3": 6,
        "window-open-v3": 3,
        "sweep-v3": 3,
        "basketball-v3": 6,
        "drawer-open-v3": 3,
        "door-close-v3": 3,
        "shelf-place-v3": 6,
        "sweep-into-v3": 6,
        "lever-pull-v3": 3,
    }
)
_BENCHMARKS = ("ML1", "ML10")
# Meta-World seeds numpy.random.seed with the seed (ML1's test goals with seed + 1).
_MAX_SEED = 2**32 - 2


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
    return tuple(_metaworld().ALL_V3_ENVIRONMENTS)


def ml10_env_names() -> tuple[str, ...]:
    """ML10's environments: the 10 training ones, then the 5 test ones (``env_index`` order)."""
    ml10 = _metaworld().env_dict.ML10_V3
    return (*ml10["train"], *ml10["test"])


def _env_class(env_name: str) -> type:
    classes = _metaworld().ALL_V3_ENVIRONMENTS
    if env_name not in classes:
        raise EnvError(f"unknown Meta-World environment {env_name!r}; known: {', '.join(classes)}")
    return classes[env_name]


def _route_mujoco_warnings() -> None:
    from envs.mujoco_utils import route_mujoco_warnings  # noqa: PLC0415 - imports mujoco

    route_mujoco_warnings()


def _build_benchmark(benchmark: str, seed: int, env_name: str = "") -> Any:
    """``metaworld.ML1(env_name, seed=seed)`` or ``metaworld.ML10(seed=seed)``.

    Meta-World draws the goals from NumPy's global RNG, seeded with ``seed``; it restores the
    global state afterwards, but not when it fails midway, so the state is saved and restored
    here too: building a family never changes the global RNG.
    """
    if not 0 <= seed <= _MAX_SEED:
        raise EnvError(
            f"Meta-World seeds numpy.random.seed with the seed (and seed + 1), so it must be in "
            f"[0, {_MAX_SEED}], got {seed}"
        )
    metaworld = _metaworld()
    _route_mujoco_warnings()  # the benchmark builds (and resets) its envs
    state = np.random.get_state()
    try:
        if benchmark == "ML1":
            return metaworld.ML1(env_name, seed=int(seed))
        return metaworld.ML10(seed=int(seed))
    finally:
        np.random.set_state(state)


def _rand_vec(task: Any) -> np.ndarray:
    """The rand vec of a ``metaworld.Task`` (its data is the benchmark's own pickle)."""
    return np.array(pickle.loads(task.data)["rand_vec"], dtype=np.float64)


def benchmark_task(env_name: str, rand_vec: np.ndarray) -> Any:
    """The ``metaworld.Task`` of an ML benchmark for this environment and rand vec.

    Its data are what Meta-World's ML1 and ML10 pickle into their tasks: the rand vec, the
    environment class, and ``partially_observable=True`` (the goal hidden from the observation).

    Args:
        env_name: a Meta-World environment, e.g. ``"reach-v3"``.
        rand_vec: its rand vec (3 or 6 numbers).

    Returns:
        A ``metaworld.Task`` for the env's ``set_task``.
    """
    data = {
        "rand_vec": np.array(rand_vec, dtype=np.float64),
        "env_cls": _env_class(env_name),
        "partially_observable": True,
    }
    return _metaworld().Task(env_name=env_name, data=pickle.dumps(data))


def _encode(benchmark: str, env_index: int, rand_vec: np.ndarray) -> np.ndarray:
    if benchmark == "ML1":
        return np.array(rand_vec, dtype=np.float64)
    padded = np.zeros(_ML10_RAND_VEC_DIM)
    padded[: len(rand_vec)] = rand_vec
    return np.concatenate([[float(env_index)], padded])


class MetaWorldEnv(TaskEnv):
    """A Meta-World ML1 or ML10 task as a gymnasium env with float32 observations.

    Holds one Meta-World env per environment name (made when first needed) and forwards to
    the one of the active task, set to the benchmark's ``Task`` (see :func:`benchmark_task`).
    ``info["success"]`` is a bool.

    Args:
        task: task vector (see the module docstring); None for the first training task of
            ``metaworld.ML1(env, seed=0)`` (env: ``env_name``, or reach-v3 for ML10, which is
            also ML10's first training task of seed 0). Building it takes a second or two, so
            the families always pass a task.
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
        if task is None:
            default = _build_benchmark("ML1", 0, self.env_names[0]).train_tasks[0]
            task = _encode(benchmark, 0, _rand_vec(default))
        if benchmark == "ML10":
            self.param_names = ("env_index", *(f"rand_vec_{i}" for i in range(_ML10_RAND_VEC_DIM)))
        else:  # the environment's rand vec has the task's size (the family checks it)
            self.param_names = tuple(f"rand_vec_{i}" for i in range(np.size(task)))
        self.observation_space = gymnasium.spaces.Box(
            -np.inf, np.inf, shape=first.observation_space.shape, dtype=np.float32
        )
        self.action_space = gymnasium.spaces.Box(
            -1.0, 1.0, shape=first.action_space.shape, dtype=np.float32
        )
        self._init_task(task)
        self._active: Any = None
        self.apply_task(self._task)

    def _env(self, env_name: str) -> Any:
        if env_name not in self._envs:
            _route_mujoco_warnings()
            self._envs[env_name] = _env_class(env_name)()
        return self._envs[env_name]

    def _decode(self, task: np.ndarray) -> tuple[str, np.ndarray]:
        """``(environment name, rand vec)`` of a task vector."""
        if self.benchmark == "ML1":
            return self.env_names[0], task
        index = task[0]
        if index != np.round(index) or not 0 <= index < len(self.env_names):
            raise EnvError(
                f"ML10 env_index must be an integer in [0, {len(self.env_names)}), got {index}"
            )
        env_name = self.env_names[int(index)]
        if env_name not in _ML10_RAND_VEC_SIZES:
            raise EnvError(
                f"ML10 environment {env_name!r} has no known rand vec size; this Meta-World "
                f"version's ML10 differs from the one envs/meta_world.py was written for"
            )
        size = _ML10_RAND_VEC_SIZES[env_name]
        if np.any(task[1 + size :] != 0):
            raise EnvError(
                f"{env_name} has a rand vec of {size} numbers; the padding must be 0, got {task}"
            )
        return env_name, task[1 : 1 + size]

    def _validate_task(self, task: Any) -> np.ndarray:
        array = super()._validate_task(task)
        self._decode(array)
        return array

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the benchmark's Task (rand vec, hidden goal) on the task's environment."""
        env_name, rand_vec = self._decode(task)
        env = self._env(env_name)
        env.set_task(benchmark_task(env_name, rand_vec))
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
    """The tasks of a Meta-World benchmark built with the family's seed (module docstring)."""

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("metaworld", "metaworld"),)
    gym_id: ClassVar[str]
    env_entry_point: ClassVar[str] = "envs.meta_world:MetaWorldEnv"
    max_episode_steps: ClassVar[int] = 500
    has_success: ClassVar[bool] = True
    default_n_train_tasks: ClassVar[int]
    default_n_test_tasks: ClassVar[int]
    benchmark: ClassVar[str]

    def _benchmark(self) -> Any:
        raise NotImplementedError

    def _env_index(self, env_name: str) -> int:
        raise NotImplementedError

    def _from_benchmark(self, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
        """Builds the benchmark with ``self.seed`` and selects ``n_train`` and ``n_test`` tasks."""
        benchmark = self._benchmark()
        train = self._select(benchmark.train_classes, benchmark.train_tasks, n_train, "train")
        test = self._select(benchmark.test_classes, benchmark.test_tasks, n_test, "test")
        return train, test

    def _select(self, classes: Any, tasks: list[Any], n_tasks: int, which: str) -> np.ndarray:
        """The first goals of each environment, balanced, in the benchmark's order; ``[n, P]``.

        Environment ``k`` (in ``classes`` order) gets ``n // n_envs`` goals, plus one for
        ``k < n % n_envs``.
        """
        env_names = list(classes)
        available = {name: sum(task.env_name == name for task in tasks) for name in env_names}
        wanted = {
            name: n_tasks // len(env_names) + (k < n_tasks % len(env_names))
            for k, name in enumerate(env_names)
        }
        short = [name for name in env_names if wanted[name] > available[name]]
        if short:
            raise EnvError(
                f"{self.name}'s benchmark holds {available[short[0]]} goals per environment for "
                f"{which}ing, over {len(env_names)} environment(s), so at most "
                f"{sum(available.values())} {which} tasks; got {n_tasks}"
            )
        selected = []
        for task in tasks:
            if wanted[task.env_name] > 0:
                wanted[task.env_name] -= 1
                env_index = self._env_index(task.env_name)
                selected.append(_encode(self.benchmark, env_index, _rand_vec(task)))
        return np.array(selected, dtype=np.float64).reshape(n_tasks, self.n_params)

    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """The benchmark's first training tasks (see :meth:`split_tasks`); ``rng`` is unused."""
        return self._from_benchmark(n_tasks, 0)[0]

    def split_tasks(
        self, rng: np.random.Generator, n_train: int, n_test: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The benchmark's train and test tasks (a balanced subset when fewer are asked for).

        The goals come from the benchmark built with the family's seed, not from ``rng``.
        """
        return self._from_benchmark(n_train, n_test)

    def env_kwargs(self) -> dict[str, Any]:
        """The benchmark, and the first training task as the default task of a new env."""
        return {"benchmark": self.benchmark, "task": self.train_tasks[0]}


@register_task_family("metaworld-ml1")
class MetaWorldML1Tasks(_MetaWorldTasks):
    """Meta-World ML1: one manipulation environment, 50 train / 50 test goals.

    The tasks are those of ``metaworld.ML1(env_name, seed=seed)``; fewer are its first ones.

    Args:
        seed: the benchmark's seed, in [0, 2**32 - 2].
        n_train_tasks: at most 50.
        n_test_tasks: at most 50.
        env_name: the Meta-World environment, e.g. ``"reach-v3"`` or ``"pick-place-v3"``.
    """

    gym_id: ClassVar[str] = "pearl/MetaWorldML1-v0"
    default_n_train_tasks: ClassVar[int] = 50
    default_n_test_tasks: ClassVar[int] = 50
    benchmark: ClassVar[str] = "ML1"

    def __init__(
        self,
        *,
        seed: int,
        n_train_tasks: int | None = None,
        n_test_tasks: int | None = None,
        env_name: str = "reach-v3",
    ) -> None:
        self._check_requirements()
        _env_class(env_name)  # raises EnvError for an unknown name
        self.env_name = env_name
        super().__init__(seed=seed, n_train_tasks=n_train_tasks, n_test_tasks=n_test_tasks)

    def _benchmark(self) -> Any:
        """Builds ML1; the size of the environment's rand vec sets ``param_names``."""
        benchmark = _build_benchmark("ML1", self.seed, self.env_name)
        size = len(_rand_vec(benchmark.train_tasks[0]))
        self.param_names = tuple(f"rand_vec_{i}" for i in range(size))
        return benchmark

    def _env_index(self, env_name: str) -> int:
        return 0

    def env_kwargs(self) -> dict[str, Any]:
        """The benchmark, the environment name and the default task (the first training one)."""
        return {**super().env_kwargs(), "env_name": self.env_name}


@register_task_family("metaworld-ml10")
class MetaWorldML10Tasks(_MetaWorldTasks):
    """Meta-World ML10: 50 goals of each of 10 training environments (500 train tasks) and of
    each of 5 held-out test environments (250 test tasks), from ``metaworld.ML10(seed=seed)``.

    Fewer tasks take the first goals of each environment, spread evenly over the environments
    (``n // 10`` each, one more for the first ``n % 10``; likewise over the 5 for testing),
    in the benchmark's order: environment by environment.
    """

    gym_id: ClassVar[str] = "pearl/MetaWorldML10-v0"
    param_names: ClassVar[tuple[str, ...]] = (
        "env_index",
        *(f"rand_vec_{i}" for i in range(_ML10_RAND_VEC_DIM)),
    )
    default_n_train_tasks: ClassVar[int] = 500
    default_n_test_tasks: ClassVar[int] = 250
    benchmark: ClassVar[str] = "ML10"

    def _benchmark(self) -> Any:
        return _build_benchmark("ML10", self.seed)

    def _env_index(self, env_name: str) -> int:
        return ml10_env_names().index(env_name)
