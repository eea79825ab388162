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


def check_number(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` unless it is a positive
    number (or zero, with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be a {'number >= 0' if allow_zero else 'positive number'}, got {value!r}")
    return float(value)


def check_min_var(min_var: float) -> float:
    """Return ``min_var`` as a float, or raise ``ValueError`` unless it is positive."""
    return check_number("min_var", min_var)


def check_positive_int(name: str, value: int) -> int:
    """Return ``value``, or raise ``ValueError`` naming ``name`` unless it is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
