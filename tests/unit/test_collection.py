"""Meta-training collection (Algorithm 1): which z each phase's episodes use, and where data goes."""

from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from pearl.config import config_from_dict
from pearl.trainer import Trainer

POSTERIOR_LOC = 100.0  # a stand-in q(z|c) far from the prior, so that each z tells its source


@pytest.mark.parametrize(
    ("start", "posterior_phase", "extra_phase"),
    [("posterior", ["q", "q", "q"], ["q", "q"]),  # the paper's Algorithm 1
     ("prior", ["prior", "q", "q"], ["prior", "q"])],  # the official collect_data: each phase starts from the prior
)
def test_posterior_phase_start(tiny_config_dict: dict, start: str, posterior_phase: list, extra_phase: list) -> None:
    # one task visit, 20-step episodes: 1 prior-phase episode, then 3 posterior and 2 extra RL-only posterior episodes
    tiny_config_dict["train"].update(num_tasks_sample=1, num_steps_prior=20, num_steps_posterior=60,
                                     num_extra_rl_steps_posterior=40, posterior_phase_start=start)
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    latent = trainer.cfg.encoder.latent_dim

    def stand_in(task_ids: np.ndarray) -> torch.distributions.Distribution:
        return dist.Normal(torch.full((len(task_ids), latent), POSTERIOR_LOC), 1e-3).to_event(1)

    trainer._posterior_from_buffer = stand_in
    sources: list[str] = []
    original = trainer.collector.rollout

    def rollout(agent, tasks, n_steps, z_source, **kwargs):
        z = z_source()
        sources.append("q" if torch.all(z > POSTERIOR_LOC / 2) else "prior")
        return original(agent, tasks, n_steps, lambda: z, **kwargs)

    trainer.collector.rollout = rollout
    context_before = trainer.enc_buffer.sizes.copy()
    ids = trainer.collect_iteration()
    assert sources == ["prior", *posterior_phase, *extra_phase]
    # the context buffer of a visited task holds the prior and posterior phases, not the extra RL steps
    visited = np.unique(ids)
    np.testing.assert_array_equal(trainer.enc_buffer.sizes[visited], 80)
    unvisited = np.setdiff1d(np.arange(trainer.n_train), visited)
    np.testing.assert_array_equal(trainer.enc_buffer.sizes[unvisited], context_before[unvisited])


def test_sparse_family_feeds_the_context_its_sparse_reward_by_default(tiny_config_dict: dict) -> None:
    tiny_config_dict["env"]["name"] = "sparse-point-robot"
    cfg = config_from_dict(tiny_config_dict, "tiny")
    assert cfg.algo.sparse_rewards is None  # not set: the family decides
    trainer = Trainer(cfg)
    assert trainer.sparse_rewards
    trainer.collect_initial()
    ids = np.arange(trainer.n_train)
    rng = np.random.default_rng(0)
    batch = trainer.enc_buffer.sample(ids, 64, rng)
    context = trainer._context(ids)  # [T, N, (x, y, a_x, a_y, r)]
    rewards = context[..., 4]
    assert torch.all((rewards == 0) | (rewards > 0.8))  # 0 outside the goal radius, 1 - distance inside
    assert torch.all(batch.rewards < 0)  # the critic's reward stays dense: -distance
    assert torch.all(batch.sparse_rewards >= 0)


