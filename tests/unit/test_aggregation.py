"""PEARL's product of Gaussian factors against closed forms computed independently in numpy float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders import MLPEncoder, product_of_gaussians

N_TASKS, N_TRANSITIONS, LATENT_DIM, CONTEXT_DIM = 3, 7, 4, 5


def _random_factors(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(N_TASKS, N_TRANSITIONS, LATENT_DIM))
    var = rng.uniform(0.05, 3.0, size=(N_TASKS, N_TRANSITIONS, LATENT_DIM))
    return mu, var


def _closed_form_product(mu: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold the factors in one at a time: N(a, s) * N(b, t) ∝ N((a t + b s) / (s + t), s t / (s + t))."""
    mean, variance = mu[:, 0], var[:, 0]
    for i in range(1, mu.shape[1]):
        b, t = mu[:, i], var[:, i]
        mean, variance = (mean * t + b * variance) / (variance + t), variance * t / (variance + t)
    return mean, variance


def _log_normal(z: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * variance) + (z - mean) ** 2 / variance)


def _encoder(seed: int = 0) -> MLPEncoder:
    torch.manual_seed(seed)
    return MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[16, 16]).double()


def test_product_matches_pairwise_closed_form() -> None:
    mu, var = _random_factors(seed=1)
    expected_mu, expected_var = _closed_form_product(mu, var)
    got_mu, got_var = product_of_gaussians(torch.from_numpy(mu), torch.from_numpy(var))
    np.testing.assert_allclose(got_mu.numpy(), expected_mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_var.numpy(), expected_var, rtol=1e-10, atol=1e-12)


def test_product_is_the_normalised_product_of_densities() -> None:
    """sum_i log N(z; mu_i, var_i) - log N(z; mu, var) must not depend on z."""
    mu, var = _random_factors(seed=2)
    got_mu, got_var = (t.numpy() for t in product_of_gaussians(torch.from_numpy(mu), torch.from_numpy(var)))
    rng = np.random.default_rng(3)
    gaps = []
    for z in rng.normal(scale=2.0, size=(5, N_TASKS, LATENT_DIM)):
        factors = _log_normal(z[:, None, :], mu, var).sum(axis=1)
        gaps.append(factors - _log_normal(z, got_mu, got_var))
    np.testing.assert_allclose(np.stack(gaps), np.broadcast_to(gaps[0], (5, N_TASKS, LATENT_DIM)), atol=1e-9)


