"""Per-task buffers: shapes, uniform sampling, ring overwrite, clearing, context layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pearl.buffers import MultiTaskBuffer, context_dim, context_reward_index, make_context


def _fill(buf: MultiTaskBuffer, task: int, start: int, n: int) -> None:
    """Transitions whose every field encodes (task, step) so samples can be traced back."""
    steps = np.arange(start, start + n, dtype=np.float32)
    obs = np.stack([np.full(n, task, np.float32), steps], axis=1)
    buf.add(task, obs, np.stack([steps, steps], 1), steps, obs + 0.5, np.zeros(n), sparse_rewards=-steps)


def test_sample_shapes_and_task_routing() -> None:
    buf = MultiTaskBuffer(n_tasks=3, capacity=50, obs_dim=2, action_dim=2)
    for task in range(3):
        _fill(buf, task, 0, 10 + task)
    rng = np.random.default_rng(0)
    ids = np.array([2, 0, 2, 1])
    batch = buf.sample(ids, 7, rng)
    assert batch.observations.shape == (4, 7, 2) and batch.rewards.shape == (4, 7, 1)
    assert batch.observations.dtype == torch.float32
    # every row comes from its own task, and only from stored steps
    assert torch.equal(batch.observations[..., 0], torch.tensor(ids, dtype=torch.float32)[:, None].expand(4, 7))
    for row, task in enumerate(ids):
        assert (batch.rewards[row] < 10 + task).all()
    assert torch.equal(batch.sparse_rewards, -batch.rewards)


def test_sampling_is_uniform_over_stored_transitions() -> None:
    buf = MultiTaskBuffer(n_tasks=1, capacity=100, obs_dim=2, action_dim=2)
    _fill(buf, 0, 0, 10)
    counts = np.bincount(buf.sample(np.zeros(1, int), 20000, np.random.default_rng(1)).rewards.numpy().ravel().astype(int),
                         minlength=10)
    assert counts.shape == (10,)
    assert np.all(np.abs(counts / 20000 - 0.1) < 0.015)


def test_ring_buffer_keeps_the_newest() -> None:
    buf = MultiTaskBuffer(n_tasks=1, capacity=8, obs_dim=2, action_dim=2)
    _fill(buf, 0, 0, 5)
    _fill(buf, 0, 5, 6)  # 11 written, capacity 8: steps 3..10 remain
    assert buf.sizes[0] == 8
    seen = set(buf.sample(np.zeros(1, int), 2000, np.random.default_rng(0)).rewards.numpy().ravel().tolist())
    assert seen == set(range(3, 11))
    ordered = buf.all_of(0).rewards[0, :, 0].tolist()
    assert ordered == list(range(3, 11))


def test_sequential_windows_are_time_ordered() -> None:
    buf = MultiTaskBuffer(n_tasks=2, capacity=16, obs_dim=2, action_dim=2)
    _fill(buf, 0, 0, 20)  # wrapped
    _fill(buf, 1, 0, 3)  # fewer than the window
    batch = buf.sample(np.array([0, 1]), 5, np.random.default_rng(0), sequential=True)
    steps = batch.rewards[0, :, 0].numpy()
    assert np.all(np.diff(steps) == 1) and steps.min() >= 4
    assert batch.rewards[1, :, 0].tolist() == [0, 1, 2, 0, 1]


def test_clear_really_forgets() -> None:
    buf = MultiTaskBuffer(n_tasks=2, capacity=20, obs_dim=2, action_dim=2)
    _fill(buf, 0, 0, 10)
    _fill(buf, 1, 100, 10)
    buf.clear(0)
    assert buf.sizes.tolist() == [0, 10]
    assert not buf.data["rewards"][0].any() and not buf.data["observations"][0].any()
    with pytest.raises(ValueError, match="empty"):
        buf.sample(np.array([0]), 4, np.random.default_rng(0))
    _fill(buf, 0, 50, 3)  # new data after clearing: only it is seen
    seen = set(buf.sample(np.array([0]), 500, np.random.default_rng(0)).rewards.numpy().ravel().tolist())
    assert seen == {50, 51, 52}
    assert buf.sample(np.array([1]), 50, np.random.default_rng(0)).rewards.min() >= 100


def test_state_dict_round_trip() -> None:
    buf = MultiTaskBuffer(n_tasks=2, capacity=20, obs_dim=2, action_dim=2)
    _fill(buf, 1, 0, 7)
    other = MultiTaskBuffer(n_tasks=2, capacity=20, obs_dim=2, action_dim=2)
    other.load_state_dict(buf.state_dict())
    for key in buf.data:
        assert np.array_equal(buf.data[key], other.data[key])
    assert other.sizes.tolist() == [0, 7]


@pytest.mark.parametrize("use_next_obs", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_context_layout(use_next_obs: bool, sparse: bool) -> None:
    buf = MultiTaskBuffer(n_tasks=1, capacity=20, obs_dim=2, action_dim=2)
    _fill(buf, 0, 1, 5)
    batch = buf.sample(np.zeros(3, int), 4, np.random.default_rng(0))
    ctx = make_context(batch, use_next_obs=use_next_obs, sparse_rewards=sparse)
    assert ctx.shape == (3, 4, context_dim(2, 2, use_next_obs=use_next_obs))
    expected_reward = batch.sparse_rewards if sparse else batch.rewards
    assert torch.equal(ctx[..., 4:5], expected_reward)
    assert context_reward_index(2, 2) == 4
    if use_next_obs:
        assert torch.equal(ctx[..., 5:], batch.next_observations)


def test_memory_follows_the_data_not_the_capacity() -> None:
    buf = MultiTaskBuffer(n_tasks=80, capacity=1_000_000, obs_dim=2, action_dim=2)
    for task in range(80):
        _fill(buf, task, 0, 200)
    allocated = sum(a.nbytes for a in buf.data.values())
    assert allocated < 80 * 1024 * 9 * 4  # rows grew to about the 200 stored, far from a million
    assert buf.all_of(7).rewards[0, :, 0].tolist() == list(range(200))


def test_holds_nonzero_sees_only_stored_transitions() -> None:
    buf = MultiTaskBuffer(n_tasks=4, capacity=8, obs_dim=1, action_dim=1)
    zeros, obs, act = np.zeros(6), np.zeros((6, 1)), np.zeros((6, 1))
    one_hit = zeros.copy()
    one_hit[4] = 0.7
    buf.add(0, obs, act, zeros, obs, zeros, sparse_rewards=zeros)
    buf.add(1, obs, act, zeros, obs, zeros, sparse_rewards=one_hit)
    buf.add(2, obs, act, zeros, obs, zeros, sparse_rewards=one_hit[::-1])  # the hit at step 1 ...
    buf.add(2, obs, act, zeros, obs, zeros, sparse_rewards=zeros)  # ... is overwritten by the ring
    buf.add(3, obs, act, zeros, obs, zeros, sparse_rewards=one_hit)
    buf.clear(3)
    buf.add(3, obs[:2], act[:2], zeros[:2], obs[:2], zeros[:2], sparse_rewards=zeros[:2])
    assert buf.holds_nonzero("sparse_rewards").tolist() == [False, True, False, False]
    assert not buf.holds_nonzero("rewards").any()


def test_restore_task_puts_back_one_task_as_its_snapshot_was() -> None:
    buf = MultiTaskBuffer(n_tasks=2, capacity=8, obs_dim=1, action_dim=1)
    rows = lambda n, v: (np.full((n, 1), v), np.full((n, 1), v), np.full(n, v), np.full((n, 1), v), np.zeros(n))  # noqa: E731
    buf.add(0, *rows(3, 1.0))
    buf.add(1, *rows(2, 5.0))
    snapshot = buf.task_snapshot(0)
    buf.clear(0)
    buf.add(0, *rows(6, 2.0))  # more rows than the snapshot holds
    buf.add(1, *rows(1, 6.0))
    buf.restore_task(0, snapshot)
    assert buf.sizes.tolist() == [3, 3] and buf.heads.tolist() == [3, 3]
    assert buf.data["rewards"][0, :, 0].tolist() == [1.0] * 3 + [0.0] * (buf._rows - 3)  # empty slots zero again
    assert buf.data["rewards"][1, :3, 0].tolist() == [5.0, 5.0, 6.0]  # the other task untouched
