"""A normalizing-flow posterior: PEARL's product of Gaussian factors, shaped by a conditional flow.

Shapes:
    T: tasks, N: transitions per task, C: context_dim, L: latent_dim, E: embed_dim.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions import transforms
from pyro.nn import ConditionalDenseNN
from torch import Tensor, nn
from torch.distributions import Distribution

from encoders.base import ContextEncoder
from encoders.gaussian import DEFAULT_MIN_VAR, product_of_gaussians, variance_from_raw
from encoders.moments import monte_carlo_kl
from encoders.nets import build_mlp, check_min_var, check_number, check_positive_int
from encoders.registry import register_encoder

FLOW_LAYERS = ("spline", "affine_coupling")
"""Layer kinds of the flow: an element-wise rational spline, or a RealNVP affine coupling."""

LOG_SCALE_BOUND = 3.0
"""An affine coupling scales by at most exp(3) = 20, as pyro's default clip allows."""


class SmoothLogScale(nn.Module):
    """A coupling's conditioning network whose log-scale is squashed smoothly into (-b, b).

    pyro's affine coupling clips the log-scale with straight-through gradients. A KL that asks for a
    wider posterior then keeps pushing a clipped log-scale, and the network and the context
    embedding feeding it grow without bound: on the point robot the embedding went from 9 to 18,000
    in five iterations, then to NaN. ``b * tanh(s / b)`` stays within pyro's clip, and its gradient
    fades where it saturates.

    Shapes:
        x [..., D1], context [..., E] -> shift [..., D2], log-scale [..., D2].
    """

    def __init__(self, net: nn.Module, bound: float = LOG_SCALE_BOUND) -> None:
        super().__init__()
        self.net, self.bound = net, bound

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.net(x, context)
        return shift, self.bound * torch.tanh(log_scale / self.bound)


def affine_coupling(latent_dim: int, embed_dim: int, hidden: list[int]) -> transforms.ConditionalAffineCoupling:
    """RealNVP coupling conditioned on the context embedding: the last ``latent_dim - latent_dim // 2``
    coordinates shift and scale as a function of the first ones and the embedding."""
    split = latent_dim // 2
    net = ConditionalDenseNN(split, embed_dim, hidden, [latent_dim - split, latent_dim - split])
    return transforms.ConditionalAffineCoupling(split, SmoothLogScale(net))


