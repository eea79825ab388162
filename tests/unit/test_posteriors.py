"""The flow and mixture encoders and the posterior summaries that need no closed form (encoders/moments.py)."""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch
from torch import nn

from encoders import FlowEncoder, MixtureEncoder, MLPEncoder
from encoders.moments import draw, mixture_weights, monte_carlo_kl, n_modes, posterior_moments

C, L = 6, 3
HIDDEN = [16, 16]


def _mlp_and(other: nn.Module) -> MLPEncoder:
    """An MLP encoder whose factor network is copied into the first 2L outputs of ``other.net``."""
    torch.manual_seed(0)
    mlp = MLPEncoder(context_dim=C, latent_dim=L, hidden_sizes=HIDDEN)
    with torch.no_grad():
        for ours, theirs in zip(other.net, mlp.net):
            if isinstance(theirs, nn.Linear):
                ours.weight.zero_()
                ours.bias.zero_()
                ours.weight[: theirs.out_features, : theirs.in_features] = theirs.weight
                ours.bias[: theirs.out_features] = theirs.bias
    return mlp


def _closed_form_kl(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, var) || N(0, I)) per task, written out independently of the library. [T, L] -> [T]."""
    return 0.5 * (var + mu**2 - 1.0 - var.log()).sum(dim=-1)


# ----------------------------------------------------------------------------------------------
# mixture


def test_mixture_with_one_component_is_the_mlp_posterior() -> None:
    mixture = MixtureEncoder(context_dim=C, latent_dim=L, n_components=1, hidden_sizes=HIDDEN, kl_samples=4000,
                             min_std=0)
    mlp = _mlp_and(mixture)
    context, points = torch.randn(4, 9, C), torch.randn(5, 4, L)
    with torch.no_grad():
        ours, theirs = mixture(context), mlp(context)
        torch.testing.assert_close(ours.log_prob(points), theirs.log_prob(points), rtol=1e-4, atol=1e-4)
        mean, std = posterior_moments(ours)
        torch.testing.assert_close(mean, theirs.mean)
        torch.testing.assert_close(std, theirs.stddev)
        torch.manual_seed(1)
        kl = mixture.kl_to_prior(ours)
    exact = _closed_form_kl(theirs.mean, theirs.variance)
    torch.testing.assert_close(kl, exact, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(("pooling", "scale"), [("sum", 2.0), ("mean", 1.0)])
def test_mixture_components_are_products_and_weights_pool_the_logits(pooling: str, scale: float) -> None:
    """Seeing the same transitions twice halves each component's variance (above the floor); it doubles
    the logits when they are summed (evidence adds up) and leaves them as they were when averaged."""
    torch.manual_seed(0)
    encoder = MixtureEncoder(context_dim=C, latent_dim=L, n_components=3, hidden_sizes=HIDDEN, logit_pooling=pooling)
    floor = encoder.min_std**2
    context = torch.randn(2, 5, C)
    with torch.no_grad():
        locs, var, logits = encoder.components(context)
        locs2, var2, logits2 = encoder.components(torch.cat([context, context], dim=1))
        per_transition = encoder.net(context)[..., -3:]  # [2, 5, K]
    assert locs.shape == (2, 3, L) and var.shape == (2, 3, L) and logits.shape == (2, 3)
    torch.testing.assert_close(logits, per_transition.sum(1) if pooling == "sum" else per_transition.mean(1))
    torch.testing.assert_close(locs2, locs)
    torch.testing.assert_close(var2 - floor, (var - floor) / 2)
    torch.testing.assert_close(logits2, scale * logits)
    with pytest.raises(ValueError, match="logit_pooling"):
        MixtureEncoder(context_dim=C, latent_dim=L, logit_pooling="max")


def test_mixture_kl_and_samples_train_every_part() -> None:
    torch.manual_seed(0)
    encoder = MixtureEncoder(context_dim=C, latent_dim=L, n_components=2, hidden_sizes=[8])
    posterior = encoder(torch.randn(3, 4, C))
    (encoder.kl_to_prior(posterior).sum() + posterior.rsample().pow(2).sum()).backward()
    grad = encoder.net[-1].weight.grad  # rows: 2 components x (mu, var), then the 2 logits
    assert grad[: 4 * L].abs().sum() > 0 and grad[4 * L :].abs().sum() > 0


def test_mixture_moments_and_modes() -> None:
    locs = torch.tensor([[[-2.0, 0.0], [2.0, 0.0]], [[1.0, 1.0], [5.0, 5.0]]])  # [T=2, K=2, L=2]
    scales = torch.full_like(locs, 0.5)
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.99, 0.01]]))
    posterior = dist.MixtureOfDiagNormals(locs, scales, logits)
    mean, std = posterior_moments(posterior)
    torch.testing.assert_close(mean, torch.tensor([[0.0, 0.0], [1.04, 1.04]]))
    # law of total variance: 0.25 + sum_k w_k (mu_k - mean)^2
    torch.testing.assert_close(std**2, torch.tensor([[4.25, 0.25], [0.25 + 0.1584, 0.25 + 0.1584]]))
    assert n_modes(posterior).tolist() == [2, 1]
    torch.testing.assert_close(mixture_weights(posterior), logits.exp())
    torch.manual_seed(0)
    z = draw(posterior, 20000, reparameterized=False)  # [S, T, L]
    assert z.shape == (20000, 2, 2)
    torch.testing.assert_close(z.mean(0), mean, atol=0.05, rtol=0.0)
    torch.testing.assert_close(z.std(0), std, atol=0.05, rtol=0.0)
    assert n_modes(dist.Normal(torch.zeros(2, 2), 1.0).to_event(1)) is None


def test_monte_carlo_kl_matches_the_closed_form_for_a_gaussian() -> None:
    torch.manual_seed(0)
    mu, var = torch.randn(4, L), torch.rand(4, L) + 0.2
    gaussian = dist.Normal(mu, var.sqrt()).to_event(1)
    prior = dist.Normal(torch.zeros(4, L), 1.0).to_event(1)
    torch.testing.assert_close(monte_carlo_kl(gaussian, prior, 20000), _closed_form_kl(mu, var), rtol=0.03, atol=0.03)


@pytest.mark.parametrize("cls", [MixtureEncoder, FlowEncoder])
def test_latent_dim_one_is_refused_where_unsupported(cls: type) -> None:
    kwargs = {"layers": ["affine_coupling"]} if cls is FlowEncoder else {}
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        cls(context_dim=C, latent_dim=1, **kwargs)


# ----------------------------------------------------------------------------------------------
# flow


def _identity_flow() -> FlowEncoder:
    """A flow of affine couplings whose conditioning networks output zeros: f_h is the identity."""
    flow = FlowEncoder(context_dim=C, latent_dim=L, hidden_sizes=HIDDEN, embed_dim=4,
                       layers=["affine_coupling", "affine_coupling"], kl_samples=4000)
    with torch.no_grad():
        for layer in flow.flow:
            last = [m for m in layer.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
    return flow


def test_flow_with_identity_layers_is_the_mlp_posterior() -> None:
    flow = _identity_flow()
    mlp = _mlp_and(flow)
    context, points = torch.randn(4, 9, C), torch.randn(5, 4, L)
    with torch.no_grad():
        ours, theirs = flow(context), mlp(context)
        torch.testing.assert_close(ours.log_prob(points), theirs.log_prob(points), rtol=1e-4, atol=1e-4)
        torch.manual_seed(1)
        kl = flow.kl_to_prior(ours)
        mean, std = posterior_moments(ours, n_samples=20000)
    torch.testing.assert_close(kl, _closed_form_kl(theirs.mean, theirs.variance), rtol=0.05, atol=0.05)
    torch.testing.assert_close(mean, theirs.mean, atol=0.05 * float(theirs.stddev.max()), rtol=0.0)
    torch.testing.assert_close(std, theirs.stddev, rtol=0.05, atol=0.0)


def test_flow_log_prob_is_a_density_that_matches_its_samples() -> None:
    """Trained or not, the flow is a normalised density: E_q[1/q] over a box holding all its mass is
    the box's volume; and KL(q || q) by Monte Carlo is zero to rounding."""
    torch.manual_seed(0)
    flow = FlowEncoder(context_dim=C, latent_dim=2, hidden_sizes=HIDDEN, embed_dim=4, flow_hidden_sizes=[16])
    with torch.no_grad():
        posterior = flow(torch.randn(1, 3, C))
        grid = torch.linspace(-12.0, 12.0, 601)
        points = torch.cartesian_prod(grid, grid)[:, None, :]  # [G, 1, 2]
        mass = posterior.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
        assert abs(float(mass) - 1.0) < 0.02
        assert float(monte_carlo_kl(posterior, posterior, 64).abs().max()) < 1e-4


