"""A user-written context encoder, used by path: ``encoder.name: "my_encoders:MaxPoolEncoder"``.

Put this folder on ``PYTHONPATH`` (``export PYTHONPATH=experiments/custom_encoder``) so that
``import my_encoders`` works; see README.md next to this file.

Shapes:
    T: tasks, N: transitions per task, C: context_dim, L: latent_dim.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.nn import functional as F

from encoders import ContextEncoder


class MaxPoolEncoder(ContextEncoder):
    """Embed each transition, max-pool over the context, map the pooled vector to a Gaussian over z.

    ``h = max_i MLP(c_i)`` (elementwise max over transitions, so the order of the context does not
    matter); ``mu, raw = Linear(h)``; ``var = softplus(raw) + min_var``.

    Args:
        context_dim: size of one context transition (given by the framework).
        latent_dim: size of z (the config's ``encoder.latent_dim``).
        hidden_sizes: widths of the per-transition MLP (the config's ``encoder.kwargs``).
        min_var: floor added to the variance.

    Shapes:
        context [T, N, C] -> Normal(mu, sqrt(var)).to_event(1), batch_shape (T,), event_shape (L,).
    """

    # The defaults of ContextEncoder, spelled out for the reader: a set encoder with a KL term.
    recurrent = False
    permutation_invariant = True
    information_bottleneck = True

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (128, 128),
        min_var: float = 1e-6,
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        layers: list[nn.Module] = []
        width = context_dim
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.embed = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * latent_dim)
        self.min_var = min_var

    def forward(self, context: Tensor) -> Distribution:
        pooled = self.embed(context).amax(dim=1)  # [T, N, H] -> [T, H]
        mu, raw_var = self.head(pooled).split(self.latent_dim, dim=-1)  # [T, L] each
        var = F.softplus(raw_var) + self.min_var
        # .to_event(1): z's L coordinates form one event, so batch_shape is (T,), event_shape (L,).
        return dist.Normal(mu, var.sqrt()).to_event(1)


if __name__ == "__main__":
    # Quick self-check: python experiments/custom_encoder/my_encoders.py
    from encoders import check_encoder

    report = check_encoder(MaxPoolEncoder, context_dim=6, latent_dim=5, kwargs={"hidden_sizes": [64, 64]})
    print(report)
    raise SystemExit(0 if report.passed else 1)
