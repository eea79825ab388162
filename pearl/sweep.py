"""Sweeps: training runs over seeds and a grid of config values, scheduled by Ray Tune and tracked as
MLflow child runs of one parent run.

The parent run records the sweep's specification and carries its name and a hash of it (tags
``pearl.sweep.name``, ``pearl.sweep.spec_hash``). Each child run is created with its trial's key, seed
and grid point (``pearl.sweep.trial``, ``pearl.sweep.seed``, ``pearl.sweep.group``) and the parent link,
so running the same sweep again finds every trial's run: a FINISHED one is left alone, an interrupted
one (RUNNING after a SIGKILL, KILLED, FAILED) is resumed from its newest checkpoint, and one that died
before its first checkpoint is deleted and started afresh. Each trial is a run as ``pearl train`` makes
it (:func:`pearl.runs.start`, the same config validation, outputs and checkpoints).

Ray is optional (the ``ray`` extra); it is imported only when trials are scheduled.

Examples::

    from pearl import sweep

    spec = sweep.SweepSpec("experiments/quickstart.yaml", seeds=(0, 1, 2),
                           grid=(("algo.kl_lambda", ("0.1", "1.0")),))
    plan = sweep.plan_sweep(spec)                         # every trial's config validated
    outcome = sweep.run_sweep(plan, max_concurrent=2)     # status, parent run id, each trial's status
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pearl import runs
from pearl.config import load_config
from pearl.tracking import open_client, resolve_tracking_uri
from pearl.trainer import IterationResult, TrainingInterrupted

log = logging.getLogger(__name__)

TAG_NAME, TAG_HASH = "pearl.sweep.name", "pearl.sweep.spec_hash"
TAG_TRIAL, TAG_SEED, TAG_GROUP = "pearl.sweep.trial", "pearl.sweep.seed", "pearl.sweep.group"
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own link: the UI nests child runs under it

INSTALL_HINT = ("pearl sweep needs Ray Tune, an optional extra: pip install 'pearl-metarl[ray]' "
                "(in a checkout: pip install -c constraints.txt -e '.[ray]')")
SERVER_HINT = ("start an MLflow tracking server that every node can reach, e.g. `mlflow server "
               "--backend-store-uri sqlite:///mlflow.db --artifacts-destination ./mlartifacts --host 0.0.0.0 "
               "--port 5000`, and point the sweep at it with MLFLOW_TRACKING_URI=http://HOST:5000")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class SweepError(runs.RunError):
    """A sweep cannot run as asked (bad input: grid, seeds, name, address, Ray missing)."""


# ----------------------------------------------------------------------------------------------
# the specification and its trials


def split_values(raw: str) -> list[str]:
    """``0.1,1.0`` -> ``["0.1", "1.0"]``; commas inside brackets stay (``[64,64],[32]`` is two values)."""
    values, depth, current = [], 0, ""
    for char in raw:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return [] if values == [""] else values


def parse_grid(item: str) -> tuple[str, tuple[str, ...]]:
    """``KEY=V1,V2`` -> ``(KEY, (V1, V2))``; the values stay YAML text, as ``--set`` takes them.

    Raises:
        SweepError: no ``=``, no key, no values, an empty or repeated value, or the key ``seed``.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepError(f"--grid {item!r}: expected KEY=V1,V2, e.g. --grid algo.kl_lambda=0.1,1.0")
    if key == "seed":
        raise SweepError("--grid seed=...: give seeds with --seeds")
    values = split_values(raw)
    if not values:
        raise SweepError(f"--grid {key}: the grid is empty; give at least one value, e.g. {key}=V1,V2")
    if "" in values or len(set(values)) < len(values):
        raise SweepError(f"--grid {item!r}: every value must be given once and not be empty")
    return key, tuple(values)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``3`` -> seeds 0, 1, 2; ``0,5,7`` -> those seeds.

    Raises:
        SweepError: not whole numbers, negative, repeated, or a count below 1.
    """
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise SweepError(f"--seeds {text!r}: expected a count (3) or a list of seeds (0,5,7)") from None
    seeds = tuple(range(numbers[0])) if len(numbers) == 1 else tuple(numbers)
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise SweepError(f"--seeds {text!r}: expected a count of at least 1, or distinct seeds >= 0")
    return seeds


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: a config, ``--set`` values for every trial, a grid, seeds, a name.

    Attributes:
        config: the experiment YAML.
        seeds: one trial per seed and grid point; None: the config's own seed.
        grid: ``(key, values)`` pairs; every combination is a grid point (values as YAML text).
        sets: ``KEY=VALUE`` overrides applied to every trial before the grid point and seed.
        name: the sweep's name; None: the config's stem and the first characters of the spec hash.
    """

    config: str
    seeds: tuple[int, ...] | None = None
    grid: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sets: tuple[str, ...] = ()
    name: str | None = None

    def points(self) -> list[tuple[tuple[str, str], ...]]:
        """Every grid point, as ``((key, value), ...)`` in the grid's order."""
        keys = [key for key, _ in self.grid]
        if len(set(keys)) < len(keys):
            raise SweepError(f"--grid: a key is given twice ({', '.join(keys)}); list its values once")
        return [tuple(zip(keys, values)) for values in itertools.product(*(v for _, v in self.grid))]