def test_encoder_posterior_is_product_of_its_factors() -> None:
    encoder = _encoder()
    context = torch.randn(N_TASKS, N_TRANSITIONS, CONTEXT_DIM, dtype=torch.float64)
    factor_mu, factor_var = (t.detach().numpy() for t in encoder.factors(context))
    expected_mu, expected_var = _closed_form_product(factor_mu, factor_var)
    posterior = encoder(context)
    np.testing.assert_allclose(posterior.mean.detach().numpy(), expected_mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(posterior.variance.detach().numpy(), expected_var, rtol=1e-9, atol=1e-12)


def test_single_transition_posterior_is_its_factor() -> None:
    encoder = _encoder()
    context = torch.randn(2, 1, CONTEXT_DIM, dtype=torch.float64)
    factor_mu, factor_var = encoder.factors(context)
    posterior = encoder(context)
    torch.testing.assert_close(posterior.mean, factor_mu[:, 0])
    torch.testing.assert_close(posterior.variance, factor_var[:, 0])


def test_more_context_never_widens_the_posterior() -> None:
    encoder = _encoder()
    context = torch.randn(N_TASKS, N_TRANSITIONS, CONTEXT_DIM, dtype=torch.float64)
    variances = torch.stack([encoder(context[:, : n + 1]).variance for n in range(N_TRANSITIONS)])
    assert bool((variances[1:] <= variances[:-1]).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_posterior_does_not_depend_on_context_order(seed: int) -> None:
    encoder = _encoder(seed)
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(N_TASKS, N_TRANSITIONS, CONTEXT_DIM, dtype=torch.float64, generator=generator)
    order = torch.randperm(N_TRANSITIONS, generator=generator)
    assert not torch.equal(order, torch.arange(N_TRANSITIONS))
    original, shuffled = encoder(context), encoder(context[:, order])
    torch.testing.assert_close(shuffled.mean, original.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(shuffled.variance, original.variance, rtol=1e-12, atol=1e-12)


def test_kl_to_prior_matches_closed_form() -> None:
    encoder = _encoder()
    context = torch.randn(N_TASKS, N_TRANSITIONS, CONTEXT_DIM, dtype=torch.float64)
    posterior = encoder(context)
    mu = posterior.mean.detach().numpy()
    var = posterior.variance.detach().numpy()
    expected = 0.5 * (var + mu**2 - 1.0 - np.log(var)).sum(axis=-1)
    kl = encoder.kl_to_prior(posterior)
    assert kl.shape == (N_TASKS,)
    np.testing.assert_allclose(kl.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_prior_is_standard_normal_on_parameter_dtype() -> None:
    prior = _encoder().prior(N_TASKS)
    assert prior.batch_shape == (N_TASKS,) and prior.event_shape == (LATENT_DIM,)
    assert prior.mean.dtype == torch.float64
    torch.testing.assert_close(prior.mean, torch.zeros(N_TASKS, LATENT_DIM, dtype=torch.float64))
    torch.testing.assert_close(prior.stddev, torch.ones(N_TASKS, LATENT_DIM, dtype=torch.float64))


def test_prior_factor_posterior_is_the_prior_times_its_factors() -> None:
    """``prior_factor``: q(z|c) is N(0, I) times the transitions' factors (the closed-form fold, the prior first)."""
    torch.manual_seed(0)
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[16], prior_factor=True).double()
    context = torch.randn(N_TASKS, N_TRANSITIONS, CONTEXT_DIM, dtype=torch.float64)
    factor_mu, factor_var = (t.detach().numpy() for t in encoder.factors(context))
    prior_mu, prior_var = np.zeros((N_TASKS, 1, LATENT_DIM)), np.ones((N_TASKS, 1, LATENT_DIM))
    expected_mu, expected_var = _closed_form_product(np.concatenate([prior_mu, factor_mu], 1),
                                                     np.concatenate([prior_var, factor_var], 1))
    posterior = encoder(context)
    np.testing.assert_allclose(posterior.mean.detach().numpy(), expected_mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(posterior.variance.detach().numpy(), expected_var, rtol=1e-9, atol=1e-12)


def test_prior_factor_lets_a_context_say_nothing() -> None:
    """Transitions of precision near 0 leave the prior, however many there are; the variance never exceeds 1."""
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[16], prior_factor=True)
    with torch.no_grad():
        encoder.net[-1].bias[LATENT_DIM:] = -30.0  # softplus(-30) ~ 1e-13
        encoder.net[-1].weight[LATENT_DIM:] = 0.0
    for n in (1, 20, 400):
        posterior = encoder(torch.randn(N_TASKS, n, CONTEXT_DIM))
        torch.testing.assert_close(posterior.variance, torch.ones(N_TASKS, LATENT_DIM))
        torch.testing.assert_close(posterior.mean, torch.zeros(N_TASKS, LATENT_DIM))
    assert bool((encoder(torch.randn(N_TASKS, 5, CONTEXT_DIM) * 10).variance <= 1).all())


def test_gate_column_keeps_only_the_factors_of_rewarded_transitions() -> None:
    """``gate_column``: q(z|c) is the prior while the gated column is all zero, and otherwise the prior times
    the factors of the rows where it is not, whatever the other rows hold."""
    torch.manual_seed(0)
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[16], prior_factor=True,
                         gate_column=-1).double()
    context = torch.randn(N_TASKS, N_TRANSITIONS, CONTEXT_DIM, dtype=torch.float64)
    context[..., -1] = 0.0
    silent = encoder(context)
    torch.testing.assert_close(silent.mean, torch.zeros(N_TASKS, LATENT_DIM, dtype=torch.float64))
    torch.testing.assert_close(silent.variance, torch.ones(N_TASKS, LATENT_DIM, dtype=torch.float64))
    context[:, [1, 3], -1] = 1.0
    ungated = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[16], prior_factor=True).double()
    ungated.load_state_dict(encoder.state_dict())
    expected, got = ungated(context[:, [1, 3]]), encoder(context)
    torch.testing.assert_close(got.mean, expected.mean)
    torch.testing.assert_close(got.variance, expected.variance)
    assert not torch.allclose(ungated(context).mean, expected.mean)  # the reward-free rows would have moved it


@pytest.mark.parametrize("kwargs, message", [({"gate_column": 0}, "needs prior_factor"),
                                             ({"gate_column": CONTEXT_DIM, "prior_factor": True}, "an integer in"),
                                             ({"gate_column": True, "prior_factor": True}, "an integer in")])
def test_gate_column_refuses_what_it_cannot_gate(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[16], **kwargs)
