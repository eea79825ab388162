"""PEARL's MuJoCo locomotion tasks on gymnasium's v5 envs; importing this module imports mujoco.

Each env subclasses a v5 class and replaces only the forward term of its reward by the task's
(the v5 control, contact and healthy terms stay), in the spirit of the paper's environments:

=================  ============================  =================================================
env                task vector                   reward
=================  ============================  =================================================
CheetahVelEnv      (target_velocity,)            -|v_x - v_target| - 0.05 ||a||^2
CheetahDirEnv      (direction,) in {+1, -1}      direction * v_x - 0.05 ||a||^2
AntDirEnv          (direction,) in {+1, -1}      direction * v_x + 1 - 0.5 ||a||^2 - contact
AntGoalEnv         (goal_x, goal_y)              -||xy - goal||_1 - 0.1 ||a||^2 - contact
HumanoidDirEnv     (direction_angle,)            1.25 <v_xy, (cos, sin)> + 5 - ctrl - contact
Walker2d/Hopper    see RandParamsEnv             the v5 reward (forward velocity + alive - ctrl)
=================  ============================  =================================================

``info["reward_forward"]`` is the task's term; the other v5 info keys are kept.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from envs.base import EnvError
from envs.mujoco_utils import MujocoTaskEnv

__all__ = [
    "AntDirEnv",
    "AntGoalEnv",
    "CheetahDirEnv",
    "CheetahVelEnv",
    "HopperRandParamsEnv",
    "HumanoidDirEnv",
    "RAND_PARAM_NAMES",
    "RandParamsEnv",
    "Walker2dRandParamsEnv",
]

_Step = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


def _total_reward(info: dict[str, Any], forward: float, *, terms: tuple[str, ...]) -> float:
    """Sets ``info["reward_forward"] = forward``; returns it plus the v5 ``terms`` of ``info``."""
    info["reward_forward"] = float(forward)
    return float(forward + sum(float(info[term]) for term in terms))


class CheetahVelEnv(MujocoTaskEnv, HalfCheetahEnv):
    """HalfCheetah rewarded for running at a target forward velocity.

    Args:
        task: ``(target_velocity,)``; None for 1.0.
        **kwargs: passed to gymnasium's ``HalfCheetahEnv`` (``ctrl_cost_weight`` defaults to
            the paper's 0.05 here).
    """

    param_names: ClassVar[tuple[str, ...]] = ("target_velocity",)
    default_task: ClassVar[tuple[float, ...]] = (1.0,)

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("ctrl_cost_weight", 0.05)
        HalfCheetahEnv.__init__(self, **kwargs)
        self._finish_init(task, kwargs)

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the target velocity."""
        self.target_velocity = float(task[0])

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 cheetah; reward ``-|v_x - v_target|`` plus the v5 control cost."""
        obs, _, terminated, truncated, info = super().step(action)
        forward = -abs(float(info["x_velocity"]) - self.target_velocity)
        reward = _total_reward(info, forward, terms=("reward_ctrl",))
        return obs, reward, bool(terminated), truncated, info


class CheetahDirEnv(MujocoTaskEnv, HalfCheetahEnv):
    """HalfCheetah rewarded for running forward (+1) or backward (-1).

    Args:
        task: ``(direction,)``, +1 or -1; None for +1.
        **kwargs: passed to gymnasium's ``HalfCheetahEnv`` (``ctrl_cost_weight`` defaults to
            the paper's 0.05 here).
    """

    param_names: ClassVar[tuple[str, ...]] = ("direction",)
    default_task: ClassVar[tuple[float, ...]] = (1.0,)

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("ctrl_cost_weight", 0.05)
        HalfCheetahEnv.__init__(self, **kwargs)
        self._finish_init(task, kwargs)

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the running direction."""
        self.direction = _sign(task[0])

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 cheetah; reward ``direction * v_x`` plus the v5 control cost."""
        obs, _, terminated, truncated, info = super().step(action)
        forward = self.direction * float(info["x_velocity"])
        reward = _total_reward(info, forward, terms=("reward_ctrl",))
        return obs, reward, bool(terminated), truncated, info


class AntDirEnv(MujocoTaskEnv, AntEnv):
    """Ant rewarded for walking forward (+1) or backward (-1) along x; ends when unhealthy.

    Args:
        task: ``(direction,)``, +1 or -1; None for +1.
        **kwargs: passed to gymnasium's ``AntEnv`` (contact forces are left out of the
            observation by default here: 27 dims).
    """

    param_names: ClassVar[tuple[str, ...]] = ("direction",)
    default_task: ClassVar[tuple[float, ...]] = (1.0,)

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("include_cfrc_ext_in_observation", False)
        AntEnv.__init__(self, **kwargs)
        self._finish_init(task, kwargs)

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the walking direction."""
        self.direction = _sign(task[0])

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 ant; forward term ``direction * v_x``, v5 survive/control/contact terms."""
        obs, _, terminated, truncated, info = super().step(action)
        forward = self.direction * float(info["x_velocity"])
        terms = ("reward_survive", "reward_ctrl", "reward_contact")
        return obs, _total_reward(info, forward, terms=terms), bool(terminated), truncated, info


class AntGoalEnv(MujocoTaskEnv, AntEnv):
    """Ant rewarded for walking to a 2-D goal: ``-||xy - goal||_1``, no survive bonus.

    As in PEARL's ant-goal, the episode never terminates and the observation includes the
    torso's x-y position (29 dims), which the agent needs to navigate.

    Args:
        task: ``(goal_x, goal_y)``; None for ``(2, 0)``.
        **kwargs: passed to gymnasium's ``AntEnv``.
    """

    param_names: ClassVar[tuple[str, ...]] = ("goal_x", "goal_y")
    default_task: ClassVar[tuple[float, ...]] = (2.0, 0.0)

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("include_cfrc_ext_in_observation", False)
        kwargs.setdefault("exclude_current_positions_from_observation", False)
        kwargs.setdefault("ctrl_cost_weight", 0.1)
        kwargs.setdefault("healthy_reward", 0.0)
        kwargs.setdefault("terminate_when_unhealthy", False)
        AntEnv.__init__(self, **kwargs)
        self._finish_init(task, kwargs)

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the goal."""
        self.goal = task.copy()

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 ant; goal term ``-||xy - goal||_1``, v5 control/contact/survive terms."""
        obs, _, terminated, truncated, info = super().step(action)
        # The torso's free joint: the state after the step (body xpos lags one substep behind).
        xy = self.data.qpos[:2]
        forward = -float(np.sum(np.abs(xy - self.goal)))
        info["goal_distance"] = float(np.linalg.norm(xy - self.goal))
        terms = ("reward_survive", "reward_ctrl", "reward_contact")
        return obs, _total_reward(info, forward, terms=terms), bool(terminated), truncated, info


class HumanoidDirEnv(MujocoTaskEnv, HumanoidEnv):
    """Humanoid rewarded for moving its centre of mass in a direction of the plane.

    Args:
        task: ``(direction_angle,)`` in radians; None for 0 (along +x).
        **kwargs: passed to gymnasium's ``HumanoidEnv``.
    """

    param_names: ClassVar[tuple[str, ...]] = ("direction_angle",)
    default_task: ClassVar[tuple[float, ...]] = (0.0,)

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        HumanoidEnv.__init__(self, **kwargs)
        self._finish_init(task, kwargs)

    def apply_task(self, task: np.ndarray) -> None:
        """Sets the direction (unit vector of the angle)."""
        self.direction = np.array([np.cos(task[0]), np.sin(task[0])])

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 humanoid; forward term ``1.25 <v_xy, direction>``, v5 other terms."""
        obs, _, terminated, truncated, info = super().step(action)
        velocity = np.array([info["x_velocity"], info["y_velocity"]], dtype=np.float64)
        forward = self._forward_reward_weight * float(velocity @ self.direction)
        terms = ("reward_survive", "reward_ctrl", "reward_contact")
        return obs, _total_reward(info, forward, terms=terms), bool(terminated), truncated, info


