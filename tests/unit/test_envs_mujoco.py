"""Tests of the MuJoCo locomotion and Meta-World task families (need the mujoco extra)."""

from __future__ import annotations

import logging
import pickle
from functools import cache

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

mujoco = pytest.importorskip("mujoco")

pytestmark = [
    pytest.mark.mujoco,
    # gymnasium's checker recommends bounded observation spaces; joint velocities and contact
    # forces are unbounded, as in gymnasium's own MuJoCo envs.
    pytest.mark.filterwarnings("ignore:.*A Box observation space m.*infinity:UserWarning"),
]

REWARD_FAMILIES = ("cheetah-vel", "cheetah-dir", "ant-dir", "ant-goal", "humanoid-dir")
RAND_PARAMS_FAMILIES = ("walker-rand-params", "hopper-rand-params")
LOCOMOTION_FAMILIES = REWARD_FAMILIES + RAND_PARAMS_FAMILIES
CONTINUOUS_FAMILIES = ("cheetah-vel", "ant-goal", "humanoid-dir", *RAND_PARAMS_FAMILIES)
# Small Meta-World splits (the benchmark is built whole either way); test_meta_world.py compares
# the full splits with the benchmark's.
METAWORLD = {
    "metaworld-ml1": {"env_name": "reach-v3", "n_train_tasks": 6, "n_test_tasks": 4},
    "metaworld-ml10": {"n_train_tasks": 10, "n_test_tasks": 5},
}
metaworld_only = pytest.mark.skipif(
    __import__("importlib").util.find_spec("metaworld") is None, reason="needs the metaworld extra"
)


@cache
def _tasks(name: str, seed: int = 0) -> envs.TaskDistribution:
    return envs.make_task_distribution(name, seed=seed, **METAWORLD.get(name, {}))


def _rollout(env: gymnasium.Env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    observations, rewards, infos = [], [], []
    env.reset(seed=0)
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated:
            break
    return np.array(observations), np.array(rewards), infos


def _actions(env: gymnasium.Env, n_steps: int, seed: int = 0) -> np.ndarray:
    space = env.action_space
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, size=(n_steps, *space.shape)).astype(np.float32)


def _model_arrays(model: object) -> dict[str, np.ndarray]:
    arrays = {}
    for key in dir(model):
        if not key.startswith("_"):
            value = getattr(model, key)
            if isinstance(value, np.ndarray):
                arrays[key] = value.copy()
    return arrays


# -- contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOCOMOTION_FAMILIES)
def test_locomotion_family_attributes(name: str) -> None:
    tasks = _tasks(name)
    defaults = {
        "cheetah-vel": (100, 30),
        "cheetah-dir": (2, 2),
        "ant-dir": (2, 2),
        "ant-goal": (150, 30),
        "humanoid-dir": (100, 30),
        "walker-rand-params": (40, 10),
        "hopper-rand-params": (40, 10),
    }[name]
    assert (len(tasks.train_tasks), len(tasks.test_tasks)) == defaults
    assert tasks.train_tasks.shape[1] == tasks.test_tasks.shape[1] == len(tasks.param_names)
    assert tasks.max_episode_steps == 200
    assert not tasks.sparse_reward and not tasks.has_success
    assert gymnasium.spec(tasks.gym_id).max_episode_steps == 200


# Rendering needs an OpenGL context (a display for "human"), which CI machines lack, so the
# checker's render checks are skipped; everything else is checked.
@pytest.mark.parametrize(
    "name", [*LOCOMOTION_FAMILIES, *(pytest.param(n, marks=metaworld_only) for n in METAWORLD)]
)
def test_env_passes_gymnasium_env_checker(name: str) -> None:
    tasks = _tasks(name)
    env = tasks.make_env(tasks.train_tasks[-1])
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.dtype == np.float32
    env.close()


