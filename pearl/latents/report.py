"""Latent inspection end to end: gather context, measure, plot, save, log.

:func:`embed_trainer` inspects the agent of a :class:`~pearl.trainer.Trainer` (a live one, or one
rebuilt from a checkpoint by :func:`pearl.runs.load_run`) and returns a :class:`LatentReport`;
:func:`training_summary` is the cheap version the trainer logs every ``eval.latent_every``
iterations.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from encoders.moments import MODE_WEIGHT
from pearl.agent import PEARLAgent
from pearl.latents.context import SPLITS, LatentError, TaskContexts, buffer_contexts, collect_contexts
from pearl.latents.measures import (
    Contraction,
    LatentTable,
    ProbeResult,
    active_dims,
    contraction_curve,
    held_out_r2,
    posterior_table,
    probe_table,
)
from pearl.latents.projection import project

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pearl.tracking import Tracker
    from pearl.trainer import Trainer

SOURCES = ("rollouts", "buffer")


@dataclass
class LatentReport:
    """Everything latent inspection measured on one set of tasks.

    Attributes:
        table: one row per task (posterior on its full context).
        probe: the linear probe posterior mean -> task parameters (None with under 2 tasks).
        contraction: posterior std against context size.
        active: [L] which latent dims are active.
        env: the task family's name.
        source: where the context came from (``rollouts`` or ``buffer``).
        episode_length: steps per episode (for plot annotations), if known.
    """

    table: LatentTable
    probe: ProbeResult | None
    contraction: Contraction
    active: np.ndarray
    env: str
    source: str
    episode_length: int | None = None

    def summary(self) -> dict[str, float]:
        """The headline numbers as flat metrics (NaN where a measure does not apply)."""
        nan = float("nan")
        return {
            "probe_r2_cv": self.probe.r2_cv if self.probe else nan,
            "probe_r2_test": self.probe.r2_test if self.probe else nan,
            "active_dims": float(self.active.sum()),
            "kl_to_prior": float(self.table.kl_to_prior.mean()),
            "std_context_1": float(self.contraction.mean_std[0]),
            "std_context_full": float(self.contraction.mean_std[-1]),
            "n_context": float(self.contraction.n_context[-1]),
            "n_tasks": float(len(self.table)),
            "n_modes": float(self.table.n_modes.mean()) if self.table.n_modes is not None else nan,
        }

    def summary_text(self) -> str:
        """A few lines for the terminal."""
        s, t = self.summary(), self.table
        n_train, n_test = int((t.splits == "train").sum()), int((t.splits == "test").sum())
        params = ", ".join(t.param_names)
        lines = [f"{len(t)} tasks ({n_train} train, {n_test} test) of {self.env}, "
                 f"up to {int(s['n_context'])} context transitions each (from {self.source})"]
        if self.probe is not None:
            scores = [f"{_r2(s['probe_r2_cv'])}{self._per_param(self.probe.r2_cv_per_param)} on held-out "
                      f"{'train' if n_train else 'test'} tasks ({self.probe.n_folds}-fold CV)"]
            if n_train and n_test:
                scores.append(f"{_r2(s['probe_r2_test'])}{self._per_param(self.probe.r2_test_per_param)} on test "
                              "tasks (probe fit on train tasks)")
            lines.append(f"probe R² (ridge, posterior mean -> {params}): {', '.join(scores)}")
        lines.append(f"active latent dims: {int(s['active_dims'])} of {t.latent_dim} "
                     f"(posterior-mean variance across tasks > 0.01); mean KL to prior {s['kl_to_prior']:.2f} nats")
        lines.append(f"contraction: mean posterior std {s['std_context_1']:.3f} after 1 transition -> "
                     f"{s['std_context_full']:.3f} after {int(s['n_context'])}")
        if t.n_modes is not None:
            lines.append(f"mixture modes (weight >= {MODE_WEIGHT:.0%}): {s['n_modes']:.2f} per task on average, "
                         f"{int(t.n_modes.max())} at most{self._modes_by_context()}")
        r2 = self.contraction.probe_r2
        if r2 is not None and np.isfinite(r2).any():
            steps = ", ".join(f"{int(n)}: {v:.2f}" for n, v in zip(self.contraction.n_context, r2))
            lines.append(f"probe R² on held-out tasks by context transitions seen: {steps}")
        return "\n".join(lines)

    def _modes_by_context(self) -> str:
        """``; by context transitions seen: 1: 2.00, ...`` when the contraction curve counted modes."""
        modes = self.contraction.n_modes
        if modes is None:
            return ""
        return "; by context transitions seen: " + ", ".join(
            f"{int(n)}: {v:.2f}" for n, v in zip(self.contraction.n_context, modes))

    def _per_param(self, r2: np.ndarray) -> str:
        """`` (goal_x 0.91, goal_y 0.95)`` for a task with several parameters, else nothing."""
        if len(r2) < 2 or not np.isfinite(r2).any():
            return ""
        return " (" + ", ".join(f"{n} {v:.2f}" for n, v in zip(self.table.param_names, r2)) + ")"

    def figures(self, *, title: str, projection: str = "pca", seed: int = 0) -> dict[str, Figure]:
        """``{file name: figure}``: projection, contraction and (with a probe) probe plots."""
        from pearl import plots  # matplotlib, headless: only where figures are drawn

        figs = {
            "projection.png": plots.projection(self.table, project(self.table, projection, seed=seed), title=title),
            "contraction.png": plots.contraction(self.contraction, title=title, episode_length=self.episode_length),
        }
        if self.probe is not None:
            figs["probe.png"] = plots.probe(self.probe, self.table, title=title)
        return figs

    def save(self, folder: str | Path, *, title: str, projection: str = "pca", seed: int = 0) -> list[Path]:
        """Write the table (CSV, NPZ), the contraction curve (CSV), the summary (JSON) and the plots (PNG)."""
        import matplotlib.pyplot as plt

        folder = Path(folder)
        paths = self.table.save(folder)
        curve = folder / "contraction.csv"
        c = self.contraction
        nans = np.full(len(c.n_context), np.nan)
        probe_r2 = c.probe_r2 if c.probe_r2 is not None else nans
        n_modes = c.n_modes if c.n_modes is not None else nans
        header = ",".join(["n_context", "n_tasks", "mean_std", "kl_to_prior", "probe_r2", "n_modes",
                           *(f"std_{d}" for d in range(c.std.shape[1]))])
        np.savetxt(curve, np.column_stack([c.n_context, c.n_tasks, c.mean_std, c.kl_to_prior, probe_r2, n_modes,
                                           c.std]),
                   delimiter=",", header=header, comments="", fmt="%.6g")
        summary = folder / "summary.json"
        summary.write_text(json.dumps({"env": self.env, "source": self.source, **_json_safe(self.summary()),
                                       "active": self.active.tolist()}, indent=2) + "\n")
        paths += [curve, summary]
        for name, fig in self.figures(title=title, projection=projection, seed=seed).items():
            fig.savefig(folder / name, dpi=110, bbox_inches="tight")
            plt.close(fig)
            paths.append(folder / name)
        return paths

    def log(self, tracker: Tracker, files: Sequence[Path], *, step: int, prefix: str = "embed",
            artifact_path: str = "latents") -> None:
        """Log the summary as ``<prefix>/<key>`` metrics at ``step`` and ``files`` as artifacts."""
        tracker.log_metrics({f"{prefix}/{k}": v for k, v in self.summary().items() if math.isfinite(v)}, step=step)
        tracker.flush()
        for path in files:
            tracker.log_artifact(path, artifact_path)


def inspect_latents(
    agent: PEARLAgent,
    contexts: TaskContexts,
    *,
    param_names: Sequence[str],
    env: str = "",
    source: str = "rollouts",
    episode_length: int | None = None,
    sizes: Sequence[int] | None = None,
    seed: int = 0,
) -> LatentReport:
    """Measure the embedding of the tasks in ``contexts``: table, probe, contraction, active dims.

    Args:
        agent: its encoder gives q(z|c).
        contexts: the tasks and their context (see :func:`gather_contexts`).
        param_names: names of the task parameters (columns of the table, probe targets).
        env, source, episode_length: recorded in the report (titles, plot annotations).
        sizes: context sizes of the contraction curve (default 1, 2, 4, ... up to the longest context).
        seed: seeds the probe's folds.
    """
    if len(contexts) == 0:
        raise LatentError("the task set is empty: no tasks to embed")
    table = posterior_table(agent, contexts, param_names)
    probe = probe_table(table, seed=seed) if len(table) >= 2 else None
    curve = contraction_curve(agent, contexts.contexts, sizes)
    if probe is not None:
        curve.probe_r2 = np.array([
            held_out_r2(probe_table(posterior_table(agent, contexts, param_names, n_context=int(n)), seed=seed))
            for n in curve.n_context
        ])
    return LatentReport(table, probe, curve, active_dims(table.z_mean), env, source, episode_length)


# ----------------------------------------------------------------------------------------------
# from a trainer


def context_budget(trainer: Trainer) -> int:
    """The meta-test's context budget: ``eval.num_episodes`` episodes of ``max_path_length`` steps."""
    return trainer.cfg.eval.num_episodes * trainer.max_path_length