@dataclass(frozen=True)
class TrialPlan:
    """One trial: its key (unique in the sweep), grid point, seed and the overrides ``pearl train`` gets."""

    key: str
    group: str
    seed: int
    overrides: tuple[str, ...]
    num_iterations: int


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: every trial's config loaded, the store and experiment they share."""

    spec: SweepSpec
    name: str
    spec_hash: str
    tracking_uri: str
    experiment: str
    trials: tuple[TrialPlan, ...]
    workdir: str

    def describe(self) -> dict[str, Any]:
        """The specification as the parent run records it."""
        return {"name": self.name, "config": self.spec.config, "sets": list(self.spec.sets),
                "grid": {key: list(values) for key, values in self.spec.grid},
                "seeds": None if self.spec.seeds is None else list(self.spec.seeds),
                "trials": [t.key for t in self.trials], "spec_hash": self.spec_hash}


def group_label(point: Sequence[tuple[str, str]]) -> str:
    """``algo.kl_lambda=0.1 algo.discount=0.9``, or ``all`` for a sweep without a grid."""
    return " ".join(f"{key}={value}" for key, value in point) or "all"


def prepare(spec: SweepSpec) -> SweepPlan:
    """Load and validate every trial's config, as ``pearl train`` would, before anything runs.

    Raises:
        ConfigError: a trial's config does not validate (an unknown grid key, a bad value).
        SweepError: a bad grid, name, or trials that would log to different stores or experiments.
    """
    trials, configs = [], []
    for point in spec.points():
        for seed in spec.seeds if spec.seeds is not None else (None,):
            overrides = (*spec.sets, *(f"{k}={v}" for k, v in point), *(() if seed is None else (f"seed={seed}",)))
            cfg = load_config(spec.config, list(overrides))
            group, key = group_label(point), " ".join([*(f"{k}={v}" for k, v in point), f"seed={cfg.seed}"])
            trials.append(TrialPlan(key, group, cfg.seed, overrides, cfg.train.num_iterations))
            configs.append(cfg)
    stores = {(resolve_tracking_uri(c.tracking.tracking_uri), c.tracking.experiment_name) for c in configs}
    if len(stores) > 1:
        raise SweepError("the trials would log to different tracking stores or experiments; a sweep's runs share "
                         "one: do not vary tracking.tracking_uri or tracking.experiment_name")
    digest = hashlib.sha256(json.dumps([[t.key, c.to_dict()] for t, c in zip(trials, configs)], sort_keys=True,
                                       default=str).encode()).hexdigest()
    name = spec.name or f"{Path(spec.config).stem}-{digest[:8]}"
    if not _NAME.fullmatch(name):
        raise SweepError(f"sweep name {name!r}: use letters, digits, '_', '-' and '.' (at most 100)")
    ((uri, experiment),) = stores
    return SweepPlan(spec, name, digest, _absolute_uri(uri), experiment, tuple(trials), os.getcwd())


