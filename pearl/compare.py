"""Comparing runs and sweeps: per group (a sweep's grid point), the final adapted return's interquartile
mean (IQM) and mean with 95% confidence intervals, learning and adaptation curves as the mean over seeds
with a confidence band, and a per-seed table; written as CSV and PNG, and logged to a sweep's parent run.

Statistics as recommended for RL results over few seeds (Agarwal et al., 2021, "Deep RL at the edge of
the statistical precipice"): the IQM, the mean of the middle half of the scores
(``scipy.stats.trim_mean(x, 0.25)``), beside the mean, with percentile bootstrap intervals from
``scipy.stats.bootstrap``. The bootstrap is stratified by task family: a group's runs are resampled
within each ``env.name``, so a group spanning several families keeps their proportions (with one family
it is the plain bootstrap over seeds). A stratum with fewer than two runs gives no interval (NaN).

Only FINISHED runs enter the statistics and curves; the per-seed table lists every run and its status.
Curves use the env steps (and episode indices) that every run of the group has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from pearl.runs import RunError
from pearl.sweep import TAG_GROUP, TAG_NAME, child_runs, find_sweep
from pearl.tracking import find_run, latest_per_step, open_client, resolve_tracking_uri

ADAPTED = "eval/test/return_adapted"
_EPISODE = re.compile(r"eval/test/return_episode_(\d+)")
N_RESAMPLES = 5000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class RunRecord:
    """What a comparison reads of one run.

    Attributes:
        curve: env steps -> test return after adaptation, at every evaluation.
        adaptation: the return of each episode index at the last evaluation.
    """

    run_id: str
    group: str
    seed: int | None
    status: str
    env: str
    env_steps: int
    final_return: float
    curve: dict[int, float]
    adaptation: tuple[float, ...]


def _mean(*strata: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(np.concatenate(strata, axis=axis), axis=axis)


def _iqm(*strata: np.ndarray, axis: int) -> np.ndarray:
    return scipy.stats.trim_mean(np.concatenate(strata, axis=axis), 0.25, axis=axis)


STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": _mean, "iqm": _iqm}


def bootstrap_interval(strata: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], *,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified percentile bootstrap interval of ``statistic`` over the last axis: each stratum is
    resampled within itself (``scipy.stats.bootstrap`` with several samples). NaN where a stratum has
    fewer than two values.

    Shapes:
        strata: each [..., n_i] -> low, high: [...]
    """
    if any(s.shape[-1] < 2 for s in strata):
        nan = np.full(strata[0].shape[:-1], np.nan)
        return nan, nan.copy()
    result = scipy.stats.bootstrap(tuple(strata), statistic, n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE,
                                   method="percentile", axis=-1, vectorized=True, rng=np.random.default_rng(seed))
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def _strata(values: np.ndarray, members: Sequence[RunRecord]) -> list[np.ndarray]:
    """``values`` [..., R] (one column per run) split by the runs' task family. Shapes: -> each [..., n_env]."""
    envs = [r.env for r in members]
    return [values[..., [i for i, e in enumerate(envs) if e == env]] for env in sorted(set(envs))]


