"""MLflow tracking: the one owner of run outputs.

Metrics are buffered and sent in batches (MLflow's SQLite store costs milliseconds per call);
the run is marked FINISHED, FAILED or KILLED when it ends, never left RUNNING.

The store is contacted once at start with few retries and a short timeout, so an unreachable server
or an unwritable store is one clear :class:`TrackingError` within seconds; later calls keep MLflow's
own retries (a server that blips during a long run is waited for). A write that still fails raises
:class:`TrackingError` naming the store and the reason (e.g. disk full), never a bare traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pearl.config import ExperimentConfig, flatten

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written."""


# First contact: fail within seconds when nothing answers. Only applied where the user has not set them.
_FIRST_CONTACT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_REASONS = (r"\[Errno -?\d+\] [^'\")(]+", r"timed? ?out", r"database or disk is full", r"No space left on device",
            r"unable to open database file", r"attempt to write a readonly database", r"Permission denied")


def short_reason(err: BaseException) -> str:
    """The gist of a store error (MLflow's messages run to pages of retry details)."""
    text = " ".join(str(err).split())
    for pattern in _REASONS:
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            return m.group(0).strip()
    return text[:200] or type(err).__name__


@contextlib.contextmanager
def _first_contact():
    saved = {k: os.environ.get(k) for k in _FIRST_CONTACT_ENV}
    for key, value in _FIRST_CONTACT_ENV.items():
        os.environ.setdefault(key, value)
    retry_log = logging.getLogger("urllib3.connectionpool")  # one line per retry: the error says it all
    level = retry_log.level
    retry_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        retry_log.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def open_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` whose store has answered once.

    Raises:
        TrackingError: the store cannot be reached or opened, with the reason in one line.
    """
    from mlflow import MlflowClient

    remote = tracking_uri.startswith(("http://", "https://", "databricks"))
    try:
        with _first_contact():
            client = MlflowClient(tracking_uri)
            client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
        what = "reach the MLflow tracking server" if remote else "open the MLflow tracking store"
        raise TrackingError(
            f"cannot {what} at {tracking_uri} ({short_reason(err)}); check tracking.tracking_uri or "
            "$MLFLOW_TRACKING_URI" + (", and that the server is running" if remote else "")
        ) from None
    return client


def find_run(tracking_uri: str, run_id: str) -> Any | None:
    """The MLflow run ``run_id``, or None when the store has no such (undeleted) run.

    Raises:
        TrackingError: the store cannot be reached.
    """
    from mlflow.exceptions import MlflowException

    client = open_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise TrackingError(f"cannot read run {run_id} from {tracking_uri} ({short_reason(err)})") from None
    return None if run.info.lifecycle_stage == "deleted" else run


def resolve_tracking_uri(configured: str | None) -> str:
    """Config value, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in the working directory."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def git_commit() -> str | None:
    """The commit of the source tree the package runs from, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Tracker:
    """An MLflow run: params, batched metrics, artifacts, status.

    Args:
        tracking_uri: where the store lives.
        run_id: an existing run to continue (``pearl resume``), or None for a new run.
    """

    def __init__(self, tracking_uri: str, *, run_id: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client = open_client(tracking_uri)
        self.run_id = run_id
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()

    @classmethod
    def start(cls, cfg: ExperimentConfig, *, run_name: str, tags: dict[str, str] | None = None) -> Tracker:
        """Create a run, log the resolved config (params + YAML artifact), version and commit tags.
        ``tags`` are set as the run is created (a sweep's parent link and trial key)."""
        import pearl

        tracker = cls(resolve_tracking_uri(cfg.tracking.tracking_uri))
        try:
            exp = tracker.client.get_experiment_by_name(cfg.tracking.experiment_name)
            exp_id = exp.experiment_id if exp else tracker.client.create_experiment(cfg.tracking.experiment_name)
            tags = {"pearl.version": pearl.__version__, "mlflow.runName": run_name,
                    "env": cfg.env.name, "encoder": cfg.encoder.name, **(tags or {})}
            commit = git_commit()
            if commit:
                tags["mlflow.source.git.commit"] = commit
            run = tracker.client.create_run(exp_id, tags=tags, run_name=run_name)
        except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"cannot create a run in the MLflow tracking store at {tracker.tracking_uri} "
                                f"({short_reason(err)})") from None
        tracker.run_id = run.info.run_id
        tracker.log_params(flatten(cfg.to_dict()))
        tracker.log_text(cfg.to_yaml(), "config.yaml")
        return tracker

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # the store takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Queue metrics; they are sent by :meth:`flush` (called each iteration)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, int(step)) for k, v in metrics.items())

    def flush(self) -> None:
        """Send queued metrics in batches of up to 1000.

        Raises:
            TrackingError: the store refused or could not be reached; unsent metrics stay queued.
        """
        while self._pending:
            batch = self._pending[:1000]
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
                raise TrackingError(f"cannot write metrics to the MLflow tracking store at {self.tracking_uri} "
                                    f"({short_reason(err)})") from None
            del self._pending[: len(batch)]
        self._last_flush = time.monotonic()

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            figure.savefig(path, dpi=110, bbox_inches="tight")
            self.log_artifact(path, str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end(self, status: str = "FINISHED") -> None:
        """Flush and mark the run ``FINISHED``, ``FAILED`` or ``KILLED``.

        Raises:
            TrackingError: the store could not take the final metrics or the status.
        """
        try:
            self.flush()
        finally:
            try:
                self.client.set_terminated(self.run_id, status=status)
            except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
                raise TrackingError(f"cannot mark run {self.run_id} {status} in {self.tracking_uri} "
                                    f"({short_reason(err)})") from None

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric, in step order, one per step.

        A step logged twice (sent, then the process died before its checkpoint, then redone on
        resume) counts once, with its latest value.

        Raises:
            TrackingError: the store could not be read.
        """
        try:
            hist = self.client.get_metric_history(self.run_id, key)
        except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"cannot read metric {key} of run {self.run_id} from {self.tracking_uri} "
                                f"({short_reason(err)})") from None
        return latest_per_step(hist)


def latest_per_step(history: Any) -> list[tuple[int, float]]:
    """(step, value) pairs of MLflow metric entries in step order, the latest value of each step."""
    latest = {m.step: m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))}
    return sorted(latest.items())
