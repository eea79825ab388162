"""Measures of the latent task embedding: the posterior table, a linear probe, contraction, active dims.

- **Table**: per task, the posterior q(z|c) on its context: mean and standard deviation per latent
  dimension (closed form where the distribution has it, by sampling otherwise, e.g. for a flow) and
  KL(q(z|c) || p(z)); for a mixture posterior, also the number of modes with real weight
  (components of weight at least ``encoders.moments.MODE_WEIGHT``).
- **Probe**: how linearly z encodes the task. A ridge regression from posterior mean to the true
  task parameters, scored by R² = 1 - SS_res / SS_tot (averaged over parameters) on tasks it was
  not fit on: out-of-fold on the training tasks (cross-validated, the ridge weight chosen by an inner
  cross-validation), and on test tasks from a probe fit on all training tasks.
- **Contraction**: mean posterior standard deviation against the number of context transitions;
  an agent that infers the task grows more certain as context accumulates.
- **Active dimensions**: a latent dimension is active when its posterior mean varies across tasks,
  ``Var_tasks(E_q[z_d]) > 0.01`` (Burda et al. 2016, "Importance Weighted Autoencoders", sec. 5.2);
  the others have collapsed to the prior.

Shapes:
    K: tasks, L: latent dim, P: task parameters, M: context sizes of a contraction curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from encoders.moments import n_modes as mixture_modes, posterior_moments
from pearl.agent import PEARLAgent
from pearl.latents.context import LatentError, TaskContexts, posterior_of_prefixes

DEFAULT_ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-3.0, 3.5, 0.5))
"""Ridge weights the probe chooses from (inputs are standardised, so the scale is comparable)."""

ACTIVE_VARIANCE = 0.01
"""A latent dim is active when its posterior mean's variance across tasks exceeds this (Burda et al.)."""


# ----------------------------------------------------------------------------------------------
# the table


@dataclass
class LatentTable:
    """One row per task: what it is, how much context it had, and its posterior.

    Attributes:
        task_ids: [K] index within the task's split.
        splits: [K] ``"train"`` or ``"test"``.
        params: [K, P] true task parameters.
        param_names: P names (the task family's ``param_names``).
        n_context: [K] context transitions the posterior was inferred from.
        z_mean: [K, L] posterior mean.
        z_std: [K, L] posterior standard deviation.
        kl_to_prior: [K] KL(q(z|c) || p(z)) in nats (0 for encoders without an information bottleneck).
        n_modes: [K] mixture components with weight at least 5%, or None when the posterior is not a mixture.
    """

    task_ids: np.ndarray
    splits: np.ndarray
    params: np.ndarray
    param_names: tuple[str, ...]
    n_context: np.ndarray
    z_mean: np.ndarray
    z_std: np.ndarray
    kl_to_prior: np.ndarray
    n_modes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.task_ids)

    @property
    def latent_dim(self) -> int:
        return self.z_mean.shape[1]

    def split(self, name: str) -> LatentTable:
        """The rows of one split (``"train"`` or ``"test"``)."""
        keep = self.splits == name
        return LatentTable(self.task_ids[keep], self.splits[keep], self.params[keep], self.param_names,
                           self.n_context[keep], self.z_mean[keep], self.z_std[keep], self.kl_to_prior[keep],
                           None if self.n_modes is None else self.n_modes[keep])

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> values: ``task_id, split, <params>, n_context, kl_to_prior, [n_modes,] z_mean_<d>,
        z_std_<d>`` (``n_modes`` for mixture posteriors only)."""
        cols: dict[str, np.ndarray] = {"task_id": self.task_ids, "split": self.splits.astype(str)}
        cols.update({name: self.params[:, j] for j, name in enumerate(self.param_names)})
        cols["n_context"], cols["kl_to_prior"] = self.n_context, self.kl_to_prior
        if self.n_modes is not None:
            cols["n_modes"] = self.n_modes
        cols.update({f"z_mean_{d}": self.z_mean[:, d] for d in range(self.latent_dim)})
        cols.update({f"z_std_{d}": self.z_std[:, d] for d in range(self.latent_dim)})
        return cols

    def to_dataframe(self) -> Any:
        """The table as a ``pandas.DataFrame`` with the columns of :meth:`columns`."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def save(self, folder: str | Path, stem: str = "latents") -> list[Path]:
        """Write ``<stem>.csv`` and ``<stem>.npz`` (exact arrays, reloadable with :meth:`load`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        csv, npz = folder / f"{stem}.csv", folder / f"{stem}.npz"
        self.to_dataframe().to_csv(csv, index=False)
        np.savez(npz, task_ids=self.task_ids, splits=self.splits.astype(str), params=self.params,
                 param_names=np.array(self.param_names, dtype=str), n_context=self.n_context,
                 z_mean=self.z_mean, z_std=self.z_std, kl_to_prior=self.kl_to_prior,
                 **({} if self.n_modes is None else {"n_modes": self.n_modes}))
        return [csv, npz]

    @classmethod
    def load(cls, path: str | Path) -> LatentTable:
        """Read a table written by :meth:`save` (the ``.npz`` file)."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["task_ids"], data["splits"].astype(object), data["params"],
                       tuple(str(n) for n in data["param_names"]), data["n_context"], data["z_mean"],
                       data["z_std"], data["kl_to_prior"], data["n_modes"] if "n_modes" in data else None)


