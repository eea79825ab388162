"""The gradient step: what trains the encoder, target averaging, variants, collection semantics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import encoders
import envs
from pearl.agent import PEARLAgent
from pearl.buffers import TransitionBatch, context_dim
from pearl.collect import VectorCollector
from pearl.config import AlgoConfig
from pearl.sac import SACLearner, make_learner, sliced_w2_to_standard_normal

O, A, L, T, B, N = 3, 2, 4, 5, 7, 6


def _learner(variant: str = "pearl", **overrides) -> SACLearner:
    torch.manual_seed(0)
    enc = encoders.build_encoder("mlp", context_dim=context_dim(O, A, use_next_obs=False), latent_dim=L,
                                 kwargs={"hidden_sizes": [16]})
    agent = PEARLAgent(enc, obs_dim=O, action_dim=A, hidden_sizes=[16, 16])
    cfg = AlgoConfig(variant=variant, hidden_sizes=[16, 16], **overrides)
    return make_learner(agent, obs_dim=O, action_dim=A, cfg=cfg)


def _batch(seed: int = 0) -> tuple[TransitionBatch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    batch = TransitionBatch(r(T, B, O), torch.rand(T, B, A, generator=g) * 2 - 1, r(T, B, 1), r(T, B, O),
                            torch.zeros(T, B, 1), r(T, B, 1))
    return batch, r(T, N, O + A + 1)


def _encoder_grads_at_context_step(learner: SACLearner) -> list[torch.Tensor]:
    """Capture the encoder's gradients at the moment its optimiser steps."""
    seen: list[torch.Tensor] = []
    opt = learner.optimizers["context"]
    original = opt.step

    def step(*args, **kwargs):
        seen.extend(p.grad.clone() for p in learner.agent.encoder.parameters())
        return original(*args, **kwargs)

    opt.step = step
    return seen


