"""The decoder's grid posterior (pearl/decoder_posterior.py): closed forms, several modes, and the meta-test
drawing its posterior episodes' z from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pearl.config import ConfigError, config_from_dict
from pearl.decoder_posterior import DecoderPosterior, GridPosterior
from pearl.trainer import Trainer

S = 3  # (s, a) columns of a context row; the reward is column S


class _Predicts(nn.Module):
    """r̂(s, a, z) = f(z), whatever (s, a): rows [*, S + 1] -> [*, 1]."""

    def __init__(self, f) -> None:
        super().__init__()
        self.f = f

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.f(rows[..., S:])


def _context(rewards: list[list[float]]) -> torch.Tensor:
    """``[T, N, S + 1]`` rows with random (s, a) and the given rewards."""
    r = torch.tensor(rewards).unsqueeze(-1)
    return torch.cat([torch.randn(*r.shape[:2], S), r], dim=-1)


def test_grid_posterior_moments_and_samples_match_its_cell_probabilities() -> None:
    torch.manual_seed(0)
    grid = torch.linspace(-1.0, 1.0, 5)  # step 0.5
    logits = torch.log(torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0, 0.0]]) + 1e-30)
    q = GridPosterior(grid, logits)
    mean = torch.tensor([0.1 * -0.5 + 0.3 * 0.5 + 0.4 * 1.0, -1.0])
    assert q.mean[:, 0] == pytest.approx(mean.tolist(), abs=1e-6)
    spread = torch.tensor([sum(p * (g - mean[0]) ** 2 for p, g in zip([0, 0.1, 0.2, 0.3, 0.4], grid.tolist())), 0.0])
    assert q.variance[:, 0] == pytest.approx((spread + 0.25 / 12).tolist(), abs=1e-6)
    z = q.sample(torch.Size([20000]))
    assert z.shape == (20000, 2, 1) and q.sample().shape == (2, 1)
    cells = torch.round((z[..., 0] + 1.0) / 0.5).long()  # the cell of each draw
    assert torch.all((z[..., 0] - grid[cells]).abs() <= 0.25)  # inside its cell
    freq = torch.stack([torch.bincount(cells[:, t], minlength=5) / 20000.0 for t in range(2)])
    np.testing.assert_allclose(freq[0].numpy(), [0.0, 0.1, 0.2, 0.3, 0.4], atol=0.015)
    assert freq[1, 0] == 1.0
    assert z[:, 0, 0].mean() == pytest.approx(float(mean[0]), abs=0.01)  # draws are uniform inside a cell


def test_linear_gaussian_decoder_gives_the_closed_form_posterior() -> None:
    """r̂ = z and N rewards c: p(z|c) ∝ N(z; 0, 1) exp(-w N (z - c)²) = N(2wNc / (1 + 2wN), 1 / (1 + 2wN))."""
    torch.manual_seed(0)
    w, c = 0.5, 0.8
    q = DecoderPosterior(_Predicts(lambda z: z), reward_col=S, weight=w, grid_size=801, max_rows=7)
    context = _context([[c] * 3, [-c] * 3])  # two tasks side by side; max_rows 7 splits the grid in passes
    for n in (3, 1):
        post = q(context[:, :n])
        precision = 1 + 2 * w * n
        assert post.mean[:, 0].tolist() == pytest.approx([2 * w * n * c / precision, -2 * w * n * c / precision],
                                                         abs=1e-3)
        assert post.variance[:, 0].tolist() == pytest.approx([1 / precision] * 2, rel=1e-3)
    empty = q(context[:, :0])  # no context: the prior (cut at 4 standard deviations)
    assert empty.mean.abs().max() < 1e-4 and empty.variance[:, 0].tolist() == pytest.approx([1.0, 1.0], abs=2e-3)

    fresh = DecoderPosterior(_Predicts(lambda z: z), reward_col=S, weight=w, grid_size=801)
    q(context)
    grown = torch.cat([context, _context([[0.1] * 2, [0.3] * 2])], dim=1)  # extends the last call's context:
    assert torch.allclose(q(grown).probs, fresh(grown).probs, atol=1e-6)  # its 3 transitions' sum is reused
    changed = grown.clone()
    changed[0, 0, S] = 5.0  # an earlier reward differs: nothing is reused
    assert torch.allclose(q(changed).probs, fresh(changed).probs, atol=1e-6)


def test_the_posterior_keeps_both_modes_and_learns_from_no_reward() -> None:
    """r̂ = z² - 0.5 for reward 0.5 says z = ±1: both modes are drawn. Rewards 0 (r̂ = 1 at z = ±1.2, 0 elsewhere)
    rule out the neighbourhoods of ±1.2, which a product of Gaussian factors ignoring them could not."""
    torch.manual_seed(0)
    bimodal = DecoderPosterior(_Predicts(lambda z: z.square() - 0.5), reward_col=S, weight=20.0)
    z = bimodal(_context([[0.5] * 4])).sample(torch.Size([4000]))[:, 0, 0]
    assert 0.4 < (z > 0).float().mean() < 0.6
    assert (z.abs() - 1).abs().max() < 0.2  # near ±1 only

    bump = lambda z: ((z.abs() - 1.2).abs() < 0.3).float()  # noqa: E731  a reward near ±1.2
    ruled_out = DecoderPosterior(_Predicts(bump), reward_col=S, weight=20.0)(_context([[0.0] * 2]))
    z = ruled_out.sample(torch.Size([4000]))[:, 0, 0]
    assert ((z.abs() - 1.2).abs() < 0.25).float().mean() < 0.01  # the prior puts 0.2 there
    assert float(ruled_out.variance) < 1.0  # the tails went with them


def test_meta_test_posterior_episodes_draw_from_the_decoder_posterior(tiny_config_dict: dict) -> None:
    """eval.posterior: decoder: the prior episodes are untouched; each posterior episode's z is a draw of the
    decoder's grid posterior of the context so far (here a decoder that makes it a point mass)."""
    tiny_config_dict["encoder"]["latent_dim"] = 1
    tiny_config_dict["algo"]["reward_decoder_weight"] = 1.0
    tiny_config_dict["eval"].update(num_episodes=3, num_exp_traj_eval=1, posterior="decoder")
    trainer = Trainer(config_from_dict(tiny_config_dict))
    linears = [layer for layer in trainer.learner.reward_decoder if hasattr(layer, "weight")]
    with torch.no_grad():  # r̂ = relu(100 z), through the first unit of every layer
        for layer in linears:
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[0, 0] = 1.0
        linears[0].weight[0, 0], linears[0].weight[0, -1] = 0.0, 100.0
    trainer.agent.posterior = lambda context: pytest.fail("q(z|c) was asked")  # type: ignore[method-assign]
    zs: list[torch.Tensor] = []
    original = trainer.collector.rollout

    def rollout(agent, tasks, n_steps, z_source, **kwargs):
        z = z_source()
        zs.append(z)
        return original(agent, tasks, n_steps, lambda: z, **kwargs)

    trainer.collector.rollout = rollout
    trainer.evaluate(trainer.test_tasks)
    assert len(zs) == 3 and (zs[0] > 0.1).any()  # the prior episode
    # the point robot's rewards (-distance, below 0) are best explained by relu(100 z) = 0: the posterior is
    # the prior cut to z <= 0 (up to half a grid cell of 8 / 127)
    posterior_z = torch.cat(zs[1:])
    assert torch.all(posterior_z < 0.5 * 8 / 127) and posterior_z.std() > 0.1


