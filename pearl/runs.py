"""Runs: start, resume, load, evaluate and embed; the library behind the ``pearl`` command.

A run is an MLflow run (params, metrics, artifacts) plus a folder of checkpoints, which the run
records in its tag ``pearl.checkpoint_dir``. A run is named by its MLflow run id, its checkpoint
folder or one checkpoint file. Bad input raises one error whose message says what is wrong
(:class:`RunError`, or the config, checkpoint, env, encoder and tracking errors it passes on).

Examples::

    from pearl import runs
    from pearl.config import load_config

    with runs.start(load_config("experiments/quickstart.yaml")) as run:
        outcome = run.train()                      # status FINISHED, FAILED or KILLED, and why
    loaded = runs.load_run(outcome.run_id)         # its config, a trainer, the trained weights
    result = runs.evaluate(loaded, num_episodes=5)  # a fresh meta-test (MetaTestResult)
    report = runs.embed(loaded)                    # latent inspection (pearl.latents.LatentReport)
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import encoders
import envs
import pearl
from pearl import latents
from pearl.checkpoint import (CheckpointError, CheckpointWriteError, FolderLock, incompatible_differences,
                              iteration_of, latest_checkpoint, list_checkpoints, load_checkpoint, set_aside)
from pearl.config import ConfigError, ExperimentConfig, apply_overrides, config_from_dict, saved_config_dict
from pearl.evaluation import MetaTestResult
from pearl.tracking import Tracker, TrackingError, find_run, resolve_tracking_uri
from pearl.trainer import IterationHook, IterationResult, Trainer, TrainingDiverged, TrainingInterrupted

log = logging.getLogger(__name__)


class RunError(ValueError):
    """A run or checkpoint cannot be found or used as asked (bad input)."""


class RunNotInStore(RunError):
    """The run a checkpoint names is not in the tracking store at hand."""


class NothingToResume(Exception):
    """The run has already reached ``train.num_iterations``; the message says how to train longer."""


BAD_INPUT: tuple[type[Exception], ...] = (RunError, ConfigError, CheckpointError, TrackingError, envs.EnvError,
                                          encoders.EncoderError, latents.LatentError)
"""What bad input raises here: one message that names the problem (the CLI's exit code 2)."""


def build_trainer(cfg: ExperimentConfig) -> Trainer:
    """The trainer of ``cfg``, with the per-iteration hooks its config asks for: the latent
    summary (:func:`pearl.latents.training_summary`) every ``eval.latent_every`` iterations."""
    hooks = [IterationHook(cfg.eval.latent_every, latents.training_summary)] if cfg.eval.latent_every else []
    return Trainer(cfg, hooks=hooks)


# ----------------------------------------------------------------------------------------------
# finding and loading a run


@dataclass(frozen=True)
class Location:
    """Where a run's checkpoints are: the folder, and the run id or file when RUN named one."""

    folder: Path
    run_id: str | None = None
    file: Path | None = None


def locate(run: str, tracking_uri: str | None = None) -> Location:
    """RUN is a checkpoint file, a checkpoint folder, or an MLflow run id (its ``pearl.checkpoint_dir``).

    Raises:
        RunError: no such file or folder, no such run, or the run recorded no checkpoint folder here.
        TrackingError: the tracking store cannot be reached.
    """
    path = Path(run)
    if path.is_file():
        return Location(path.parent, file=path)
    if path.is_dir():
        return Location(path)
    if "/" in run or "\\" in run or run.endswith(".pt"):
        raise RunError(f"{run}: no such checkpoint file or folder")
    uri = resolve_tracking_uri(tracking_uri)
    found = find_run(uri, run)
    if found is None:
        raise RunError(f"{run!r} is neither a checkpoint path nor a run id in the tracking store {uri}")
    folder = found.data.tags.get("pearl.checkpoint_dir")
    if not folder:
        raise RunError(f"run {run} has no checkpoints recorded (tag pearl.checkpoint_dir is missing)")
    if not Path(folder).is_dir():
        raise RunError(f"run {run}: its checkpoint folder {folder} does not exist on this machine "
                       "(checkpoints stay where the run trained; copy the folder and pass its path)")
    return Location(Path(folder), run_id=run)


def read_checkpoint(where: Location, *, skipped: list[tuple[Path, str]] | None = None) -> dict[str, Any]:
    """The checkpoint ``where`` names: its file, or the newest that loads in its folder (broken newer
    ones are appended to ``skipped``). ``state["_path"]`` is the file read.

    Raises:
        RunError: the folder holds no checkpoint.
        CheckpointError: the file, or every file of the folder, does not load.
    """
    if where.file is not None:
        return {**load_checkpoint(where.file), "_path": str(where.file)}
    state = latest_checkpoint(where.folder, skipped=skipped)
    if state is None:
        raise RunError(f"{'run ' + where.run_id + ': ' if where.run_id else ''}no checkpoint in {where.folder}")
    return state


def saved_config(state: dict[str, Any], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config a checkpoint was written with (keys renamed since upgraded), ``overrides`` applied.

    Raises:
        ConfigError: it does not validate; names the pearl version that wrote it when it differs.
    """
    path = state.get("_path", "<checkpoint>")
    try:
        data = apply_overrides(saved_config_dict(state["config_yaml"]), list(overrides))
        return config_from_dict(data, f"{path} (saved config)")
    except ConfigError as err:
        written_by = state.get("pearl_version", "?")
        note = "" if written_by == pearl.__version__ else f" (written by pearl {written_by}, this is {pearl.__version__})"
        raise ConfigError(f"{err}{note}") from None


@dataclass
class LoadedRun:
    """A trained run rebuilt from a checkpoint: a trainer with its weights and context buffer."""

    trainer: Trainer
    checkpoint: str
    run_id: str | None
    iteration: int
    env_steps: int

    @property
    def cfg(self) -> ExperimentConfig:
        return self.trainer.cfg

    @property
    def title(self) -> str:
        """``run 1a2b3c4d · point-robot · iteration 40`` (the checkpoint file when there is no run)."""
        who = f"run {self.run_id[:8]}" if self.run_id else Path(self.checkpoint).name
        return f"{who} · {self.cfg.env.name} · iteration {self.iteration}"


def load_run(run: str, *, tracking_uri: str | None = None, overrides: Sequence[str] = ()) -> LoadedRun:
    """Rebuild a trained run from RUN (a run id, a checkpoint folder or file): its saved config with
    ``overrides`` (``--set`` strings, e.g. ``eval.num_runs=5``), a trainer, the trained weights."""
    where = locate(run, tracking_uri)
    return from_checkpoint(read_checkpoint(where), run_id=where.run_id, overrides=overrides)


def from_checkpoint(state: dict[str, Any], *, run_id: str | None = None, overrides: Sequence[str] = ()) -> LoadedRun:
    """Rebuild a trained run from a loaded checkpoint (see :func:`load_run`).

    The networks and the context buffer are loaded (the buffer source of latent inspection reads
    it); the RL buffer, optimisers and RNG states are not: that is :func:`resume`'s business.

    Raises:
        CheckpointError: the checkpoint holds no agent, or one that does not fit its config.
    """
    path = str(state.get("_path", "<checkpoint>"))
    if "config_yaml" not in state or "learner" not in state:
        raise CheckpointError(f"{path}: holds no agent to load")
    trainer = build_trainer(saved_config(state, overrides))
    try:
        trainer.learner.load_state_dict(state["learner"])
        if "enc_buffer" in state:
            trainer.enc_buffer.load_state_dict({k: v.numpy() for k, v in state["enc_buffer"].items()})
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: does not fit the model built from its config: {err}") from None
    trainer.iteration, trainer.env_steps = int(state["iteration"]), int(state["env_steps"])
    trainer.run_id = run_id or state.get("run_id") or None
    return LoadedRun(trainer, path, trainer.run_id, trainer.iteration, trainer.env_steps)


def open_tracker(loaded: LoadedRun, tracking_uri: str | None = None) -> Tracker:
    """The MLflow run of a loaded run, to log to (``tracking_uri`` first, then the config's).

    Raises:
        RunNotInStore: the checkpoint names no run, or the store does not hold it.
    """
    uri = resolve_tracking_uri(tracking_uri or loaded.cfg.tracking.tracking_uri)
    if loaded.run_id is None:
        raise RunNotInStore(f"checkpoint {loaded.checkpoint} names no run")
    if find_run(uri, loaded.run_id) is None:
        raise RunNotInStore(f"run {loaded.run_id} is not in the tracking store {uri}")
    return Tracker(uri, run_id=loaded.run_id)


# ----------------------------------------------------------------------------------------------
# evaluate and embed a loaded run


def evaluate(loaded: LoadedRun, *, split: str = "test", num_episodes: int | None = None) -> MetaTestResult:
    """A fresh meta-test of the ``"test"`` or ``"train"`` tasks, as the config's ``eval`` section says
    (load the run with overrides to change it), with ``num_episodes`` episodes per task."""
    trainer = loaded.trainer
    tasks = trainer.test_tasks if split == "test" else trainer.tasks.train_tasks
    if len(tasks) == 0:
        raise RunError(f"no {split} tasks to evaluate on")
    return trainer.evaluate(tasks, num_episodes=num_episodes)


def evaluation_prefix(cfg: ExperimentConfig, split: str) -> str:
    """Metric prefix of ``pearl evaluate`` under ``cfg``'s meta-test protocol (see :func:`protocol_prefix`)."""
    return protocol_prefix(split, deterministic_episodes=cfg.eval.deterministic_episodes, posterior=cfg.eval.posterior)


def protocol_prefix(split: str, *, deterministic_episodes: str, posterior: str) -> str:
    """``evaluate/test``, with ``_sampled`` when the episodes before the last sampled their actions
    (``eval.deterministic_episodes: last``) and ``_decoder`` when the posterior episodes drew z from the
    decoder's posterior (``eval.posterior: decoder``)."""
    return (f"evaluate/{split}" + ("_sampled" if deterministic_episodes == "last" else "")
            + ("_decoder" if posterior == "decoder" else ""))


def log_evaluation(loaded: LoadedRun, result: MetaTestResult, *, split: str, tracking_uri: str | None = None) -> str:
    """Log a meta-test to the run (metrics at the checkpoint's env steps, the table as a text file).

    Returns:
        The metric prefix, e.g. ``evaluate/test``.

    Raises:
        RunNotInStore: nowhere to log it.
    """
    tracker = open_tracker(loaded, tracking_uri)
    prefix = evaluation_prefix(loaded.cfg, split)
    # the number of meta-tests per task, so that a report can say how precise the re-evaluation is
    tracker.log_metrics({**result.metrics(prefix), f"{prefix}/num_runs": result.num_runs}, step=loaded.env_steps)
    tracker.flush()
    tracker.log_text(result.table(), f"{prefix}_adaptation_curve_{int(time.time())}.txt")
    return prefix


def embed(loaded: LoadedRun, *, splits: Sequence[str] = latents.SPLITS, source: str = "rollouts",
          n_context: int | None = None) -> latents.LatentReport:
    """Latent inspection of a loaded run (see :func:`pearl.latents.embed_trainer`), seeded by its config."""
    return latents.embed_trainer(loaded.trainer, splits=splits, source=source, n_context=n_context,
                                 seed=loaded.cfg.seed)


def log_embedding(loaded: LoadedRun, report: latents.LatentReport, files: Sequence[Path], *, name: str,
                  tracking_uri: str | None = None) -> None:
    """Log an inspection's summary as ``embed/<name>/*`` metrics and its files under ``latents/<name>_<source>/``.

    Raises:
        RunNotInStore: nowhere to log it.
    """
    report.log(open_tracker(loaded, tracking_uri), files, step=loaded.env_steps, prefix=f"embed/{name}",
               artifact_path=f"latents/{name}_{report.source}")


# ----------------------------------------------------------------------------------------------
# training: start, resume


@dataclass
class Outcome:
    """How a training run ended.

    Attributes:
        status: the MLflow run's final status: ``FINISHED``, ``FAILED`` or ``KILLED``.
        run_id: the MLflow run.
        message: why it stopped and how to continue (empty when finished).
        final_return: the last test return after adaptation (NaN when never evaluated).
        warnings: what went wrong after the end (e.g. the status could not be written).
    """

    status: str
    run_id: str
    message: str = ""
    final_return: float = math.nan
    warnings: list[str] = field(default_factory=list)


class TrainingRun:
    """A run ready to train: its trainer, its MLflow run and its checkpoint folder.

    Made by :func:`start` or :func:`resume`; use it as a context manager, which holds the folder's
    lock from :func:`resume`'s first look at the checkpoints until the end.
    """

    def __init__(self, trainer: Trainer, tracker: Tracker, *, source: str, resumed: bool,
                 checkpoint_dir: Path | None = None, lock: ExitStack | None = None,
                 notes: Sequence[str] = ()) -> None:
        self.trainer, self.tracker, self.source, self.resumed = trainer, tracker, source, resumed
        self.notes = list(notes)  # warnings from setting up (broken checkpoints set aside)
        self._lock = lock
        trainer.run_id = tracker.run_id
        trainer.checkpoint_dir = checkpoint_dir or Path(trainer.cfg.tracking.checkpoint_dir).resolve() / tracker.run_id
        tracker.set_tag("pearl.checkpoint_dir", str(trainer.checkpoint_dir))

    @property
    def run_id(self) -> str:
        return self.tracker.run_id

    @property
    def tracking_uri(self) -> str:
        return self.tracker.tracking_uri

    @property
    def checkpoint_dir(self) -> Path:
        return self.trainer.checkpoint_dir

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.close()

    def train(self, on_iteration: Callable[[IterationResult], None] | None = None) -> Outcome:
        """Train to ``train.num_iterations``, logging every iteration; then plots, the final
        adaptation curve and the weights as artifacts. The run is marked with the outcome's status.

        Raises:
            CheckpointError: the checkpoint folder is in use by another process.
        """
        history: dict[str, list[float]] = {"steps": [], "adapted": [], "prior": []}

        def log_iteration(result: IterationResult) -> None:
            self.tracker.log_metrics(result.metrics, step=result.env_steps)
            self.tracker.flush()
            if result.test is not None:
                history["steps"].append(result.env_steps)
                history["adapted"].append(result.test.return_adapted)
                history["prior"].append(result.test.return_prior)
            if on_iteration is not None:
                on_iteration(result)

        outcome = Outcome("FAILED", self.run_id)
        try:
            with ExitStack() as stack:
                if self._lock is None:
                    stack.enter_context(FolderLock(self.checkpoint_dir))
                self.trainer.train(log_iteration)
            outcome.status = "FINISHED"
        except (TrainingDiverged, CheckpointWriteError, TrackingError, TrainingInterrupted, KeyboardInterrupt) as err:
            outcome.status, outcome.message = self._stopped(err)
        finally:
            self._end(outcome, history)
        outcome.final_return = history["adapted"][-1] if history["adapted"] else math.nan
        return outcome

    def _stopped(self, err: BaseException) -> tuple[str, str]:
        """The run's status and the message for a training that stopped early."""
        hint = f"pearl resume {self.run_id}"
        found = list_checkpoints(self.checkpoint_dir)
        last = f"{found[-1]}" if found else f"none yet in {self.checkpoint_dir}"
        if isinstance(err, TrainingDiverged):
            return "FAILED", f"training diverged: {err}. Run marked FAILED; the last good checkpoint: {last}"
        if isinstance(err, CheckpointWriteError):
            return "FAILED", f"{err}. Run marked FAILED; free space, then continue with: {hint}"
        if isinstance(err, TrackingError):
            return "FAILED", (f"{err}. Training stopped after iteration {self.trainer.iteration}; the last "
                              f"checkpoint: {last}. Once the store works, continue with: "
                              f"pearl resume {self.checkpoint_dir}")
        if isinstance(err, TrainingInterrupted):
            return "KILLED", f"stopped: {err}. Continue with: {hint}"
        return "KILLED", f"stopped at once by a second signal; the last checkpoint: {last}. Continue with: {hint}"

    def _end(self, outcome: Outcome, history: dict[str, list[float]]) -> None:
        """Final outputs of a finished run, then the run's status (whatever happened before)."""
        try:
            if outcome.status == "FINISHED":
                log_final_outputs(self.trainer, self.tracker, history)
        finally:
            try:
                self.tracker.end(outcome.status)
            except TrackingError as err:  # already failing, or the final outputs are on disk anyway
                outcome.warnings.append(str(err))
                log.warning("%s", err)


def start(cfg: ExperimentConfig, *, source: str = "", overrides: Sequence[str] = (),
          tags: dict[str, str] | None = None) -> TrainingRun:
    """A new run of ``cfg``: the trainer is built first, so a bad env or encoder is reported before
    an MLflow run exists; then the run is created with the config as params and artifact, and tags
    that say how to repeat it (``pearl.config``: the config file, ``pearl.overrides``: the ``--set``
    values) and where it ran (``pearl.machine``), plus ``tags`` (set as the run is created)."""
    trainer = build_trainer(cfg)
    tracker = Tracker.start(cfg, run_name=_run_name(cfg), tags=tags)
    tracker.set_tags({"pearl.config": source, "pearl.overrides": " ".join(overrides),
                      "pearl.machine": machine_description(trainer)})
    return TrainingRun(trainer, tracker, source=source, resumed=False)


def machine_description(trainer: Trainer) -> str:
    """Cores, processor, torch build and threads, device: what a run's wall clock was measured on."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    return (f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
            f"device {trainer.device}")


def _run_name(cfg: ExperimentConfig) -> str:
    encoder = cfg.encoder.name.split(":")[-1]
    return cfg.tracking.run_name or f"{cfg.env.name}__{encoder}__{cfg.seed}__{int(time.time())}"


def resume(run: str, *, overrides: Sequence[str] = (), tracking_uri: str | None = None) -> TrainingRun:
    """Continue RUN (a run id, a checkpoint folder or file) from its newest good checkpoint (or the
    file named), in the same MLflow run. ``overrides`` may change what a resume can take
    (:data:`pearl.checkpoint.RESUME_MAY_CHANGE`). Broken newer checkpoints are set aside
    (``TrainingRun.notes`` says so) once everything else is known to be in order.

    Raises:
        NothingToResume: the run is complete.
        RunError, CheckpointError, ConfigError: what stands in the way, before anything changes.
    """
    where = locate(run, tracking_uri)
    lock = ExitStack()
    lock.enter_context(FolderLock(where.folder))  # one writer per folder, from the first look on
    try:
        return _resume_locked(where, lock, overrides, tracking_uri)
    except BaseException:
        lock.close()
        raise


def _resume_locked(where: Location, lock: ExitStack, overrides: Sequence[str], tracking_uri: str | None) -> TrainingRun:
    skipped: list[tuple[Path, str]] = []
    state = read_checkpoint(where, skipped=skipped)
    path = state["_path"]
    if where.file is not None:
        chosen = iteration_of(where.file)
        newer = [p.name for p in list_checkpoints(where.folder) if chosen is not None and iteration_of(p) > chosen]
        if newer:
            raise RunError(f"{where.folder} holds newer checkpoints ({', '.join(newer)}) that resuming from "
                           f"{where.file.name} would overwrite; resume from the folder instead, or move them")
    if where.run_id and state.get("run_id") and state["run_id"] != where.run_id:
        raise RunError(f"{where.folder} holds checkpoints of run {state['run_id']}, not of run {where.run_id}")
    cfg = saved_config(state, overrides)
    diffs = incompatible_differences(saved_config_dict(state["config_yaml"]), cfg.to_dict())
    if diffs:
        raise CheckpointError(f"{path}: --set changes keys that a resumed run cannot take:\n  " + "\n  ".join(diffs))
    if tracking_uri:
        cfg.tracking.tracking_uri = tracking_uri
    if int(state["iteration"]) >= cfg.train.num_iterations:
        raise NothingToResume(f"{path}: the run is complete (iteration {state['iteration']} of "
                              f"{cfg.train.num_iterations}); nothing to resume. To train longer: "
                              "pearl resume RUN --set train.num_iterations=N")
    budget = cfg.train.max_minutes
    if budget is not None and float(state["wall_time"]) >= 60.0 * budget:
        raise NothingToResume(f"{path}: the run has spent its budget ({float(state['wall_time']) / 60:.1f} of "
                              f"train.max_minutes={budget:g}); nothing to resume. To train longer: "
                              "pearl resume RUN --set train.max_minutes=M")
    run_id = where.run_id or state.get("run_id") or None
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    if run_id and find_run(uri, run_id) is None:  # checked before anything in the folder moves
        raise RunNotInStore(f"run {run_id} (of checkpoint {path}) is not in the tracking store {uri}; "
                            "pass the store that holds it with --tracking-uri")
    # kept for inspection, out of the way of new checkpoints and pruning
    notes = [f"skipping a broken checkpoint, moved to {set_aside(broken).name}: {why}" for broken, why in skipped]
    trainer = build_trainer(cfg)  # built and loaded before the MLflow run is touched
    trainer.load_state_dict(state)
    if run_id is None:
        tracker = Tracker.start(cfg, run_name=_run_name(cfg))
    else:
        tracker = Tracker(uri, run_id=run_id)
        tracker.client.update_run(run_id, status="RUNNING")
        _record_resume(tracker, overrides)
    return TrainingRun(trainer, tracker, source=path, resumed=True, checkpoint_dir=where.folder, lock=lock,
                       notes=notes)


RESUMES_TAG = "pearl.resumes"


def _record_resume(tracker: Tracker, overrides: Sequence[str]) -> None:
    """Append a resume's ``--set`` values that change the training (not ``tracking.*``) to the run's
    ``pearl.resumes`` tag, one line per resume, so that the run's record says how it was trained: a run
    resumed with ``train.max_minutes=55`` is not repeated by its ``pearl train`` command alone."""
    sets = [o for o in overrides if not o.startswith("tracking.")]
    if not sets:
        return
    earlier = tracker.client.get_run(tracker.run_id).data.tags.get(RESUMES_TAG, "")
    tracker.set_tag(RESUMES_TAG, "\n".join([*filter(None, earlier.split("\n")), " ".join(sets)]))


# ----------------------------------------------------------------------------------------------
# a finished run's outputs


def evaluation_history(tracker: Tracker) -> dict[str, list[float]] | None:
    """The run's test returns at every evaluation, read back from the tracking store
    (:meth:`Tracker.metric_history`: an iteration redone on resume counts once). None when the
    store cannot be read or holds none.

    Returns:
        ``{"steps": [...], "adapted": [...], "prior": [...]}``, in env-step order.
    """
    try:
        latest = {name: dict(tracker.metric_history(f"eval/test/return_{name}")) for name in ("adapted", "prior")}
    except TrackingError:  # the caller keeps its in-memory history
        return None
    steps = sorted(set(latest["adapted"]) & set(latest["prior"]))
    if not steps:
        return None
    return {"steps": steps, "adapted": [latest["adapted"][s] for s in steps],
            "prior": [latest["prior"][s] for s in steps]}


def log_final_outputs(trainer: Trainer, tracker: Tracker, history: dict[str, list[float]]) -> None:
    """Plots, the final adaptation curve, and the model weights (no buffers) as artifacts."""
    import matplotlib.pyplot as plt
    import torch

    from pearl import plots  # matplotlib, headless: only where figures are drawn

    title = f"{trainer.cfg.env.name} / {trainer.cfg.encoder.name} (run {tracker.run_id[:8]})"
    history = evaluation_history(tracker) or history  # a resumed run: its iterations before the resume too
    if history["steps"]:
        fig = plots.learning_curve(history["steps"], history["adapted"], history["prior"], title=title)
        tracker.log_figure(fig, "plots/learning_curve.png")
        plt.close(fig)
    result = trainer.evaluate(trainer.test_tasks)
    fig = plots.adaptation_curve(result.returns, result.num_exp_traj_eval, title=title)
    tracker.log_figure(fig, "plots/adaptation_curve.png")
    plt.close(fig)
    tracker.log_text(result.table(), "eval/adaptation_curve.txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save({"config_yaml": trainer.cfg.to_yaml(), "learner": trainer.learner.state_dict()}, path)
        tracker.log_artifact(path, "model")
