"""A mixture-of-Gaussians posterior: K components, each a product of per-transition Gaussian factors.

Shapes:
    T: tasks, N: transitions per task, C: context_dim, L: latent_dim, K: components.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
from torch import Tensor
from torch.distributions import Distribution

from encoders.base import ContextEncoder
from encoders.gaussian import DEFAULT_MIN_VAR, product_of_gaussians, variance_from_raw
from encoders.moments import monte_carlo_kl
from encoders.nets import build_mlp, check_min_var, check_number, check_positive_int
from encoders.registry import register_encoder


@register_encoder("mixture")
class MixtureEncoder(ContextEncoder):
    """q(z|c) as a mixture of K diagonal Gaussians, so the posterior can hold several task hypotheses.

    An MLP maps each transition c_i to K Gaussian factors N(mu_ik, var_ik) and K logits l_ik.
    Component k is the product of its factors over the context, as in PEARL's encoder, and its
    weight pools the transitions' logits:

        var_k = 1 / sum_i(1 / var_ik),   mu_k = var_k * sum_i(mu_ik / var_ik),   w = softmax_k(pool_i l_ik).

    ``logit_pooling: sum`` adds the transitions' evidence, as Bayes' rule does, so the weights can
    single out one mode as context grows (and random logits at initialisation sharpen them too);
    ``mean`` keeps the weights' scale whatever the amount of context, so two readings of the
    context stay open until the transitions' logits themselves tell them apart. Each mode narrows
    as context grows, and the posterior is invariant to the order of the context. With K = 1 it is
    the ``mlp`` encoder's posterior.

    The distribution is pyro's ``MixtureOfDiagNormals``, chosen because its ``rsample`` has
    pathwise gradients for the means, scales and weights (torch's ``MixtureSameFamily`` has no
    ``rsample``); it needs ``latent_dim >= 2``, and in a batch of tasks it draws with an empty
    sample shape only (``encoders.moments.draw`` expands it instead). No closed-form KL to N(0, I)
    exists: ``kl_to_prior`` is a reparameterised Monte Carlo estimate with ``kl_samples`` draws.

    Each component's standard deviation is at least ``min_std`` (its variance gets ``min_std**2``
    added). pyro's pathwise gradient of a mixture draw works with densities, not log-densities, and
    in float32 it turns non-finite for components narrower than about 1e-4, which a product of many
    confident factors reaches: on the point robot a run's components shrank to 6e-5 and a NaN
    gradient reached the encoder at iteration 19. With ``min_std = 0`` and K = 1 the posterior is the
    ``mlp`` encoder's.

    Args:
        context_dim: size of one context transition.
        latent_dim: size of z, at least 2.
        hidden_sizes: hidden layer widths of the per-transition MLP.
        n_components: K.
        logit_pooling: ``"sum"`` or ``"mean"`` of the transitions' logits.
        min_var: floor added to each factor's variance.
        min_std: floor on each component's standard deviation, 0 for none.
        kl_samples: samples per task of the Monte Carlo KL.

    Shapes:
        context [T, N, C] -> MixtureOfDiagNormals, batch_shape (T,), event_shape (L,).

    Examples:
        >>> import torch
        >>> encoder = MixtureEncoder(context_dim=3, latent_dim=2, n_components=3, hidden_sizes=[16])
        >>> posterior = encoder(torch.randn(4, 7, 3))  # 4 tasks, 7 transitions each
        >>> posterior.component_logits.shape, posterior.rsample().shape
        (torch.Size([4, 3]), torch.Size([4, 2]))
    """

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (200, 200, 200),
        n_components: int = 2,
        logit_pooling: str = "sum",
        min_var: float = DEFAULT_MIN_VAR,
        min_std: float = 1e-2,
        kl_samples: int = 32,
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        if latent_dim < 2:
            raise ValueError(f"the mixture encoder needs latent_dim >= 2 (pyro's MixtureOfDiagNormals), "
                             f"got {latent_dim}")
        self.n_components = check_positive_int("n_components", n_components)
        if logit_pooling not in ("sum", "mean"):
            raise ValueError(f"logit_pooling must be 'sum' or 'mean', got {logit_pooling!r}")
        self.logit_pooling = logit_pooling
        self.kl_samples = check_positive_int("kl_samples", kl_samples)
        self.min_var = check_min_var(min_var)
        self.min_std = check_number("min_std", min_std, allow_zero=True)
        self.net = build_mlp(context_dim, hidden_sizes, self.n_components * (2 * latent_dim + 1))

    def components(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each task's component means, variances and logits.

        Shapes:
            context [T, N, C] -> [T, K, L], [T, K, L], [T, K].
        """
        self.validate_context(context)
        (T, N, _), K, L = context.shape, self.n_components, self.latent_dim
        factors, logits = self.net(context).split([2 * K * L, K], dim=-1)  # [T, N, 2KL], [T, N, K]
        mu, raw_var = factors.reshape(T, N, K, 2 * L).split(L, dim=-1)  # [T, N, K, L] each
        var = variance_from_raw(raw_var, min_var=self.min_var)
        by_component = lambda x: x.transpose(1, 2).reshape(T * K, N, L)  # noqa: E731  [T, N, K, L] -> [TK, N, L]
        mu_k, var_k = product_of_gaussians(by_component(mu), by_component(var))  # [TK, L] each
        pooled = logits.sum(dim=1) if self.logit_pooling == "sum" else logits.mean(dim=1)  # [T, K]
        return mu_k.reshape(T, K, L), var_k.reshape(T, K, L) + self.min_std**2, pooled

    def forward(self, context: Tensor) -> dist.MixtureOfDiagNormals:
        locs, var, logits = self.components(context)
        return dist.MixtureOfDiagNormals(locs, var.sqrt(), logits)

    def kl_to_prior(self, posterior: Distribution) -> Tensor:
        """Monte Carlo KL(q || N(0, I)) with ``kl_samples`` reparameterised draws per task.

        Shapes:
            posterior batch (T,) -> [T].
        """
        return monte_carlo_kl(posterior, self.prior(posterior.batch_shape[0]), self.kl_samples)