@pytest.mark.parametrize("gym_id", ["pearl/CheetahVel-v0", "pearl/HopperRandParams-v0"])
def test_gymnasium_make_gives_a_200_step_episode(gym_id: str) -> None:
    env = gymnasium.make(gym_id, task=None)
    assert env.spec.max_episode_steps == 200
    env.reset(seed=0)
    env.close()


@pytest.mark.parametrize("name", CONTINUOUS_FAMILIES)
def test_same_seed_same_tasks_other_seed_other_tasks_disjoint_split(name: str) -> None:
    tasks, other = _tasks(name, 0), _tasks(name, 1)
    again = envs.make_task_distribution(name, seed=0)
    np.testing.assert_array_equal(tasks.train_tasks, again.train_tasks)
    np.testing.assert_array_equal(tasks.test_tasks, again.test_tasks)
    assert not np.array_equal(tasks.train_tasks, other.train_tasks)
    train = {tuple(task) for task in tasks.train_tasks}
    test = {tuple(task) for task in tasks.test_tasks}
    assert len(train) == len(tasks.train_tasks) and not train & test


@pytest.mark.parametrize("name", ["cheetah-dir", "ant-dir"])
def test_direction_families_use_both_directions_for_train_and_test(name: str) -> None:
    tasks = _tasks(name)
    np.testing.assert_array_equal(tasks.train_tasks, [[1.0], [-1.0]])
    np.testing.assert_array_equal(tasks.test_tasks, [[1.0], [-1.0]])
    with pytest.raises(envs.EnvError, match=r"\+1 or -1"):
        tasks.make_env(np.array([0.5]))


def test_task_ranges() -> None:
    velocity = _tasks("cheetah-vel").train_tasks
    assert velocity.min() >= 0.0 and velocity.max() <= 3.0
    goals = _tasks("ant-goal").train_tasks
    radius = np.linalg.norm(goals, axis=1)
    assert np.all(radius <= 3.0) and radius.max() > 2.5
    angles = _tasks("humanoid-dir").train_tasks
    assert angles.min() >= 0.0 and angles.max() < 2 * np.pi


@pytest.mark.parametrize(
    "name", [*LOCOMOTION_FAMILIES, pytest.param("metaworld-ml1", marks=metaworld_only)]
)
def test_sampling_leaves_the_global_rng_alone(name: str) -> None:
    before = np.random.get_state()[1].copy()
    envs.make_task_distribution(name, seed=3, **METAWORLD.get(name, {}))
    np.testing.assert_array_equal(np.random.get_state()[1], before)


# -- a task really changes the reward or the dynamics ------------------------------------------


@pytest.mark.parametrize("name", REWARD_FAMILIES)
def test_reward_task_changes_reward_not_dynamics(name: str) -> None:
    tasks = _tasks(name)
    first, second = tasks.train_tasks[0], tasks.train_tasks[1]
    env = tasks.make_env(first)
    actions = _actions(env, 30)
    obs_1, rewards_1, _ = _rollout(env, actions)
    tasks.set_task(env, second)
    obs_2, rewards_2, _ = _rollout(env, actions)
    n = min(len(rewards_1), len(rewards_2))
    np.testing.assert_array_equal(obs_1[:n], obs_2[:n])  # same physics, same actions
    assert not np.allclose(rewards_1[:n], rewards_2[:n])
    env.close()


@pytest.mark.parametrize("name", RAND_PARAMS_FAMILIES)
def test_rand_params_task_changes_dynamics(name: str) -> None:
    tasks = _tasks(name)
    env = tasks.make_env(tasks.train_tasks[0])
    actions = _actions(env, 10)
    obs_1, _, _ = _rollout(env, actions)
    tasks.set_task(env, tasks.train_tasks[1])
    obs_2, _, _ = _rollout(env, actions)
    n = min(len(obs_1), len(obs_2))
    assert not np.allclose(obs_1[:n], obs_2[:n])
    env.close()