@torch.no_grad()
def posterior_table(agent: PEARLAgent, contexts: TaskContexts, param_names: Sequence[str],
                    *, n_context: int | None = None) -> LatentTable:
    """Infer q(z|c) for every task from its first ``n_context`` transitions (all when None).

    Shapes:
        contexts: K tasks -> LatentTable of K rows, L = agent.latent_dim.
    """
    if len(contexts) == 0:
        raise LatentError("the task set is empty: no tasks to embed")
    K, L = len(contexts), agent.latent_dim
    z_mean, z_std, kl, modes = np.zeros((K, L)), np.zeros((K, L)), np.zeros(K), np.full(K, np.nan)
    for ids, post in posterior_of_prefixes(agent, contexts.contexts, n_context):
        mean, std = posterior_moments(post)
        z_mean[ids], z_std[ids] = mean.cpu().numpy(), std.cpu().numpy()
        kl[ids] = agent.encoder.kl_to_prior(post).cpu().numpy()
        counted = mixture_modes(post)
        if counted is not None:
            modes[ids] = counted.cpu().numpy()
    used = contexts.n_context if n_context is None else np.minimum(contexts.n_context, n_context)
    return LatentTable(contexts.task_ids, contexts.splits, contexts.tasks, tuple(param_names), used,
                       z_mean, z_std, kl, None if np.isnan(modes).all() else modes)


def active_dims(z_mean: np.ndarray, *, threshold: float = ACTIVE_VARIANCE) -> np.ndarray:
    """[L] bool: the dims whose posterior mean varies across tasks by more than ``threshold``.

    Shapes:
        z_mean [K, L] -> [L]
    """
    z_mean = np.asarray(z_mean, dtype=np.float64)
    if len(z_mean) < 2:
        return np.zeros(z_mean.shape[1], dtype=bool)
    return z_mean.var(axis=0) > threshold


# ----------------------------------------------------------------------------------------------
# the probe


