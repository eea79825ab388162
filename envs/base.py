"""The task-distribution contract, the family registry, and the env-side task interface.

A *task family* (``point-robot``, ``cheetah-vel``, ...) is a :class:`TaskDistribution` subclass
registered by name with :func:`register_task_family`. Building one samples its train and test
tasks from ``numpy.random.default_rng(seed)``; a task is its parameter vector ``[P]`` (goal,
target velocity, direction, physical parameters), small and serialisable, so that latent
inspection can colour and probe the posterior by it (DESIGN.md section 3).

Envs of a family subclass :class:`TaskEnv`: ``set_task(task)`` stores the task and the next
``reset()`` applies it, so a task never changes in the middle of an episode.

Shapes:
    N: number of tasks. P: number of task parameters (``len(param_names)``).
"""

from __future__ import annotations

import abc
import importlib.util
import inspect
from typing import Any, Callable, ClassVar, TypeVar

import gymnasium
import numpy as np

__all__ = [
    "EnvError",
    "TaskDistribution",
    "TaskEnv",
    "make_task_distribution",
    "register_gymnasium_envs",
    "register_task_family",
    "registered_task_families",
]


class EnvError(ValueError):
    """A task family or env cannot be built as asked (unknown name, bad argument, missing extra)."""


_FAMILIES: dict[str, type[TaskDistribution]] = {}

_T = TypeVar("_T", bound="type[TaskDistribution]")


def register_task_family(name: str) -> Callable[[_T], _T]:
    """Class decorator that registers a :class:`TaskDistribution` subclass under ``name``.

    Args:
        name: the family's name in configs, e.g. ``"cheetah-vel"``.

    Returns:
        The decorator; it sets ``cls.name = name`` and returns the class unchanged otherwise.

    Raises:
        EnvError: ``name`` is already registered, or the class is not a ``TaskDistribution``.
    """

    def decorator(cls: _T) -> _T:
        if not (isinstance(cls, type) and issubclass(cls, TaskDistribution)):
            raise EnvError(
                f"@register_task_family({name!r}) needs a TaskDistribution subclass, got {cls!r}"
            )
        if name in _FAMILIES:
            raise EnvError(
                f"task family {name!r} is already registered (by {_FAMILIES[name].__module__}."
                f"{_FAMILIES[name].__qualname__})"
            )
        cls.name = name
        _FAMILIES[name] = cls
        _register_gymnasium_id(cls)
        return cls

    return decorator


def _register_gymnasium_id(cls: type[TaskDistribution]) -> None:
    """Registers the family's env with gymnasium under ``cls.gym_id``, once (idempotent).

    Only the entry-point string is registered, so no optional package (mujoco, metaworld) is
    imported until the env is made.
    """
    gym_id = getattr(cls, "gym_id", None)
    if gym_id is None or gym_id in gymnasium.registry:
        return
    gymnasium.register(
        id=gym_id,
        entry_point=cls.env_entry_point,
        max_episode_steps=cls.max_episode_steps,
        kwargs=cls.registered_env_kwargs(),
    )


def register_gymnasium_envs() -> list[str]:
    """Registers every family's env with gymnasium where missing; safe to call again.

    Returns:
        The gymnasium ids of all registered families, e.g. ``"pearl/PointRobot-v0"``.
    """
    for cls in _FAMILIES.values():
        _register_gymnasium_id(cls)
    return sorted({cls.gym_id for cls in _FAMILIES.values()})


def registered_task_families() -> dict[str, type[TaskDistribution]]:
    """Returns a copy of the registry: family name -> ``TaskDistribution`` subclass."""
    return dict(_FAMILIES)


def make_task_distribution(
    name: str,
    *,
    seed: int,
    n_train_tasks: int | None = None,
    n_test_tasks: int | None = None,
    **kwargs: Any,
) -> TaskDistribution:
    """Builds the registered task family ``name`` and samples its tasks.

    Args:
        name: a registered family name (see :func:`registered_task_families`).
        seed: seed of the ``numpy.random.Generator`` the tasks are drawn from.
        n_train_tasks: number of training tasks; None takes the family's default (DESIGN.md s. 5).
        n_test_tasks: number of held-out test tasks; None takes the family's default.
        **kwargs: the family's own keyword arguments (e.g. ``goal_radius`` for
            ``sparse-point-robot``, ``env_name`` for ``metaworld-ml1``).

    Returns:
        The task distribution, with ``train_tasks`` and ``test_tasks`` sampled.

    Raises:
        EnvError: unknown family name (the message lists the known ones), a keyword argument the
            family does not take, a bad task count, or a missing optional package.

    Examples:
        >>> import envs
        >>> tasks = envs.make_task_distribution("point-robot", seed=0)
        >>> tasks.train_tasks.shape, tasks.test_tasks.shape, tasks.param_names
        ((80, 2), (20, 2), ('goal_x', 'goal_y'))
    """
    try:
        cls = _FAMILIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_FAMILIES))
        raise EnvError(f"unknown task family {name!r}; known families: {known}") from None
    accepted = _family_kwargs(cls)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        takes = ", ".join(sorted(accepted)) or "none"
        raise EnvError(f"task family {name!r} got unknown argument(s) {unknown}; it takes: {takes}")
    return cls(seed=seed, n_train_tasks=n_train_tasks, n_test_tasks=n_test_tasks, **kwargs)