@register_encoder("flow")
class FlowEncoder(ContextEncoder):
    """q(z|c) as a Gaussian from per-transition factors, reshaped by a flow conditioned on the context.

    An MLP maps each transition c_i to a Gaussian factor N(mu_i, var_i) and an embedding e_i. The
    factors multiply into the base Gaussian N(mu, var) as in PEARL's encoder, and the mean
    embedding h = mean_i e_i conditions a flow f_h (pyro's conditional transforms) that acts in
    the base's standardised coordinates:

        eps ~ N(0, I),    z = mu + sqrt(var) * f_h(eps).

    With f_h the identity, z ~ N(mu, var), the ``mlp`` encoder's posterior. Standardising first
    keeps the splines' bounding box [-bound, bound] on the base's +-bound standard deviations,
    wherever the base lies and however narrow it has become; the flow adds shape (skew, several
    modes, correlation) but not width, which still shrinks as context grows. Both parts are
    invariant to the order of the context.

    Layers, in order: ``"spline"`` (``conditional_spline``: a monotone rational spline per
    coordinate, which can split a coordinate into several modes) and ``"affine_coupling"``
    (pyro's ``ConditionalAffineCoupling``: half of the coordinates shift and scale, by at most a
    factor exp(3), as a smooth function of the other half, which correlates them; each is followed
    by a reversal of the coordinates, and it needs ``latent_dim >= 2``).

    No closed-form KL to N(0, I) exists: ``kl_to_prior`` is a reparameterised Monte Carlo estimate
    with ``kl_samples`` draws per task.

    Args:
        context_dim: size of one context transition.
        latent_dim: size of z.
        layers: the flow's layers, from ``FLOW_LAYERS``.
        hidden_sizes: hidden layer widths of the per-transition MLP.
        embed_dim: size E of the context embedding that conditions the flow.
        flow_hidden_sizes: hidden widths of each layer's conditioning network.
        count_bins: segments of each spline.
        bound: half-width of the splines' box, in standard deviations of the base.
        min_var: floor added to each factor's variance.
        kl_samples: samples per task of the Monte Carlo KL.

    Shapes:
        context [T, N, C] -> TransformedDistribution, batch_shape (T,), event_shape (L,).

    Examples:
        >>> encoder = FlowEncoder(context_dim=3, latent_dim=2, layers=["spline"], hidden_sizes=[16])
        >>> posterior = encoder(torch.zeros(4, 7, 3))  # 4 tasks, 7 transitions each
        >>> tuple(posterior.batch_shape), tuple(posterior.event_shape), posterior.has_rsample
        ((4,), (2,), True)
    """

    def __init__(
        self,
        *,
        context_dim: int,
        latent_dim: int,
        layers: Sequence[str] = FLOW_LAYERS,
        hidden_sizes: Sequence[int] = (200, 200, 200),
        embed_dim: int = 32,
        flow_hidden_sizes: Sequence[int] = (64,),
        count_bins: int = 8,
        bound: float = 3.0,
        min_var: float = DEFAULT_MIN_VAR,
        kl_samples: int = 32,
    ) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.layer_kinds = _check_layers(layers, latent_dim)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        self.kl_samples = check_positive_int("kl_samples", kl_samples)
        self.min_var = check_min_var(min_var)
        self.net = build_mlp(context_dim, hidden_sizes, 2 * latent_dim + embed_dim)
        hidden = [check_positive_int("flow_hidden_sizes", size) for size in flow_hidden_sizes]
        check_positive_int("count_bins", count_bins)
        bound = check_number("bound", bound)
        self.flow = nn.ModuleList(
            transforms.conditional_spline(latent_dim, embed_dim, hidden, count_bins=count_bins, bound=bound)
            if kind == "spline"
            else affine_coupling(latent_dim, embed_dim, hidden)
            for kind in self.layer_kinds
        )
        # a buffer, so that it follows the encoder to its device
        self.register_buffer("reversal", torch.arange(latent_dim - 1, -1, -1), persistent=False)

    def base_and_embedding(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The base Gaussian's mean and variance and the context embedding.

        Shapes:
            context [T, N, C] -> [T, L], [T, L], [T, E].
        """
        self.validate_context(context)
        mu, raw_var, embedding = self.net(context).split([self.latent_dim, self.latent_dim, self.embed_dim], dim=-1)
        mu, var = product_of_gaussians(mu, variance_from_raw(raw_var, min_var=self.min_var))  # [T, L] each
        return mu, var, embedding.mean(dim=1)

    def forward(self, context: Tensor) -> Distribution:
        mu, var, h = self.base_and_embedding(context)
        steps: list[transforms.Transform] = []
        for kind, layer in zip(self.layer_kinds, self.flow):
            steps.append(layer.condition(h))
            if kind == "affine_coupling":
                steps.append(transforms.Permute(self.reversal))
        # cached, like pyro's transforms: the log_prob of a draw reuses the forward pass, no inverse
        steps.append(transforms.AffineTransform(mu, var.sqrt(), event_dim=1, cache_size=1))
        noise = dist.Normal(torch.zeros_like(mu), torch.ones_like(mu)).to_event(1)
        return dist.TransformedDistribution(noise, steps)

    def kl_to_prior(self, posterior: Distribution) -> Tensor:
        """Monte Carlo KL(q || N(0, I)) with ``kl_samples`` reparameterised draws per task.

        Shapes:
            posterior batch (T,) -> [T].
        """
        return monte_carlo_kl(posterior, self.prior(posterior.batch_shape[0]), self.kl_samples)


def _check_layers(layers: Sequence[str], latent_dim: int) -> tuple[str, ...]:
    kinds = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [kind for kind in kinds if kind not in FLOW_LAYERS]
    if not kinds or unknown:
        raise ValueError(f"layers must be a non-empty list of {', '.join(FLOW_LAYERS)}; got {list(kinds)!r}")
    if "affine_coupling" in kinds and latent_dim < 2:
        raise ValueError("affine_coupling layers need latent_dim >= 2 (they split z in two); use layers: [spline]")
    return kinds