def gather_contexts(
    trainer: Trainer,
    *,
    splits: Sequence[str] = SPLITS,
    source: str = "rollouts",
    n_context: int | None = None,
) -> TaskContexts:
    """Context for every task of ``splits`` of the trainer's task distribution.

    ``rollouts``: fresh episodes with posterior sampling (the meta-test protocol: the first
    ``eval.num_exp_traj_eval`` episodes with z from the prior, mean actions as ``eval.deterministic_episodes``
    says; one meta-test per task, whatever ``eval.num_runs``), ``n_context`` transitions per task
    (default: :func:`context_budget`). ``buffer``: the first ``n_context`` transitions (default all)
    of each training task's context buffer, the data the encoder trains on; tasks with an empty
    buffer are left out, and test tasks have no buffer.

    Raises:
        LatentError: unknown split or source, buffer source with test tasks, or no task left.
    """
    for split in splits:
        if split not in SPLITS:
            raise LatentError(f"unknown task split {split!r}; expected one of {', '.join(SPLITS)}")
    if source not in SOURCES:
        raise LatentError(f"unknown context source {source!r}; expected one of {', '.join(SOURCES)}")
    if n_context is not None and n_context < 1:
        raise LatentError(f"n_context: expected at least 1 transition, got {n_context}")
    cfg, parts = trainer.cfg, []
    for split in splits:
        tasks = trainer.tasks.train_tasks if split == "train" else trainer.tasks.test_tasks
        ids = np.arange(len(tasks))
        if source == "buffer":
            if split == "test":
                raise LatentError("test tasks have no buffer (the agent never trains on them); "
                                  "use the rollouts source for them")
            ctx = buffer_contexts(trainer.enc_buffer, ids, n_transitions=n_context,
                                  use_next_obs=cfg.encoder.use_next_obs, sparse_rewards=trainer.sparse_rewards,
                                  device=trainer.device)
        else:
            ctx = collect_contexts(trainer.agent, trainer.collector, tasks,
                                   n_transitions=n_context or context_budget(trainer),
                                   num_exp_traj_eval=cfg.eval.num_exp_traj_eval,
                                   use_next_obs=cfg.encoder.use_next_obs, sparse_rewards=trainer.sparse_rewards,
                                   deterministic=cfg.eval.deterministic_episodes, posterior=trainer.acting_posterior())
        part = TaskContexts(tasks, ids, np.full(len(tasks), split, dtype=object), ctx)
        parts.append(part.select(part.n_context > 0))
    if sum(len(p) for p in parts) == 0:
        where = " with context in the checkpoint's context buffer" if source == "buffer" else ""
        raise LatentError(f"the task set is empty: no {'/'.join(splits)} tasks{where} to embed")
    return TaskContexts.concat(parts)


