"""A permutation-invariant set encoder: self-attention over transitions, then attention or product pooling.

Shapes:
    T: tasks, N: transitions per task, C: context_dim, L: latent_dim, E: embed_dim.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from encoders.base import ContextEncoder
from encoders.gaussian import DEFAULT_MIN_VAR, diagonal_gaussian, product_of_gaussians, variance_from_raw
from encoders.nets import build_mlp, check_min_var
from encoders.registry import register_encoder


class _SelfAttentionBlock(nn.Module):
    """Post-norm transformer block without positional encoding (Set Transformer's SAB).

    ``h = LN(x + MHA(x, x, x))``, ``out = LN(h + FF(h))``. Every operation is either per element
    or a softmax-weighted sum over the set, so permuting the input permutes the output.

    Shapes:
        x [T, N, E] -> [T, N, E].
    """

    def __init__(self, embed_dim: int, n_heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_dim, n_heads, batch_first=True)
        self.norm_attention = nn.LayerNorm(embed_dim)
        self.feedforward = build_mlp(embed_dim, [2 * embed_dim], embed_dim)
        self.norm_feedforward = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        attended, _ = self.attention(x, x, x, need_weights=False)
        h = self.norm_attention(x + attended)
        return self.norm_feedforward(h + self.feedforward(h))


@register_encoder("attention")
class AttentionEncoder(ContextEncoder):
    """Set encoder: per-transition embedding, self-attention, then learned-query or product pooling.

    Following the Set Transformer (Lee et al. 2019): ``x_i = MLP(c_i)``; ``n_blocks`` self-attention
    blocks without positional encoding, then one of two poolings:

    - ``"query"``: multi-head attention with one learned seed query (PMA); a head maps the pooled
      vector to mu and ``var = softplus(.) + min_var``. The posterior's width does not depend on how
      many transitions it saw (the pooled vector is a weighted mean).
    - ``"product"``: the head maps every attended transition h_i to a Gaussian factor
      N(mu_i, var_i), and the posterior is their product, as in PEARL's encoder: each factor is
      computed with the whole set in view, and the posterior narrows as context accumulates.

    Either way the posterior is invariant to the order of the context.

    Args:
        context_dim: size of one context transition.
        latent_dim: size of z.
        embed_dim: width of the attention layers (divisible by ``n_heads``).
        n_heads: attention heads.
        n_blocks: self-attention blocks before pooling.
        embedding_sizes: hidden widths of the per-transition embedding MLP.
        head_sizes: hidden widths of the head MLP.
        pooling: ``"query"`` (attention pooling) or ``"product"`` (product of per-transition factors).
        min_var: floor added to the variance.

    Shapes:
        context [T, N, C] -> Normal(mu, sqrt(var)).to_event(1), batch_shape (T,), event_shape (L,).
    """

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        embed_dim: int = 64,
        n_heads: int = 4,
        n_blocks: int = 1,
        embedding_sizes: Sequence[int] = (128,),
        head_sizes: Sequence[int] = (128,),
        pooling: str = "query",
        min_var: float = DEFAULT_MIN_VAR,
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        if embed_dim % n_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by n_heads ({n_heads})")
        if pooling not in ("query", "product"):
            raise ValueError(f"pooling must be 'query' or 'product', got {pooling!r}")
        self.min_var = check_min_var(min_var)
        self.pooling = pooling
        self.embed = build_mlp(context_dim, embedding_sizes, embed_dim)
        self.blocks = nn.Sequential(*[_SelfAttentionBlock(embed_dim, n_heads) for _ in range(n_blocks)])
        if pooling == "query":
            self.seed = nn.Parameter(torch.randn(1, 1, embed_dim) / embed_dim**0.5)
            self.pool = nn.MultiheadAttention(embed_dim, n_heads, batch_first=True)
            self.norm_pool = nn.LayerNorm(embed_dim)
        self.head = build_mlp(embed_dim, head_sizes, 2 * latent_dim)

    def forward(self, context: Tensor) -> Distribution:
        self.validate_context(context)
        h = self.blocks(self.embed(context))  # [T, N, E]
        if self.pooling == "product":
            mu, raw_var = self.head(h).split(self.latent_dim, dim=-1)  # [T, N, L] each
            return diagonal_gaussian(*product_of_gaussians(mu, variance_from_raw(raw_var, min_var=self.min_var)))
        query = self.seed.expand(h.shape[0], -1, -1)  # [T, 1, E]
        pooled, _ = self.pool(query, h, h, need_weights=False)  # [T, 1, E]
        pooled = self.norm_pool(pooled.squeeze(1))  # [T, E]
        mu, raw_var = self.head(pooled).split(self.latent_dim, dim=-1)  # [T, L] each
        return diagonal_gaussian(mu, variance_from_raw(raw_var, min_var=self.min_var))