def r2_per_output(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per output column: ``1 - SS_res / SS_tot``.

    It is 1 for perfect predictions, 0 for predicting the mean, negative for worse; NaN for a
    column without variance (nothing to explain).

    Shapes:
        y_true, y_pred [K, P] -> [P]

    Examples:
        >>> r2_per_output(np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [1.0], [2.0]]))
        array([1.])
        >>> r2_per_output(np.array([[0.0], [1.0], [2.0]]), np.array([[1.0], [1.0], [1.0]]))
        array([0.])
    """
    y_true, y_pred = _2d(y_true), _2d(y_pred)
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 1e-12, 1.0 - ss_res / np.where(ss_tot > 1e-12, ss_tot, 1.0), np.nan)


def _2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


@dataclass
class RidgeFit:
    """A fitted ridge regression ``y = ((x - x_mean) / x_scale) @ coef + intercept``.

    Shapes:
        x_mean, x_scale [D]; coef [D, P]; intercept [P].
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Shapes: x [K, D] -> [K, P]."""
        return ((_2d(x) - self.x_mean) / self.x_scale) @ self.coef + self.intercept


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> RidgeFit:
    """Ridge regression on standardised inputs: ``coef = (X'X + alpha I)^-1 X'(y - mean(y))``.

    Inputs are centred and scaled to unit variance (a dim that is constant keeps scale 1), so one
    ``alpha`` treats every latent dim alike whatever its spread.

    Shapes:
        x [K, D], y [K, P] -> RidgeFit
    """
    x, y = _2d(x), _2d(y)
    x_mean, x_scale = _standardise(x)
    xs, y_mean = (x - x_mean) / x_scale, y.mean(axis=0)
    gram = xs.T @ xs + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xs.T @ (y - y_mean))
    return RidgeFit(x_mean, x_scale, coef, y_mean, float(alpha))


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(f) for f in np.array_split(rng.permutation(n), min(n_folds, n))]


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each input column (scale 1 for a constant column)."""
    scale = x.std(axis=0)
    return x.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def _ridge_path(x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Predictions at ``x_eval`` of the ridge fit on ``(x, y)`` for every alpha, from one SVD.

    With standardised ``X = U S Vᵀ``: ``coef(alpha) = V diag(s / (s² + alpha)) Uᵀ (y - mean(y))``,
    the same solution as :func:`fit_ridge`.

    Shapes:
        x [K, D], y [K, P], x_eval [K', D] -> [len(alphas), K', P]
    """
    mean, scale = _standardise(x)
    u, s, vt = np.linalg.svd((x - mean) / scale, full_matrices=False)
    y_mean = y.mean(axis=0)
    uty = u.T @ (y - y_mean)  # [r, P]
    shrink = s[None, :] / (s[None, :] ** 2 + np.asarray(alphas, dtype=np.float64)[:, None])  # [A, r]
    coef = np.einsum("dr,ar,rp->adp", vt.T, shrink, uty)  # [A, D, P]
    return ((x_eval - mean) / scale) @ coef + y_mean


def _cv_errors(x: np.ndarray, y: np.ndarray, alphas: Sequence[float], folds: list[np.ndarray]) -> np.ndarray:
    """[A] cross-validated squared error per alpha, each output weighted by 1 / its variance."""
    sse = np.zeros((len(alphas), y.shape[1]))
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(x)), fold)
        sse += ((_ridge_path(x[rest], y[rest], x[fold], alphas) - y[fold]) ** 2).sum(axis=1)
    return (sse / np.maximum(y.var(axis=0), 1e-12)).sum(axis=1)


def select_alpha(x: np.ndarray, y: np.ndarray, *, alphas: Sequence[float] = DEFAULT_ALPHAS, n_folds: int = 5,
                 rng: np.random.Generator | None = None) -> float:
    """The ridge weight with the smallest cross-validated error, each output weighted by 1 / its variance
    (so the choice maximises the mean R² over outputs)."""
    x, y = _2d(x), _2d(y)
    rng = rng if rng is not None else np.random.default_rng(0)
    if len(x) < 3:
        return float(max(alphas))  # too few tasks to cross-validate: shrink the most
    errors = _cv_errors(x, y, alphas, _folds(len(x), n_folds, rng))
    return float(alphas[int(np.argmin(errors))])


def _nested_out_of_fold(x: np.ndarray, y: np.ndarray, folds: list[np.ndarray], alphas: Sequence[float],
                        n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Predictions of each fold by a probe fit on the other folds, its alpha chosen there too."""
    pred = np.zeros_like(y)
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(x)), fold)
        alpha = select_alpha(x[rest], y[rest], alphas=alphas, n_folds=n_folds, rng=rng)
        pred[fold] = fit_ridge(x[rest], y[rest], alpha).predict(x[fold])
    return pred