def test_a_visit_starts_from_a_cleared_context_and_keeps_extra_rl_steps_out_of_it(tiny_config_dict: dict) -> None:
    """Per visit: the context buffer is cleared, refilled by the prior and posterior phases only
    (their transitions, in order), and q(z|c) of the posterior phases reads nothing older; the RL
    buffer gets all three phases on top of what it had."""
    tiny_config_dict["train"].update(num_tasks_sample=1, num_steps_prior=20, num_steps_posterior=20,
                                     num_extra_rl_steps_posterior=20)
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    stale = 1e6  # marks every transition collected before the visit
    for task_id in range(trainer.n_train):
        trainer.enc_buffer.data["observations"][task_id, : trainer.enc_buffer.sizes[task_id]] = stale
    rl_before = {k: v.copy() for k, v in trainer.rl_buffer.state_dict().items()}
    contexts: list[torch.Tensor] = []
    posterior = trainer.agent.posterior

    def recording_posterior(context: torch.Tensor) -> torch.distributions.Distribution:
        contexts.append(context.clone())
        return posterior(context)

    trainer.agent.posterior = recording_posterior
    phases: list[np.ndarray] = []  # observations of each phase's rollouts
    rollout = trainer.collector.rollout

    def recording(*args, **kwargs):
        ro = rollout(*args, **kwargs)
        phases.append(ro.observations[0])
        return ro

    trainer.collector.rollout = recording
    (task,) = trainer.collect_iteration()
    assert len(phases) == 3 and contexts  # prior, posterior, extra; q(z|c) asked for the last two
    assert all((c[..., :2] != stale).all() for c in contexts)
    stored = trainer.enc_buffer.all_of(int(task)).observations[0].numpy()
    np.testing.assert_array_equal(stored, np.concatenate(phases[:2]))  # prior + posterior, not extra
    rl = trainer.rl_buffer
    np.testing.assert_array_equal(rl.sizes - rl_before["sizes"], np.eye(trainer.n_train, dtype=int)[task] * 60)
    newest = rl.all_of(int(task)).observations[0].numpy()[-60:]
    np.testing.assert_array_equal(newest, np.concatenate(phases))
    np.testing.assert_array_equal(rl.all_of(int(task)).observations[0].numpy()[:-60],
                                  rl_before["data.observations"][task, : rl_before["sizes"][task]])


