"""Regenerates docs/results.md and its plots from the records of the training runs.

Every run made by ``pearl train`` records how to repeat it (tags ``pearl.config`` and
``pearl.overrides``, its params) and where it ran (``pearl.machine``). ``--tracking-uri`` reads the
runs of an MLflow store into docs/runs.jsonl, a record per run (its settings and figures, its curves
included), so that the document regenerates on any checkout, without the store the runs were tracked
in; a run read again replaces its record. Runs of the same config and overrides,
apart from the seed, form one entry: a table per seed (status, iterations, env steps, wall clock,
the final and best adapted test return, the prior-z return, the success rate where the env has
one), the learning curve (adapted test return against env steps and wall clock, per seed and the
mean) and the adaptation curve of the last evaluation. The posterior comparison (the encoders of
experiments/posteriors/ on the point robot) comes from the records that benchmarks/point_robot_score.py
appended to docs/posterior_scores.jsonl: a table of normalised scores per encoder and seed and a plot
of the scores and adaptation curves. Usage::

    python benchmarks/results.py                                                 # docs/runs.jsonl -> docs/results.md
    python benchmarks/results.py --tracking-uri sqlite:///results/mlflow.db      # the store's runs into the records first
    python benchmarks/results.py --config experiments/cheetah_vel_fast.yaml
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from encoders.registry import resolve_encoder_class  # noqa: E402
from pearl.config import ConfigError, ExperimentConfig, flatten, load_config  # noqa: E402
from pearl.runs import RESUMES_TAG, protocol_prefix  # noqa: E402
from pearl.tracking import latest_per_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ADAPTED, PRIOR, TOTAL_S = "eval/test/return_adapted", "eval/test/return_prior", "time/total_s"
# what `pearl evaluate RUN --runs N` logs: the final checkpoint meta-tested again, N times per task, under
# the prefix of the run's own meta-test protocol (pearl.runs.protocol_prefix)
REEVALUATED, REEVALUATED_RUNS, REEVALUATED_SUCCESS = "return_adapted", "num_runs", "success_adapted"


@dataclass
class SeedRun:
    """One run's figures, read from a run record (what :func:`read_store` makes)."""

    run_id: str
    seed: int
    status: str
    machine: str
    steps: np.ndarray  # [N] env steps of the evaluations
    adapted: np.ndarray  # [N]
    minutes: np.ndarray  # [N] wall clock of training at each evaluation
    prior: float
    success: float | None
    episodes: np.ndarray  # [E] mean return per meta-test episode at the last evaluation
    episode_success: np.ndarray | None  # [E]
    iterations: int
    # (adapted return, meta-tests per task, success of the last episode or None) of `pearl evaluate`
    reevaluated: tuple[float, int, float | None] | None = None
    best: float | None = None  # the best adapted return where the curve is not kept (else the curve's maximum)
    recovered: str | None = None  # where a run kept without its curve was read from
    figure: str | None = None  # the plot drawn of such a run while its curve existed, relative to the document
    resumes: tuple[str, ...] = ()  # the --set values of each `pearl resume` that changed the training

    @property
    def best_adapted(self) -> float:
        return self.best if self.best is not None else float(np.nanmax(self.adapted))

    @classmethod
    def from_record(cls, r: dict) -> SeedRun:
        array = lambda values: np.array([np.nan if v is None else v for v in values], dtype=float)  # noqa: E731
        return cls(run_id=r["run_id"], seed=int(r["seed"]), status=r["status"], machine=r["machine"],
                   steps=np.array(r["env_steps"], dtype=np.int64), adapted=array(r["adapted"]),
                   minutes=array(r["minutes"]), prior=_nan(r["prior"]), success=r.get("success"),
                   episodes=array(r["episodes"]),
                   episode_success=None if r.get("episode_success") is None else array(r["episode_success"]),
                   iterations=int(r["iterations"]),
                   reevaluated=(*r["reevaluated"], None)[:3] if r.get("reevaluated") else None,
                   best=r.get("best"), recovered=r.get("recovered"), figure=r.get("figure"),
                   resumes=tuple(r.get("resumes", ())))


@dataclass
class Entry:
    """The runs of one config and overrides (all seeds)."""

    config: str
    overrides: str
    env: str
    runs: list[SeedRun] = field(default_factory=list)

    @property
    def finished(self) -> list[SeedRun]:
        """The runs that trained to the end, or every run while none has: what means are taken over."""
        return [r for r in self.runs if r.status == "FINISHED"] or self.runs

    @property
    def slug(self) -> str:
        """A file name for the entry's figure: its config and overrides, cut at 80 characters with a hash of
        the whole kept, so that entries whose overrides begin alike do not share one."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.config).stem + ("__" + self.overrides if self.overrides else ""))
        return name if len(name) <= 80 else f"{name[:71]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _finite(value: float) -> float | None:
    """A float for JSON: None for NaN (a metric never logged)."""
    return float(value) if value is not None and np.isfinite(value) else None


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step -> value (the latest logged value of a step, as a resumed run may log one twice)."""
    return dict(latest_per_step(client.get_metric_history(run_id, key)))


