"""The exact posterior of a learned reward model over a 1-dimensional z, on a grid (``eval.posterior: decoder``).

With a reward decoder r̂(s, a, z) trained by ``algo.reward_decoder_weight`` w (its loss is the Gaussian
negative log-likelihood with 1 / (2 σ²) = w), the posterior of z given a context c = {(s_i, a_i, r_i)} is

    p(z | c) ∝ N(z; 0, 1) · exp(-w Σ_i (r̂(s_i, a_i, z) - r_i)²).

:class:`DecoderPosterior` evaluates it on a uniform grid of z and :class:`GridPosterior` samples it. Unlike
q(z|c), a product of Gaussian factors, it may have several modes, and transitions without a reward tell it
where the task is not (the agent went there), so posterior sampling with it rules out what it has seen:
Thompson sampling under the learned model. The encoder still trains everything (the decoder included); this
is only how the agent reads a context when it acts.

Shapes:
    T: tasks, N: context transitions, C: context dim, G: grid points.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, constraints


class GridPosterior(Distribution):
    """A distribution over a 1-dimensional z given by its probabilities on a uniform grid of cells; a sample
    is a cell drawn by its probability and a uniform point inside it.

    Args:
        grid: ``[G]`` the cell centres, evenly spaced (G >= 2).
        logits: ``[T, G]`` unnormalised log-probabilities of the cells.

    Shapes:
        batch ``[T]``, event ``[1]``.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, grid: torch.Tensor, logits: torch.Tensor) -> None:
        if grid.dim() != 1 or grid.numel() < 2 or logits.dim() != 2 or logits.shape[1] != grid.numel():
            raise ValueError(f"GridPosterior: expected grid [G >= 2] and logits [T, G], got {tuple(grid.shape)} "
                             f"and {tuple(logits.shape)}")
        self.grid, self.step = grid, grid[1] - grid[0]
        self.probs = torch.softmax(logits, dim=-1)
        super().__init__(batch_shape=logits.shape[:1], event_shape=torch.Size([1]), validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        """``[T, 1]``."""
        return (self.probs * self.grid).sum(-1, keepdim=True)

    @property
    def variance(self) -> torch.Tensor:
        """``[T, 1]``: the spread of the cells plus the uniform spread inside one (step² / 12)."""
        centred = (self.grid - self.mean).square()
        return (self.probs * centred).sum(-1, keepdim=True) + self.step.square() / 12

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """``[*sample_shape, T, 1]``."""
        shape = torch.Size(sample_shape)
        n, T = max(shape.numel(), 1), self.probs.shape[0]
        cells = torch.multinomial(self.probs, n, replacement=True).T  # [n, T]
        z = self.grid[cells] + (torch.rand(cells.shape, device=self.grid.device) - 0.5) * self.step
        return z.reshape(*shape, T, 1)


class DecoderPosterior:
    """Maps a context ``[T, N, C]`` to the :class:`GridPosterior` of z under a reward decoder and N(0, 1).

    Args:
        decoder: r̂, ``[*, reward_col + 1]`` (s, a, z) -> ``[*, 1]``.
        reward_col: the reward's column in a context row (s, a, r, ...); the columns before it are the
            decoder's (s, a).
        weight: w, the decoder's 1 / (2 σ²).
        grid_size: G cells evenly spaced over ``[-half_width, half_width]``.
        max_rows: decoder inputs per forward pass (memory), at least one grid point's worth.

    The likelihood is a sum over transitions, and a meta-test's contexts grow by appending episodes: a call
    whose context extends the previous call's (same tasks, same leading transitions) evaluates only the new
    transitions and adds them to the previous sum; so make one per meta-test, while the decoder does not change
    (:meth:`pearl.trainer.Trainer.acting_posterior` does).
    """

    def __init__(self, decoder: nn.Module, *, reward_col: int, weight: float, grid_size: int = 128,
                 half_width: float = 4.0, max_rows: int = 1 << 18) -> None:
        if weight <= 0:
            raise ValueError(f"DecoderPosterior: the decoder's weight must be positive, got {weight}")
        if grid_size < 2 or half_width <= 0:
            raise ValueError(f"DecoderPosterior: expected grid_size >= 2 and half_width > 0, got {grid_size}, "
                             f"{half_width}")
        self.decoder, self.reward_col, self.weight = decoder, reward_col, float(weight)
        self.grid_size, self.half_width, self.max_rows = grid_size, half_width, max_rows
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (context [T, N, C], log-likelihood [T, G])

    @torch.no_grad()
    def log_likelihood(self, context: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """``[T, G]`` -w Σ_i (r̂(s_i, a_i, z_g) - r_i)² for each task and grid point z_g."""
        T, N, _ = context.shape
        sa, reward = context[..., : self.reward_col], context[..., self.reward_col]
        out = torch.zeros(T, len(grid), device=context.device)
        per_pass = max(self.max_rows // max(T * N, 1), 1)  # grid points per forward pass
        for g0 in range(0, len(grid) if N else 0, per_pass):
            z = grid[g0 : g0 + per_pass]
            g = len(z)
            rows = torch.cat([sa[:, None].expand(T, g, N, self.reward_col),
                              z[None, :, None, None].expand(T, g, N, 1)], dim=-1)  # [T, g, N, reward_col + 1]
            predicted = self.decoder(rows)[..., 0]  # [T, g, N]
            out[:, g0 : g0 + g] = -self.weight * (predicted - reward[:, None]).square().sum(-1)
        return out

    def __call__(self, context: torch.Tensor) -> GridPosterior:
        """p(z | c) for each task's context ``[T, N, C]`` (N = 0: the prior on the grid)."""
        grid = torch.linspace(-self.half_width, self.half_width, self.grid_size, device=context.device)
        loglik, done = torch.zeros(context.shape[0], len(grid), device=context.device), 0
        if self._last is not None:
            last, last_loglik = self._last
            n = last.shape[1]
            if last.shape[0] == context.shape[0] and n <= context.shape[1] and torch.equal(last, context[:, :n]):
                loglik, done = last_loglik, n
        loglik = loglik + self.log_likelihood(context[:, done:], grid)
        self._last = (context.detach().clone(), loglik)
        return GridPosterior(grid, -0.5 * grid.square() + loglik)