def test_episode_window_contexts_are_k_episode_lengths_of_consecutive_transitions(tiny_config_dict: dict) -> None:
    """``context_window: episodes``: k episodes' worth of consecutive transitions, k in
    1..embedding_batch_size // max_path_length, one k for the whole meta-batch, and every k drawn."""
    tiny_config_dict["algo"].update(context_window="episodes", embedding_batch_size=70)
    tiny_config_dict["train"]["num_initial_steps"] = 100
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    length = trainer.max_path_length
    buffer = trainer.enc_buffer
    assert np.all(buffer.sizes == 100) and 3 * length <= 70 < 4 * length
    buffer.data["observations"][:, :100, 0] = np.arange(100)  # stamp each transition with its time index
    ids = np.arange(trainer.n_train)
    counts = set()
    for _ in range(60):
        context = trainer._context(ids)  # [T, k * length, context dim]
        assert context.shape[1] % length == 0
        counts.add(context.shape[1] // length)
        stamps = context[..., 0]
        assert torch.all(stamps[:, 1:] - stamps[:, :-1] == 1)
    assert counts == {1, 2, 3}


def test_rl_context_is_a_second_uniform_draw(tiny_config_dict: dict) -> None:
    """``rl_context: uniform``: each gradient step hands the learner an episode-window context for the encoder
    and a separate embedding_batch_size-transition draw for the critic's and actor's z."""
    tiny_config_dict["algo"].update(context_window="episodes", embedding_batch_size=70, rl_context="uniform",
                                    reward_decoder_weight=1.0, critic_trains_encoder=False)
    tiny_config_dict["train"]["num_initial_steps"] = 100
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    shapes = []
    update = trainer.learner.update
    trainer.learner.update = lambda batch, context, rl_context: shapes.append(
        (context.shape, rl_context.shape)) or update(batch, context, rl_context)
    trainer.train_steps(4)
    length, meta_batch = trainer.max_path_length, trainer.cfg.algo.meta_batch
    assert len(shapes) == 4
    for context, rl in shapes:
        assert context[0] == rl[0] == meta_batch and context[1] % length == 0 and context[1] <= 70
        assert rl[1] == 70


def test_rewarded_rl_tasks_draw_meta_batches_from_tasks_whose_context_holds_a_reward(tiny_config_dict: dict) -> None:
    """``rl_tasks: rewarded``: every gradient step's tasks come from those whose context buffer holds a sparse
    reward; with none, from all."""
    tiny_config_dict["env"] = {"name": "sparse-point-robot", "n_train_tasks": 6, "n_test_tasks": 2, "max_path_length": 10}
    tiny_config_dict["algo"].update(context_window="episodes", rl_context="uniform", rl_tasks="rewarded",
                                    reward_decoder_weight=1.0, critic_trains_encoder=False)
    tiny_config_dict["train"]["num_initial_steps"] = 20
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    trainer.rl_buffer.data["observations"][:, :, 0] = np.arange(6)[:, None]  # stamp each task's RL rows
    drawn: list[set[int]] = []
    update = trainer.learner.update
    trainer.learner.update = lambda batch, context, rl_context: drawn.append(
        {int(t) for t in batch.observations[..., 0].unique()}) or update(batch, context, rl_context)

    def tasks_of(steps: int) -> set[int]:
        drawn.clear()
        trainer.train_steps(steps)
        return set().union(*drawn)

    trainer.enc_buffer.data["sparse_rewards"][:] = 0.0
    assert len(tasks_of(10)) > 2
    trainer.enc_buffer.data["sparse_rewards"][[1, 4], 3] = 0.5
    assert tasks_of(20) == {1, 4}


@pytest.mark.parametrize("keep", [False, True])
def test_keep_rewarded_context_keeps_a_rewarded_buffer_through_a_visit_without_reward(tiny_config_dict: dict,
                                                                                      keep: bool) -> None:
    """Task 0 held no reward, task 1 held one and its visit meets none, task 2 held one and meets one: with
    ``keep_rewarded_context`` only task 1 keeps its old context; without it every visit replaces the context."""
    tiny_config_dict["env"] = {"name": "sparse-point-robot", "n_train_tasks": 3, "n_test_tasks": 2, "max_path_length": 10}
    tiny_config_dict["train"].update(num_initial_steps=20, num_tasks_sample=3, keep_rewarded_context=keep)
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    buf = trainer.enc_buffer
    buf.data["sparse_rewards"][:] = 0.0
    buf.data["sparse_rewards"][[1, 2], 3] = 1.0
    buf.data["observations"][:, :, 0] = 42.0  # the old contexts

    def collect(task_ids: np.ndarray, n_steps: int, *, posterior: bool, to_context: bool) -> None:
        if to_context and n_steps > 0:
            for i in task_ids:
                hit = np.zeros(5)
                hit[2] = float(i == 2)
                obs = np.full((5, buf.data["observations"].shape[2]), 7.0)
                buf.add(int(i), obs, np.zeros((5, buf.data["actions"].shape[2])), np.zeros(5), obs, np.zeros(5),
                        sparse_rewards=hit)

    class Visits:  # every task visited once
        def integers(self, *args):
            return np.arange(3)

    trainer._collect, trainer.rng = collect, Visits()
    trainer.collect_iteration()
    old = [bool((buf.data["observations"][i, : buf.sizes[i], 0] == 42.0).all()) for i in range(3)]
    assert old == [False, keep, False]
    assert buf.sizes[1] == (20 if keep else 5)
    assert buf.holds_nonzero("sparse_rewards").tolist() == [False, keep, True]


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_explore_prior_scale_widens_the_prior_z_of_training_collection_only(tiny_config_dict: dict,
                                                                              scale: float) -> None:
    """train.explore_prior_scale: the prior-z episodes of training collection draw z ~ N(0, s² I); the
    posterior-z episodes keep q(z|c)."""
    tiny_config_dict["train"].update(num_tasks_sample=1, num_steps_prior=20, num_steps_posterior=20,
                                     num_extra_rl_steps_posterior=0, explore_prior_scale=scale)
    trainer = Trainer(config_from_dict(tiny_config_dict, "tiny"))
    trainer.collect_initial()
    latent = trainer.cfg.encoder.latent_dim
    trainer._posterior_from_buffer = lambda ids: dist.Normal(torch.full((len(ids), latent), POSTERIOR_LOC),
                                                             1e-3).to_event(1)
    drawn: list[torch.Tensor] = []
    original = trainer.collector.rollout

    def rollout(agent, tasks, n_steps, z_source, **kwargs):
        drawn.append(torch.cat([z_source() for _ in range(2000)]))  # many draws of this phase's source
        return original(agent, tasks, n_steps, z_source, **kwargs)

    trainer.collector.rollout = rollout
    trainer.collect_iteration()
    prior_z, posterior_z = drawn
    assert prior_z.mean().abs() < 0.1 * scale and abs(prior_z.std() / scale - 1.0) < 0.05
    assert torch.allclose(posterior_z, torch.tensor(POSTERIOR_LOC), atol=0.01)
