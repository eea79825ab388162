"""Context encoders q(z | c) for PEARL: the contract, the registry, the built-ins and the checker.

An encoder maps the context of each task to a distribution over the task latent z:

    context [T, N, C]  ->  distribution with batch_shape (T,) and event_shape (L,)

Shapes (letters used throughout the package):
    T: number of tasks (``n_tasks``), N: transitions per task (``n_transitions``),
    C: size of one transition (``context_dim``), L: size of z (``latent_dim``).

Built-ins, by registered name: ``"mlp"`` (PEARL's product of Gaussians, the default),
``"deterministic"`` (no information bottleneck), ``"gru"`` (recurrent), ``"attention"`` (set encoder),
``"flow"`` (a Gaussian shaped by a conditional normalizing flow), ``"mixture"`` (a mixture of Gaussians).
Custom encoders subclass :class:`ContextEncoder` and are found by ``@register_encoder`` name, by
``"package.module:ClassName"`` path, or by an entry point in the group ``pearl.encoders``; see
``docs/encoders.md``.
"""

from encoders.base import ContextEncoder
from encoders.registry import (
    ENTRY_POINT_GROUP,
    EncoderError,
    build_encoder,
    register_encoder,
    registered_encoders,
    resolve_encoder_class,
)
from encoders.gaussian import product_of_gaussians
from encoders.checker import CheckReport, CheckResult, check_encoder, check_encoder_cli

# Built-ins register themselves on import.
from encoders.mlp import DeterministicEncoder, MLPEncoder
from encoders.recurrent import GRUEncoder
from encoders.attention import AttentionEncoder
from encoders.flow import FlowEncoder
from encoders.mixture import MixtureEncoder

DEFAULT_ENCODER = "mlp"

__all__ = [
    "DEFAULT_ENCODER",
    "ENTRY_POINT_GROUP",
    "AttentionEncoder",
    "CheckReport",
    "CheckResult",
    "ContextEncoder",
    "DeterministicEncoder",
    "EncoderError",
    "FlowEncoder",
    "GRUEncoder",
    "MLPEncoder",
    "MixtureEncoder",
    "build_encoder",
    "check_encoder",
    "check_encoder_cli",
    "product_of_gaussians",
    "register_encoder",
    "registered_encoders",
    "resolve_encoder_class",
]
