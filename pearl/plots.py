"""Every figure pearl draws: a run's learning and adaptation curves, and the latent embedding's
projection, contraction and probe plots.

Each takes a ``title`` (callers name the run and the env in it) and returns a matplotlib ``Figure``;
nothing is shown on screen, and nothing here computes what it draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

    from pearl.latents.measures import Contraction, LatentTable, ProbeResult
    from pearl.latents.projection import Projection

MAX_PANELS = 4  # task parameters shown side by side (one panel each)
_MARKERS = {"train": "o", "test": "^"}


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


# ----------------------------------------------------------------------------------------------
# comparisons of runs and sweeps (pearl.compare)


def comparison(summary: pd.DataFrame, seeds: pd.DataFrame, learning: pd.DataFrame, adaptation: pd.DataFrame, *,
               title: str) -> Figure:
    """Three panels, one colour per group: learning curves and adaptation curves (mean over seeds, the
    band its confidence interval), and the final adapted return per group (IQM and mean with their
    intervals, each seed's run as a dot)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for i, (group, row) in enumerate(summary.set_index("group").iterrows()):
        color = f"C{i % 10}"
        for ax, frame, x in ((axes[0], learning, "env_steps"), (axes[1], adaptation, "episode")):
            part = frame[frame["group"] == group]
            ax.plot(part[x], part["mean"], marker="o", ms=3, color=color, label=group)
            ax.fill_between(part[x], part["ci_low"], part["ci_high"], color=color, alpha=0.2, lw=0)
        for offset, name, marker in ((-0.12, "iqm", "D"), (0.12, "mean", "o")):
            err = np.abs(np.array([[row[f"{name}_ci_low"]], [row[f"{name}_ci_high"]]]) - row[name])
            axes[2].errorbar(i + offset, row[name], yerr=np.nan_to_num(err), fmt=marker, color=color, capsize=4,
                             label=name.upper() if i == 0 else None)
        finished = seeds[(seeds["group"] == group) & (seeds["status"] == "FINISHED")]
        axes[2].scatter(np.full(len(finished), i), finished["final_return"], s=12, color="0.4", zorder=3)
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].set_xticks(range(len(summary)), summary["group"], rotation=20, ha="right")
    axes[2].set_xlim(-0.5, len(summary) - 0.5)  # a lone group would otherwise spread to the edges
    _finish(fig, axes[0], "environment steps (training collection)", "test return after adaptation",
            "learning curves (mean, 95% CI)")
    _finish(fig, axes[1], "episode index within the task", "return", "adaptation curves (mean, 95% CI)")
    _finish(fig, axes[2], "group", "final test return after adaptation", "IQM and mean (95% CI); dots: seeds")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# the latent embedding