def _absolute_uri(uri: str) -> str:
    """A relative SQLite path made absolute, so that trial processes in other folders find the same store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def is_local_store(uri: str) -> bool:
    """A SQLite file, a ``file:`` URI or a bare path: only processes on this machine can write it."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_address(address: str | None, tracking_uri: str) -> None:
    """Trials on a Ray cluster run on other machines: they need a store they can all reach.

    Raises:
        SweepError: ``address`` is given and the store is local to this machine.
    """
    if address and is_local_store(tracking_uri):
        raise SweepError(f"--address {address}: trials on other machines cannot write to the local tracking store "
                         f"{tracking_uri}; {SERVER_HINT}")


def require_ray() -> None:
    """Raises SweepError with the install command when Ray Tune is not installed."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise SweepError(INSTALL_HINT) from None


# ----------------------------------------------------------------------------------------------
# the parent run and the trials' child runs


def experiment_id(client: Any, name: str) -> str:
    """The id of MLflow experiment ``name``, created when missing."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def find_sweep(client: Any, name: str, experiment_ids: Sequence[str] | None = None) -> Any | None:
    """The newest parent run of the sweep called ``name`` (in the experiments given, else in all), or None."""
    ids = list(experiment_ids) if experiment_ids else [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, filter_string=f"tags.`{TAG_NAME}` = '{name}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def open_parent(client: Any, experiment: str, plan: SweepPlan) -> str:
    """The parent run of ``plan``: the existing one of the same name and spec (marked RUNNING again), or a
    new one that records the spec (tags, params, ``sweep.json``).

    Raises:
        SweepError: a sweep of that name with another spec exists.
    """
    found = find_sweep(client, plan.name, [experiment])
    if found is not None:
        if found.data.tags.get(TAG_HASH) != plan.spec_hash:
            raise SweepError(f"a sweep named {plan.name!r} with another specification exists (run "
                             f"{found.info.run_id}); continue it with the same config, --set, --grid and --seeds, "
                             "or give this one another --name")
        client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id
    described = plan.describe()
    run = client.create_run(experiment, run_name=plan.name,
                            tags={TAG_NAME: plan.name, TAG_HASH: plan.spec_hash, "pearl.config": plan.spec.config})
    from mlflow.entities import Param

    params = [Param(f"sweep.{key}", json.dumps(described[key])[:6000]) for key in ("config", "sets", "grid", "seeds")]
    client.log_batch(run.info.run_id, params=params)
    client.log_text(run.info.run_id, json.dumps(described, indent=1), "sweep.json")
    return run.info.run_id


def child_runs(client: Any, parent_run_id: str) -> list[Any]:
    """Every (undeleted) run whose MLflow parent is ``parent_run_id``."""
    parent = client.get_run(parent_run_id)
    found, token = [], None
    while True:
        page = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def trial_runs(client: Any, parent_run_id: str) -> dict[str, Any]:
    """Each trial's run by trial key: a FINISHED one where there is one, else the newest."""
    best: dict[str, Any] = {}
    for run in sorted(child_runs(client, parent_run_id), key=lambda r: r.info.start_time or 0):
        key = run.data.tags.get(TAG_TRIAL)
        if key is not None and (key not in best or best[key].info.status != "FINISHED"):
            best[key] = run
    return best


# ----------------------------------------------------------------------------------------------
# one trial, in a Ray worker


class TrialFailed(RuntimeError):
    """A trial's run ended FAILED or KILLED (Ray Tune then counts the trial as errored)."""


@dataclass(frozen=True)
class TrialJob:
    """What a trial's process needs: the config as given, the driver's folder, the store, the parent run."""

    config: str
    workdir: str
    tracking_uri: str
    parent_run_id: str
    trials: dict[str, TrialPlan]


def trial_tags(job: TrialJob, trial: TrialPlan) -> dict[str, str]:
    """Set on a trial's run as it is created: the parent link, the trial key, its seed and grid point."""
    return {TAG_PARENT: job.parent_run_id, TAG_TRIAL: trial.key, TAG_SEED: str(trial.seed), TAG_GROUP: trial.group}


def open_trial_run(job: TrialJob, trial: TrialPlan) -> runs.TrainingRun | None:
    """The trial's run ready to train: its interrupted run resumed from the newest checkpoint, or a new
    run as ``pearl train`` makes it. None when its run has finished.

    A run that stopped before its first checkpoint holds nothing to continue: it is deleted and the
    trial starts afresh, so that the store keeps one run per trial.
    """
    client = open_client(job.tracking_uri)
    existing = trial_runs(client, job.parent_run_id).get(trial.key)
    if existing is not None:
        run_id = existing.info.run_id
        if existing.info.status == "FINISHED":
            return None
        try:
            return runs.resume(run_id, tracking_uri=job.tracking_uri)
        except runs.NothingToResume:  # stopped after its last checkpoint, before being marked
            client.set_terminated(run_id, "FINISHED")
            return None
        except runs.RunError as err:
            log.warning("trial %s: run %s has no checkpoint to resume (%s); starting it again", trial.key, run_id, err)
            client.delete_run(run_id)
    cfg = load_config(job.config, list(trial.overrides))
    return runs.start(cfg, source=job.config, overrides=trial.overrides, tags=trial_tags(job, trial))


def train_trial(params: dict[str, Any], *, job: TrialJob) -> None:
    """Ray Tune's trainable: train the trial ``params["trial"]``, reporting each iteration and the end.

    Raises:
        TrialFailed: the run ended FAILED or KILLED (its message says why and how to continue).
    """
    import torch
    from ray import tune

    if Path(job.workdir).is_dir():  # Tune starts trials in folders of its own; paths are the driver's
        os.chdir(job.workdir)
    os.environ["MLFLOW_TRACKING_URI"] = job.tracking_uri
    torch.set_num_threads(1)  # one CPU per trial (a config's num_threads > 0 still applies)
    trial = job.trials[params["trial"]]
    run = open_trial_run(job, trial)
    if run is None:
        tune.report({"iteration": trial.num_iterations, "status": "FINISHED", "message": "finished before"})
        return
    state = {"run_id": run.run_id, "resumed": int(run.resumed)}

    def report(result: IterationResult) -> None:
        try:
            tune.report({"iteration": result.iteration, "status": "RUNNING", **state})
        except SystemExit:  # how Tune stops a trial (the sweep was interrupted): the run ends KILLED
            raise TrainingInterrupted("stopped by Ray Tune: the sweep was interrupted") from None

    with run:
        tune.report({"iteration": run.trainer.iteration, "status": "RUNNING", **state})
        outcome = run.train(report)
        tune.report({"iteration": run.trainer.iteration, "status": outcome.status, "message": outcome.message,
                     "final_return": outcome.final_return, **state})
    if outcome.status != "FINISHED":
        raise TrialFailed(f"run {outcome.run_id} {outcome.status}: {outcome.message}")


# ----------------------------------------------------------------------------------------------
# the driver


@dataclass(frozen=True)
class SweepEvent:
    """A trial's state change, or its progress (``kind`` ``iteration``), for displays.

    ``kind``: ``finished_before`` (done in an earlier invocation), ``running`` (``message`` says whether
    its run is new or resumed), ``iteration``, ``finished``, ``failed``, ``retrying``.
    """

    kind: str
    trial: str
    iteration: int = 0
    message: str = ""


@dataclass
class SweepOutcome:
    """How a sweep ended: ``FINISHED`` (every trial), ``FAILED`` (a trial failed) or ``KILLED``."""

    status: str
    name: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, str] = field(default_factory=dict)
    scheduled: int = 0


