"""The MuJoCo robots of the locomotion families, on gymnasium's v5 envs; importing this imports mujoco.

:class:`CheetahEnv`, :class:`AntEnv` and :class:`HumanoidEnv` serve every family on their robot:
built with ``family=<name>`` (gymnasium registers each family's id with it), they take the forward
term of the reward from the family (:class:`envs.locomotion.RewardTasks`) and keep the v5 control,
contact and healthy terms. ``info["reward_forward"]`` is the family's term; the other v5 info keys
are kept. :class:`RandParamsEnv` randomises the physics of Walker2d and Hopper instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco import ant_v5, half_cheetah_v5, humanoid_v5
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from envs.base import EnvError, registered_task_families
from envs.mujoco_utils import MujocoTaskEnv

__all__ = [
    "AntEnv",
    "CheetahEnv",
    "HopperRandParamsEnv",
    "HumanoidEnv",
    "RAND_PARAM_NAMES",
    "RandParamsEnv",
    "Walker2dRandParamsEnv",
]

_Step = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


class _FamilyRewardEnv(MujocoTaskEnv):
    """A v5 robot whose reward's forward term is its task family's (listed before the v5 class).

    Args:
        task: the family's task vector; None for the family's ``default_task``.
        family: the registered family name (gymnasium's registration passes it).
        **kwargs: passed to the v5 env (the family's ``robot_kwargs`` come this way).
    """

    kept_terms: ClassVar[tuple[str, ...]]
    """The v5 reward terms (``info`` keys) kept beside the family's forward term."""

    def __init__(self, task: np.ndarray | None = None, *, family: str, **kwargs: Any) -> None:
        families = registered_task_families()
        if family not in families or not hasattr(families[family], "forward_reward"):
            raise EnvError(f"{type(self).__name__}: {family!r} is not a locomotion family with a task reward")
        self.family = families[family]
        self.param_names, self.default_task = self.family.param_names, self.family.default_task
        self.v5.__init__(self, **kwargs)
        self._finish_init(task, {"family": family, **kwargs})

    def apply_task(self, task: np.ndarray) -> None:
        """Keeps what the family's reward needs of the task (checked by the family)."""
        self.task_state = self.family.task_state(task)

    def step(self, action: np.ndarray) -> _Step:
        """Steps the v5 robot; reward: the family's forward term plus the kept v5 terms."""
        obs, _, terminated, truncated, info = super().step(action)
        forward = float(self.family.forward_reward(self.task_state, self, info))
        info["reward_forward"] = forward
        reward = forward + sum(float(info[term]) for term in self.kept_terms)
        return obs, reward, bool(terminated), truncated, info


class CheetahEnv(_FamilyRewardEnv, half_cheetah_v5.HalfCheetahEnv):
    """HalfCheetah (v5) rewarded by its family: cheetah-vel, cheetah-dir."""

    v5 = half_cheetah_v5.HalfCheetahEnv
    kept_terms = ("reward_ctrl",)


class AntEnv(_FamilyRewardEnv, ant_v5.AntEnv):
    """Ant (v5) rewarded by its family: ant-dir, ant-goal."""

    v5 = ant_v5.AntEnv
    kept_terms = ("reward_survive", "reward_ctrl", "reward_contact")


class HumanoidEnv(_FamilyRewardEnv, humanoid_v5.HumanoidEnv):
    """Humanoid (v5) rewarded by its family: humanoid-dir."""

    v5 = humanoid_v5.HumanoidEnv
    kept_terms = ("reward_survive", "reward_ctrl", "reward_contact")


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

    def __init__(self, task: np.ndarray | None = None, **kwargs: Any) -> None:
        """Args: task: rand-params task vector, None for the nominal model; kwargs: for the v5 env."""
        self.v5.__init__(self, **kwargs)
        self._match_official_model()
        self._snapshot_nominal()
        self._finish_init(task, kwargs)

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
    """

    v5 = Walker2dEnv
    official_friction: ClassVar[dict[str, float]] = {"foot_geom": 0.9}


class HopperRandParamsEnv(RandParamsEnv, HopperEnv):
    """Hopper (v5) with randomised physical parameters; see :class:`RandParamsEnv`."""

    v5 = HopperEnv