@pytest.mark.parametrize("variant", ["pearl", "modern"])
def test_encoder_is_trained_by_critic_and_kl_only(variant: str) -> None:
    learner = _learner(variant, kl_lambda=0.3)
    reference = copy.deepcopy(learner)
    batch, context = _batch()
    seen = _encoder_grads_at_context_step(learner)

    torch.manual_seed(123)
    learner.update(batch, context)

    # Reference: the gradient of critic loss + KL alone, with the same z (same seed, same nets).
    torch.manual_seed(123)
    ref, cfg = reference, reference.cfg
    posterior = ref.agent.posterior(context)
    z = posterior.rsample()
    flat = lambda x: x.reshape(T * B, -1)  # noqa: E731
    z_rows = flat(z[:, None].expand(T, B, L))
    with torch.no_grad():
        if variant == "pearl":
            next_v = ref.target_vf(torch.cat([flat(batch.next_observations), z_rows], -1))
        else:
            nxt = ref.agent.policy_forward(flat(batch.next_observations), z_rows)
            next_q = ref.target_qf(torch.cat([flat(batch.next_observations), nxt.action, z_rows], -1)).min(0).values
            next_v = next_q - ref.log_alpha.exp() * nxt.log_prob
        target = cfg.reward_scale * flat(batch.rewards) + cfg.discount * next_v
    q = ref.qf(torch.cat([flat(batch.observations), flat(batch.actions), z_rows], -1))
    loss = ((q - target) ** 2).mean(dim=(1, 2)).sum() + cfg.kl_lambda * ref.agent.encoder.kl_to_prior(posterior).sum()
    expected = torch.autograd.grad(loss, list(ref.agent.encoder.parameters()))

    assert len(seen) == len(expected)
    for got, want in zip(seen, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # ... and nothing reached the encoder after its step (the actor's loss would have added to .grad)
    for got, param in zip(seen, learner.agent.encoder.parameters()):
        torch.testing.assert_close(param.grad, got)
    assert any(g.abs().sum() > 0 for g in seen)


@pytest.mark.parametrize("variant", ["pearl", "modern"])
def test_rl_context_gives_critic_and_actor_their_z(variant: str) -> None:
    """``rl_context: uniform``: the critic and the actor act on z ~ q(z|c_rl), detached; the encoder's
    gradient is the KL's and the decoder's on the training context alone, whatever c_rl holds."""
    learner = _learner(variant, kl_lambda=0.3, reward_decoder_weight=2.0, critic_trains_encoder=False,
                       context_window="episodes", rl_context="uniform")
    reference = copy.deepcopy(learner)
    batch, context = _batch()
    rl_context = _batch(seed=1)[1] * 3.0
    seen = _encoder_grads_at_context_step(learner)
    actor_z: list[torch.Tensor] = []
    actor_step = learner.actor_step
    learner.actor_step = lambda obs, z_bar: actor_z.append(z_bar) or actor_step(obs, z_bar)

    torch.manual_seed(123)
    out = learner.update(batch, context, rl_context)

    torch.manual_seed(123)
    ref = reference
    posterior = ref.agent.posterior(context)
    z = posterior.rsample()
    z_rl = ref.agent.posterior(rl_context).sample()
    assert not torch.allclose(z, z_rl)
    flat = lambda x: x.reshape(T * B, -1)  # noqa: E731
    rows = flat(z_rl[:, None].expand(T, B, L))
    torch.testing.assert_close(actor_z[0], rows)
    with torch.no_grad():
        target = ref.cfg.reward_scale * flat(batch.rewards) + ref.cfg.discount * ref.next_value(
            flat(batch.next_observations), rows)
    q = ref.qf(torch.cat([flat(batch.observations), flat(batch.actions), rows], -1))
    torch.testing.assert_close(out["loss_critic"], ((q - target) ** 2).mean(dim=(1, 2)).sum())
    inputs = torch.cat([context[..., : O + A], z[:, None].expand(T, N, L)], -1)
    loss = 2.0 * ((ref.reward_decoder(inputs) - context[..., O + A :]) ** 2).sum()
    loss = loss + 0.3 * ref.agent.encoder.kl_to_prior(posterior).sum()
    expected = torch.autograd.grad(loss, list(ref.agent.encoder.parameters()))
    for got, want in zip(seen, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_reward_free_kl_weighs_only_contexts_without_a_reward() -> None:
    learner = _learner(kl_lambda=0.5, reward_free_kl=3.0)
    batch, context = _batch()
    context[[1, 3], :, O + A] = 0.0  # tasks 1 and 3 saw no reward
    context[4, 2:, O + A] = 0.0  # task 4 saw one
    kl = learner.agent.encoder.kl_to_prior(learner.agent.posterior(context)).detach()
    out = learner.update(batch, context)
    torch.testing.assert_close(out["loss_kl"], 0.5 * kl.sum() + 3.0 * (kl[1] + kl[3]))


def test_decode_contexts_rewarded_decodes_only_contexts_with_a_reward() -> None:
    learner = _learner(reward_decoder_weight=2.0, decode_contexts="rewarded")
    reference = copy.deepcopy(learner)
    batch, context = _batch()
    context[[1, 3], :, O + A] = 0.0  # tasks 1 and 3 saw no reward
    context[4, 2:, O + A] = 0.0  # task 4 saw one
    torch.manual_seed(5)
    out = learner.update(batch, context)
    torch.manual_seed(5)
    z = reference.agent.posterior(context).rsample()  # the update's first draw
    inputs = torch.cat([context[..., : O + A], z[:, None].expand(T, N, L)], -1)
    per_task = ((reference.reward_decoder(inputs) - context[..., O + A :]) ** 2).sum(dim=(1, 2)).detach()
    torch.testing.assert_close(out["loss_decoder"], 2.0 * (per_task.sum() - per_task[1] - per_task[3]))
    assert per_task[1] > 0 and per_task[3] > 0  # so the test tells the two apart


def test_sliced_w2_to_standard_normal_in_closed_form() -> None:
    n = 8
    q = torch.special.ndtri((torch.arange(n) + 0.5) / n)
    shuffled = q[torch.randperm(n)][:, None]
    torch.testing.assert_close(sliced_w2_to_standard_normal(shuffled, 16), torch.tensor(0.0))  # its own quantiles
    torch.testing.assert_close(sliced_w2_to_standard_normal(shuffled + 1.5, 16), torch.tensor(2.25))  # a shift
    torch.testing.assert_close(sliced_w2_to_standard_normal(2 * shuffled, 16), q.square().mean())  # a scale
    # every slice of a point mass at the origin is 0, whatever the direction
    torch.testing.assert_close(sliced_w2_to_standard_normal(torch.zeros(n, 3), 5), q.square().mean())
    assert sliced_w2_to_standard_normal(torch.ones(1, 3), 5) == 0  # one sample says nothing about the aggregate
    assert sliced_w2_to_standard_normal(torch.zeros(n, 3, dtype=torch.float64), 5).dtype == torch.float64


def test_prior_match_weighs_the_z_of_contexts_that_hold_a_reward() -> None:
    learner = _learner(prior_match_weight=3.0, prior_match_projections=7)
    reference = copy.deepcopy(learner)
    batch, context = _batch()
    context[[1, 3], :, O + A] = 0.0  # tasks 1 and 3 saw no reward
    seen = _encoder_grads_at_context_step(learner)
    torch.manual_seed(5)
    out = learner.update(batch, context)
    torch.manual_seed(5)
    z = reference.agent.posterior(context).rsample()  # the update's first draw; its projections the next
    expected = 3.0 * sliced_w2_to_standard_normal(z[[0, 2, 4]], 7)
    torch.testing.assert_close(out["loss_prior_match"], expected.detach())
    assert expected > 0 and sum(float(g.abs().sum()) for g in seen) > 0


def test_both_critic_and_kl_reach_the_encoder() -> None:
    for kwargs in ({"kl_lambda": 0.0}, {"kl_lambda": 1.0, "reward_scale": 1e-9}):
        learner = _learner(**kwargs)
        seen = _encoder_grads_at_context_step(learner)
        learner.update(*_batch())
        assert sum(float(g.abs().sum()) for g in seen) > 0, kwargs


@pytest.mark.parametrize("critic_trains_encoder", [False, True])
def test_reward_decoder_trains_the_encoder_with_the_kl(critic_trains_encoder: bool) -> None:
    """With a reward decoder (a VAE on the context) the encoder's gradient is that of KL + decoder loss (+ the
    critic's when it trains the encoder); the decoder steps with the encoder's optimiser."""
    learner = _learner(kl_lambda=0.3, reward_decoder_weight=7.0, critic_trains_encoder=critic_trains_encoder)
    reference = copy.deepcopy(learner)
    batch, context = _batch()
    seen = _encoder_grads_at_context_step(learner)
    decoder_before = [p.clone() for p in learner.reward_decoder.parameters()]

    torch.manual_seed(123)
    out = learner.update(batch, context)

    torch.manual_seed(123)
    ref = reference
    posterior = ref.agent.posterior(context)
    z = posterior.rsample()
    flat = lambda x: x.reshape(T * B, -1)  # noqa: E731
    z_rows = flat(z[:, None].expand(T, B, L))
    # the context's rows are (s, a, r): its rewards from its (s, a) and the task's z, summed
    inputs = torch.cat([context[..., : O + A], z[:, None].expand(T, N, L)], -1)
    loss_decoder = 7.0 * ((ref.reward_decoder(inputs) - context[..., O + A :]) ** 2).sum()
    loss = loss_decoder + 0.3 * ref.agent.encoder.kl_to_prior(posterior).sum()
    if critic_trains_encoder:
        with torch.no_grad():
            target = ref.cfg.reward_scale * flat(batch.rewards) + ref.cfg.discount * ref.target_vf(
                torch.cat([flat(batch.next_observations), z_rows], -1))
        q = ref.qf(torch.cat([flat(batch.observations), flat(batch.actions), z_rows], -1))
        loss = loss + ((q - target) ** 2).mean(dim=(1, 2)).sum()
    expected = torch.autograd.grad(loss, list(ref.agent.encoder.parameters()))

    for got, want in zip(seen, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["loss_decoder"], loss_decoder.detach())
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, learner.reward_decoder.parameters()))