def plan_sweep(spec: SweepSpec, *, address: str | None = None) -> SweepPlan:
    """Everything checked before anything is created: Ray is installed, every trial's config validates,
    and a cluster ``address`` comes with a store that every node can reach.

    Raises:
        SweepError: Ray is missing, a bad grid, seeds or name, a local store with ``address``.
        ConfigError: a trial's config does not validate.
    """
    require_ray()
    plan = prepare(spec)
    check_address(address, plan.tracking_uri)
    return plan


def run_sweep(plan: SweepPlan, *, address: str | None = None, num_cpus: int | None = None,
              max_concurrent: int | None = None, on_event: Callable[[SweepEvent], None] | None = None) -> SweepOutcome:
    """Run every trial of ``plan`` (:func:`plan_sweep`) that has not finished yet, on Ray Tune; the parent
    run ends with the sweep's status. A local Ray is started with ``num_cpus`` (default: every core), or
    the cluster at ``address`` is joined; each trial takes one CPU, at most ``max_concurrent`` at once.

    Raises:
        SweepError: a local store with ``address``; a sweep of the same name and another spec exists.
        TrackingError: the store cannot be reached.
    """
    check_address(address, plan.tracking_uri)
    client = open_client(plan.tracking_uri)
    parent_id = open_parent(client, experiment_id(client, plan.experiment), plan)
    emit = on_event or (lambda event: None)
    before = trial_runs(client, parent_id)
    pending = [t for t in plan.trials if t.key not in before or before[t.key].info.status != "FINISHED"]
    for t in plan.trials:
        if t not in pending:
            emit(SweepEvent("finished_before", t.key, t.num_iterations, f"run {before[t.key].info.run_id}"))
    job = TrialJob(plan.spec.config, plan.workdir, plan.tracking_uri, parent_id, {t.key: t for t in plan.trials})
    try:
        if pending:
            _run_tune(job, pending, address=address, num_cpus=num_cpus, max_concurrent=max_concurrent, emit=emit)
    finally:
        status, statuses = _settle(client, parent_id, plan)
    return SweepOutcome(status, plan.name, parent_id, plan.tracking_uri, statuses, len(pending))


