"""PEARL's encoder (MLP + product of Gaussian factors) and its deterministic ablation.

Shapes:
    T: tasks, N: transitions per task, C: context_dim, L: latent_dim.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import functional as F

from encoders.base import ContextEncoder
from encoders.gaussian import (
    DEFAULT_MIN_VAR,
    diagonal_gaussian,
    product_of_gaussians,
    product_with_standard_normal,
    variance_from_raw,
)
from encoders.nets import build_mlp, check_min_var
from encoders.registry import register_encoder


@register_encoder("mlp")
class MLPEncoder(ContextEncoder):
    """PEARL's context encoder (Rakelly et al. 2019, sec. 4.1): one Gaussian factor per transition.

    An MLP maps each transition c_i to a factor N(mu_i, var_i) with ``var_i = softplus(.) + min_var``.
    The posterior is their product:

        var = 1 / sum_i(1 / var_i),    mu = var * sum_i(mu_i / var_i),

    so it is invariant to the order of the context and sharpens as context accumulates.

    With ``prior_factor`` the prior N(0, I) is one more factor and the MLP gives each transition's
    precision, ``softplus(.)``, instead of its variance: var = 1 / (1 + sum_i prec_i), mu = var *
    sum_i(mu_i prec_i). A transition can then say nothing (precision near 0, where a variance would
    have to grow without bound), and a context of such transitions leaves q(z|c) at the prior
    whatever its length, as a sparse-reward context without a reward should for posterior sampling.
    ``gate_column`` (with ``prior_factor``) goes further and zeroes the precision of every transition
    whose context column ``gate_column`` is 0: with the sparse reward's column, q(z|c) is exactly the
    prior until the context holds a reward, and then the product of the rewarded transitions' factors.

    Args:
        context_dim: size of one context transition.
        latent_dim: size of z.
        hidden_sizes: hidden layer widths of the per-transition MLP (paper: 3 x 200).
        min_var: floor added to each factor's variance (without ``prior_factor``).
        prior_factor: multiply the prior into the product, with factors parametrised by precision.
        gate_column: with ``prior_factor``, the context column (negative counts from the end, e.g. -1 for
            the reward of an (s, a, r) context) whose zeros make a transition's factor say nothing.

    Shapes:
        context [T, N, C] -> Normal(mu, sqrt(var)).to_event(1), batch_shape (T,), event_shape (L,).

    Examples:
        >>> import torch
        >>> encoder = MLPEncoder(context_dim=3, latent_dim=2, hidden_sizes=[16])
        >>> posterior = encoder(torch.randn(4, 7, 3))
        >>> posterior.rsample().shape, encoder.kl_to_prior(posterior).shape
        (torch.Size([4, 2]), torch.Size([4]))
    """

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (200, 200, 200),
        min_var: float = DEFAULT_MIN_VAR,
        prior_factor: bool = False,
        gate_column: int | None = None,
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        if not isinstance(prior_factor, bool):
            raise ValueError(f"prior_factor: expected true or false, got {prior_factor!r}")
        if gate_column is not None:
            if not prior_factor:
                raise ValueError("gate_column: needs prior_factor: true (a factor that says nothing is a zero precision)")
            if isinstance(gate_column, bool) or not isinstance(gate_column, int) or not -context_dim <= gate_column < context_dim:
                raise ValueError(f"gate_column: expected an integer in [{-context_dim}, {context_dim}), got {gate_column!r}")
            gate_column %= context_dim
        self.gate_column = gate_column
        self.min_var = check_min_var(min_var)
        self.prior_factor = prior_factor
        self.net = build_mlp(context_dim, hidden_sizes, 2 * latent_dim)

    def factors(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """The per-transition Gaussian factors (mu_i, var_i) (with ``prior_factor`` var_i = 1 / prec_i,
        infinite where the precision is 0).

        Shapes:
            context [T, N, C] -> two tensors [T, N, L].
        """
        mu, spread = self._outputs(context)
        return mu, spread.reciprocal() if self.prior_factor else spread

    def _outputs(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """(mu_i, precision_i) with ``prior_factor``, else (mu_i, var_i); each [T, N, L]."""
        self.validate_context(context)
        mu, raw = self.net(context).split(self.latent_dim, dim=-1)  # [T, N, L] each
        if not self.prior_factor:
            return mu, variance_from_raw(raw, min_var=self.min_var)
        precision = F.softplus(raw)
        if self.gate_column is not None:
            precision = precision * (context[..., self.gate_column : self.gate_column + 1] != 0)
        return mu, precision

    def forward(self, context: Tensor) -> Distribution:
        combine = product_with_standard_normal if self.prior_factor else product_of_gaussians
        mu, var = combine(*self._outputs(context))  # [T, L] each
        return diagonal_gaussian(mu, var)


@register_encoder("deterministic")
class DeterministicEncoder(ContextEncoder):
    """The paper's ablation without information bottleneck: z is the mean of per-transition embeddings.

    ``z = mean_i MLP(c_i)``. The KL term is off (``information_bottleneck = False``).

    The output is a point mass, ``pyro.distributions.Delta(z, event_dim=1)``: ``rsample()`` returns
    z itself with its gradient, ``sample()`` returns it detached, ``mean`` is z and ``variance`` /
    ``stddev`` are zeros, so code that logs posterior statistics keeps working. ``entropy()`` is
    not defined (a point mass has none) and ``log_prob`` is 0 at z and -inf elsewhere; we chose
    this over a Normal with a tiny fixed scale, which would add noise to z and give meaningless
    KL and log-density values.

    Args:
        context_dim: size of one context transition.
        latent_dim: size of z.
        hidden_sizes: hidden layer widths of the per-transition MLP.

    Shapes:
        context [T, N, C] -> Delta(z, event_dim=1), batch_shape (T,), event_shape (L,).
    """

    information_bottleneck = False

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (200, 200, 200),
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.net = build_mlp(context_dim, hidden_sizes, latent_dim)

    def forward(self, context: Tensor) -> Distribution:
        self.validate_context(context)
        z = self.net(context).mean(dim=1)  # [T, N, L] -> [T, L]
        return dist.Delta(z, event_dim=1)
