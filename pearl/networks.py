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


class Float32Linear(nn.Linear):
    """``nn.Linear`` computed in float32 even under bf16 autocast: an output layer, whose values
    (Q and V reach hundreds with reward_scale 100, and the policy's mean and log-std) bf16 would
    round coarsely. Without autocast it is ``nn.Linear``."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(h.device.type):
            return super().forward(h)
        with torch.autocast(h.device.type, enabled=False):
            return super().forward(h.float())


class MLP(nn.Sequential):
    """ReLU MLP ``in_dim -> hidden_sizes -> out_dim``: ``Linear, ReLU, ..., Float32Linear``.

    Shapes:
        x [*, in_dim] -> [*, out_dim]
    """

    def __init__(self, in_dim: int, hidden_sizes: list[int], out_dim: int) -> None:
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            # in place: a Linear keeps its input for the backward, not its output
            layers += [nn.Linear(in_dim, size), nn.ReLU(inplace=True)]
            in_dim = size
        layers.append(Float32Linear(in_dim, out_dim))
        super().__init__(*layers)


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers, parameters stacked: ``weight[e]`` is member e's ``[out, in]``
    (as in ``nn.Linear``), ``bias[e]`` its ``[out]``.

    Each member is initialised like ``nn.Linear`` (uniform in ±1/sqrt(in_dim)). Inputs are
    feature-major, ``[E, in, N]``, so that each member's layer is ``W h + b``, one batched matmul
    with the weights as stored.

    Shapes:
        x: [E, in_dim, N] -> [E, out_dim, N]
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n_members, out_dim, in_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, *, detached: bool = False) -> torch.Tensor:
        """With ``detached`` no gradient reaches the parameters (it still flows to ``x``)."""
        weight, bias = (self.weight.detach(), self.bias.detach()) if detached else (self.weight, self.bias)
        return torch.baddbmm(bias.unsqueeze(2), weight, x)


class EnsembleMLP(nn.Module):
    """``E`` independent ReLU MLPs evaluated together in batched matmuls: the twin critics as one
    network. The output layer stays float32 under autocast, as :class:`Float32Linear`.

    Shapes:
        x: [N, in_dim] (shared by all members) or [E, N, in_dim] -> [E, N, out_dim]
    """

    def __init__(self, n_members: int, in_dim: int, hidden_sizes: list[int], out_dim: int) -> None:
        super().__init__()
        self.n_members = n_members
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n_members, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, detached=False)

    def forward_detached(self, x: torch.Tensor) -> torch.Tensor:
        """The forward with the parameters detached: gradients flow to ``x`` only. The actor's loss
        differentiates through Q this way, without computing Q's weight gradients."""
        return self._run(x, detached=True)

    def _run(self, x: torch.Tensor, *, detached: bool) -> torch.Tensor:
        h = x.t().expand(self.n_members, *x.shape[::-1]) if x.dim() == 2 else x.transpose(1, 2)  # [E, in, N]
        *hidden, output = self.layers
        for layer in hidden:
            h = layer(h, detached=detached).relu_()
        if torch.is_autocast_enabled(h.device.type):
            with torch.autocast(h.device.type, enabled=False):
                h = output(h.float(), detached=detached)
        else:
            h = output(h, detached=detached)
        return h.transpose(1, 2).contiguous()  # [E, N, out], row-major again (a small copy)


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
        self.net = MLP(in_dim, hidden_sizes, 2 * action_dim)

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