@pytest.mark.parametrize("change, message", [({"algo": {"reward_decoder_weight": 0.0}}, "reward_decoder_weight > 0"),
                                             ({"encoder": {"latent_dim": 2}}, "latent_dim 1")])
def test_decoder_posterior_needs_a_decoder_and_one_latent_dim(tiny_config_dict: dict, change: dict,
                                                              message: str) -> None:
    tiny_config_dict["encoder"]["latent_dim"] = 1
    tiny_config_dict["algo"]["reward_decoder_weight"] = 1.0
    tiny_config_dict["eval"]["posterior"] = "decoder"
    for section, values in change.items():
        tiny_config_dict[section].update(values)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(tiny_config_dict)


def test_pearl_evaluate_logs_decoder_posterior_meta_tests_apart(tiny_config_dict: dict) -> None:
    from pearl.runs import evaluation_prefix

    tiny_config_dict["encoder"]["latent_dim"] = 1
    tiny_config_dict["algo"]["reward_decoder_weight"] = 1.0
    assert evaluation_prefix(config_from_dict(tiny_config_dict), "test") == "evaluate/test"
    tiny_config_dict["eval"].update(posterior="decoder", deterministic_episodes="last")
    assert evaluation_prefix(config_from_dict(tiny_config_dict), "train") == "evaluate/train_sampled_decoder"


def test_latent_inspection_rollouts_follow_the_decoder_posterior_too(tiny_config_dict: dict) -> None:
    """pearl embed's rollouts are the meta-test's episodes: with eval.posterior: decoder their z is not q(z|c)'s."""
    from pearl import latents

    tiny_config_dict["encoder"]["latent_dim"] = 1
    tiny_config_dict["algo"]["reward_decoder_weight"] = 1.0
    tiny_config_dict["eval"].update(num_episodes=3, num_exp_traj_eval=1, posterior="decoder")
    trainer = Trainer(config_from_dict(tiny_config_dict))
    trainer.agent.posterior = lambda context: pytest.fail("q(z|c) was asked")  # type: ignore[method-assign]
    contexts = latents.gather_contexts(trainer, splits=("test",))
    assert all(len(c) == 3 * trainer.max_path_length for c in contexts.contexts)
