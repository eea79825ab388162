"""A recurrent (GRU) context encoder that reads each task's context in time order.

Shapes:
    T: tasks, N: transitions per task (time-ordered), C: context_dim, L: latent_dim, H: hidden_size.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.distributions import Distribution

from encoders.base import ContextEncoder
from encoders.gaussian import DEFAULT_MIN_VAR, diagonal_gaussian, variance_from_raw
from encoders.nets import build_mlp, check_min_var
from encoders.registry import register_encoder


@register_encoder("gru")
class GRUEncoder(ContextEncoder):
    """GRU over the time-ordered context; a Gaussian over z from the last hidden state.

    Each call starts from a zero hidden state: one call sees one whole context per task, so the
    reset at a task's start is the start of the call, and nothing is carried between calls (the
    official PEARL code's recurrent option kept a hidden state across tasks and calls, which mixed
    tasks). Each task in the batch is an independent sequence.

    ``h_N = GRU(embed(c_1), ..., embed(c_N))`` from ``h_0 = 0``; ``mu, raw = head(h_N)``;
    ``var = softplus(raw) + min_var``.

    Args:
        context_dim: size of one context transition.
        latent_dim: size of z.
        embedding_sizes: widths of the per-transition ReLU MLP before the GRU; empty to feed the
            raw transitions.
        hidden_size: GRU hidden size.
        num_layers: stacked GRU layers.
        min_var: floor added to the variance.

    Shapes:
        context [T, N, C] -> Normal(mu, sqrt(var)).to_event(1), batch_shape (T,), event_shape (L,).
    """

    recurrent = True
    permutation_invariant = False

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        embedding_sizes: Sequence[int] = (200,),
        hidden_size: int = 200,
        num_layers: int = 1,
        min_var: float = DEFAULT_MIN_VAR,
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.min_var = check_min_var(min_var)
        sizes = [int(size) for size in embedding_sizes]
        if sizes:
            self.embed: nn.Module = nn.Sequential(build_mlp(context_dim, sizes[:-1], sizes[-1]), nn.ReLU())
            gru_input = sizes[-1]
        else:
            self.embed = nn.Identity()
            gru_input = context_dim
        self.gru = nn.GRU(gru_input, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 2 * latent_dim)

    def forward(self, context: Tensor) -> Distribution:
        self.validate_context(context)
        embedded = self.embed(context)  # [T, N, E]
        # No initial state is passed: PyTorch starts every sequence from zeros, i.e. a fresh task.
        _, hidden = self.gru(embedded)  # [num_layers, T, H]
        mu, raw_var = self.head(hidden[-1]).split(self.latent_dim, dim=-1)  # [T, L] each
        return diagonal_gaussian(mu, variance_from_raw(raw_var, min_var=self.min_var))
