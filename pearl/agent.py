"""The PEARL agent: a context encoder q(z|c) and a z-conditioned tanh-Gaussian policy.

z is always an explicit input and output: the agent stores no posterior and no sample, so it can
never act with a stale z.

Shapes:
    T: tasks, N: context transitions, C: context dim, O: obs dim, A: action dim, L: latent dim.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from encoders import ContextEncoder
from pearl.networks import PolicyOutput, TanhGaussianPolicy


class PEARLAgent(nn.Module):
    """Encoder + policy.

    Args:
        encoder: maps context ``[T, N, C]`` to q(z|c) with batch ``[T]``, event ``[L]``.
        obs_dim: O.
        action_dim: A.
        hidden_sizes: policy hidden layer sizes.
    """

    def __init__(self, encoder: ContextEncoder, *, obs_dim: int, action_dim: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.latent_dim = encoder.latent_dim
        self.policy = TanhGaussianPolicy(obs_dim + self.latent_dim, action_dim, hidden_sizes)

    def posterior(self, context: torch.Tensor) -> Distribution:
        """q(z|c). Shapes: context [T, N, C] -> batch [T], event [L]."""
        return self.encoder(context)

    def prior(self, n_tasks: int) -> Distribution:
        """p(z), N(0, I) unless the encoder says otherwise. Batch [n_tasks], event [L]."""
        return self.encoder.prior(n_tasks)

    def policy_forward(self, obs: torch.Tensor, z: torch.Tensor, *, deterministic: bool = False) -> PolicyOutput:
        """π(·|s, z), with z detached: PEARL trains the encoder by critic and KL only.

        Shapes:
            obs [N, O], z [N, L] -> PolicyOutput with action [N, A]
        """
        return self.policy(torch.cat([obs, z.detach()], dim=-1), deterministic=deterministic)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, z: torch.Tensor, *, deterministic: bool = False) -> torch.Tensor:
        """Actions in [-1, 1]^A for a batch of observations, one z per row.

        Shapes:
            obs [N, O], z [N, L] -> [N, A]
        """
        return self.policy(torch.cat([obs, z], dim=-1), deterministic=deterministic, with_log_prob=False).action
