"""The Meta-World families take the benchmark's own tasks, and their envs behave as its envs.

Building ``metaworld.ML10`` takes several seconds, so it is built once for the module: the family
is built with a spy on ``metaworld.ML10`` that keeps the benchmark the family built, and the
tests compare the family with that object; smaller splits reuse it through a stub.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import envs
from envs.meta_world import MetaWorldEnv, benchmark_task, ml10_env_names

metaworld = pytest.importorskip("metaworld")

pytestmark = pytest.mark.mujoco

SEED = 0


def _rand_vec(task: Any) -> np.ndarray:
    return pickle.loads(task.data)["rand_vec"]


def _ml10_vector(task: Any) -> np.ndarray:
    rand_vec = _rand_vec(task)
    padded = np.zeros(6)
    padded[: len(rand_vec)] = rand_vec
    return np.concatenate([[ml10_env_names().index(task.env_name)], padded])


def _stub(benchmark: Any, seed: int):
    def build(*args: Any, **kwargs: Any) -> Any:
        assert kwargs == {"seed": seed}
        return benchmark

    return build


@pytest.fixture(scope="module")
def ml1() -> tuple[envs.TaskDistribution, Any]:
    """ML1 on reach-v3 with all 50/50 goals, and the benchmark built independently."""
    tasks = envs.make_task_distribution("metaworld-ml1", seed=SEED, env_name="reach-v3")
    return tasks, metaworld.ML1("reach-v3", seed=SEED)


@pytest.fixture(scope="module")
def ml10() -> tuple[envs.TaskDistribution, Any]:
    """ML10 with all 500/250 goals, and the ``metaworld.ML10`` object the family built."""
    built = []
    real = metaworld.ML10

    def spy(**kwargs: Any) -> Any:
        built.append((kwargs, real(**kwargs)))
        return built[-1][1]

    rng_state = np.random.get_state()[1].copy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metaworld, "ML10", spy)
        tasks = envs.make_task_distribution("metaworld-ml10", seed=SEED)
    np.testing.assert_array_equal(np.random.get_state()[1], rng_state)  # global RNG untouched
    assert len(built) == 1 and built[0][0] == {"seed": SEED}
    return tasks, built[0][1]


def _assert_same_episode_start(env: Any, task: np.ndarray, benchmark_env: Any, bench_task: Any):
    """Our env set to ``task`` and the benchmark's env set to its Task: same obs and rewards."""
    env.unwrapped.set_task(task)
    obs, _ = env.reset(seed=0)
    benchmark_env.set_task(bench_task)
    expected, _ = benchmark_env.reset()
    np.testing.assert_array_equal(obs, expected.astype(np.float32))
    assert np.all(obs[-3:] == 0.0)  # the goal is hidden (Meta-World's ML setting)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, size=(5, 4)).astype(np.float32)
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        expected, expected_reward, _, _, expected_info = benchmark_env.step(action)
        np.testing.assert_array_equal(obs, expected.astype(np.float32))
        assert reward == expected_reward and info["success"] == bool(expected_info["success"])


# -- ML1 ---------------------------------------------------------------------------------------


def test_ml1_tasks_are_the_benchmarks_in_its_order(ml1) -> None:
    tasks, benchmark = ml1
    np.testing.assert_array_equal(tasks.train_tasks, [_rand_vec(t) for t in benchmark.train_tasks])
    np.testing.assert_array_equal(tasks.test_tasks, [_rand_vec(t) for t in benchmark.test_tasks])
    assert tasks.param_names == tuple(f"rand_vec_{i}" for i in range(6))
    assert not {tuple(t) for t in tasks.train_tasks} & {tuple(t) for t in tasks.test_tasks}


def test_ml1_fewer_tasks_are_the_first_ones(ml1, monkeypatch) -> None:
    tasks, benchmark = ml1
    monkeypatch.setattr(metaworld, "ML1", lambda env_name, seed: benchmark)
    small = envs.make_task_distribution(
        "metaworld-ml1", seed=SEED, n_train_tasks=6, n_test_tasks=4
    )
    np.testing.assert_array_equal(small.train_tasks, tasks.train_tasks[:6])
    np.testing.assert_array_equal(small.test_tasks, tasks.test_tasks[:4])


def test_ml1_other_seed_other_goals(ml1) -> None:
    tasks, _ = ml1
    other = envs.make_task_distribution("metaworld-ml1", seed=SEED + 1, n_train_tasks=5)
    assert not np.any(np.all(other.train_tasks[:, None] == tasks.train_tasks[None], axis=-1))


def test_ml1_env_behaves_as_the_benchmarks_env(ml1) -> None:
    tasks, benchmark = ml1
    env = tasks.make_env(tasks.train_tasks[0])
    benchmark_env = benchmark.train_classes["reach-v3"]()
    for index in (3, 0):  # switching tasks leaves nothing of the previous one behind
        _assert_same_episode_start(
            env, tasks.train_tasks[index], benchmark_env, benchmark.train_tasks[index]
        )
    _assert_same_episode_start(env, tasks.test_tasks[7], benchmark_env, benchmark.test_tasks[7])
    env.close()
    benchmark_env.close()