def test_actor_loss_does_not_reach_the_encoder() -> None:
    learner = _learner()
    batch, context = _batch()
    z = learner.agent.posterior(context).rsample()  # not detached by the caller
    obs = batch.observations.reshape(T * B, O)
    pi = learner.agent.policy_forward(obs, z[:, None].expand(T, B, L).reshape(T * B, L))
    (pi.log_prob.mean() - pi.action.sum()).backward()
    assert all(p.grad is None for p in learner.agent.encoder.parameters())
    assert any(p.grad is not None for p in learner.agent.policy.parameters())


@pytest.mark.parametrize("variant, target, source", [("pearl", "target_vf", "vf"), ("modern", "target_qf", "qf")])
def test_target_networks_move_by_exactly_tau(variant: str, target: str, source: str) -> None:
    tau = 0.25
    learner = _learner(variant, soft_target_tau=tau)
    # make targets differ from their sources so the average is visible
    with torch.no_grad():
        for p in getattr(learner, target).parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in getattr(learner, target).parameters()]
    learner.update(*_batch())
    for old, new, src in zip(before, getattr(learner, target).parameters(), getattr(learner, source).parameters()):
        torch.testing.assert_close(new, (1 - tau) * old + tau * src, rtol=1e-6, atol=1e-7)
        assert not torch.equal(new, old)


