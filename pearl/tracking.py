"""MLflow tracking: the one owner of run outputs.

Metrics are buffered and sent in batches (MLflow's SQLite store costs milliseconds per call);
the run is marked FINISHED, FAILED or KILLED when it ends, never left RUNNING.
"""

from __future__ import annotations

import logging
import os
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
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()

    @classmethod
    def start(cls, cfg: ExperimentConfig, *, run_name: str) -> Tracker:
        """Create a run, log the resolved config (params + YAML artifact), version and commit tags."""
        import pearl

        tracker = cls(resolve_tracking_uri(cfg.tracking.tracking_uri))
        try:
            exp = tracker.client.get_experiment_by_name(cfg.tracking.experiment_name)
            exp_id = exp.experiment_id if exp else tracker.client.create_experiment(cfg.tracking.experiment_name)
            tags = {"pearl.version": pearl.__version__, "mlflow.runName": run_name,
                    "env": cfg.env.name, "encoder": cfg.encoder.name}
            commit = git_commit()
            if commit:
                tags["mlflow.source.git.commit"] = commit
            run = tracker.client.create_run(exp_id, tags=tags, run_name=run_name)
        except Exception as err:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"cannot open the MLflow tracking store at {tracker.tracking_uri!r}: {err}") from err
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
        """Send queued metrics in batches of up to 1000."""
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), 1000):
            self.client.log_batch(self.run_id, metrics=pending[i : i + 1000])
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

    def end(self, status: str = "FINISHED") -> None:
        """Flush and mark the run ``FINISHED``, ``FAILED`` or ``KILLED``."""
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric, in step order."""
        hist = self.client.get_metric_history(self.run_id, key)
        return sorted((m.step, m.value) for m in hist)