def _sign(value: float) -> float:
    if value not in (1.0, -1.0):
        raise EnvError(f"a direction task is +1 or -1, got {value}")
    return float(value)


# -- randomised physical parameters ----------------------------------------------------------

RAND_PARAM_NAMES: tuple[str, ...] = (
    "log_mass_scale",
    "log_inertia_scale",
    "log_damping_scale",
    "log_friction_scale",
    "param_seed",
)
"""Task vector of the rand-params families (see :class:`RandParamsEnv`)."""

# (model field, base b of the factor b**U[-3, 3]); the bases are those of the paper's
# rand_param_envs, which scales damping by 1.3**u and the rest by 1.5**u.
_RANDOMISED_FIELDS: tuple[tuple[str, float], ...] = (
    ("body_mass", 1.5),
    ("body_inertia", 1.5),
    ("dof_damping", 1.3),
    ("geom_friction", 1.5),
)
_LOG_SCALE_LIMIT = 3.0
NOMINAL_SEED = -1
"""``param_seed`` of the unmodified model (all factors 1)."""


class RandParamsEnv(MujocoTaskEnv):
    """Randomised body mass, inertia, joint damping and geom friction of a v5 MuJoCo model.

    The nominal model is the v5 one changed where the paper's rand_param_envs models differ
    (:meth:`_match_official_model`): MuJoCo's timestep is 0.004 s, so with the v5 frame skip
    of 4 one env step is 0.016 s (3.2 s per 200-step episode), and the subclass's
    ``official_friction`` geoms get their official sliding friction.

    A task is drawn by its integer ``param_seed``: ``numpy.random.default_rng(param_seed)`` draws,
    for every element ``i`` of ``body_mass``, ``body_inertia``, ``dof_damping`` and
    ``geom_friction`` (in that order), ``u_i ~ U[-3, 3]``, and the element is set to
    ``nominal_i * b**u_i`` (``b`` = 1.5, or 1.3 for damping, as in the paper's rand_param_envs).
    The task vector keeps P small for latent inspection: four summaries, each the mean natural
    log of the factors of one field over its non-zero nominal elements (so ``exp`` of it is the
    geometric-mean scale), then the seed itself. ``param_seed = -1`` with zero summaries is the
    nominal model. The summaries must match the seed (checked), so a task cannot be
    half-edited.

    Changing the task writes ``nominal * factors`` from a copy of the nominal arrays taken at
    construction (never compounding on the current values) and recomputes MuJoCo's derived
    constants with ``mj_setConst``; the nominal task thus restores the model exactly.
    """

    param_names: ClassVar[tuple[str, ...]] = RAND_PARAM_NAMES
    default_task: ClassVar[tuple[float, ...]] = (0.0, 0.0, 0.0, 0.0, float(NOMINAL_SEED))
    official_timestep: ClassVar[float] = 0.004
    """rand_param_envs' walker2d.xml and hopper.xml: ``<option timestep="0.004">``."""
    official_friction: ClassVar[dict[str, float]] = {}
    """Geom name -> the official sliding friction, where the v5 model differs."""

    def _match_official_model(self) -> None:
        """Sets the official timestep and frictions; keeps ``render_fps`` equal to ``1 / dt``.

        The official models are gym's walker2d.xml and hopper.xml with the timestep doubled
        (0.002 -> 0.004 s), and rand_param_envs' RandomEnv builds them with frame skip 4, as
        the v5 classes do. We change the compiled v5 model rather than ship an XML of our own:
        a timestep and a friction are read at run time, nothing is derived from them when
        the model compiles, and the v5 XML stays gymnasium's. (Frame skip 8 at 0.002 s would
        give the same ``dt`` but not the official integration step.) Called before the
        nominal arrays are saved, so these values are the nominal ones.
        """
        self.model.opt.timestep = self.official_timestep
        for geom, sliding in self.official_friction.items():
            self.model.geom(geom).friction[0] = sliding
        # gymnasium derives render_fps from dt in __init__ and its MujocoEnv checks the two agree.
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}

    def _snapshot_nominal(self) -> None:
        self._nominal = {name: getattr(self.model, name).copy() for name, _ in _RANDOMISED_FIELDS}

    def factors(self, param_seed: int) -> dict[str, np.ndarray]:
        """The multiplicative factor of every randomised element for ``param_seed``.

        Args:
            param_seed: an int >= 0, or -1 for the nominal model.

        Returns:
            Model field name -> factors of the field's shape.
        """
        if param_seed == NOMINAL_SEED:
            return {name: np.ones_like(self._nominal[name]) for name, _ in _RANDOMISED_FIELDS}
        if param_seed < 0:
            raise EnvError(f"param_seed must be >= 0 or {NOMINAL_SEED}, got {param_seed}")
        rng = np.random.default_rng(param_seed)
        limit = _LOG_SCALE_LIMIT
        return {
            name: base ** rng.uniform(-limit, limit, size=self._nominal[name].shape)
            for name, base in _RANDOMISED_FIELDS
        }

    def task_for_seed(self, param_seed: int) -> np.ndarray:
        """The task vector ``[5]`` (summaries, seed) of ``param_seed`` on this model."""
        factors = self.factors(param_seed)
        summaries = []
        for name, _ in _RANDOMISED_FIELDS:
            used = self._nominal[name] != 0  # factors of zero entries change nothing
            summaries.append(float(np.mean(np.log(factors[name][used]))) if used.any() else 0.0)
        return np.array([*summaries, float(param_seed)], dtype=np.float64)

    def _validate_task(self, task: Any) -> np.ndarray:
        array = super()._validate_task(task)
        seed = array[-1]
        if seed != np.round(seed):
            raise EnvError(f"param_seed must be an integer, got {seed}")
        expected = self.task_for_seed(int(seed))
        if not np.allclose(array, expected, rtol=0.0, atol=1e-9):
            raise EnvError(
                f"rand-params task {array} does not match its param_seed {int(seed)}: the "
                f"summaries {self.param_names[:4]} of that seed are {expected[:4]}"
            )
        return array

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 env (its own reward) with the task's physical parameters."""
        obs, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        return obs, float(reward), bool(terminated), truncated, info

    def apply_task(self, task: np.ndarray) -> None:
        """Writes ``nominal * factors`` into the model and recomputes its derived constants."""
        for name, factor in self.factors(int(task[-1])).items():
            getattr(self.model, name)[:] = self._nominal[name] * factor
        mujoco.mj_setConst(self.model, self.data)


class Walker2dRandParamsEnv(RandParamsEnv, Walker2dEnv):
    """Walker2d (v5) with randomised physical parameters; see :class:`RandParamsEnv`.

    The right foot has the official sliding friction 0.9 (rand_param_envs' walker2d.xml, as
    gym's); Walker2d-v5 gives both feet 1.9.

    Args:
        task: rand-params task vector; None for the nominal model.
        **kwargs: passed to gymnasium's ``Walker2dEnv``.
    """

    official_friction: ClassVar[dict[str, float]] = {"foot_geom": 0.9}

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        Walker2dEnv.__init__(self, **kwargs)
        self._match_official_model()
        self._snapshot_nominal()
        self._finish_init(task, kwargs)


class HopperRandParamsEnv(RandParamsEnv, HopperEnv):
    """Hopper (v5) with randomised physical parameters; see :class:`RandParamsEnv`.

    Args:
        task: rand-params task vector; None for the nominal model.
        **kwargs: passed to gymnasium's ``HopperEnv``.
    """

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        HopperEnv.__init__(self, **kwargs)
        self._match_official_model()
        self._snapshot_nominal()
        self._finish_init(task, kwargs)