def _settle(client: Any, parent_run_id: str, plan: SweepPlan) -> tuple[str, dict[str, str]]:
    """Once Ray is down: trial runs left RUNNING (their process went with Ray) are marked KILLED, and the
    parent run gets the sweep's status."""
    found = trial_runs(client, parent_run_id)
    statuses = {}
    for t in plan.trials:
        run = found.get(t.key)
        if run is not None and run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
        statuses[t.key] = "MISSING" if run is None else "KILLED" if run.info.status == "RUNNING" else run.info.status
    values = set(statuses.values())
    status = "FINISHED" if values == {"FINISHED"} else "FAILED" if "FAILED" in values else "KILLED"
    client.set_terminated(parent_run_id, status)
    return status, statuses


def _run_tune(job: TrialJob, pending: Sequence[TrialPlan], *, address: str | None, num_cpus: int | None,
              max_concurrent: int | None, emit: Callable[[SweepEvent], None]) -> None:
    """One Tune experiment over the pending trials, one CPU each; a trial whose process dies is retried
    once (resuming its run). Tune's own state goes to a temporary folder: MLflow holds what resumes."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic console output, which verbose=0 silences
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard copies of MLflow's
    storage = tempfile.mkdtemp(prefix="pearl-sweep-")
    tune_log = logging.getLogger("ray.tune")
    level = tune_log.level
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    tune_log.setLevel(logging.CRITICAL)  # a trial's failure is told once, by the progress events
    try:
        trainable = tune.with_resources(tune.with_parameters(train_trial, job=job), {"cpu": 1})
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search([t.key for t in pending])},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name="pearl-sweep", storage_path=storage, verbose=0,
                                      callbacks=[_progress_callback(emit)],
                                      failure_config=tune.FailureConfig(max_failures=1)))
        tuner.fit()
    finally:
        tune_log.setLevel(level)
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)


def _progress_callback(emit: Callable[[SweepEvent], None]) -> Any:
    """A Tune callback that turns trial state changes and results into :class:`SweepEvent` s."""
    from ray import tune

    seen: set[str] = set()

    def why(trial: Any) -> str:
        message = (trial.last_result or {}).get("message")
        error_file = getattr(trial, "error_file", None)
        if not message and error_file and Path(error_file).is_file():
            lines = [line for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()]
            message = lines[-1].split(". ")[0] if lines else ""  # Ray's own explanations run long
        return message or "the trial's process died"

    class Progress(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            key = trial.config["trial"]
            if key not in seen and "run_id" in result:
                seen.add(key)
                run_id, at = result["run_id"], int(result["iteration"])
                emit(SweepEvent("running", key, at, f"resumed run {run_id} after iteration {at}"
                                if result.get("resumed") else f"new run {run_id}"))
            emit(SweepEvent("iteration", key, int(result.get("iteration", 0))))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            emit(SweepEvent("finished", trial.config["trial"], int(result.get("iteration", 0)),
                            f"run {result.get('run_id', '?')}, final return {result.get('final_return', math.nan):.3f}"))

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            seen.discard(trial.config["trial"])
            emit(SweepEvent("retrying", trial.config["trial"], message=why(trial)))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            emit(SweepEvent("failed", trial.config["trial"], message=why(trial)))

    return Progress()