# Params that do not change what a run learns: the seed varies within an entry, tracking is bookkeeping.
NOT_SETTINGS = ("seed", "tracking.")


@functools.lru_cache(maxsize=None)
def _today(config: str) -> dict[str, str] | None:
    """Today's values of a config file, flattened (None when it cannot be read); read once per file."""
    try:
        return {k: str(v) for k, v in flatten(load_config(REPO / config).to_dict()).items()}
    except (ConfigError, OSError):
        return None


def _overrides(config: str, setting: dict[str, str], recorded: str) -> str:
    """The ``--set`` items that repeat a run with today's config file: the logged params that differ
    from the file's values. A config file may change after its runs, so the recorded overrides alone
    would not do. When the file cannot be read, the recorded overrides (seed and tracking aside)."""
    today = _today(config)
    if today is None:
        return " ".join(o for o in recorded.split() if not o.startswith(("seed=", "tracking.")))
    yaml_value = {"None": "null", "True": "true", "False": "false"}
    # a key the run did not log did not exist yet: it trained with the key's default, which today's file may set
    # otherwise
    defaults = {k: v for k, v in _defaults(setting.get("encoder.name", "")).items()
                if k in today and not k.startswith(NOT_SETTINGS)}
    setting = {**defaults, **setting}
    # a key absent from today's file was renamed since (and is upgraded on load), unless it is one of the
    # encoder's free-form kwargs
    return " ".join(f"{k}={yaml_value.get(v, v).replace(' ', '')}" for k, v in sorted(setting.items())
                    if today.get(k, v) != v or (k not in today and k.startswith("encoder.kwargs.")))


@functools.cache
def _defaults(encoder_name: str) -> dict[str, str]:
    """Every key's default, flattened as params are logged: the config's, and the keyword defaults of the
    encoder class ``encoder_name`` (the config's default when empty) for ``encoder.kwargs.*``. Read-only."""
    out = {k: str(v) for k, v in flatten(ExperimentConfig().to_dict()).items()}
    try:
        encoder = resolve_encoder_class(encoder_name or out["encoder.name"])
    except Exception:  # noqa: BLE001 - an encoder gone since: its kwargs stay as logged
        return out
    for name, parameter in inspect.signature(encoder).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            out[f"encoder.kwargs.{name}"] = str(parameter.default)
    return out


def read_store(uri: str) -> list[dict]:
    """A record per run of the MLflow store at ``uri`` that has a ``pearl.config`` tag and an adapted test
    return: what repeats it (config, settings, recorded overrides), where it ran, and its figures. The
    records are what docs/runs.jsonl keeps, so that the document outlives the store."""
    client = MlflowClient(uri)
    records = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=5000):
            tags, metrics, run_id = run.data.tags, run.data.metrics, run.info.run_id
            if not tags.get("pearl.config") or ADAPTED not in metrics:
                continue
            adapted, total = _history(client, run_id, ADAPTED), _history(client, run_id, TOTAL_S)
            steps = sorted(adapted)
            n_episodes = len([k for k in metrics if k.startswith("eval/test/return_episode_")])
            episode = lambda e, kind: _finite(metrics.get(f"eval/test/{kind}_episode_{e}", np.nan))  # noqa: E731
            has_success = "eval/test/success_episode_0" in metrics
            again = _reevaluation_prefix(run.data.params)
            records.append({
                "run_id": run_id, "config": tags["pearl.config"], "overrides_recorded": tags.get("pearl.overrides", ""),
                "setting": {k: v for k, v in sorted(run.data.params.items()) if not k.startswith(NOT_SETTINGS)},
                "env": run.data.params.get("env.name", "?"), "seed": int(run.data.params.get("seed", -1)),
                "status": run.info.status, "machine": tags.get("pearl.machine", "?"),
                "resumes": [line for line in tags.get(RESUMES_TAG, "").split("\n") if line],
                "iterations": int(metrics.get("progress/iteration", 0)), "env_steps": [int(s) for s in steps],
                "adapted": [adapted[s] for s in steps], "minutes": [_finite(total.get(s, np.nan) / 60) for s in steps],
                "prior": _finite(metrics.get(PRIOR, np.nan)), "success": _finite(metrics.get("eval/test/success_adapted")),
                "episodes": [episode(e, "return") for e in range(n_episodes)],
                "episode_success": [episode(e, "success") for e in range(n_episodes)] if has_success else None,
                "reevaluated": (_reevaluated(client, run_id, int(steps[-1]), again)
                                if f"{again}/{REEVALUATED_RUNS}" in metrics else None),
            })
    return records


