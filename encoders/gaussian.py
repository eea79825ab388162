"""Diagonal-Gaussian helpers shared by the built-in encoders.

Shapes:
    T: number of tasks, N: transitions per task, L: latent dimension.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.nn import functional as F

DEFAULT_MIN_VAR = 1e-7
"""Variance floor added after the softplus (PEARL's official code clamps at the same value)."""


def variance_from_raw(raw: Tensor, *, min_var: float = DEFAULT_MIN_VAR) -> Tensor:
    """Map unconstrained network outputs to variances: ``var = softplus(raw) + min_var``.

    The floor is added rather than clamped so the gradient never vanishes at the floor.

    Args:
        raw: unconstrained outputs, any shape.
        min_var: smallest variance returned; must be positive.

    Returns:
        Variances of the same shape as ``raw``, each at least ``min_var``.

    Shapes:
        raw: [*]; returns [*].
    """
    return F.softplus(raw) + min_var


def product_of_gaussians(mu: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """Multiply independent diagonal-Gaussian factors along the transition axis.

    The (normalised) product of ``N(mu_i, var_i)``, i = 1..N, is the Gaussian with

        var = 1 / sum_i(1 / var_i),    mu = var * sum_i(mu_i / var_i).

    PEARL uses it to combine one factor per transition into q(z|c), so the posterior does not
    depend on the order of the context and sharpens as context accumulates.

    Args:
        mu: factor means.
        var: factor variances, all positive.

    Returns:
        ``(mu, var)`` of the product, one per task.

    Shapes:
        mu, var: [T, N, L]; returns two tensors of shape [T, L].

    Examples:
        >>> mu = torch.tensor([[[0.0], [2.0]]])
        >>> var = torch.tensor([[[1.0], [1.0]]])
        >>> product_of_gaussians(mu, var)
        (tensor([[1.]]), tensor([[0.5000]]))
    """
    if mu.shape != var.shape or mu.dim() != 3:
        raise ValueError(
            f"product_of_gaussians expects mu and var of equal shape [T, N, L]; "
            f"got mu {tuple(mu.shape)} and var {tuple(var.shape)}"
        )
    precision = var.reciprocal()  # [T, N, L]
    posterior_var = precision.sum(dim=1).reciprocal()  # [T, L]
    posterior_mu = posterior_var * (mu * precision).sum(dim=1)  # [T, L]
    return posterior_mu, posterior_var


def product_with_standard_normal(mu: Tensor, precision: Tensor) -> tuple[Tensor, Tensor]:
    """Multiply N(0, I) by factors ``N(mu_i, 1 / precision_i)`` along the transition axis (Bayes' rule
    with Gaussian likelihood terms):

        var = 1 / (1 + sum_i precision_i),    mu = var * sum_i(mu_i * precision_i).

    A factor of precision 0 says nothing, so a context of such factors leaves the prior; the
    variance never exceeds 1.

    Shapes:
        mu, precision: [T, N, L] (precision >= 0); returns two tensors of shape [T, L].

    Examples:
        >>> product_with_standard_normal(torch.tensor([[[2.0], [5.0]]]), torch.tensor([[[1.0], [0.0]]]))
        (tensor([[1.]]), tensor([[0.5000]]))
    """
    if mu.shape != precision.shape or mu.dim() != 3:
        raise ValueError(
            f"product_with_standard_normal expects mu and precision of equal shape [T, N, L]; "
            f"got mu {tuple(mu.shape)} and precision {tuple(precision.shape)}"
        )
    posterior_var = (1.0 + precision.sum(dim=1)).reciprocal()  # [T, L]
    return posterior_var * (mu * precision).sum(dim=1), posterior_var


def diagonal_gaussian(mu: Tensor, var: Tensor) -> dist.Distribution:
    """Build ``Normal(mu, sqrt(var)).to_event(1)``: batch shape [T], event shape [L].

    Args:
        mu: means.
        var: variances, all positive.

    Returns:
        A pyro ``Independent(Normal)`` distribution that supports ``rsample``.

    Shapes:
        mu, var: [T, L]; returns a distribution with batch_shape (T,) and event_shape (L,).
    """
    return dist.Normal(mu, var.sqrt()).to_event(1)


def standard_normal(n_tasks: int, latent_dim: int, *, like: Tensor | None = None) -> dist.Distribution:
    """N(0, I) over z for ``n_tasks`` tasks, on the device and dtype of ``like`` (CPU default dtype if None).

    Shapes:
        returns a distribution with batch_shape (n_tasks,) and event_shape (latent_dim,).
    """
    if like is None:
        loc = torch.zeros(n_tasks, latent_dim)
    else:
        loc = torch.zeros(n_tasks, latent_dim, device=like.device, dtype=like.dtype)
    return dist.Normal(loc, torch.ones_like(loc)).to_event(1)