def test_cheetah_vel_reward_formula() -> None:
    tasks = _tasks("cheetah-vel")
    env = tasks.make_env(np.array([2.0]))
    env.reset(seed=0)
    action = np.full(6, 0.5, dtype=np.float32)
    _, reward, _, _, info = env.step(action)
    expected = -abs(info["x_velocity"] - 2.0) - 0.05 * np.sum(action.astype(np.float64) ** 2)
    assert reward == pytest.approx(expected)
    assert info["reward_forward"] == pytest.approx(-abs(info["x_velocity"] - 2.0))


@pytest.mark.parametrize(
    ("name", "forward", "backward"),
    [("cheetah-dir", [1.0], [-1.0]), ("humanoid-dir", [0.0], [np.pi])],
)
def test_opposite_directions_give_opposite_forward_terms(
    name: str, forward: list, backward: list
) -> None:
    tasks = _tasks(name)
    env = tasks.make_env(np.array(forward))
    actions = _actions(env, 5)
    _, _, infos_forward = _rollout(env, actions)
    tasks.set_task(env, np.array(backward))
    _, _, infos_backward = _rollout(env, actions)
    for one, other in zip(infos_forward, infos_backward):
        assert one["reward_forward"] == pytest.approx(-other["reward_forward"], abs=1e-9)


def test_ant_goal_reward_is_minus_l1_distance() -> None:
    tasks = _tasks("ant-goal")
    goal = np.array([1.0, -2.0])
    env = tasks.make_env(goal)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (29,)  # x, y included: the agent must know where it is
    _, _, terminated, _, info = env.step(env.action_space.sample())
    xy = np.array([info["x_position"], info["y_position"]])
    assert info["reward_forward"] == pytest.approx(-np.abs(xy - goal).sum(), abs=1e-6)
    assert not terminated


# -- rand-params: model changes and exact restoration ------------------------------------------


@pytest.mark.parametrize("name", RAND_PARAMS_FAMILIES)
def test_rand_params_restore_the_model_exactly(name: str) -> None:
    tasks = _tasks(name)
    nominal = _model_arrays(tasks.make_env().model)
    env = tasks.make_env()
    env.reset(seed=0)
    first, second = tasks.train_tasks[0], tasks.train_tasks[1]
    tasks.set_task(env, first)
    env.reset(seed=0)
    changed = {k for k, v in _model_arrays(env.model).items() if not np.array_equal(v, nominal[k])}
    assert {"body_mass", "body_inertia", "dof_damping", "geom_friction"} <= changed
    # Factors apply to the nominal model, never to the previous task's model.
    tasks.set_task(env, second)
    env.reset(seed=0)
    direct = tasks.make_env(second)
    direct.reset(seed=0)
    for key, value in _model_arrays(direct.model).items():
        np.testing.assert_array_equal(getattr(env.model, key), value, err_msg=key)
    # The nominal task restores every array of the model bit for bit.
    tasks.set_task(env, np.array(env.default_task))
    env.reset(seed=0)
    for key, value in _model_arrays(env.model).items():
        np.testing.assert_array_equal(value, nominal[key], err_msg=key)


def test_rand_params_factors_follow_the_paper() -> None:
    tasks = _tasks("hopper-rand-params")
    env = tasks.make_env()
    nominal = {name: getattr(env.model, name).copy() for name in ("body_mass", "dof_damping")}
    task = tasks.train_tasks[0]
    factors = env.factors(int(task[-1]))
    assert np.all((factors["body_mass"] >= 1.5**-3) & (factors["body_mass"] <= 1.5**3))
    assert np.all((factors["dof_damping"] >= 1.3**-3) & (factors["dof_damping"] <= 1.3**3))
    tasks.set_task(env, task)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.model.body_mass, nominal["body_mass"] * factors["body_mass"])
    used = nominal["body_mass"] != 0
    assert task[0] == pytest.approx(np.mean(np.log(factors["body_mass"][used])))