@dataclass
class ProbeResult:
    """A linear probe from posterior mean to the true task parameters.

    Attributes:
        r2_cv: mean R² over parameters of out-of-fold predictions on the training tasks (NaN with
            fewer than 4 of them).
        r2_cv_per_param: [P].
        pred_cv: [K_train, P] out-of-fold predictions.
        r2_test: mean R² on the test tasks of the probe fit on all training tasks (NaN without
            at least 2 test tasks).
        r2_test_per_param: [P].
        pred_test: [K_test, P] predictions, or None without test tasks.
        fit: the probe fit on all training tasks.
        n_folds: cross-validation folds.
    """

    r2_cv: float
    r2_cv_per_param: np.ndarray
    pred_cv: np.ndarray | None
    r2_test: float
    r2_test_per_param: np.ndarray
    pred_test: np.ndarray | None
    fit: RidgeFit
    n_folds: int


def ridge_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    seed: int = 0,
) -> ProbeResult:
    """Fit and score a cross-validated ridge probe ``x -> y``.

    The held-out score is nested: each outer fold's probe picks its ridge weight by an inner
    cross-validation on the other folds only, so no held-out task influences its own prediction.

    Args:
        x_train: inputs of the training tasks (posterior means).
        y_train: their targets (true task parameters).
        x_test, y_test: test tasks, scored by the probe fit on all training tasks.
        alphas: ridge weights to choose from.
        n_folds: folds of the outer and inner cross-validation (at most one task per fold).
        seed: seeds the fold assignment.

    Shapes:
        x_train [K, D], y_train [K, P], x_test [K', D], y_test [K', P] -> ProbeResult

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(40, 3))
        >>> round(ridge_probe(x, x @ np.array([[1.0], [2.0], [0.0]])).r2_cv, 3)
        1.0
    """
    x_train, y_train = _2d(x_train), _2d(y_train)
    if len(x_train) < 2:
        raise LatentError(f"the probe needs at least 2 training tasks, got {len(x_train)}")
    rng = np.random.default_rng(seed)
    n_params = y_train.shape[1]
    alpha = select_alpha(x_train, y_train, alphas=alphas, n_folds=n_folds, rng=rng)
    fit = fit_ridge(x_train, y_train, alpha)
    nan = np.full(n_params, np.nan)
    pred_cv, r2_cv = None, nan
    if len(x_train) >= 4:
        folds = _folds(len(x_train), n_folds, rng)
        pred_cv = _nested_out_of_fold(x_train, y_train, folds, alphas, n_folds, rng)
        r2_cv = r2_per_output(y_train, pred_cv)
    pred_test, r2_test = None, nan
    if x_test is not None and y_test is not None and len(x_test) > 0:
        pred_test = fit.predict(x_test)
        if len(x_test) >= 2:
            r2_test = r2_per_output(y_test, pred_test)
    return ProbeResult(_nanmean(r2_cv), r2_cv, pred_cv, _nanmean(r2_test), r2_test, pred_test, fit, n_folds)


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")


def probe_table(table: LatentTable, *, seed: int = 0) -> ProbeResult:
    """The probe of a table: fit on its training tasks (cross-validated), scored on its test tasks.

    A table of test tasks only is cross-validated among them instead.
    """
    train, test = table.split("train"), table.split("test")
    if len(train) == 0:
        return ridge_probe(test.z_mean, test.params, seed=seed)
    return ridge_probe(train.z_mean, train.params, test.z_mean, test.params, seed=seed)


