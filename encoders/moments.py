"""Summaries of a posterior q(z|c) that work with or without closed-form moments.

A Gaussian posterior has its mean and standard deviation in closed form; a flow has neither, and
pyro's ``MixtureOfDiagNormals`` has neither attribute (though the law of total variance gives them).
These helpers give the mean and spread of any posterior (exact where possible, by sampling
otherwise), the weights of a mixture's components, and a Monte Carlo KL.

Shapes:
    S: samples, T: tasks, K: mixture components, L: latent dim.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import Distribution

MODE_WEIGHT = 0.05
"""A mixture component counts as a mode with real weight when its weight is at least this."""


def draw(posterior: Distribution, n_samples: int, *, reparameterized: bool = True) -> Tensor:
    """``n_samples`` draws per task, by ``rsample`` (gradients flow) or ``sample``.

    pyro's ``MixtureOfDiagNormals`` with a batch of tasks only draws with an empty sample shape,
    so it is first expanded to batch [S, T] and drawn once.

    Shapes:
        posterior batch (T,), event (L,) -> [S, T, L].
    """
    shape = torch.Size((n_samples,))
    if isinstance(posterior, dist.MixtureOfDiagNormals):
        posterior = posterior.expand(shape + posterior.batch_shape)
        shape = torch.Size()
    return posterior.rsample(shape) if reparameterized else posterior.sample(shape)


def monte_carlo_kl(posterior: Distribution, prior: Distribution, n_samples: int) -> Tensor:
    """KL(q || p) per task, estimated as mean_s [log q(z_s) - log p(z_s)] with z_s ~ q reparameterised.

    The estimate is unbiased and its gradient reaches q's parameters through the samples.

    Shapes:
        posterior, prior: batch (T,), event (L,) -> [T].
    """
    z = draw(posterior, n_samples)  # [S, T, L]
    return (posterior.log_prob(z) - prior.log_prob(z)).mean(dim=0)


def mixture_weights(posterior: Distribution) -> Tensor | None:
    """The component weights of a mixture posterior (pyro's ``MixtureOfDiagNormals`` or torch's
    ``MixtureSameFamily``); None for any other distribution.

    Shapes:
        posterior batch (T,) -> [T, K] or None.
    """
    if isinstance(posterior, dist.MixtureOfDiagNormals):
        return torch.softmax(posterior.component_logits, dim=-1)
    if isinstance(posterior, torch.distributions.MixtureSameFamily):
        return posterior.mixture_distribution.probs
    return None


def n_modes(posterior: Distribution, *, min_weight: float = MODE_WEIGHT) -> Tensor | None:
    """Components with weight at least ``min_weight`` per task, for a mixture; None otherwise.

    Shapes:
        posterior batch (T,) -> [T] or None.
    """
    weights = mixture_weights(posterior)
    return None if weights is None else (weights >= min_weight).sum(dim=-1)


def posterior_moments(posterior: Distribution, *, n_samples: int = 256) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of q(z|c) per latent dim.

    Closed form where the distribution has it; for ``MixtureOfDiagNormals`` the mixture's moments,
    mean = sum_k w_k mu_k and var = sum_k w_k (sigma_k^2 + mu_k^2) - mean^2; otherwise estimated
    from ``n_samples`` draws per task (with the global torch RNG, without gradient).

    Shapes:
        posterior batch (T,), event (L,) -> ([T, L], [T, L]).
    """
    if isinstance(posterior, dist.MixtureOfDiagNormals):
        weights = torch.softmax(posterior.component_logits, dim=-1).unsqueeze(-1)  # [T, K, 1]
        mean = (weights * posterior.locs).sum(dim=-2)  # [T, L]
        second = (weights * (posterior.coord_scale**2 + posterior.locs**2)).sum(dim=-2)  # [T, L]
        return mean, (second - mean**2).clamp_min(0.0).sqrt()
    try:
        return posterior.mean, posterior.stddev
    except NotImplementedError:
        with torch.no_grad():
            z = draw(posterior, n_samples, reparameterized=False)  # [S, T, L]
        return z.mean(dim=0), z.std(dim=0)