def test_our_task_holds_the_benchmarks_task_data(ml1) -> None:
    tasks, benchmark = ml1
    ours = pickle.loads(benchmark_task("reach-v3", tasks.test_tasks[2]).data)
    theirs = pickle.loads(benchmark.test_tasks[2].data)
    assert ours.keys() == theirs.keys()
    np.testing.assert_array_equal(ours.pop("rand_vec"), theirs.pop("rand_vec"))
    assert ours == theirs  # the env class and partially_observable=True


def test_env_without_a_task_takes_the_first_training_task_of_seed_0(ml1, ml10) -> None:
    env = MetaWorldEnv(benchmark="ML1", env_name="reach-v3")
    np.testing.assert_array_equal(env.task, ml1[0].train_tasks[0])
    env.close()
    env = MetaWorldEnv(benchmark="ML10")
    np.testing.assert_array_equal(env.task, ml10[0].train_tasks[0])
    env.close()
    # A family's new env starts at the family's first training task.
    np.testing.assert_array_equal(ml1[0].make_env().task, ml1[0].train_tasks[0])


def test_seed_out_of_numpys_range_raises() -> None:
    # Meta-World seeds numpy.random.seed with the seed, and ML1's test goals with seed + 1.
    with pytest.raises(envs.EnvError, match=r"must be in \[0, 4294967294\], got 4294967295"):
        envs.make_task_distribution("metaworld-ml1", seed=2**32 - 1)


# -- ML10 --------------------------------------------------------------------------------------


def test_ml10_tasks_are_the_benchmarks_in_its_order(ml10) -> None:
    tasks, benchmark = ml10
    assert ml10_env_names() == (*benchmark.train_classes, *benchmark.test_classes)
    np.testing.assert_array_equal(
        tasks.train_tasks, [_ml10_vector(t) for t in benchmark.train_tasks]
    )
    np.testing.assert_array_equal(tasks.test_tasks, [_ml10_vector(t) for t in benchmark.test_tasks])
    np.testing.assert_array_equal(tasks.train_tasks[::50, 0], np.arange(10))
    np.testing.assert_array_equal(tasks.test_tasks[::50, 0], np.arange(10, 15))


def test_ml10_rand_vec_sizes_match_the_benchmark(ml10) -> None:
    _, benchmark = ml10
    sizes = {t.env_name: len(_rand_vec(t)) for t in benchmark.train_tasks + benchmark.test_tasks}
    assert sizes == dict(envs.meta_world._ML10_RAND_VEC_SIZES)


def test_ml10_fewer_tasks_are_spread_over_the_environments(ml10, monkeypatch) -> None:
    tasks, benchmark = ml10
    monkeypatch.setattr(metaworld, "ML10", _stub(benchmark, SEED))
    small = envs.make_task_distribution(
        "metaworld-ml10", seed=SEED, n_train_tasks=13, n_test_tasks=5
    )
    # Environments 0-2 give their first two goals, the others their first one.
    first = [0, 1, 50, 51, 100, 101, *range(150, 500, 50)]
    np.testing.assert_array_equal(small.train_tasks, tasks.train_tasks[first])
    np.testing.assert_array_equal(small.test_tasks, tasks.test_tasks[::50])


def test_too_many_tasks_raise(ml10, monkeypatch) -> None:
    _, benchmark = ml10
    monkeypatch.setattr(metaworld, "ML10", _stub(benchmark, SEED))
    with pytest.raises(envs.EnvError, match="50 goals per environment for training.*got 501"):
        envs.make_task_distribution("metaworld-ml10", seed=SEED, n_train_tasks=501)
    with pytest.raises(envs.EnvError, match="at most 250 test tasks; got 251"):
        envs.make_task_distribution("metaworld-ml10", seed=SEED, n_test_tasks=251)


def test_ml10_env_behaves_as_the_benchmarks_env(ml10) -> None:
    tasks, benchmark = ml10
    env = tasks.make_env(tasks.train_tasks[0])
    # pick-place (6 numbers), door-open (3), then the held-out lever-pull (3), shelf-place (6).
    cases = [
        (benchmark.train_classes, tasks.train_tasks, benchmark.train_tasks, 2 * 50 + 4),
        (benchmark.train_classes, tasks.train_tasks, benchmark.train_tasks, 3 * 50 + 1),
        (benchmark.test_classes, tasks.test_tasks, benchmark.test_tasks, 4 * 50 + 9),
        (benchmark.test_classes, tasks.test_tasks, benchmark.test_tasks, 2 * 50),
    ]
    for classes, ours, theirs, index in cases:
        benchmark_env = classes[theirs[index].env_name]()
        _assert_same_episode_start(env, ours[index], benchmark_env, theirs[index])
        assert env.env_name == theirs[index].env_name
        benchmark_env.close()
    env.close()
