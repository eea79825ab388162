"""Networks of the z-conditioned SAC: MLPs, a batched twin critic, and the tanh-Gaussian policy.

Shapes:
    N: rows (tasks x transitions, flattened), O: obs dim, A: action dim, L: latent dim, E: ensemble size.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


# Layout. The hidden activations of every network here are kept feature-major, ``[features, rows]``
# (``hᵀ``), and each layer computes ``hᵀ ← W hᵀ + b``. It is the same arithmetic as the usual
# ``h Wᵀ + b``, but the matmuls become [300 x 300] @ [300 x 4096] instead of [4096 x 300] @ [300 x 300]:
# CPU BLAS (MKL) runs the forward, input-gradient and weight-gradient products of this shape about
# 1.5x faster on the paper's sizes, and GPUs do not mind. Only the narrow inputs (obs, action, z)
# and outputs (Q, V, policy head) are transposed, as views. Small batches (acting in a few envs)
# stay row-major, where MKL's small-matrix kernels are the faster ones.

FEATURE_MAJOR_MIN_ROWS = 128
#
# Under bf16 autocast the hidden layers run in bfloat16 but the output layer stays float32, so Q
# and V values (hundreds, with reward_scale 100) and the policy head keep full precision.


def _output_precision(h: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for the output layer (and ``h`` to be cast to float32) when it is on."""
    if torch.is_autocast_enabled(h.device.type):
        return torch.autocast(h.device.type, enabled=False)
    return contextlib.nullcontext()


class MLP(nn.Sequential):
    """ReLU MLP ``in_dim -> hidden_sizes -> out_dim``: an ``nn.Sequential`` of Linear and ReLU
    (the usual parameters and state_dict), evaluated feature-major (see the layout note above).

    With ``detach_params=True`` no gradient reaches the parameters (it still flows to the input).

    Shapes:
        x [*, in_dim] -> [*, out_dim]
    """

    def __init__(self, in_dim: int, hidden_sizes: list[int], out_dim: int) -> None:
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Linear(in_dim, size), nn.ReLU()]
            in_dim = size
        layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)
        self._linears: tuple[nn.Linear, ...] = tuple(m for m in layers if isinstance(m, nn.Linear))

    def forward(self, x: torch.Tensor, *, detach_params: bool = False) -> torch.Tensor:
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])  # [rows, in]
        feature_major = h.shape[0] >= FEATURE_MAJOR_MIN_ROWS
        if feature_major:
            h = h.t()  # [in, rows]
        last = len(self._linears) - 1
        for i, layer in enumerate(self._linears):
            weight, bias = layer.weight, layer.bias
            if detach_params:
                weight, bias = weight.detach(), bias.detach()
            h = _dense(h, weight, bias, feature_major=feature_major, output=i == last)
        if feature_major:
            h = h.t().contiguous()  # row-major again (a small copy)
        return h.reshape(*lead, h.shape[-1])


def _dense(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, feature_major: bool,
           output: bool) -> torch.Tensor:
    """One layer: ``relu(W h + b)`` (hidden) or ``W h + b`` (output; float32 under autocast).

    Shapes:
        h [in, rows] (feature_major) or [rows, in] -> [out, rows] or [rows, out]
    """
    if output:
        with _output_precision(h):
            h = h.float()
            return torch.addmm(bias.unsqueeze(1), weight, h) if feature_major else F.linear(h, weight, bias)
    # relu in place: neither addmm nor linear keeps its output for the backward
    return (torch.addmm(bias.unsqueeze(1), weight, h) if feature_major else F.linear(h, weight, bias)).relu_()


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int) -> MLP:
    """ReLU MLP ``in_dim -> hidden_sizes -> out_dim``."""
    return MLP(in_dim, hidden_sizes, out_dim)


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers, parameters stacked: ``weight[e]`` is member e's ``[out, in]``
    (as in ``nn.Linear``), ``bias[e]`` its ``[out]``.

    Each member is initialised like ``nn.Linear`` (uniform in ±1/sqrt(in_dim)).

    Shapes:
        x: [E, in_dim, N] (feature-major) -> [E, out_dim, N]
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n_members, out_dim, in_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, *, detach_params: bool = False) -> torch.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        return torch.baddbmm(bias.unsqueeze(2), weight, x)


class EnsembleMLP(nn.Module):
    """``E`` independent ReLU MLPs evaluated together in batched matmuls (the twin critics as one
    network), feature-major inside.

    With ``detach_params=True`` no gradient reaches the parameters (it still flows to the input):
    the actor's loss differentiates through Q without computing Q's weight gradients.

    Shapes:
        x: [N, in_dim] (shared by all members) or [E, N, in_dim] -> [E, N, out_dim]
    """

    def __init__(self, n_members: int, in_dim: int, hidden_sizes: list[int], out_dim: int) -> None:
        super().__init__()
        self.n_members = n_members
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n_members, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor, *, detach_params: bool = False) -> torch.Tensor:
        return self._run(x, detach_params=detach_params)

    def forward_detached(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x, detach_params=True)``: gradients flow to ``x`` only (not through module hooks)."""
        return self._run(x, detach_params=True)

    def _run(self, x: torch.Tensor, *, detach_params: bool) -> torch.Tensor:
        h = x.t().expand(self.n_members, *x.shape[::-1]) if x.dim() == 2 else x.transpose(1, 2)  # [E, in, N]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i < last:
                h = layer(h, detach_params=detach_params).relu_()
            else:
                with _output_precision(h):
                    h = layer(h.float(), detach_params=detach_params)
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