def test_rand_params_task_must_match_its_seed() -> None:
    tasks = _tasks("walker-rand-params")
    env = tasks.make_env()
    tampered = tasks.train_tasks[0].copy()
    tampered[0] += 0.1
    with pytest.raises(envs.EnvError, match="does not match its param_seed"):
        env.set_task(tampered)
    fractional = tasks.train_tasks[0].copy()
    fractional[-1] += 0.5
    with pytest.raises(envs.EnvError, match="integer"):
        env.set_task(fractional)


def test_mujoco_warnings_go_to_the_logger_not_stdout_or_a_file(
    tmp_path, monkeypatch, capfd, caplog
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _tasks("hopper-rand-params").make_env()
    env.reset(seed=0)
    env.data.qvel[:] = np.inf  # make the simulation blow up: MuJoCo warns
    with caplog.at_level(logging.WARNING, logger="envs.mujoco"):
        mujoco.mj_step(env.model, env.data)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert "unstable" not in capfd.readouterr().out
    assert any("unstable" in record.getMessage() for record in caplog.records)


def test_env_pickles_with_its_task() -> None:
    tasks = _tasks("cheetah-vel")
    env = tasks.make_env(tasks.train_tasks[4])
    clone = pickle.loads(pickle.dumps(env))
    np.testing.assert_array_equal(clone.task, tasks.train_tasks[4])


# -- rand-params: the paper's walker2d and hopper models ---------------------------------------

# The official values come from rand_param_envs (the submodule of katerakelly/oyster, commit
# 4d1529d): rand_param_envs/gym/envs/mujoco/assets/walker2d.xml and hopper.xml, written in
# global coordinates with angles in degrees. Capsules: (from, to, radius); hinge joints:
# (height of the anchor, range in degrees); the root joints (rootx, rootz, rooty) are unlimited,
# undamped and without armature in both files.
_LEG_CAPSULES = {
    "torso_geom": ((0, 0, 1.45), (0, 0, 1.05), 0.05),
    "thigh_geom": ((0, 0, 1.05), (0, 0, 0.6), 0.05),
    "leg_geom": ((0, 0, 0.6), (0, 0, 0.1), 0.04),
}
_LEG_JOINTS = {"thigh_joint": (1.05, (-150, 0)), "leg_joint": (0.6, (-150, 0)),
               "foot_joint": (0.1, (-45, 45))}
OFFICIAL_MODELS = {
    "walker-rand-params": {  # rand_param_envs walker2d.xml
        "capsules": {
            **_LEG_CAPSULES,
            "foot_geom": ((0, 0, 0.1), (0.2, 0, 0.1), 0.06),
            "thigh_left_geom": _LEG_CAPSULES["thigh_geom"],
            "leg_left_geom": _LEG_CAPSULES["leg_geom"],
            "foot_left_geom": ((0, 0, 0.1), (0.2, 0, 0.1), 0.06),
        },
        "joints": {
            **_LEG_JOINTS,
            "thigh_left_joint": _LEG_JOINTS["thigh_joint"],
            "leg_left_joint": _LEG_JOINTS["leg_joint"],
            "foot_left_joint": _LEG_JOINTS["foot_joint"],
        },
        # friction="0.9" on every body geom but the left foot's "1.9" (Walker2d-v5 gives the
        # right foot 1.9 too); the floor keeps the default class's .7
        "sliding_friction": {
            "floor": 0.7,
            **{name: 0.9 for name in _LEG_CAPSULES},
            "foot_geom": 0.9,
            "thigh_left_geom": 0.9,
            "leg_left_geom": 0.9,
            "foot_left_geom": 1.9,
        },
        "density": 1000.0,  # <default><geom density="1000">
        "damping": 0.1,
        "armature": 0.01,
        "gear": 100.0,
        "actuated": ("thigh_joint", "leg_joint", "foot_joint",
                     "thigh_left_joint", "leg_left_joint", "foot_left_joint"),
        "geom_contact": {"condim": 3, "contype": 1, "conaffinity": 0, "margin": 0.0},
    },
    "hopper-rand-params": {  # rand_param_envs hopper.xml
        "capsules": {**_LEG_CAPSULES, "foot_geom": ((-0.13, 0, 0.1), (0.26, 0, 0.1), 0.06)},
        "joints": dict(_LEG_JOINTS),
        # friction="0.9" on torso, thigh and leg, "2.0" on the foot; the floor has MuJoCo's 1
        "sliding_friction": {
            "floor": 1.0,
            **{name: 0.9 for name in _LEG_CAPSULES},
            "foot_geom": 2.0,
        },
        "density": 1000.0,  # none set: MuJoCo's default
        "damping": 1.0,
        "armature": 1.0,
        "gear": 200.0,
        "actuated": ("thigh_joint", "leg_joint", "foot_joint"),
        "geom_contact": {"condim": 1, "contype": 1, "conaffinity": 1, "margin": 0.001,
                         "solref": (0.02, 1.0), "solimp": (0.8, 0.8, 0.01)},
    },
}


@pytest.mark.parametrize("name", RAND_PARAMS_FAMILIES)
def test_rand_params_step_is_the_official_0_016_seconds(name: str) -> None:
    # rand_param_envs walker2d.xml / hopper.xml: timestep="0.004"; base.py's RandomEnv passes
    # frame skip 4 to MujocoEnv (walker2d_rand_params.py's extra 5 is swallowed by *args).
    tasks = _tasks(name)
    env = tasks.make_env(tasks.train_tasks[0])
    assert env.unwrapped.dt == 0.016
    assert env.unwrapped.model.opt.timestep == 0.004 and env.unwrapped.frame_skip == 4
    assert env.metadata["render_fps"] == int(np.round(1.0 / 0.016))
    made = gymnasium.make(tasks.gym_id, task=None)
    assert made.unwrapped.dt == 0.016
    made.close()
    env.close()


@pytest.mark.parametrize("name", RAND_PARAMS_FAMILIES)
def test_rand_params_nominal_model_matches_the_official_xml(name: str) -> None:
    official = OFFICIAL_MODELS[name]
    model = _tasks(name).make_env().unwrapped.model
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)  # qpos0: the pose written in the official global XML
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    for geom, (start, end, radius) in official["capsules"].items():
        g = model.geom(geom).id
        half = model.geom_size[g, 1]
        axis = data.geom_xmat[g].reshape(3, 3)[:, 2]
        ends = {tuple(np.round(data.geom_xpos[g] + sign * half * axis, 9)) for sign in (-1, 1)}
        assert ends == {tuple(map(float, start)), tuple(map(float, end))}, geom
        assert model.geom_size[g, 0] == pytest.approx(radius), geom
        # inertiafromgeom with one capsule per body: the body's mass is the capsule's
        length = np.linalg.norm(np.subtract(end, start))
        volume = np.pi * radius**2 * length + 4.0 / 3.0 * np.pi * radius**3
        body = model.geom_bodyid[g]
        assert model.body_mass[body] == pytest.approx(official["density"] * volume), geom
    for geom, sliding in official["sliding_friction"].items():
        assert model.geom(geom).friction[0] == pytest.approx(sliding), geom
    for geom in official["capsules"]:
        for key, value in official["geom_contact"].items():
            np.testing.assert_allclose(getattr(model.geom(geom), key)[: np.size(value)], value,
                                       err_msg=f"{geom} {key}")
    for joint, (height, range_deg) in official["joints"].items():
        j = model.joint(joint)
        assert data.xanchor[j.id][2] == pytest.approx(height), joint
        np.testing.assert_allclose(j.range, np.deg2rad(range_deg), err_msg=joint)
        assert model.dof_damping[j.dofadr[0]] == pytest.approx(official["damping"]), joint
        assert model.dof_armature[j.dofadr[0]] == pytest.approx(official["armature"]), joint
    for root in ("rootx", "rootz", "rooty"):
        j = model.joint(root)
        assert not j.limited[0] and model.dof_damping[j.dofadr[0]] == 0.0
        assert model.dof_armature[j.dofadr[0]] == 0.0
    actuated = tuple(model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu))
    assert actuated == official["actuated"]
    np.testing.assert_array_equal(model.actuator_gear[:, 0], official["gear"])
    np.testing.assert_array_equal(model.actuator_ctrlrange, [[-1.0, 1.0]] * model.nu)