def _family_kwargs(cls: type[TaskDistribution]) -> set[str]:
    """Names of the family-specific keyword arguments of ``cls.__init__``."""
    common = {"self", "seed", "n_train_tasks", "n_test_tasks"}
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name
        for p in parameters
        if p.name not in common and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


class TaskDistribution(abc.ABC):
    """A family of tasks with a fixed, seeded, disjoint train/test split.

    Subclasses set the class attributes below, implement :meth:`sample_tasks` (and
    :meth:`split_tasks` when the family is not continuous), and are registered with
    :func:`register_task_family`. A subclass with its own keyword arguments takes them
    keyword-only after ``seed``, ``n_train_tasks`` and ``n_test_tasks`` and calls
    ``super().__init__`` last (after storing them), since sampling may depend on them.

    Attributes:
        name: the registered family name.
        gym_id: the gymnasium id of the family's env, e.g. ``"pearl/PointRobot-v0"``.
        env_entry_point: ``"module:Class"`` of the env, registered with gymnasium under
            ``gym_id`` by :func:`register_task_family` (with ``max_episode_steps``).
        param_names: the name of each entry of a task vector.
        max_episode_steps: the family's episode length.
        sparse_reward: env info carries ``"sparse_reward"``: PEARL feeds it to the context while
            the critic learns from the dense env reward.
        has_success: env info carries a boolean ``"success"``.
        continuous: tasks come from a continuous distribution, so train and test are disjoint.
        requires: ``(module, extra)`` pairs: importable modules the family needs and the
            ``pearl-metarl`` extra that installs each.
        default_n_train_tasks: train tasks when ``n_train_tasks`` is None.
        default_n_test_tasks: test tasks when ``n_test_tasks`` is None.
        seed: the seed the tasks were drawn with.
        train_tasks: ``[n_train, P]`` float64, read-only.
        test_tasks: ``[n_test, P]`` float64, read-only.
    """

    name: ClassVar[str] = ""
    gym_id: ClassVar[str]
    env_entry_point: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]
    max_episode_steps: ClassVar[int]
    sparse_reward: ClassVar[bool] = False
    has_success: ClassVar[bool] = False
    continuous: ClassVar[bool] = True
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    default_n_train_tasks: ClassVar[int]
    default_n_test_tasks: ClassVar[int]

    def __init__(
        self,
        *,
        seed: int,
        n_train_tasks: int | None = None,
        n_test_tasks: int | None = None,
    ) -> None:
        """Checks the optional packages, then samples the train and test tasks.

        Args:
            seed: seed of ``numpy.random.default_rng``; the global RNG is never touched.
            n_train_tasks: number of training tasks (>= 1); None for the family default.
            n_test_tasks: number of test tasks (>= 0); None for the family default.

        Raises:
            EnvError: a needed package is missing, or a count is invalid.
        """
        self._check_requirements()
        n_train = self.default_n_train_tasks if n_train_tasks is None else n_train_tasks
        n_test = self.default_n_test_tasks if n_test_tasks is None else n_test_tasks
        _check_count("n_train_tasks", n_train, minimum=1)
        _check_count("n_test_tasks", n_test, minimum=0)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise EnvError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        train, test = self.split_tasks(rng, n_train, n_test)
        self.train_tasks = self._frozen(train, n_train, "train")
        self.test_tasks = self._frozen(test, n_test, "test")

    # -- to implement ------------------------------------------------------------------------

    @abc.abstractmethod
    def sample_tasks(self, rng: np.random.Generator, n_tasks: int) -> np.ndarray:
        """Draws ``n_tasks`` i.i.d. tasks.

        Args:
            rng: the generator to draw from (and nothing else).
            n_tasks: how many.

        Returns:
            ``[n_tasks, P]`` float64 task vectors.
        """

    def split_tasks(
        self, rng: np.random.Generator, n_train: int, n_test: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draws the train and test tasks; by default one i.i.d. draw, split in two.

        Families whose benchmark defines the split otherwise (e.g. the two directions of
        cheetah-dir, used for training and testing alike) override this.

        Returns:
            ``(train [n_train, P], test [n_test, P])``.
        """
        tasks = self.sample_tasks(rng, n_train + n_test)
        return tasks[:n_train], tasks[n_train:]

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments (besides ``task``) that :meth:`make_env` gives the env constructor."""
        return {}

    @classmethod
    def registered_env_kwargs(cls) -> dict[str, Any]:
        """Keyword arguments registered with the gymnasium id, so that ``gymnasium.make(gym_id)``
        builds this family's env (e.g. which family a shared robot env serves)."""
        return {}

    # -- provided ----------------------------------------------------------------------------

    @property
    def n_params(self) -> int:
        """P, the length of a task vector."""
        return len(self.param_names)

    def make_env(self, task: np.ndarray | None = None) -> gymnasium.Env:
        """Makes a new env of this family, set to ``task``.

        The env is the unwrapped env (no ``TimeLimit``: the trainer caps episodes at
        ``max_episode_steps`` itself), with its gymnasium ``spec`` set.

        Args:
            task: ``[P]`` task vector; None keeps the env's default task.

        Returns:
            A new env; ``env.unwrapped.set_task(task)`` changes its task at the next reset.
        """
        kwargs = self.env_kwargs()
        if task is not None:
            kwargs["task"] = self._check_task(task)
        env = gymnasium.make(self.gym_id, disable_env_checker=True, **kwargs)
        return env.unwrapped

    def set_task(self, env: gymnasium.Env, task: np.ndarray) -> None:
        """Sets ``task`` on ``env`` (wrapped or not); it takes effect at the next reset."""
        env.unwrapped.set_task(self._check_task(task))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, "
            f"n_train_tasks={len(self.train_tasks)}, n_test_tasks={len(self.test_tasks)})"
        )

    # -- helpers -----------------------------------------------------------------------------

    def _check_task(self, task: np.ndarray) -> np.ndarray:
        array = np.asarray(task, dtype=np.float64)
        if array.shape != (self.n_params,):
            raise EnvError(
                f"a {self.name} task is a vector of shape ({self.n_params},) {self.param_names}, "
                f"got shape {array.shape}"
            )
        return array.copy()

    def _check_requirements(self) -> None:
        for module, extra in self.requires:
            if not _module_available(module):
                raise EnvError(
                    f"task family {self.name!r} needs the {module!r} package, which is not "
                    f"installed; install it with: pip install 'pearl-metarl[{extra}]'"
                )

    def _frozen(self, tasks: np.ndarray, n_tasks: int, which: str) -> np.ndarray:
        array = np.array(tasks, dtype=np.float64)  # a copy we own
        if array.shape != (n_tasks, self.n_params):
            raise EnvError(
                f"{type(self).__name__} sampled {which} tasks of shape {array.shape}, "
                f"expected {(n_tasks, self.n_params)}"
            )
        array.flags.writeable = False
        return array


