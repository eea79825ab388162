"""Small network builders shared by the built-in encoders."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def build_mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int) -> nn.Sequential:
    """A ReLU MLP: ``in_dim -> hidden_sizes... -> out_dim``, with a linear output layer.

    Args:
        in_dim: input size.
        hidden_sizes: width of each hidden layer; empty for a single linear layer.
        out_dim: output size.

    Returns:
        The network; it acts on the last axis, so it maps [*, in_dim] to [*, out_dim].

    Shapes:
        input [*, in_dim]; output [*, out_dim].
    """
    sizes = [int(size) for size in hidden_sizes]
    if any(size < 1 for size in sizes):
        raise ValueError(f"hidden_sizes must be positive ints, got {list(hidden_sizes)!r}")
    layers: list[nn.Module] = []
    previous = in_dim
    for size in sizes:
        layers += [nn.Linear(previous, size), nn.ReLU()]
        previous = size
    layers.append(nn.Linear(previous, out_dim))
    return nn.Sequential(*layers)


def check_min_var(min_var: float) -> float:
    """Return ``min_var`` as a float, or raise ``ValueError`` unless it is positive."""
    if isinstance(min_var, bool) or not isinstance(min_var, (int, float)) or not min_var > 0:
        raise ValueError(f"min_var must be a positive number, got {min_var!r}")
    return float(min_var)


def check_positive_int(name: str, value: int) -> int:
    """Return ``value``, or raise ``ValueError`` naming ``name`` unless it is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