@contextlib.contextmanager
def preserved_rng(trainer: Trainer) -> Iterator[None]:
    """Run inspection without changing the training run: the torch RNG and the collector's env RNGs
    are restored afterwards, so turning inspection on does not change what training does."""
    envs = trainer.collector.envs
    saved = [(env.unwrapped.np_random.bit_generator.state, env.action_space.np_random.bit_generator.state)
             for env in envs]
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for env, (env_state, space_state) in zip(envs, saved):
            env.unwrapped.np_random.bit_generator.state = env_state
            env.action_space.np_random.bit_generator.state = space_state


def embed_trainer(
    trainer: Trainer,
    *,
    splits: Sequence[str] = SPLITS,
    source: str = "rollouts",
    n_context: int | None = None,
    seed: int = 0,
) -> LatentReport:
    """Gather context on the trainer's tasks and measure its agent's embedding (RNGs preserved).

    Examples:
        >>> from pearl.config import config_from_dict
        >>> from pearl.trainer import Trainer
        >>> trainer = Trainer(config_from_dict({"env": {"n_train_tasks": 8, "n_test_tasks": 4},
        ...                                     "algo": {"hidden_sizes": [8]}}))
        >>> report = embed_trainer(trainer, n_context=8)
        >>> report.table.to_dataframe().shape  # 12 tasks; id, split, 2 params, n, kl, 5 means, 5 stds
        (12, 16)
    """
    with preserved_rng(trainer), torch.no_grad():
        contexts = gather_contexts(trainer, splits=splits, source=source, n_context=n_context)
        return inspect_latents(trainer.agent, contexts, param_names=trainer.tasks.param_names,
                               env=trainer.cfg.env.name, source=source, episode_length=trainer.max_path_length,
                               seed=seed)


def training_summary(trainer: Trainer) -> dict[str, float]:
    """The latent summary the trainer logs every ``eval.latent_every`` iterations: ``latent/<key>``
    metrics from fresh rollouts on all train and test tasks."""
    summary = embed_trainer(trainer).summary()
    keys = ("probe_r2_cv", "probe_r2_test", "active_dims", "kl_to_prior", "std_context_1", "std_context_full",
            "n_modes")
    return {f"latent/{k}": summary[k] for k in keys if math.isfinite(summary[k])}


def _r2(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a (too few tasks)"


def _json_safe(summary: dict[str, float]) -> dict[str, Any]:
    """NaN is not JSON: it becomes null."""
    return {k: (v if math.isfinite(v) else None) for k, v in summary.items()}