def test_flow_layers_are_validated() -> None:
    with pytest.raises(ValueError, match="layers must be"):
        FlowEncoder(context_dim=C, latent_dim=L, layers=["planar"])
    with pytest.raises(ValueError, match="layers must be"):
        FlowEncoder(context_dim=C, latent_dim=L, layers=[])
    spline_only = FlowEncoder(context_dim=C, latent_dim=1, hidden_sizes=[8], layers=["spline"])
    assert spline_only(torch.randn(2, 3, C)).rsample().shape == (2, 1)


def test_coupling_log_scale_saturates_smoothly() -> None:
    """pyro clips a coupling's log-scale with straight-through gradients, which let a KL push it (and the
    embedding feeding it) without bound; the flow encoder's couplings squash it with a tanh instead."""
    from encoders.flow import LOG_SCALE_BOUND, SmoothLogScale

    class Saturated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor(100.0))

        def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros_like(x), self.w * x

    smooth = SmoothLogScale(Saturated())
    _, log_scale = smooth(torch.ones(4, 2), torch.zeros(4, 3))
    assert ((log_scale > 0.99 * LOG_SCALE_BOUND) & (log_scale <= LOG_SCALE_BOUND)).all()
    log_scale.sum().backward()
    assert smooth.net.w.grad.abs() < 1e-6  # a straight-through clip would pass 8
    encoder = FlowEncoder(context_dim=C, latent_dim=L, layers=["spline", "affine_coupling"], hidden_sizes=HIDDEN)
    assert isinstance(encoder.flow[1].nn, SmoothLogScale)


def test_mixture_components_keep_a_floor_on_their_std() -> None:
    """Confident factors multiply into components far narrower than pyro's mixture gradient survives
    in float32; each component's std stays at least ``min_std``, and the draws' gradients are finite."""
    torch.manual_seed(0)
    encoder = MixtureEncoder(context_dim=C, latent_dim=L, n_components=2, hidden_sizes=HIDDEN, min_std=0.01)
    with torch.no_grad():
        encoder.net[-1].bias[: 2 * 2 * L] = torch.tensor([0.0] * L + [-40.0] * L).repeat(2)  # var at the floor
    locs, var, _ = encoder.components(torch.randn(16, 64, C))
    assert var.sqrt().min() >= 0.01 * (1 - 1e-6) and var.sqrt().max() < 0.0101
    (encoder(torch.randn(16, 64, C)).rsample() ** 2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())
    with pytest.raises(ValueError, match="min_std"):
        MixtureEncoder(context_dim=C, latent_dim=L, min_std=-1.0)