def archive(path: Path, records: list[dict]) -> list[dict]:
    """The run records of ``path`` (JSON lines) with ``records`` merged in, a run already there replaced
    by its newer record; written back (sorted by config, seed and run) and returned."""
    kept = {r["run_id"]: r for r in (_records(path) if path.is_file() else [])}
    kept.update((r["run_id"], r) for r in records)
    every = sorted(kept.values(), key=lambda r: (r["config"], r["seed"], r["run_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in every))
    return every


def group(records: list[dict], configs: list[str] = ()) -> list[Entry]:
    """Run records (only those of ``configs`` if given) grouped into entries by config and the settings
    that differ from today's config file, so a run logged before a key existed (it trained with the
    key's default) joins the newer runs of its config."""
    entries: dict[tuple[str, str], Entry] = {}
    for r in records:
        if configs and r["config"] not in configs:
            continue
        overrides = _overrides(r["config"], r["setting"], r.get("overrides_recorded", ""))
        entry = entries.setdefault((r["config"], overrides), Entry(r["config"], overrides, r["env"]))
        entry.runs.append(SeedRun.from_record(r))
    for entry in entries.values():
        entry.runs.sort(key=lambda r: r.seed)
    return sorted(entries.values(), key=lambda e: (e.config, e.overrides))


def read_entries(uri: str, configs: list[str] = ()) -> list[Entry]:
    """The runs of an MLflow store, grouped (:func:`read_store`, then :func:`group`)."""
    return group(read_store(uri), configs)


def _reevaluation_prefix(params: dict[str, str]) -> str:
    """Where ``pearl evaluate RUN`` logs a meta-test under the run's own protocol (its logged eval settings;
    a run from before a setting existed ran at its default)."""
    logged = {**_defaults(params.get("encoder.name", "")), **params}
    return protocol_prefix("test", deterministic_episodes=logged["eval.deterministic_episodes"],
                           posterior=logged["eval.posterior"])


def _reevaluated(client: MlflowClient, run_id: str, final_step: int,
                 prefix: str) -> tuple[float, int, float | None] | None:
    """The latest ``pearl evaluate`` under ``prefix`` of the run's final checkpoint (logged at its env steps)
    that recorded its number of meta-tests per task, with its success where the task family has one; None
    when there is none."""
    value, runs = _history(client, run_id, f"{prefix}/{REEVALUATED}"), _history(client, run_id,
                                                                                  f"{prefix}/{REEVALUATED_RUNS}")
    if final_step not in value or final_step not in runs:
        return None
    return value[final_step], int(runs[final_step]), _history(client, run_id,
                                                              f"{prefix}/{REEVALUATED_SUCCESS}").get(final_step)


def plot(entry: Entry, path: Path) -> None:
    """Learning curves against env steps and wall clock, and the last adaptation curve."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), dpi=80)
    for run in entry.runs:
        label = f"seed {run.seed}"
        marker = "o" if len(run.steps) == 1 else None  # a run kept without its curve: its final point
        axes[0].plot(run.steps, run.adapted, lw=0.8, alpha=0.6, marker=marker, label=label)
        axes[1].plot(run.minutes, run.adapted, lw=0.8, alpha=0.6, marker=marker, label=label)
        axes[2].plot(np.arange(len(run.episodes)), run.episodes, marker="o", lw=0.8, alpha=0.6, label=label)
    common = sorted(set.intersection(*(set(r.steps.tolist()) for r in entry.runs))) if entry.runs else []
    if len(entry.runs) > 1 and common:
        mean = [np.mean([r.adapted[r.steps.tolist().index(s)] for r in entry.runs]) for s in common]
        axes[0].plot(common, mean, color="black", lw=2, label="mean")
    axes[0].set(xlabel="env steps", ylabel="adapted test return", title="learning curve")
    axes[1].set(xlabel="wall clock of training (min)", title="against wall clock")
    axes[2].set(xlabel="meta-test episode", ylabel="mean test return", title="adaptation (last evaluation)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{entry.config} {entry.overrides}".strip(), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _resumed(entry: Entry) -> str:
    """The resume commands that extended runs of ``entry`` beyond what their train command gives."""
    said = [f"seed {r.seed} was then resumed with `" + "`, then `".join(
        f"pearl resume {r.run_id}" + "".join(f" --set {o}" for o in sets.split()) for sets in r.resumes) + "`"
        for r in entry.runs if r.resumes]
    return f" Beyond that command, {'; '.join(said)}." if said else ""


def section(entry: Entry, figure: str) -> list[str]:
    seeds = " ".join(dict.fromkeys(str(r.seed) for r in entry.runs))  # a seed trained twice is named once
    sets = "".join(f" --set {o}" for o in entry.overrides.split())
    success = any(r.success is not None for r in entry.runs)
    again = any(r.reevaluated is not None for r in entry.runs)
    lines = [f"## `{entry.config}`" + (f" with `{entry.overrides}`" if entry.overrides else ""), "",
             f"Command, per seed in ({seeds}): `pearl train {entry.config} --set seed=SEED{sets}`. "
             f"Machine: {entry.runs[0].machine}." + _resumed(entry), "",
             "| seed | status | iterations | env steps | wall clock (min) | final adapted return | best adapted | "
             "prior-z return |" + (" final re-evaluated (meta-tests per task) |" if again else "")
             + (" success (last episode) | success per episode |" if success else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if again else "") + ("---|---|" if success else "")]
    for r in entry.runs:
        row = (f"| {r.seed} | {r.status} | {r.iterations} | {int(r.steps[-1]):,} | {_f(r.minutes[-1])} | "
               f"**{_f(r.adapted[-1])}** | {_f(r.best_adapted)} | {_f(r.prior)} |")
        if again:
            row += f" {_f(r.reevaluated[0])} ({r.reevaluated[1]}){_success(r.reevaluated[2])} |" if r.reevaluated \
                else " – |"
        if success:
            per_episode = ", ".join(_f(v, 2) for v in r.episode_success) if r.episode_success is not None else "–"
            row += f" {_f(r.success, 2)} | {per_episode} |"
        lines.append(row)
    done = entry.finished
    lines.append(f"| mean ({_seeds(entry)}) | | | | {_f(np.mean([r.minutes[-1] for r in done]))} | "
                 f"**{_f(np.mean([r.adapted[-1] for r in done]))}** | | {_f(np.mean([r.prior for r in done]))} |"
                 + (f" {_mean([r.reevaluated[0] for r in done if r.reevaluated])} |" if again else "")
                 + (" | |" if success else ""))
    if again:
        lines += ["", "Re-evaluated: the final checkpoint meta-tested again with `pearl evaluate RUN --runs N`, N "
                  "independent meta-tests per test task averaged; the training run's own final evaluation is one "
                  "draw of the exploration and posterior z."]
    for source in sorted({r.recovered for r in entry.runs if r.recovered}):
        seeds = [str(r.seed) for r in entry.runs if r.recovered == source]
        which = f"Seed {seeds[0]} is" if len(seeds) == 1 else f"Seeds {', '.join(seeds)} are"
        lines += ["", f"{which} kept from {source}, without {'its' if len(seeds) == 1 else 'their'} learning curve."]
    curves = "; ".join(f"seed {r.seed}: " + ", ".join(_f(v) for v in r.episodes) for r in entry.runs)
    lines += ["", f"Adaptation curve at the last evaluation (mean test return per meta-test episode): {curves}.",
              "", f"![{entry.config}]({figure})", ""]
    return lines


# The paper's figures, where it reports one for a family, and where they are read.
PAPER = {
    "cheetah-vel": "about −40, the end of the paper's learning curve (its Figure 3)",
}
CHECKPOINTS_MIN = (30, 45, 60)  # wall-clock minutes at which the summary reads each run


def _last_at(x: np.ndarray, values: np.ndarray, bound: float) -> float:
    """``values`` at the last evaluation whose ``x`` (minutes, env steps) is at most ``bound``; NaN if none."""
    before = np.flatnonzero(np.asarray(x) <= bound)
    return float(np.asarray(values)[before[-1]]) if len(before) else np.nan


def _at_minute(run: SeedRun, minute: float) -> float | None:
    """The adapted return of the last evaluation at or before ``minute`` of training; NaN while a run
    has not trained that long (unless it finished before); None when it is unknown: the run was kept
    without its curve and ended later."""
    if run.recovered and run.minutes[-1] > minute:  # only its final evaluation is known
        return None
    reached = run.status == "FINISHED" or run.minutes[-1] >= minute
    return _last_at(run.minutes, run.adapted, minute) if reached else np.nan


def summary(entries: list[Entry]) -> list[str]:
    """One row per entry: the final adapted return (mean, and per seed), what it was at fixed wall
    clock, the env steps and minutes of the final evaluation, and the paper's figure."""
    at = " | ".join(f"at {m} min" for m in CHECKPOINTS_MIN)
    lines = [f"| config | seeds | final adapted, mean (per seed) | {at} | final success, last episode | env steps | "
             "minutes | paper |", "|---|---|---|" + "---|" * len(CHECKPOINTS_MIN) + "---|---|---|---|"]
    for e in entries:
        done = e.finished
        finals = [r.adapted[-1] for r in done]
        per_seed = ", ".join(_f(v) for v in finals)
        read = " | ".join("–" if None in at else _mean(at)
                          for m in CHECKPOINTS_MIN for at in [[_at_minute(r, m) for r in e.runs]])
        success = [r.success for r in done if r.success is not None]
        name = f"`{e.config}`" + (f" with `{e.overrides}`" if e.overrides else "")
        success_text = f"{_f(np.mean(success), 2)} ({', '.join(_f(v, 2) for v in success)})" if success else "–"
        lines.append(f"| {name} | {_seeds(e)} | **{_f(np.mean(finals))}** ({per_seed}) | {read} | {success_text} | "
                     f"{int(np.mean([r.steps[-1] for r in done])):,} | "
                     f"{_f(np.mean([r.minutes[-1] for r in done]))} | {PAPER.get(e.env, '–')} |")
    return lines + ["", "The columns at fixed minutes average, over seeds, the last evaluation at or before that "
                    "wall clock of training; a seed that has not trained that long is left out (– when none has, or "
                    "when a seed kept without its curve would be). "
                    "The other columns average the finished seeds (all seeds while none has finished). "
                    "Minutes are training wall clock on the machine named in each section, often shared with a "
                    "second run. Paper: a figure only where one can be read without the paper's plotted data "
                    "(the other families are curves in its Figure 3).", ""]


def _seeds(entry: Entry) -> str:
    """How many seeds the means take: the finished ones, and how many others stopped early."""
    finished = sum(r.status == "FINISHED" for r in entry.runs)
    if finished in (0, len(entry.runs)):
        return f"{len(entry.runs)} " + (("seed" if len(entry.runs) == 1 else "seeds") if finished else "unfinished")
    return f"{finished} finished, {len(entry.runs) - finished} unfinished"


def _mean(values: list[float], digits: int = 1) -> str:
    finite = [v for v in values if np.isfinite(v)]
    return _f(float(np.mean(finite)), digits) if finite else "–"


def _scored(record: dict) -> str:
    """What a score record trained: ``config`` and its ``--set`` overrides."""
    return " ".join([f"`{record['config']}`", *(f"`--set {o}`" for o in record.get("overrides", []))])


def _records(path: Path) -> list[dict]:
    """The records of a JSON-lines file, blank lines skipped."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_scores(path: Path) -> dict[str, list[dict]]:
    """Point-robot score records (benchmarks/point_robot_score.py) grouped by config and overrides;
    one scored twice for a seed keeps its latest record."""
    groups: dict[str, dict[int, dict]] = {}
    for record in _records(path):
        groups.setdefault(_scored(record), {})[record["seed"]] = record
    return {name: [seeds[s] for s in sorted(seeds)] for name, seeds in groups.items()}


def plot_scores(groups: dict[str, list[dict]], path: Path) -> None:
    """Scores per config (each seed a dot, the mean a bar) and the mean adaptation curve of each."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), dpi=80)
    names = [" ".join([Path(r[0]["config"]).stem, *r[0].get("overrides", [])]) for r in groups.values()]
    n_episodes = 0
    for i, (name, every) in enumerate(zip(names, groups.values())):
        records = [r for r in every if "diverged" not in r]
        if not records:
            continue
        scores = [r["score"] for r in records]
        axes[0].bar(i, np.mean(scores), color=f"C{i}", alpha=0.5)
        axes[0].plot([i] * len(scores), scores, "o", color=f"C{i}", ms=4)
        curve = np.mean([r["curve"] for r in records], axis=0)
        n_episodes = max(n_episodes, len(curve))
        axes[1].plot(np.arange(1, len(curve) + 1), curve, marker="o", color=f"C{i}", label=name)
    axes[0].set_xticks(range(len(groups)), [n.replace(" ", "\n") for n in names], fontsize=7)
    axes[0].set(ylabel="normalised score", title="score (dots: seeds)", ylim=(0, 1))
    axes[1].set(xlabel="meta-test episode", ylabel="mean test return", title="adaptation, mean over seeds")
    axes[1].set_xticks(range(1, n_episodes + 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    if n_episodes:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def scores_section(groups: dict[str, list[dict]], figure: str) -> list[str]:
    """The posterior comparison: per config its seeds' scores and their mean, the adaptation curve,
    the iterations and training minutes, and the posterior after the first (prior-z) episode."""
    lines = ["## Posteriors beyond one Gaussian: the point robot from the origin", "",
             "Which posterior explores best after one straight path? Point robot, every episode starting at "
             "the origin, the paper's meta-test (3 episodes, the first with z from the prior); the configs differ "
             "only in the encoder and train for equal wall clock (their headers give the per-iteration times). "
             "Score: 0 a uniformly random policy, 1 an oracle that knows the goal; each seed's is the mean of 5 "
             "meta-tests after training. Command, per row: `python benchmarks/point_robot_score.py --config "
             "CONFIG [--set OVERRIDE] --seeds 0 1 2 --out docs/posterior_scores.jsonl`. After the first path: the posterior's "
             "standard deviation (mean over latent dims and test tasks), its KL to the prior and, for the "
             "mixture, the components with weight at least 5%.", "",
             "| config and overrides | seeds | score, mean (per seed) | adaptation curve, mean | iterations | "
             "train min (per seed) | after the first path: std, KL, modes |", "|---|---|---|---|---|---|---|"]
    for name, every in groups.items():
        records = [r for r in every if "diverged" not in r]
        diverged = [str(r["seed"]) for r in every if "diverged" in r]
        seeds = ", ".join(str(r["seed"]) for r in records) + (f"; diverged: {', '.join(diverged)}" if diverged else "")
        if not records:
            lines.append(f"| {name} | {seeds} | – | – | – | – | – |")
            continue
        scores = [r["score"] for r in records]
        curve = np.mean([r["curve"] for r in records], axis=0)
        first = [r.get("first_path_posterior") or {} for r in records]
        posterior = ", ".join(_mean([f.get(k) if f.get(k) is not None else np.nan for f in first], 2)
                              for k in ("std", "kl", "n_modes"))
        lines.append(f"| {name} | {seeds} | **{np.mean(scores):.2f}** ({', '.join(f'{v:.2f}' for v in scores)}) | "
                     f"{', '.join(_f(v) for v in curve)} | {records[0].get('iterations', '–')} | "
                     f"{', '.join(str(r['train_minutes']) for r in records)} | {posterior} |")
    return lines + ["", f"![posterior comparison]({figure})", ""]


def read_learning(path: Path) -> dict[str, list[dict]]:
    """Per-seed records of benchmarks/learning.py (``"seed": "all"`` summaries skipped), grouped by
    config and overrides; a seed recorded twice keeps its latest record."""
    groups: dict[str, dict[int, dict]] = {}
    for record in _records(path):
        if record.get("benchmark") != "learning":
            continue
        seeds = groups.setdefault(_scored(record), {})
        if record.get("seed") != "all":
            seeds[record["seed"]] = record
        else:  # a summary names the machine of the seeds before it that do not
            for earlier in seeds.values():
                earlier.setdefault("machine", record.get("machine", {}))
    return {name: [seeds[s] for s in sorted(seeds)] for name, seeds in groups.items()}


def _env_of(config: str) -> str:
    return (_today(config) or {}).get("env.name", "?")


def plot_learning(records: list[dict], beside: list[Entry], path: Path) -> None:
    """The recorded learning curves (per seed) against env steps, with the CPU configs of the same env
    over the same range of env steps (the mean over their seeds)."""
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
    for r in records:
        curve = r["curve"]
        ax.plot([p["env_steps"] for p in curve], [p["return_adapted"] for p in curve], marker="o", ms=3, lw=0.8,
                label=f"{Path(r['config']).stem}, seed {r['seed']}")
    last = max(p["env_steps"] for r in records for p in r["curve"])
    for i, entry in enumerate(beside):
        steps = sorted({int(s) for run in entry.runs for s in run.steps if s <= last})
        mean = [np.nanmean([_last_at(run.steps, run.adapted, s) for run in entry.runs]) for s in steps]
        ax.plot(steps, mean, color="black", lw=2, ls=("-", "--", ":")[i % 3],
                label=f"{Path(entry.config).stem}, mean of {len(entry.runs)} seeds")
    ax.set(xlabel="env steps", ylabel="adapted test return", title="learning curve at equal env steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def learning_section(name: str, records: list[dict], beside: list[Entry], figure: str) -> list[str]:
    """Runs recorded by benchmarks/learning.py (a lent GPU, say): per seed the iterations, env steps,
    wall clock, final adapted and prior-z return and gradient steps per second, and the CPU configs of
    the same env read at the same env steps."""
    machine = records[0].get("machine", {})
    where = (f"{machine.get('cuda') or 'no GPU'}, {machine.get('cpu_count', '?')} CPU cores, torch "
             f"{machine.get('torch', '?')} with {machine.get('torch_threads', '?')} thread(s) per run")
    first = records[0]
    options = " ".join(f"--{k.replace('_', '-')} {first[k]:g}" for k in ("eval_every", "max_seconds") if k in first)
    sets = " ".join(f"--set {o}" for o in first.get("overrides", []))
    lines = [f"## {name}, recorded by benchmarks/learning.py", "",
             f"Command, per seed: `python benchmarks/learning.py --config {first['config']} --seeds SEED --full "
             f"--target {first['target']:g} {options} {sets}`".replace("  ", " ")
             + " (`benchmarks/gpu_paper_scale.sh` runs 3 seeds side by side on one GPU). "
             f"Machine: {where}.", "",
             "| seed | iterations | env steps | wall clock (min) | final adapted return | prior-z return | "
             "gradient steps/s |", "|---|---|---|---|---|---|---|"]
    for r in records:
        p = r["curve"][-1]
        lines.append(f"| {r['seed']} | {p['iteration']} | {p['env_steps']:,} | {_f(p['wall_s'] / 60)} | "
                     f"**{_f(p['return_adapted'])}** | {_f(p['return_prior'])} | {_f(p['grad_steps_per_s'])} |")
    finals = [r["curve"][-1] for r in records]
    lines.append(f"| mean | | | {_f(np.mean([p['wall_s'] for p in finals]) / 60)} | "
                 f"**{_f(np.mean([p['return_adapted'] for p in finals]))}** | "
                 f"{_f(np.mean([p['return_prior'] for p in finals]))} | |")
    steps = min(p["env_steps"] for p in finals)  # the fewest any seed reached
    mine = [_last_at([p["env_steps"] for p in r["curve"]], [p["return_adapted"] for p in r["curve"]], steps)
            for r in records]
    lines += ["", f"At {steps:,} env steps (each run's last evaluation at or before): these runs **{_mean(mine)}** "
              f"({', '.join(_f(v) for v in mine)})"
              + "".join(f"; `{e.config}` **{_mean(at)}** ({', '.join(_f(v) for v in at)})"
                        for e in beside for at in [[_last_at(run.steps, run.adapted, steps) for run in e.runs]]) + "."]
    return lines + ["", f"![{name}]({figure})", ""]


def diagnoses_section(path: Path, entries: list[Entry]) -> list[str]:
    """The sparse meta-tests of benchmarks/sparse_meta_test.py, a row per run (the latest record of each),
    named by the entry that holds the run."""
    records = {(r["run_id"], bool(r.get("prior_until_found")), r.get("posterior", "encoder")): r
               for r in _records(path)}
    owner = {run.run_id: (e, run) for e in entries for run in e.runs}
    lines = ["## Sparse point robot: where the meta-test falls short", "",
             "Command, per run: `python benchmarks/sparse_meta_test.py RUN --runs 3 --out docs/sparse_meta_test.jsonl` "
             "(3 meta-tests of each test task, 20 episodes, the first 5 with z from the prior). A meta-test finds its "
             "goal while exploring, later (in a posterior episode), or never. Goals lie on the unit half-circle and "
             "count within 0.2, so an episode that ends well inside the circle cannot find one; the radius is the "
             "episode's final distance from the origin, and the posterior's standard deviation (mean over latent "
             "dims) is read at the first and the last posterior episode of the meta-tests that never find it. For "
             "those: the closest their posterior episodes came to the goal (0.2 would have found it) and the span "
             "of those episodes' final directions. For the meta-tests that found their goal and missed it in the "
             "last episode: the closest the first posterior episode after the find and the last episode came to "
             "it. Rows marked *prior until found* replay the meta-test with `--prior-until-found`: an episode "
             "whose context holds no reward yet draws z from the prior, not q(z|c) (what the learned policy would "
             "reach if the belief after episodes without reward were the prior). Rows marked *decoder posterior* "
             "replay it with `--posterior decoder`: the posterior episodes draw z from the reward decoder's exact "
             "posterior on a grid (`eval.posterior: decoder`, pearl/decoder_posterior.py), rows marked *q(z|c)* "
             "with `--posterior encoder` (rows without either mark are older records, all with q(z|c)).", "",
             "| run | seed | iteration | success, last episode | found exploring / later / never | found, then missed "
             "in the last episode | "
             "end radius: exploring, never-found posterior episodes | posterior std, never found: first, last | "
             "never found: closest, direction span |", "|---|---|---|---|---|---|---|---|---|"]
    for (run_id, counterfactual, posterior), r in records.items():
        entry, run = owner.get(run_id, (None, None))
        name = (f"`{Path(entry.config).stem}`" + (f" `{entry.overrides}`" if entry.overrides else "")) if entry else run_id[:8]
        name += ", *prior until found*" if counterfactual else ""
        if "posterior" in r:  # recorded since the choice exists: said either way, a run's own may be either
            name += ", *decoder posterior*" if posterior == "decoder" else ", *q(z|c)*"
        std = r.get("posterior_std_of_never_found") or []
        lines.append(f"| {name} | {run.seed if run else '–'} | {r['iteration']} | **{r['success_last']:.2f}** | "
                     f"{r['found_while_exploring']} / {r['found_later']} / {r['never_found']} of {r['meta_tests']} | "
                     f"{r.get('found_then_missed_last', '–')}{_drift(r)} | "
                     f"{_f(r['end_radius_of_exploring_episodes'], 2)}, "
                     f"{_f(r['end_radius_of_never_found_posterior_episodes'], 2)} | "
                     f"{', '.join(_f(v, 2) for v in std) or '–'} | {_f(r.get('closest_to_goal_of_never_found'), 2)}, "
                     f"{_f(r.get('direction_span_of_never_found_deg'), 0)}° |")
    return lines + [""]


def _success(value: float | None) -> str:
    """A re-evaluation's success, after its return."""
    return "" if value is None else f", success {value:.2f}"


def _drift(record: dict) -> str:
    """How close the found-then-missed meta-tests came to their goal after the find and at the end."""
    closest = record.get("closest_to_goal_of_found_then_missed")
    return f" (closest {closest[0]:.2f} after the find, {closest[1]:.2f} at the end)" if closest else ""


def explorers_section(path: Path) -> list[str]:
    """The scripted explorers of benchmarks/sparse_explorers.py, a row per explorer and config (the
    latest record of each): what the sparse point robot's bar asks of exploration."""
    records = {(r["config"], r["explorer"]): r for r in _records(path)}
    lines = ["## Sparse point robot: what the bar asks of exploration", "",
             "Command: `python benchmarks/sparse_explorers.py --meta-tests 50 --out docs/sparse_explorers.jsonl`. "
             "Scripted agents play the config's meta-test on its test tasks, steering straight for a point: "
             "`random` heads for a uniform point of the half-circle in every episode until the context holds a "
             "reward (posterior sampling whose posterior learns nothing from episodes without reward), `thompson` "
             "draws its point after the exploring episodes among the goals the context has not ruled out "
             "(posterior sampling with the exact posterior). Both return to the best rewarded position once they "
             "have one, so their last-episode success bounds what a learned agent that explores as they do can "
             "reach; the learned agents' counts are in the table above.", "",
             "| config | explorer | meta-tests | found while exploring | found by the last episode | "
             "success, last episode | success per episode |", "|---|---|---|---|---|---|---|"]
    for (config, explorer), r in records.items():
        lines.append(f"| `{config}` | {explorer} | {r['meta_tests']} | {r['found_while_exploring']:.2f} | "
                     f"{r['found_by_last']:.2f} | **{r['success_last']:.2f}** | "
                     f"{', '.join(f'{v:.2f}' for v in r['success_per_episode'])} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", help="an MLflow store whose runs are first merged into the run records "
                   "(--runs); without it the document is regenerated from the records alone")
    p.add_argument("--runs", type=Path, default=REPO / "docs" / "runs.jsonl",
                   help="the run records the document is made from (JSON lines, one per run; committed)")
    p.add_argument("--config", action="append", default=[], help="only the runs of this config (repeatable)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results.md",
                   help="the markdown; its figures go to results/ beside it, a folder this script owns "
                        "(PNGs there that it did not write are removed)")
    p.add_argument("--scores", type=Path, default=REPO / "docs" / "posterior_scores.jsonl",
                   help="point-robot score records of the posterior comparison (skipped when absent)")
    p.add_argument("--learning", type=Path, action="append", default=None,
                   help="learning-curve records of benchmarks/learning.py to draw beside the runs of the same env "
                        "(repeatable; default docs/paper_scale_gpu.jsonl, skipped when absent)")
    p.add_argument("--diagnoses", type=Path, default=REPO / "docs" / "sparse_meta_test.jsonl",
                   help="sparse meta-test records of benchmarks/sparse_meta_test.py (skipped when absent)")
    p.add_argument("--explorers", type=Path, default=REPO / "docs" / "sparse_explorers.jsonl",
                   help="scripted-explorer records of benchmarks/sparse_explorers.py (skipped when absent)")
    args = p.parse_args(argv)
    if args.tracking_uri:
        records = archive(args.runs, read_store(args.tracking_uri))
    elif args.runs.is_file():
        records = _records(args.runs)
    else:
        sys.exit(f"no run records at {args.runs}: pass --tracking-uri to read them from an MLflow store")
    entries = group(records, args.config)
    if not entries:
        sys.exit(f"no runs with a pearl.config tag in {args.tracking_uri or args.runs}")
    figures = args.out.parent / "results"
    lines = ["# Results", "",
             "Generated by `python benchmarks/results.py` from the run records in `docs/runs.jsonl`, which "
             "`--tracking-uri STORE` fills from the MLflow store the runs were tracked in; every figure comes "
             "from a run the command beside it repeats. Returns are on the held-out test tasks: the adapted "
             "return is the last meta-test episode's, after the exploration episodes with z from the prior.", "",
             *summary(entries)]
    written = []
    for entry in entries:
        kept = {r.figure for r in entry.runs if r.recovered}
        if len(kept) == 1 and all(r.recovered for r in entry.runs) and (args.out.parent / min(kept)).is_file():
            lines += section(entry, min(kept))  # drawn while the curves existed; kept/ is not swept below
            continue
        written.append(figures / f"{entry.slug}.png")
        plot(entry, written[-1])
        lines += section(entry, written[-1].relative_to(args.out.parent).as_posix())
    if args.scores.is_file():
        written.append(figures / "posteriors.png")
        groups = read_scores(args.scores)
        plot_scores(groups, written[-1])
        lines += scores_section(groups, written[-1].relative_to(args.out.parent).as_posix())
    for source in args.learning if args.learning is not None else [REPO / "docs" / "paper_scale_gpu.jsonl"]:
        if not source.is_file():
            continue
        for i, (name, recorded) in enumerate(read_learning(source).items()):
            beside = [Entry(e.config, e.overrides, e.env, curves) for e in entries
                      if e.env == _env_of(recorded[0]["config"]) and not e.overrides
                      for curves in [[r for r in e.runs if not r.recovered]] if curves]
            written.append(figures / f"{source.stem}_{i}.png")
            plot_learning(recorded, beside, written[-1])
            lines += learning_section(name, recorded, beside, written[-1].relative_to(args.out.parent).as_posix())
    if args.diagnoses.is_file():
        lines += diagnoses_section(args.diagnoses, entries)
    if args.explorers.is_file():
        lines += explorers_section(args.explorers)
    for stale in set(figures.glob("*.png")) - set(written):  # the figures folder is this script's own
        stale.unlink()
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} and {len(written)} figure(s) in {figures}")


if __name__ == "__main__":
    main()
