"""The ``ContextEncoder`` contract: context in, distribution over the task latent z out.

Shapes:
    T: number of tasks (``n_tasks``), N: transitions per task (``n_transitions``),
    C: context dimension (``context_dim``), L: latent dimension (``latent_dim``).
"""

from __future__ import annotations

import logging
from typing import ClassVar

import torch
from pyro.distributions.kl import kl_divergence  # importing this module registers pyro's KL rules
from torch import Tensor, nn
from torch.distributions import Distribution

from encoders.gaussian import standard_normal
from encoders.moments import monte_carlo_kl

_LOGGER = logging.getLogger(__name__)


class ContextEncoder(nn.Module):
    """Base class of every context encoder: q(z | c) for a batch of tasks.

    Subclasses are built with keyword arguments only: ``context_dim`` and ``latent_dim`` (passed by
    the framework) plus their own, which come from the config's ``encoder.kwargs`` mapping. They
    implement :meth:`forward` and declare their nature with three class attributes:

    - ``recurrent``: the encoder needs the context in time order. Each call to :meth:`forward`
      starts from a fresh (zero) state, which is the reset at the start of a task; an encoder must
      not carry state from one call to the next.
    - ``permutation_invariant``: the posterior must not depend on the order of the transitions.
      The checker verifies it; the framework may then feed the context in any order.
    - ``information_bottleneck``: when False, the KL term is off (:meth:`kl_to_prior` returns zeros).

    Args:
        context_dim: size of one context transition (for example obs + action + reward).
        latent_dim: size of z.

    Shapes:
        forward: context [T, N, C] -> distribution with batch_shape (T,), event_shape (L,).
        kl_to_prior: distribution as above -> [T].
    """

    recurrent: ClassVar[bool] = False
    permutation_invariant: ClassVar[bool] = True
    information_bottleneck: ClassVar[bool] = True
    mc_kl_samples: ClassVar[int] = 64
    """Samples per task for the Monte Carlo KL, used only when no closed-form KL is registered."""

    def __init__(self, *, context_dim: int, latent_dim: int) -> None:
        super().__init__()
        for name, value in (("context_dim", context_dim), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.context_dim = context_dim
        self.latent_dim = latent_dim
        self._warned_mc_kl = False

    def forward(self, context: Tensor) -> Distribution:
        """Infer q(z | c) for each task from its context.

        Args:
            context: transitions of each task; time-ordered when ``recurrent`` is True.

        Returns:
            A distribution over z with batch_shape (T,) and event_shape (L,) that supports
            ``rsample()``, e.g. ``pyro.distributions.Normal(loc, scale).to_event(1)``.

        Shapes:
            context: [T, N, C] with N >= 1; returns batch_shape (T,), event_shape (L,).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward(context)")

    def prior(self, n_tasks: int) -> Distribution:
        """The prior p(z): N(0, I) unless overridden, on the device and dtype of the parameters.

        Args:
            n_tasks: number of tasks T.

        Returns:
            A distribution with batch_shape (T,) and event_shape (L,).

        Shapes:
            returns batch_shape (T,), event_shape (L,).
        """
        return standard_normal(n_tasks, self.latent_dim, like=self._reference_tensor())

    def kl_to_prior(self, posterior: Distribution) -> Tensor:
        """KL(q(z | c) || p(z)) per task.

        Uses the distribution library's registered KL (``pyro.distributions.kl.kl_divergence``,
        which includes torch's rules). When none is registered for the pair, a reparameterised
        Monte Carlo estimate with ``mc_kl_samples`` samples per task is returned instead, and a
        warning is logged once per encoder. When ``information_bottleneck`` is False the KL is off:
        the result is zeros on the posterior's device, still attached to the graph (zero gradient).

        Args:
            posterior: the output of :meth:`forward`.

        Returns:
            The KL divergence of each task's posterior from the prior.

        Shapes:
            posterior: batch_shape (T,), event_shape (L,); returns [T].
        """
        n_tasks = posterior.batch_shape[0] if len(posterior.batch_shape) > 0 else 1
        if not self.information_bottleneck:
            return self._attached_zeros(posterior, n_tasks)
        prior = self.prior(n_tasks)
        try:
            return kl_divergence(posterior, prior)
        except NotImplementedError:
            pass
        if not getattr(self, "_warned_mc_kl", False):
            _LOGGER.warning(
                "%s: no closed-form KL is registered for %s || %s; using a Monte Carlo estimate "
                "with %d samples per task (register one with pyro.distributions.kl.register_kl "
                "to make it exact)",
                type(self).__name__,
                type(posterior).__name__,
                type(prior).__name__,
                self.mc_kl_samples,
            )
            self._warned_mc_kl = True
        return monte_carlo_kl(posterior, prior, self.mc_kl_samples)  # [T]

    def validate_context(self, context: Tensor) -> None:
        """Raise ``ValueError`` naming the shapes if ``context`` is not a non-empty [T, N, C] tensor.

        Shapes:
            context: [T, N, C] with T >= 1, N >= 1 and C == context_dim.
        """
        if not isinstance(context, Tensor):
            raise ValueError(f"{type(self).__name__}: context must be a torch.Tensor, got {type(context).__name__}")
        if context.dim() != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"{type(self).__name__}: context must have shape [n_tasks, n_transitions, "
                f"{self.context_dim}], got {tuple(context.shape)}"
            )
        if context.shape[0] == 0 or context.shape[1] == 0:
            raise ValueError(
                f"{type(self).__name__}: context {tuple(context.shape)} is empty; with no context, "
                "draw z from encoder.prior(n_tasks) instead"
            )

    def _reference_tensor(self) -> Tensor | None:
        """A parameter (or buffer) giving the encoder's device and dtype; None if it has neither."""
        for tensor in self.parameters():
            return tensor
        for tensor in self.buffers():
            return tensor
        return None

    def _attached_zeros(self, posterior: Distribution, n_tasks: int) -> Tensor:
        """Zeros of shape [T], connected to the posterior's graph with a zero gradient when possible."""
        try:
            mean = posterior.mean  # [T, L]
        except NotImplementedError:
            reference = self._reference_tensor()
            if reference is None:
                return torch.zeros(n_tasks)
            return reference.new_zeros(n_tasks)
        # 0 * finite(mean): exact zeros whose backward is a zero gradient, so `loss_kl.backward()`
        # works whether or not the KL is on.
        finite_mean = torch.nan_to_num(mean, nan=0.0, posinf=0.0, neginf=0.0)
        return (finite_mean * 0.0).reshape(n_tasks, -1).sum(dim=-1)


def describe_distribution(value: object) -> str:
    """One-line description of an encoder output, for error messages and check reports."""
    if isinstance(value, Distribution):
        name = type(value).__name__
        base = getattr(value, "base_dist", None)
        if isinstance(base, Distribution):  # e.g. Independent(Normal)
            name = f"{name}({type(base).__name__})"
        return (
            f"{name} with batch_shape {tuple(value.batch_shape)} and "
            f"event_shape {tuple(value.event_shape)}"
        )
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} items"
    return f"a {type(value).__name__}"