def test_update_reports_finite_named_losses() -> None:
    for variant, own in (("pearl", "loss_value"), ("modern", "loss_alpha")):
        out = _learner(variant).update(*_batch())
        for key in ("loss_critic", "loss_kl", "kl", "loss_policy", own):
            assert key in out and torch.isfinite(out[key]), (variant, key)


def test_modern_variant_tunes_alpha() -> None:
    learner = _learner("modern", alpha_lr=0.1)
    before = learner.log_alpha.item()
    learner.update(*_batch())
    assert learner.log_alpha.item() != before


def test_terminal_stops_bootstrap() -> None:
    """With reward_scale 1 and a critic fitted exactly, only non-terminal rows see γ·V(s')."""
    learner = _learner(reward_scale=1.0, discount=0.9)
    batch, context = _batch()
    terminals = torch.zeros(T, B, 1)
    terminals[:, ::2] = 1.0
    batch = batch._replace(terminals=terminals)
    with torch.no_grad():  # V_targ ≡ 10 everywhere: zero weights, bias 10
        for p in learner.target_vf.parameters():
            p.zero_()
        learner.target_vf[-1].bias.fill_(10.0)
    captured = {}
    original = learner.qf.forward

    def spy(x):
        out = original(x)
        captured.setdefault("q", out.detach())
        return out

    learner.qf.forward = spy
    out = learner.update(batch, context)
    target = batch.rewards.reshape(T * B, 1) + (1 - terminals.reshape(T * B, 1)) * 0.9 * 10.0
    expected = ((captured["q"] - target) ** 2).mean(dim=(1, 2)).sum()
    torch.testing.assert_close(out["loss_critic"], expected)


def test_time_limit_is_truncation_not_termination() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0, n_train_tasks=3, n_test_tasks=2, start="origin")
    collector = VectorCollector(tasks.make_env, n_slots=3, max_path_length=5, seed=0, device=torch.device("cpu"))
    ro = collector.rollout(None, tasks.train_tasks, 12, None)
    assert ro.terminals.sum() == 0  # episodes ended by the cap only
    assert ro.episode_ids[0].tolist() == [0] * 5 + [1] * 5 + [2] * 2
    # a new episode restarts at the origin
    assert np.allclose(ro.observations[:, 5], 0.0) and np.allclose(ro.observations[:, 0], 0.0)


def test_collector_uses_one_z_per_episode_and_slot() -> None:
    tasks = envs.make_task_distribution("point-robot", seed=0, n_train_tasks=2, n_test_tasks=2)
    collector = VectorCollector(tasks.make_env, n_slots=2, max_path_length=4, seed=0, device=torch.device("cpu"))
    calls = []

    def z_source() -> torch.Tensor:
        calls.append(torch.randn(2, L))
        return calls[-1]

    # obs_dim of the point robot is 2, the learner's is 3: build a matching agent
    enc = encoders.build_encoder("mlp", context_dim=context_dim(2, 2, use_next_obs=False), latent_dim=L,
                                 kwargs={"hidden_sizes": [8]})
    agent = PEARLAgent(enc, obs_dim=2, action_dim=2, hidden_sizes=[8])
    collector.rollout(agent, tasks.train_tasks, 8, z_source)
    assert len(calls) == 2  # at t=0 and at the episode boundary (both slots start together)