def _module_available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def _check_count(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise EnvError(f"{name} must be an int >= {minimum}, got {value!r}")


class TaskEnv(gymnasium.Env):
    """Mixin-style base of the envs of a task family: the task interface.

    ``set_task`` validates and stores a task; ``reset`` calls :meth:`_activate_pending_task`
    first, which makes it the active task and calls :meth:`apply_task` (the subclass hook).

    Attributes:
        param_names: names of the task vector's entries (set by the subclass).
        default_task: the task an env built without one gets (set by the subclass).
    """

    param_names: ClassVar[tuple[str, ...]]
    default_task: ClassVar[tuple[float, ...]]

    def _init_task(self, task: np.ndarray | None) -> None:
        """Stores the first task; call from ``__init__`` before the first ``apply_task``."""
        self._pending_task = self._validate_task(self.default_task if task is None else task)
        self._task = self._pending_task.copy()

    @property
    def task(self) -> np.ndarray:
        """The active task ``[P]`` (a copy); a task set since the last reset is not active yet."""
        return self._task.copy()

    def set_task(self, task: np.ndarray) -> None:
        """Sets the task ``[P]``; it takes effect at the next ``reset()``."""
        self._pending_task = self._validate_task(task)

    def apply_task(self, task: np.ndarray) -> None:
        """Makes ``task`` active in the simulation (goal, target, model parameters). Hook."""

    def _activate_pending_task(self) -> None:
        self._task = self._pending_task.copy()
        self.apply_task(self._task)

    def _validate_task(self, task: Any) -> np.ndarray:
        array = np.array(task, dtype=np.float64)
        if array.shape != (len(self.param_names),):
            raise EnvError(
                f"{type(self).__name__} task must have shape ({len(self.param_names)},) "
                f"{self.param_names}, got {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise EnvError(f"{type(self).__name__} task must be finite, got {array}")
        return array
