"""Figures logged with a run: the learning curve and the adaptation curve."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curve(
    steps: Sequence[int], adapted: Sequence[float], prior: Sequence[float], *, title: str
) -> Figure:
    """Test-task return after adaptation and with z from the prior, against environment steps."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(steps, adapted, marker="o", ms=3, label="adapted (z ~ q(z|c))")
    ax.plot(steps, prior, marker="s", ms=3, ls="--", label="exploration (z ~ prior)")
    return _finish(fig, ax, "environment steps (training collection)", "mean return on test tasks", title)


def adaptation_curve(returns: np.ndarray, num_exp_traj_eval: int, *, title: str) -> Figure:
    """Return per episode index (mean ± std over tasks); shaded: exploration episodes.

    Shapes:
        returns: [K, E]
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    episodes = np.arange(returns.shape[1])
    mean, std = returns.mean(0), returns.std(0)
    ax.axvspan(-0.5, num_exp_traj_eval - 0.5, color="0.9", label="exploration (z ~ prior)")
    ax.errorbar(episodes, mean, yerr=std, marker="o", capsize=3, label="mean ± std over tasks")
    ax.set_xticks(episodes)
    ax.set_xlim(-0.5, returns.shape[1] - 0.5)
    return _finish(fig, ax, "episode index within the task", "return", title)


def _finish(fig: Figure, ax: plt.Axes, xlabel: str, ylabel: str, title: str) -> Figure:
    """Labels, title, grid and legend shared by every figure here."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