# -- Meta-World --------------------------------------------------------------------------------


@metaworld_only
def test_metaworld_ml1_tasks_and_success() -> None:
    tasks = _tasks("metaworld-ml1")
    assert tasks.has_success and not tasks.sparse_reward and tasks.max_episode_steps == 500
    assert tasks.param_names == tuple(f"rand_vec_{i}" for i in range(6))
    assert tasks.train_tasks.shape == (6, 6) and tasks.test_tasks.shape == (4, 6)
    assert not {tuple(t) for t in tasks.train_tasks} & {tuple(t) for t in tasks.test_tasks}
    other = _tasks("metaworld-ml1", 1)
    assert not np.array_equal(tasks.train_tasks, other.train_tasks)
    # A scripted reacher that knows the goal (the last 3 numbers of reach's rand vec) succeeds,
    # a random policy does not; and the task changes the reward of the same actions.
    env = tasks.make_env(tasks.test_tasks[0])
    for task in tasks.test_tasks[:2]:
        tasks.set_task(env, task)
        obs, _ = env.reset(seed=0)
        succeeded = False
        for _ in range(150):
            move = np.clip((task[3:] - obs[:3]) * 10.0, -1.0, 1.0)
            obs, _, _, _, info = env.step(np.append(move, 0.0).astype(np.float32))
            assert isinstance(info["success"], bool)
            succeeded |= info["success"]
        assert succeeded
    actions = _actions(env, 150)
    _, rewards_1, infos = _rollout(env, actions)
    assert not any(info["success"] for info in infos)
    tasks.set_task(env, tasks.test_tasks[0])
    _, rewards_2, _ = _rollout(env, actions)
    assert not np.allclose(rewards_1, rewards_2)
    env.close()


