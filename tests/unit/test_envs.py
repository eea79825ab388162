"""Tests of the task-distribution contract and the pure-numpy point robots.

The MuJoCo and Meta-World families are tested in ``test_envs_mujoco.py``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.point_robot import MAX_ACTION, PointRobotEnv, SparsePointRobotEnv, oracle_action

POINT_FAMILIES = ("point-robot", "sparse-point-robot")
ALL_FAMILIES = (
    *POINT_FAMILIES,
    "cheetah-vel",
    "cheetah-dir",
    "ant-dir",
    "ant-goal",
    "humanoid-dir",
    "walker-rand-params",
    "hopper-rand-params",
    "metaworld-ml1",
    "metaworld-ml10",
)

# gymnasium's checker recommends bounded observation spaces and actions in [-1, 1]; the point
# robot's position is unbounded and its action bound (0.1 per axis) is the paper's, so both
# recommendations are knowingly declined.
CHECKER_WARNINGS = (
    pytest.mark.filterwarnings("ignore:.*A Box observation space m.*infinity:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*For Box action spaces, we recommend:UserWarning"),
)


def _with_marks(function):
    for mark in CHECKER_WARNINGS:
        function = mark(function)
    return function


# -- registry and construction ---------------------------------------------------------------


def test_registry_lists_every_benchmark_family() -> None:
    assert set(ALL_FAMILIES) <= set(envs.registered_task_families())


def test_every_family_has_a_pearl_gymnasium_id_with_its_episode_length() -> None:
    for name, family in envs.registered_task_families().items():
        assert family.name == name
        assert family.gym_id.startswith("pearl/") and family.gym_id in gymnasium.registry
        assert gymnasium.spec(family.gym_id).max_episode_steps == family.max_episode_steps


@pytest.mark.parametrize(
    ("name", "extra"),
    [("cheetah-vel", "mujoco"), ("walker-rand-params", "mujoco"), ("metaworld-ml1", "metaworld")],
)
def test_optional_families_name_the_missing_extra(monkeypatch, name: str, extra: str) -> None:
    monkeypatch.setattr(envs.base, "_module_available", lambda module: False)
    assert name in envs.registered_task_families()  # registered without the package
    message = rf"needs the '{extra}' package.*pearl-metarl\[{extra}\]"
    with pytest.raises(envs.EnvError, match=message):
        envs.make_task_distribution(name, seed=0)


def test_unknown_family_raises_env_error_listing_known_names() -> None:
    with pytest.raises(envs.EnvError, match="unknown task family 'no-such-env'.*point-robot"):
        envs.make_task_distribution("no-such-env", seed=0)
    assert issubclass(envs.EnvError, ValueError)


def test_duplicate_family_name_raises() -> None:
    with pytest.raises(envs.EnvError, match="already registered"):

        @envs.register_task_family("point-robot")
        class Again(envs.point_robot.PointRobotTasks):  # pragma: no cover - never built
            pass


def test_registering_a_non_task_distribution_raises() -> None:
    with pytest.raises(envs.EnvError, match="TaskDistribution subclass"):
        envs.register_task_family("not-a-family")(dict)  # type: ignore[arg-type]
    assert "not-a-family" not in envs.registered_task_families()


def test_unknown_keyword_argument_names_the_accepted_ones() -> None:
    with pytest.raises(envs.EnvError, match=r"unknown argument\(s\) \['radius'\].*goal_radius"):
        envs.make_task_distribution("sparse-point-robot", seed=0, radius=0.3)
    with pytest.raises(envs.EnvError, match="takes: start"):
        envs.make_task_distribution("point-robot", seed=0, goal_radius=0.3)
    with pytest.raises(envs.EnvError, match="takes: none"):
        envs.make_task_distribution("cheetah-vel", seed=0, goal_radius=0.3)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"n_train_tasks": 0}, "n_train_tasks"),
        ({"n_test_tasks": -1}, "n_test_tasks"),
        ({"n_train_tasks": 2.5}, "n_train_tasks"),
        ({"n_train_tasks": True}, "n_train_tasks"),
    ],
)
def test_bad_task_counts_raise(counts: dict, message: str) -> None:
    with pytest.raises(envs.EnvError, match=message):
        envs.make_task_distribution("point-robot", seed=0, **counts)


def test_bad_seed_raises() -> None:
    with pytest.raises(envs.EnvError, match="seed"):
        envs.make_task_distribution("point-robot", seed="0")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", POINT_FAMILIES)
def test_default_counts_and_attributes(name: str) -> None:
    tasks = envs.make_task_distribution(name, seed=0)
    assert isinstance(tasks, envs.TaskDistribution)
    assert tasks.name == name
    assert tasks.param_names == ("goal_x", "goal_y")
    assert tasks.train_tasks.shape == (80, 2) and tasks.train_tasks.dtype == np.float64
    assert tasks.test_tasks.shape == (20, 2) and tasks.test_tasks.dtype == np.float64
    assert tasks.max_episode_steps == 20
    assert tasks.sparse_reward is (name == "sparse-point-robot")
    assert tasks.has_success is (name == "sparse-point-robot")
    with pytest.raises(ValueError):  # the split is read-only
        tasks.train_tasks[0, 0] = 5.0


def test_counts_can_be_overridden() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0, n_train_tasks=3, n_test_tasks=0)
    assert tasks.train_tasks.shape == (3, 2) and tasks.test_tasks.shape == (0, 2)


@pytest.mark.parametrize("name", POINT_FAMILIES)
def test_same_seed_same_tasks_different_seed_different_tasks(name: str) -> None:
    first = envs.make_task_distribution(name, seed=7)
    again = envs.make_task_distribution(name, seed=7)
    other = envs.make_task_distribution(name, seed=8)
    np.testing.assert_array_equal(first.train_tasks, again.train_tasks)
    np.testing.assert_array_equal(first.test_tasks, again.test_tasks)
    assert not np.array_equal(first.train_tasks, other.train_tasks)
    assert not np.array_equal(first.test_tasks, other.test_tasks)


@pytest.mark.parametrize("name", POINT_FAMILIES)
def test_train_and_test_tasks_are_disjoint(name: str) -> None:
    tasks = envs.make_task_distribution(name, seed=0)
    train = {tuple(task) for task in tasks.train_tasks}
    test = {tuple(task) for task in tasks.test_tasks}
    assert len(train) == 80 and len(test) == 20
    assert not train & test


@pytest.mark.parametrize("name", POINT_FAMILIES)
def test_sampling_leaves_the_global_rng_alone(name: str) -> None:
    before = np.random.get_state()[1].copy()
    envs.make_task_distribution(name, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_point_robot_goals_fill_the_square() -> None:
    goals = envs.make_task_distribution("point-robot", seed=0, n_train_tasks=2000).train_tasks
    assert np.all(np.abs(goals) <= 1.0)
    assert goals.min() < -0.95 and goals.max() > 0.95
    assert np.all(np.abs(goals.mean(axis=0)) < 0.1)


def test_sparse_point_robot_goals_lie_on_the_upper_half_circle() -> None:
    goals = envs.make_task_distribution("sparse-point-robot", seed=0, n_train_tasks=500).train_tasks
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0)
    assert np.all(goals[:, 1] >= 0.0)
    assert goals[:, 0].min() < -0.95 and goals[:, 0].max() > 0.95


def test_sparse_point_robot_goals_are_evenly_spaced_then_shuffled() -> None:
    """As the official env: n evenly spaced angles of [0, pi], shuffled, the first 80 for training."""
    tasks = envs.make_task_distribution("sparse-point-robot", seed=0)
    goals = np.concatenate([tasks.train_tasks, tasks.test_tasks])
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    np.testing.assert_allclose(np.sort(angles), np.linspace(0.0, np.pi, 100), atol=1e-12)
    test_angles = np.arctan2(tasks.test_tasks[:, 1], tasks.test_tasks[:, 0])
    assert test_angles.min() < 0.5 and test_angles.max() > np.pi - 0.5  # shuffled: the test goals spread out
    other = envs.make_task_distribution("sparse-point-robot", seed=1)
    assert not np.allclose(other.train_tasks, tasks.train_tasks)


# -- gymnasium registration and the env checker ----------------------------------------------


def test_gymnasium_ids_are_registered_with_the_family_episode_length() -> None:
    for gym_id in ("pearl/PointRobot-v0", "pearl/SparsePointRobot-v0"):
        assert gym_id in gymnasium.registry
        assert gymnasium.spec(gym_id).max_episode_steps == 20


def test_registration_is_idempotent() -> None:
    ids = envs.register_gymnasium_envs()
    assert envs.register_gymnasium_envs() == ids
    assert "pearl/PointRobot-v0" in ids


@_with_marks
@pytest.mark.parametrize("name", POINT_FAMILIES)
def test_env_passes_gymnasium_env_checker(name: str) -> None:
    tasks = envs.make_task_distribution(name, seed=0)
    env = tasks.make_env(tasks.train_tasks[0])
    check_env(env)
    env.close()


@_with_marks
@pytest.mark.parametrize("gym_id", ["pearl/PointRobot-v0", "pearl/SparsePointRobot-v0"])
def test_gymnasium_make_runs_a_capped_episode(gym_id: str) -> None:
    env = gymnasium.make(gym_id)
    check_env(env.unwrapped)
    env.reset(seed=0)
    for step in range(1, 100):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        if truncated:
            break
    assert step == 20
    env.close()


# -- point-robot dynamics and rewards --------------------------------------------------------


def test_point_robot_moves_by_the_clipped_action_and_rewards_minus_distance() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0, start="origin")
    env = tasks.make_env(np.array([0.5, -0.5]))
    np.testing.assert_array_equal(env.action_space.low, np.float32([-MAX_ACTION] * 2))
    np.testing.assert_array_equal(env.action_space.high, np.float32([MAX_ACTION] * 2))
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.tolist() == [0.0, 0.0]
    obs, reward, terminated, truncated, info = env.step(np.array([0.05, 3.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.05, 0.1], rtol=1e-6)
    expected = -np.hypot(0.5 - 0.05, -0.5 - 0.1)
    assert reward == pytest.approx(expected)
    assert info["dense_reward"] == reward
    assert not terminated and not truncated
    assert "sparse_reward" not in info and "success" not in info


def test_set_task_takes_effect_at_the_next_reset() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0, start="origin")
    env = tasks.make_env(np.array([1.0, 0.0]))
    env.reset(seed=0)
    tasks.set_task(env, np.array([0.0, 1.0]))
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-1.0)
    np.testing.assert_array_equal(env.unwrapped.task, [1.0, 0.0])  # still the old task
    env.reset()
    np.testing.assert_array_equal(env.unwrapped.task, [0.0, 1.0])
    _, reward, *_ = env.step(np.array([0.1, 0.1], dtype=np.float32))
    assert reward == pytest.approx(-np.hypot(0.1, 0.9))


def test_set_task_works_through_wrappers_and_rejects_bad_shapes() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0)
    wrapped = gymnasium.make("pearl/PointRobot-v0")
    tasks.set_task(wrapped, tasks.test_tasks[3])
    wrapped.reset(seed=0)
    np.testing.assert_array_equal(wrapped.unwrapped.task, tasks.test_tasks[3])
    with pytest.raises(envs.EnvError, match="shape"):
        tasks.set_task(wrapped, np.zeros(3))
    with pytest.raises(envs.EnvError, match="shape"):
        tasks.make_env(np.zeros(1))
    with pytest.raises(envs.EnvError, match="finite"):
        wrapped.unwrapped.set_task(np.array([np.nan, 0.0]))


def test_gymnasium_make_accepts_a_task() -> None:
    env = gymnasium.make("pearl/PointRobot-v0", task=[0.3, 0.4], start="origin")
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-0.5)


def test_same_actions_different_task_different_rewards() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0)
    actions = np.random.default_rng(0).uniform(-0.1, 0.1, size=(20, 2)).astype(np.float32)
    returns = []
    for task in tasks.train_tasks[:2]:
        env = tasks.make_env(task)
        env.reset(seed=0)
        returns.append([env.step(action)[1] for action in actions])
    assert not np.allclose(returns[0], returns[1])


def test_point_robot_starts_uniformly_and_repeats_per_seed() -> None:
    """The official dense point robot resets to a uniform position in [-1, 1]^2 every episode."""
    tasks = envs.make_task_distribution("point-robot", seed=0)

    def starts(seed: int, n: int = 200) -> np.ndarray:
        env = tasks.make_env(tasks.train_tasks[0])
        first = [env.reset(seed=seed)[0]]
        return np.stack(first + [env.reset()[0] for _ in range(n - 1)])

    a, b, c = starts(0), starts(0), starts(1)
    np.testing.assert_array_equal(a, b)  # the env's seeded generator: the same seed, the same starts
    assert not np.allclose(a, c)
    assert len(np.unique(a, axis=0)) == len(a)  # a new start at every reset
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert a.min() < -0.9 and a.max() > 0.9 and abs(a.mean()) < 0.1  # fills the square
    # the first observation is the start, and the reward is measured from it
    env = tasks.make_env(np.array([0.5, -0.5]))
    obs, _ = env.reset(seed=3)
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-np.hypot(obs[0] - 0.5, obs[1] + 0.5), rel=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), [("point-robot", {"start": "origin"}), ("sparse-point-robot", {})])
def test_origin_start(name: str, kwargs: dict) -> None:
    tasks = envs.make_task_distribution(name, seed=0, **kwargs)
    env = tasks.make_env(tasks.train_tasks[0])
    assert [env.reset(seed=s)[0].tolist() for s in range(3)] == [[0.0, 0.0]] * 3


def test_unknown_start_is_refused() -> None:
    with pytest.raises(envs.EnvError, match="start must be one of 'uniform', 'origin', got 'centre'"):
        envs.make_task_distribution("point-robot", seed=0, start="centre")
    with pytest.raises(envs.EnvError, match="start must be one of"):
        PointRobotEnv(start="centre")


def test_sparse_reward_semantics() -> None:
    env = SparsePointRobotEnv(task=np.array([0.0, 1.0]), goal_radius=0.2)
    env.reset(seed=0)
    # Far from the goal: dense reward, no sparse reward.
    _, reward, _, _, info = env.step(np.array([0.0, 0.1], dtype=np.float32))
    assert reward == pytest.approx(-0.9) and info["dense_reward"] == reward
    assert info["sparse_reward"] == 0.0 and info["success"] is False
    for _ in range(6):  # y = 0.7: distance 0.3, outside
        _, reward, _, _, info = env.step(np.array([0.0, 0.1], dtype=np.float32))
    assert info["sparse_reward"] == 0.0 and not info["success"]
    _, reward, _, _, info = env.step(np.array([0.0, 0.05], dtype=np.float32))  # y = 0.75
    assert info["distance"] == pytest.approx(0.25)
    assert info["sparse_reward"] == 0.0 and not info["success"]
    _, reward, _, _, info = env.step(np.array([0.0, 0.1], dtype=np.float32))  # y = 0.85
    assert reward == pytest.approx(-0.15)
    assert info["success"] is True
    assert info["sparse_reward"] == pytest.approx(reward + 1.0) == pytest.approx(0.85)
    _, reward, _, _, info = env.step(np.array([0.0, 0.1], dtype=np.float32))  # y = 0.95
    assert reward == pytest.approx(-0.05) and info["sparse_reward"] == pytest.approx(0.95)
    # Overshooting out of the region again loses the sparse reward.
    for _ in range(3):  # y = 1.25
        _, reward, _, _, info = env.step(np.array([0.0, 0.1], dtype=np.float32))
    assert reward == pytest.approx(-0.25) and info["sparse_reward"] == 0.0


def test_sparse_goal_radius_reaches_the_env() -> None:
    tasks = envs.make_task_distribution("sparse-point-robot", seed=0, goal_radius=0.5)
    env = tasks.make_env(np.array([0.0, 1.0]))
    assert env.goal_radius == 0.5
    env.reset(seed=0)
    for _ in range(6):  # distance 0.4
        _, reward, _, _, info = env.step(np.array([0.0, 0.1], dtype=np.float32))
    assert info["success"] and info["sparse_reward"] == pytest.approx(reward + 1.0)
    with pytest.raises(envs.EnvError, match="goal_radius"):
        envs.make_task_distribution("sparse-point-robot", seed=0, goal_radius=0.0)


# -- the scripted oracle ---------------------------------------------------------------------


def test_oracle_action_is_straight_bounded_and_never_overshoots() -> None:
    rng = np.random.default_rng(0)
    position = rng.uniform(-1.5, 1.5, size=(1000, 2))
    goal = rng.uniform(-1.0, 1.0, size=(1000, 2))
    action = oracle_action(position, goal)
    assert action.shape == (1000, 2) and action.dtype == np.float32
    assert np.all(np.abs(action) <= MAX_ACTION + 1e-7)
    delta = goal - position
    cross = delta[:, 0] * action[:, 1] - delta[:, 1] * action[:, 0]
    np.testing.assert_allclose(cross, 0.0, atol=1e-6)  # parallel to the goal direction
    assert np.all(np.sum(delta * action, axis=1) >= 0)  # toward it
    assert np.all(np.linalg.norm(action, axis=1) <= np.linalg.norm(delta, axis=1) + 1e-6)
    # Far away, one coordinate is at the bound; close by, the goal is reached exactly.
    far = np.max(np.abs(delta), axis=1) > MAX_ACTION
    np.testing.assert_allclose(np.max(np.abs(action[far]), axis=1), MAX_ACTION, rtol=1e-6)
    np.testing.assert_allclose(oracle_action(np.zeros(2), np.array([0.05, -0.02])), [0.05, -0.02])
    np.testing.assert_array_equal(oracle_action(np.ones((1, 2)), np.ones((1, 2))), [[0.0, 0.0]])


@pytest.mark.parametrize("name", POINT_FAMILIES)
def test_oracle_beats_a_random_policy_on_every_test_task(name: str) -> None:
    tasks = envs.make_task_distribution(name, seed=0)
    rng = np.random.default_rng(1)
    for task in tasks.test_tasks:
        env = tasks.make_env(task)
        env.action_space.seed(0)
        returns = {}
        for policy in ("oracle", "random"):
            env.reset(seed=0)
            total, info = 0.0, {}
            for _ in range(tasks.max_episode_steps):
                if policy == "oracle":
                    action = oracle_action(env.position[None], task[None])[0]
                else:
                    action = rng.uniform(-MAX_ACTION, MAX_ACTION, size=2).astype(np.float32)
                _, reward, _, _, info = env.step(action)
                total += reward
            returns[policy] = total
            if policy == "oracle":
                assert info["distance"] < 1e-6  # at most ~14 steps to reach any goal
                assert info.get("success", True)
        assert returns["oracle"] > returns["random"]


def test_point_robot_env_rejects_rendering() -> None:
    with pytest.raises(envs.EnvError, match="render"):
        PointRobotEnv(render_mode="human")