def projection(table: LatentTable, plane: Projection, *, title: str, color_by: Sequence[str] | None = None) -> Figure:
    """Posterior means in 2-D (``plane``, from :func:`pearl.latents.projection.project`), one panel
    per task parameter, each coloured by that parameter.

    Circles are training tasks, triangles test tasks. With PCA every task also gets the 1-σ
    ellipse of its posterior projected into the plane (``A Σ Aᵀ`` with ``A`` the two principal axes).
    """
    names = list(color_by) if color_by is not None else list(table.param_names[:MAX_PANELS])
    unknown = [n for n in names if n not in table.param_names]
    if unknown:
        raise ValueError(f"color_by: unknown task parameter(s) {unknown}; this env has {list(table.param_names)}")
    xy, labels, cov, method = plane.xy, plane.labels, plane.cov, plane.method
    panels = max(len(names), 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), squeeze=False)
    for ax, name in zip(axes[0], names or [None]):
        values = table.params[:, table.param_names.index(name)] if name else np.zeros(len(table))
        lo, hi = float(values.min()), float(values.max())
        norm = matplotlib.colors.Normalize(lo, hi if hi > lo else lo + 1.0)
        cmap = plt.get_cmap("viridis")
        if cov is not None:
            for k in range(len(table)):
                width, height, angle = _ellipse(cov[k])
                ax.add_patch(Ellipse(xy[k], width, height, angle=angle, facecolor="none",
                                     edgecolor=cmap(norm(values[k])), lw=0.8, alpha=0.6, zorder=1))
        for split, marker in _MARKERS.items():
            rows = table.splits == split
            if rows.any():
                ax.scatter(xy[rows, 0], xy[rows, 1], c=values[rows], cmap=cmap, norm=norm, marker=marker, s=36,
                           edgecolors="k", linewidths=0.4, label=f"{split} tasks ({rows.sum()})", zorder=3)
        colorbar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        colorbar.set_label(f"true {name}" if name else "")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_title(f"coloured by {name}" if name else "", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", framealpha=0.8)
        ax.autoscale_view()
    note = "outlines: 1-σ posterior ellipses" if cov is not None else "no ellipses: nonlinear projection"
    n_ctx = int(np.median(table.n_context)) if len(table) else 0
    fig.suptitle(f"{title}\nposterior means of q(z|c) ({method.upper()}, {n_ctx} context transitions; {note})",
                 fontsize=11)
    fig.tight_layout()
    return fig


def _ellipse(cov: np.ndarray) -> tuple[float, float, float]:
    """Width, height (2σ along each principal axis) and angle in degrees of a 2x2 covariance."""
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals = np.clip(eigvals, 0.0, None)
    angle = float(np.degrees(np.arctan2(eigvecs[1, 1], eigvecs[0, 1])))
    return 2 * float(np.sqrt(eigvals[1])), 2 * float(np.sqrt(eigvals[0])), angle


def contraction(curve: Contraction, *, title: str, episode_length: int | None = None) -> Figure:
    """Against context transitions: posterior std (per latent dim and mean), KL to the prior, and
    (when measured) the probe's held-out R²."""
    panels = 3 if curve.probe_r2 is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.0))
    ax_std, ax_kl = axes[0], axes[1]
    n = curve.n_context
    for d in range(curve.std.shape[1]):
        ax_std.plot(n, curve.std[:, d], color="0.6", lw=0.8, label="per latent dim" if d == 0 else None)
    ax_std.plot(n, curve.mean_std, color="C0", lw=2.2, marker="o", label="mean over dims")
    ax_std.set_ylabel("posterior std of z (mean over tasks)")
    ax_kl.plot(n, curve.kl_to_prior, color="C1", lw=2.2, marker="o")
    ax_kl.set_ylabel("KL(q(z|c) ‖ p(z)) in nats (mean over tasks)")
    if curve.probe_r2 is not None:
        axes[2].plot(n, curve.probe_r2, color="C2", lw=2.2, marker="o")
        axes[2].axhline(0.0, color="k", lw=0.8)
        axes[2].set_ylabel("probe R² on held-out tasks")
        axes[2].set_ylim(min(-0.2, float(np.nanmin(curve.probe_r2)) - 0.05) if np.isfinite(curve.probe_r2).any()
                         else -0.2, 1.02)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(int(v)) for v in n])
        ax.minorticks_off()
        ax.set_xlabel("context transitions seen")
        ax.grid(alpha=0.3, which="both")
        if episode_length:
            for e in range(episode_length, int(n.max()) + 1, episode_length):
                ax.axvline(e, color="k", ls=":", lw=0.8)
    ax_std.set_ylim(bottom=0)
    ax_std.legend(fontsize=8)
    if episode_length:
        ax_kl.text(0.02, 0.97, f"dotted: episode ends ({episode_length} steps)", transform=ax_kl.transAxes,
                   va="top", fontsize=8)
    fig.suptitle(f"{title}\nposterior contraction over {int(curve.n_tasks.max())} tasks", fontsize=11)
    fig.tight_layout()
    return fig


def probe(result: ProbeResult, table: LatentTable, *, title: str) -> Figure:
    """Probe predictions against the true task parameters, one panel per parameter.

    Training tasks show out-of-fold (cross-validated) predictions, test tasks the predictions of
    the probe fit on all training tasks.
    """
    train, test = table.split("train"), table.split("test")
    if len(train) == 0:  # probe cross-validated among test tasks only
        train, test = test, test.split("none")
    names = list(table.param_names[:MAX_PANELS])
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 4.2), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        truth = [train.params[:, j]]
        if result.pred_cv is not None:
            ax.scatter(train.params[:, j], result.pred_cv[:, j], marker="o", s=24, alpha=0.8,
                       label=f"held-out train tasks (CV), R² {result.r2_cv_per_param[j]:.2f}")
        if result.pred_test is not None and len(test):
            truth.append(test.params[:, j])
            ax.scatter(test.params[:, j], result.pred_test[:, j], marker="^", s=30, alpha=0.9,
                       label=f"test tasks, R² {result.r2_test_per_param[j]:.2f}")
        lo, hi = float(np.min(np.concatenate(truth))), float(np.max(np.concatenate(truth)))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--", label="perfect")
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{title}\nlinear (ridge) probe: posterior mean → task parameters", fontsize=11)
    fig.tight_layout()
    return fig