@metaworld_only
def test_metaworld_ml1_rejects_unknown_env_name_and_too_many_tasks() -> None:
    with pytest.raises(envs.EnvError, match="unknown Meta-World environment 'reach-v9'"):
        envs.make_task_distribution("metaworld-ml1", seed=0, env_name="reach-v9")
    with pytest.raises(envs.EnvError, match="50 goals per environment"):
        envs.make_task_distribution("metaworld-ml1", seed=0, n_train_tasks=51, n_test_tasks=1)


@metaworld_only
def test_metaworld_ml10_trains_and_tests_on_different_environments() -> None:
    tasks = _tasks("metaworld-ml10")
    assert tasks.param_names[0] == "env_index" and len(tasks.param_names) == 7
    np.testing.assert_array_equal(tasks.train_tasks[:, 0], np.arange(10))
    np.testing.assert_array_equal(tasks.test_tasks[:, 0], np.arange(10, 15))
    env = tasks.make_env(tasks.train_tasks[0])
    names = envs.meta_world.ml10_env_names()
    for task in (tasks.train_tasks[3], tasks.test_tasks[2]):
        tasks.set_task(env, task)
        env.reset(seed=0)
        assert env.env_name == names[int(task[0])]
        _, _, _, _, info = env.step(env.action_space.sample())
        assert isinstance(info["success"], bool)
    bad = tasks.train_tasks[0].copy()
    bad[0] = 15
    with pytest.raises(envs.EnvError, match="env_index"):
        env.set_task(bad)
    env.close()