def held_out_r2(probe: ProbeResult) -> float:
    """The probe's headline score: R² on test tasks where there are some, else cross-validated."""
    return probe.r2_test if math.isfinite(probe.r2_test) else probe.r2_cv


# ----------------------------------------------------------------------------------------------
# contraction


@dataclass
class Contraction:
    """Posterior uncertainty against the amount of context.

    Attributes:
        n_context: [M] context transitions (the first n of each task).
        std: [M, L] posterior standard deviation per latent dim, averaged over tasks.
        kl_to_prior: [M] KL(q(z|c) || p(z)) averaged over tasks, in nats.
        n_tasks: [M] tasks with at least n transitions (the ones averaged).
        probe_r2: [M] held-out probe R² of the posterior means from the first n transitions (test
            tasks, or cross-validated where there are none), or None when not measured. Unlike the
            std, which a product of Gaussians shrinks with any context, this rises only if the
            context tells the encoder about the task.
        n_modes: [M] mixture components with weight at least 5%, averaged over tasks; None when the
            posterior is not a mixture.
    """

    n_context: np.ndarray
    std: np.ndarray
    kl_to_prior: np.ndarray
    n_tasks: np.ndarray
    probe_r2: np.ndarray | None = None
    n_modes: np.ndarray | None = None

    @property
    def mean_std(self) -> np.ndarray:
        """[M] posterior std averaged over tasks and latent dims."""
        return self.std.mean(axis=1)


def context_sizes(n_max: int) -> list[int]:
    """1, 2, 4, ... below ``n_max``, then ``n_max``.

    Examples:
        >>> context_sizes(60)
        [1, 2, 4, 8, 16, 32, 60]
    """
    if n_max < 1:
        raise LatentError(f"context size: expected at least 1, got {n_max}")
    sizes = [1 << i for i in range(n_max.bit_length()) if (1 << i) < n_max]
    return [*sizes, n_max]


@torch.no_grad()
def contraction_curve(agent: PEARLAgent, contexts: list[torch.Tensor],
                      sizes: Sequence[int] | None = None) -> Contraction:
    """Posterior std and KL (and a mixture's modes) from the first n transitions of each task, for n in ``sizes``.

    ``sizes`` defaults to :func:`context_sizes` of the longest context. At each n only the tasks
    with at least n transitions are averaged.

    Shapes:
        contexts: K tensors [N_k, C] -> Contraction with M = len(sizes)
    """
    lengths = np.array([len(c) for c in contexts])
    if len(contexts) == 0 or lengths.max() == 0:
        raise LatentError("no context to measure contraction on")
    sizes = list(sizes) if sizes is not None else context_sizes(int(lengths.max()))
    std, kl, n_tasks = np.zeros((len(sizes), agent.latent_dim)), np.zeros(len(sizes)), np.zeros(len(sizes), int)
    modes = np.full(len(sizes), np.nan)
    for m, n in enumerate(sizes):
        keep = [c for c in contexts if len(c) >= n]
        if not keep:
            std[m], kl[m] = np.nan, np.nan
            continue
        stds, kls, counts = [], [], []
        for ids, post in posterior_of_prefixes(agent, keep, n):
            stds.append(posterior_moments(post)[1].cpu().numpy())
            kls.append(agent.encoder.kl_to_prior(post).cpu().numpy())
            counted = mixture_modes(post)
            counts.append(np.full(len(ids), np.nan) if counted is None else counted.cpu().numpy())
        std[m], kl[m], n_tasks[m] = np.concatenate(stds).mean(axis=0), np.concatenate(kls).mean(), len(keep)
        modes[m] = np.concatenate(counts).mean()
    return Contraction(np.asarray(sizes), std, kl, n_tasks, n_modes=None if np.isnan(modes).all() else modes)
