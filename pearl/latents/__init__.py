"""Latent task embeddings: what q(z|c) knows about the task, as a table, measures and plots.

Typical use, on a trainer (live, or rebuilt from a run by :func:`pearl.runs.load_run`)::

    from pearl import latents, runs

    loaded = runs.load_run("<mlflow run id>")               # or a checkpoint path
    report = latents.embed_trainer(loaded.trainer)          # fresh rollouts, train + test tasks
    report.table.to_dataframe()                             # task id, split, params, n, z mean/std
    report.summary()                                        # probe R², active dims, contraction
    report.save("out/", title="my run")                     # CSV, NPZ, JSON, PNG

The building blocks work on any agent and context: :func:`collect_contexts` /
:func:`buffer_contexts` gather context, :func:`posterior_table`, :func:`ridge_probe`,
:func:`contraction_curve` and :func:`active_dims` measure, :func:`project` projects, :mod:`pearl.plots` draws.
See ``docs/latents.md``.
"""

from pearl.latents.context import SPLITS, LatentError, TaskContexts, buffer_contexts, collect_contexts
from pearl.latents.measures import (
    Contraction,
    LatentTable,
    ProbeResult,
    active_dims,
    context_sizes,
    contraction_curve,
    held_out_r2,
    posterior_table,
    probe_table,
    r2_per_output,
    ridge_probe,
)
from pearl.latents.projection import PROJECTIONS, Projection, check_projection, project
from pearl.latents.report import (
    SOURCES,
    LatentReport,
    context_budget,
    embed_trainer,
    gather_contexts,
    inspect_latents,
    training_summary,
)

__all__ = [
    "PROJECTIONS",
    "Projection",
    "check_projection",
    "project",
    "SOURCES",
    "SPLITS",
    "Contraction",
    "LatentError",
    "LatentReport",
    "LatentTable",
    "ProbeResult",
    "TaskContexts",
    "active_dims",
    "buffer_contexts",
    "collect_contexts",
    "context_budget",
    "context_sizes",
    "contraction_curve",
    "embed_trainer",
    "gather_contexts",
    "held_out_r2",
    "inspect_latents",
    "posterior_table",
    "probe_table",
    "r2_per_output",
    "ridge_probe",
    "training_summary",
]
