"""Networks of the z-conditioned SAC: MLPs, a batched twin critic, and the tanh-Gaussian policy.

Shapes:
    N: rows (tasks x transitions, flattened), O: obs dim, A: action dim, L: latent dim, E: ensemble size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int) -> nn.Sequential:
    """ReLU MLP ``in_dim -> hidden_sizes -> out_dim``."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied in one batched matmul.

    Each member is initialised like ``nn.Linear`` (uniform in ±1/sqrt(in_dim)).

    Shapes:
        x: [E, N, in_dim] -> [E, N, out_dim]
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """``E`` independent ReLU MLPs evaluated together (the twin critics as one network).

    Shapes:
        x: [N, in_dim] (shared by all members) or [E, N, in_dim] -> [E, N, out_dim]
    """

    def __init__(self, n_members: int, in_dim: int, hidden_sizes: list[int], out_dim: int) -> None:
        super().__init__()
        self.n_members = n_members
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n_members, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.n_members, *x.shape)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class PolicyOutput(NamedTuple):
    """A tanh-Gaussian policy sample.

    Shapes:
        action, mean, log_std, pre_tanh: [N, A]; log_prob: [N, 1]
    """

    action: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor
    pre_tanh: torch.Tensor


class TanhGaussianPolicy(nn.Module):
    """π(a | s, z): a Gaussian squashed by tanh, actions in [-1, 1]^A.

    log π(a|s,z) = log N(u; μ, σ) - Σ_i log(1 - tanh(u_i)²), with the correction computed stably as
    2 (log 2 - u - softplus(-2u)).

    Args:
        in_dim: O + L.
        action_dim: A.
        hidden_sizes: hidden layer sizes.
    """

    def __init__(self, in_dim: int, action_dim: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden_sizes, 2 * action_dim)

    def forward(self, x: torch.Tensor, *, deterministic: bool = False, with_log_prob: bool = True) -> PolicyOutput:
        """Sample (reparameterised) or take the mean action.

        Shapes:
            x: [N, O + L] -> PolicyOutput fields [N, A] and log_prob [N, 1]
        """
        mean, log_std = self.net(x).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        if deterministic:
            pre_tanh = mean
        else:
            pre_tanh = mean + std * torch.randn_like(mean)  # rsample: the reparameterisation trick
        action = torch.tanh(pre_tanh)
        if with_log_prob:
            normal_lp = -0.5 * ((pre_tanh - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
            squash = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
            log_prob = (normal_lp - squash).sum(-1, keepdim=True)
        else:
            log_prob = torch.zeros_like(action[..., :1])
        return PolicyOutput(action, log_prob, mean, log_std, pre_tanh)