def groups(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """The FINISHED runs of each group, groups in order of appearance."""
    out: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.status == "FINISHED" and np.isfinite(r.final_return):
            out.setdefault(r.group, []).append(r)
    return out


def summarize(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Per group: the number of runs, the mean and IQM of the final adapted return, their intervals."""
    rows = []
    for group, members in groups(records).items():
        values = np.array([r.final_return for r in members])
        row: dict[str, Any] = {"group": group, "runs": len(values)}
        for name, statistic in STATISTICS.items():
            low, high = bootstrap_interval(_strata(values, members), statistic)
            row.update({name: float(statistic(values, axis=-1)), f"{name}_ci_low": float(low),
                        f"{name}_ci_high": float(high)})
        rows.append(row)
    columns = ["group", "runs", *(f"{n}{s}" for n in STATISTICS for s in ("", "_ci_low", "_ci_high"))]
    return pd.DataFrame(rows, columns=columns)


def _curve_rows(group: str, members: Sequence[RunRecord], xs: Sequence[int], values: np.ndarray,
                x_name: str) -> list[dict[str, Any]]:
    """Mean over runs and its interval at each x. Shapes: values [X, R]."""
    if len(xs) == 0:
        return []
    low, high = bootstrap_interval(_strata(values, members), _mean)
    return [{"group": group, x_name: int(x), "runs": len(members), "mean": float(m), "ci_low": float(lo),
             "ci_high": float(hi)} for x, m, lo, hi in zip(xs, values.mean(axis=-1), low, high)]


def learning_curves(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Per group and env step (those every run evaluated at): the mean test return after adaptation."""
    rows = []
    for group, members in groups(records).items():
        steps = sorted(set.intersection(*(set(r.curve) for r in members)))
        values = np.array([[r.curve[s] for r in members] for s in steps]).reshape(len(steps), len(members))
        rows += _curve_rows(group, members, steps, values, "env_steps")
    return pd.DataFrame(rows, columns=["group", "env_steps", "runs", "mean", "ci_low", "ci_high"])


def adaptation_curves(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Per group and episode index: the mean return at the last evaluation (the adaptation curve)."""
    rows = []
    for group, members in groups(records).items():
        n_episodes = min(len(r.adaptation) for r in members)
        values = np.array([r.adaptation[:n_episodes] for r in members]).T.reshape(n_episodes, len(members))
        rows += _curve_rows(group, members, range(n_episodes), values, "episode")
    return pd.DataFrame(rows, columns=["group", "episode", "runs", "mean", "ci_low", "ci_high"])


def per_seed(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: group, seed, status, env steps and final adapted return."""
    return pd.DataFrame([{"group": r.group, "seed": r.seed, "run_id": r.run_id, "status": r.status,
                          "env_steps": r.env_steps, "final_return": r.final_return} for r in records],
                        columns=["group", "seed", "run_id", "status", "env_steps", "final_return"])


# ----------------------------------------------------------------------------------------------
# reading runs and sweeps from the tracking store


def read_record(client: Any, run: Any, group: str) -> RunRecord:
    """A run's evaluations: the adapted-return history (a step redone on resume counts once), and the
    per-episode returns of its last evaluation."""
    history = latest_per_step(client.get_metric_history(run.info.run_id, ADAPTED))
    episodes = sorted((int(m.group(1)), v) for k, v in run.data.metrics.items() if (m := _EPISODE.fullmatch(k)))
    seed = run.data.params.get("seed")
    return RunRecord(run.info.run_id, group, int(seed) if seed is not None else None, run.info.status,
                     run.data.params.get("env.name", "?"), history[-1][0] if history else 0,
                     history[-1][1] if history else float("nan"), dict(history), tuple(v for _, v in episodes))


def group_of(run: Any) -> str:
    """A sweep trial's grid point; for another run, its config and ``--set`` values other than the seed."""
    tags = run.data.tags
    if TAG_GROUP in tags:
        return tags[TAG_GROUP]
    overrides = [o for o in tags.get("pearl.overrides", "").split() if not o.startswith("seed=")]
    return " ".join([tags.get("pearl.config") or run.info.run_name or run.info.run_id[:8], *overrides])


@dataclass(frozen=True)
class Target:
    """What one argument of ``pearl compare`` names: a sweep's trial runs (and its parent), or one run."""

    label: str
    runs: list[Any]
    parent_run_id: str | None


def resolve_target(client: Any, tracking_uri: str, target: str) -> Target:
    """A run id (a sweep's parent run stands for its trials) or a sweep name.

    Raises:
        RunError: neither is in the store.
    """
    run = find_run(tracking_uri, target)
    if run is not None:
        children = child_runs(client, target)
        if children:
            return Target(run.data.tags.get(TAG_NAME, target[:8]), children, target)
        return Target(run.info.run_name or target[:8], [run], None)
    parent = find_sweep(client, target)
    if parent is None:
        raise RunError(f"{target!r} is neither a run id nor a sweep name in the tracking store {tracking_uri}")
    return Target(target, child_runs(client, parent.info.run_id), parent.info.run_id)


@dataclass
class Comparison:
    """The statistics of a comparison, and where it is logged (a single sweep's parent run)."""

    records: list[RunRecord]
    summary: pd.DataFrame
    learning: pd.DataFrame
    adaptation: pd.DataFrame
    label: str
    parent_run_id: str | None
    tracking_uri: str

    def table(self) -> str:
        """The summary and the per-seed table as text."""
        def text(frame: pd.DataFrame) -> str:
            return frame.to_string(index=False, float_format=lambda x: f"{x:.3f}") if len(frame) else "(none)"

        return (f"final test return after adaptation, FINISHED runs ({CONFIDENCE:.0%} stratified bootstrap "
                f"intervals):\n{text(self.summary)}\n\nper seed:\n{text(per_seed(self.records))}")

    def save(self, folder: str | Path) -> list[Path]:
        """``summary.csv``, ``seeds.csv``, ``learning_curves.csv``, ``adaptation_curves.csv`` and
        ``comparison.png`` (when a run finished) in ``folder``."""
        import matplotlib.pyplot as plt

        from pearl import plots

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        frames = {"summary": self.summary, "seeds": per_seed(self.records), "learning_curves": self.learning,
                  "adaptation_curves": self.adaptation}
        files = []
        for name, frame in frames.items():
            frame.to_csv(folder / f"{name}.csv", index=False)
            files.append(folder / f"{name}.csv")
        if self.summary.empty:  # no finished run: nothing to draw
            return files
        fig = plots.comparison(self.summary, frames["seeds"], self.learning, self.adaptation, title=self.label)
        fig.savefig(folder / "comparison.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return [*files, folder / "comparison.png"]

    def log(self, files: Sequence[Path], artifact_path: str = "comparison") -> bool:
        """Log ``files`` to the sweep's parent run; False when the comparison has no single parent."""
        if self.parent_run_id is None:
            return False
        client = open_client(self.tracking_uri)
        for path in files:
            client.log_artifact(self.parent_run_id, str(path), artifact_path)
        return True


def compare(targets: Sequence[str], *, tracking_uri: str | None = None) -> Comparison:
    """Read the runs that ``targets`` name (run ids, sweep parent run ids, sweep names) and compute every
    statistic. With several sweeps, each group is prefixed by its sweep's name.

    Raises:
        RunError: a target is not in the store, or no run was found.
        TrackingError: the store cannot be reached.
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = open_client(uri)
    found = [resolve_target(client, uri, t) for t in targets]
    records = []
    for target in found:
        prefix = f"{target.label}: " if len(found) > 1 and target.parent_run_id else ""
        chosen = sorted(target.runs, key=lambda r: (group_of(r), int(r.data.params.get("seed", 0))))
        records += [read_record(client, run, prefix + group_of(run)) for run in chosen]
    if not records:
        raise RunError(f"no runs to compare in {', '.join(targets)}")
    single = found[0] if len(found) == 1 else None
    return Comparison(records, summarize(records), learning_curves(records), adaptation_curves(records),
                      single.label if single else "comparison", single.parent_run_id if single else None, uri)
