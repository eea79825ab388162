"""Checkpoint and resume end to end: kills, signals, divergence, bad checkpoints, evaluation.

Runs use the tiny config on CPU with one torch thread, so every op is deterministic and metrics can
be compared bit for bit (``time/*`` excluded). A reference run trained without interruption is made
once per module, in this process; runs that must be killed are ``pearl train`` subprocesses.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO, TINY
from tests.helpers import new_store

# Iterations long enough (20 gradient steps) that a kill after the first checkpoint lands mid-run.
SCHEDULE = ["--set", "train.num_iterations=5", "--set", "train.num_train_steps_per_itr=20",
            "--set", "tracking.keep_checkpoints=2", "--set", "seed=7"]


# ----------------------------------------------------------------------------------------------
# helpers


def write_tiny(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def pearl(*args: str, capsys: pytest.CaptureFixture | None = None) -> tuple[int, str]:
    """Run the CLI in this process (no start-up cost); exit code and stderr."""
    from pearl.cli import main

    code = main(list(args))
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def pearl_process(*args: str, cwd: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri}
    return subprocess.Popen([sys.executable, "-m", "pearl.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> Path:
    """Poll until the first checkpoint file of any run under ``folder`` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob("*/ckpt_*.pt"))
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"pearl train ended (exit {proc.returncode}) before a checkpoint:\n{proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def only_run(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def metrics_of(uri: str, run_id: str) -> dict[tuple[str, int], float]:
    """Every (metric, step) -> value of a run, timing excluded. An iteration logged twice (its metrics
    were sent, then the process died before its checkpoint) must have logged the same value twice."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    out: dict[tuple[str, int], float] = {}
    for key in client.get_run(run_id).data.metrics:
        if key.startswith("time/"):
            continue
        for m in client.get_metric_history(run_id, key):
            seen = out.setdefault((key, m.step), m.value)
            assert _same(seen, m.value), f"{key} at step {m.step} logged as {seen} and {m.value}"
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_same_metrics(got: dict, want: dict) -> None:
    assert set(got) == set(want), f"missing {sorted(set(want) - set(got))[:5]}, extra {sorted(set(got) - set(want))[:5]}"
    differ = [(k, got[k], want[k]) for k in sorted(want) if not _same(got[k], want[k])]
    assert not differ, f"{len(differ)} of {len(want)} values differ, e.g. {differ[:3]}"


# ----------------------------------------------------------------------------------------------
# the uninterrupted reference


@pytest.fixture(scope="module")
def template(mlflow_template: Path) -> Path:
    return mlflow_template


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, template: Path) -> dict:
    """One uninterrupted run: its store, run id, checkpoint folder and a snapshot of its metrics."""
    root = tmp_path_factory.mktemp("reference")
    uri = new_store(root, template)
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # artifacts and checkpoints stay in this folder
        code, _ = pearl("train", str(write_tiny(root)), *SCHEDULE, "--set", f"tracking.tracking_uri={uri}")
    assert code == 0
    run = only_run(uri)
    return {"uri": uri, "run_id": run.info.run_id, "root": root,
            "checkpoints": Path(run.data.tags["pearl.checkpoint_dir"]), "metrics": metrics_of(uri, run.info.run_id)}


# ----------------------------------------------------------------------------------------------
# determinism and resume


def test_same_seed_gives_identical_metrics(reference: dict, tmp_path: Path, template: Path) -> None:
    uri = new_store(tmp_path, template)
    code, _ = pearl("train", str(write_tiny(tmp_path)), *SCHEDULE, "--set", f"tracking.tracking_uri={uri}")
    assert code == 0
    got = metrics_of(uri, only_run(uri).info.run_id)
    assert any(k[0] == "eval/test/return_adapted" for k in got) and any(k[0] == "train/loss_critic" for k in got)
    assert_same_metrics(got, reference["metrics"])


def test_sigkill_after_first_checkpoint_then_resume_matches_uninterrupted_run(
    reference: dict, tmp_path: Path, template: Path
) -> None:
    uri = new_store(tmp_path, template)
    proc = pearl_process("train", str(write_tiny(tmp_path)), *SCHEDULE, cwd=tmp_path, uri=uri)
    first = wait_for_checkpoint(proc, tmp_path / "checkpoints")
    proc.kill()  # SIGKILL: no handler runs, nothing is flushed or marked
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run = only_run(uri)
    assert run.info.status == "RUNNING"  # what a kill leaves behind
    from pearl.checkpoint import iteration_of, list_checkpoints

    left = list_checkpoints(first.parent)
    assert left and iteration_of(left[-1]) < 5, "the kill came too late: training had already finished"

    code, _ = pearl("resume", run.info.run_id, "--tracking-uri", uri)
    assert code == 0
    run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert_same_metrics(metrics_of(uri, run.info.run_id), reference["metrics"])
    # the learning-curve plot of the resumed run is drawn from every evaluation, before the kill too
    from pearl.runs import evaluation_history
    from pearl.tracking import Tracker

    history = evaluation_history(Tracker(uri, run_id=run.info.run_id))
    want = sorted(step for key, step in reference["metrics"] if key == "eval/test/return_adapted")
    assert history is not None and history["steps"] == want and len(want) >= 2
    assert history["adapted"] == [reference["metrics"][("eval/test/return_adapted", s)] for s in want]


def test_sigterm_writes_checkpoint_exits_130_marks_killed_and_resumes(
    reference: dict, tmp_path: Path, template: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = new_store(tmp_path, template)
    proc = pearl_process("train", str(write_tiny(tmp_path)), *SCHEDULE, cwd=tmp_path, uri=uri)
    first = wait_for_checkpoint(proc, tmp_path / "checkpoints")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM received" in err and "checkpoint written" in err and "Traceback" not in err
    run = only_run(uri)
    assert run.info.status == "KILLED"
    assert f"pearl resume {run.info.run_id}" in err
    from pearl.checkpoint import iteration_of, latest_checkpoint, list_checkpoints

    stopped_at = iteration_of(list_checkpoints(first.parent)[-1])
    assert 1 <= stopped_at < 5 and f"stopped after iteration {stopped_at}" in err
    state = latest_checkpoint(first.parent)
    assert state["iteration"] == stopped_at and state["run_id"] == run.info.run_id

    code, _ = pearl("resume", run.info.run_id, "--tracking-uri", uri, capsys=capsys)
    assert code == 0
    run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert_same_metrics(metrics_of(uri, run.info.run_id), reference["metrics"])


def test_resume_of_a_finished_run_does_nothing(reference: dict, capsys: pytest.CaptureFixture) -> None:
    before = sorted(p.name for p in reference["checkpoints"].iterdir())
    code, err = pearl("resume", str(reference["checkpoints"]), "--tracking-uri", reference["uri"], capsys=capsys)
    assert code == 0 and "the run is complete (iteration 5 of 5)" in err
    assert sorted(p.name for p in reference["checkpoints"].iterdir()) == before


def test_wall_clock_budget_ends_training_with_an_evaluated_iteration_and_resume_extends_it(
    tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """train.max_minutes: the iteration that passes the budget evaluates (eval.every would skip it),
    the run finishes and checkpoints there; resume refuses a spent budget and takes a larger one."""
    uri = new_store(tmp_path, template)
    monkeypatch.chdir(tmp_path)
    code, _ = pearl("train", str(write_tiny(tmp_path)), *SCHEDULE, "--set", "train.max_minutes=0.000001",
                    "--set", "eval.every=100", "--set", "tracking.checkpoint_every=100",
                    "--set", f"tracking.tracking_uri={uri}")
    assert code == 0
    run = only_run(uri)
    assert run.info.status == "FINISHED"
    got = metrics_of(uri, run.info.run_id)
    assert max(v for (k, _), v in got.items() if k == "progress/iteration") == 1
    assert [k for k in got if k[0] == "eval/test/return_adapted"]  # the budget's last iteration evaluated
    folder = Path(run.data.tags["pearl.checkpoint_dir"])
    assert [p.name for p in folder.glob("ckpt_*.pt")] == ["ckpt_000001.pt"]
    capsys.readouterr()

    code, err = pearl("resume", str(folder), "--tracking-uri", uri, capsys=capsys)
    assert code == 0 and "spent its budget" in err and "train.max_minutes" in err
    code, _ = pearl("resume", str(folder), "--tracking-uri", uri, "--set", "train.max_minutes=1000", "--no-progress",
                    capsys=capsys)
    assert code == 0
    got = metrics_of(uri, run.info.run_id)
    assert max(v for (k, _), v in got.items() if k == "progress/iteration") == 5
    assert only_run(uri).info.status == "FINISHED"
    # the run records the resume that trained it further (not the refused one, nor tracking.* settings)
    assert only_run(uri).data.tags["pearl.resumes"] == "train.max_minutes=1000"


# ----------------------------------------------------------------------------------------------
# guarded training


def test_nan_loss_stops_with_exit_1_names_loss_and_iteration_keeps_last_good_checkpoint(
    tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from pearl.checkpoint import list_checkpoints, load_checkpoint
    from pearl.sac import SACLearner

    update, calls = SACLearner.update, []

    def poisoned(self, batch, context):  # the 3rd step of iteration 2 meets a NaN critic weight
        calls.append(1)
        if len(calls) == 23:
            with torch.no_grad():
                next(self.qf.parameters()).view(-1)[0] = float("nan")
        return update(self, batch, context)

    monkeypatch.setattr(SACLearner, "update", poisoned)
    uri = new_store(tmp_path, template)
    code, err = pearl("train", str(write_tiny(tmp_path)), *SCHEDULE, capsys=capsys)
    assert code == 1
    assert "training diverged" in err and "iteration 2" in err and "train/loss_critic = nan" in err
    assert "Traceback" not in err
    run = only_run(uri)
    assert run.info.status == "FAILED"
    assert run.data.metrics["progress/iteration"] == 1  # the diverged iteration was never logged
    (ckpt,) = list_checkpoints(Path(run.data.tags["pearl.checkpoint_dir"]))
    assert ckpt.name == "ckpt_000001.pt" and f"the last good checkpoint: {ckpt}" in err
    assert load_checkpoint(ckpt)["iteration"] == 1


# ----------------------------------------------------------------------------------------------
# bad checkpoints through the CLI


def _copy_checkpoints(reference: dict, dest: Path) -> Path:
    return Path(shutil.copytree(reference["checkpoints"], dest, ignore=shutil.ignore_patterns(".lock")))


def test_truncated_checkpoint_is_refused_with_exit_2_and_nothing_is_overwritten(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    older, newest = sorted(folder.glob("ckpt_*.pt"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    before = {p.name: p.read_bytes() for p in folder.glob("ckpt_*.pt")}
    for command in (["resume", str(newest)], ["evaluate", str(newest)]):
        code, err = pearl(*command, capsys=capsys)
        assert code == 2, command
        assert err.startswith("error: ") and "truncated or corrupted checkpoint" in err and str(newest) in err
        assert "Traceback" not in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.glob("ckpt_*.pt")} == before
    assert not list(folder.glob(".ckpt_*.tmp"))


def test_all_checkpoints_corrupted_is_refused_with_exit_2(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    for path in folder.glob("ckpt_*.pt"):
        data = bytearray(path.read_bytes())
        data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # zero out a block inside the tensor data
        path.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, err = pearl("resume", str(folder), capsys=capsys)
    assert code == 2 and f"no checkpoint in {folder} loads" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".lock"} == before


def test_resume_refuses_config_changes_it_cannot_take_and_names_them(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    before = {p.name: p.read_bytes() for p in folder.glob("ckpt_*.pt")}
    code, err = pearl("resume", str(folder), "--set", "train.num_iterations=8", "--set", "algo.qf_lr=0.1",
                      "--set", "encoder.latent_dim=4", capsys=capsys)
    assert code == 2
    assert "algo.qf_lr: checkpoint has 0.0003, config has 0.1" in err
    assert "encoder.latent_dim: checkpoint has 3, config has 4" in err
    assert "train.num_iterations" not in err  # the schedule's end may change
    assert {p.name: p.read_bytes() for p in folder.glob("ckpt_*.pt")} == before


def test_resume_may_change_the_number_of_evaluated_tasks(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """eval.n_test_tasks sets how many env slots there are; a resume that changes it still runs."""
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(Path(reference["uri"].removeprefix("sqlite:///")), store / "mlflow.db")  # the reference stays as is
    code, err = pearl("resume", str(folder), "--set", "train.num_iterations=6", "--set", "eval.n_test_tasks=1",
                      "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in folder.glob("ckpt_*.pt"))[-1] == "ckpt_000006.pt"


def test_resume_skips_a_broken_newest_checkpoint_and_sets_it_aside(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shutil.copy(reference["root"] / "mlflow.db", tmp_path / "mlflow.db")  # this test's store: a copy
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    older, newest = sorted(folder.glob("ckpt_*.pt"))
    broken = newest.read_bytes()[:1000]
    newest.write_bytes(broken)
    code, err = pearl("resume", str(folder), "--set", "train.num_iterations=6", capsys=capsys)
    assert code == 0, err
    assert f"warning: skipping a broken checkpoint, moved to {newest.name}.broken" in err
    assert f"resumed from {older}" in err
    assert (folder / f"{newest.name}.broken").read_bytes() == broken
    assert [p.name for p in sorted(folder.glob("ckpt_*.pt"))] == ["ckpt_000005.pt", "ckpt_000006.pt"]


def test_resume_from_an_older_file_refuses_to_overwrite_newer_ones(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    older, newest = sorted(folder.glob("ckpt_*.pt"))
    code, err = pearl("resume", str(older), "--set", "train.num_iterations=8", capsys=capsys)
    assert code == 2 and f"holds newer checkpoints ({newest.name})" in err


def test_checkpoint_from_another_version_says_what_differs(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pearl.checkpoint import load_checkpoint, state_digest

    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    newest = sorted(folder.glob("ckpt_*.pt"))[-1]
    state = load_checkpoint(newest)
    saved = yaml.safe_load(state["config_yaml"])
    saved["algo"]["twin_value"] = True  # a key this version does not know
    state.update(config_yaml=yaml.safe_dump(saved), pearl_version="9.9.0")
    state["checksum"] = state_digest(state)
    torch.save(state, newest)
    code, err = pearl("resume", str(newest), "--set", "train.num_iterations=8", capsys=capsys)
    assert code == 2
    assert "algo.twin_value: unknown key" in err and "written by pearl 9.9.0, this is" in err

    state.update(format_version=99)
    state["checksum"] = state_digest(state)
    torch.save(state, newest)
    code, err = pearl("evaluate", str(newest), capsys=capsys)
    assert code == 2 and "format version 99 (written by pearl 9.9.0) is not supported" in err


def test_checkpoint_with_keys_renamed_since_resumes_and_evaluates(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """eval.deterministic and eval.n_train_tasks were renamed; checkpoints written before still load."""
    from pearl.checkpoint import load_checkpoint, state_digest

    shutil.copy(reference["root"] / "mlflow.db", tmp_path / "mlflow.db")  # this test's store: a copy
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    newest = sorted(folder.glob("ckpt_*.pt"))[-1]
    state = load_checkpoint(newest)
    saved = yaml.safe_load(state["config_yaml"])
    saved["eval"]["deterministic"] = saved["eval"].pop("deterministic_episodes")
    saved["eval"]["n_train_tasks"] = saved["eval"].pop("n_train_tasks_evaluated")
    state["config_yaml"] = yaml.safe_dump(saved)
    state["checksum"] = state_digest(state)
    torch.save(state, newest)
    code, err = pearl("evaluate", str(newest), "--episodes", "2", capsys=capsys)
    assert code == 0, err
    code, err = pearl("resume", str(folder), "--set", "train.num_iterations=6", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in folder.glob("ckpt_*.pt"))[-1] == "ckpt_000006.pt"


def test_checkpoint_written_before_a_key_existed_resumes_with_its_default(
    reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A checkpoint whose config lacks a key added since trained with the key's default: resume takes it,
    and still refuses a change of that key."""
    from pearl.checkpoint import load_checkpoint, state_digest

    shutil.copy(reference["root"] / "mlflow.db", tmp_path / "mlflow.db")
    folder = _copy_checkpoints(reference, tmp_path / "ckpts")
    newest = sorted(folder.glob("ckpt_*.pt"))[-1]
    state = load_checkpoint(newest)
    saved = yaml.safe_load(state["config_yaml"])
    del saved["train"]["explore_prior_scale"]
    state["config_yaml"] = yaml.safe_dump(saved)
    state["checksum"] = state_digest(state)
    torch.save(state, newest)
    code, err = pearl("resume", str(folder), "--set", "train.explore_prior_scale=2.0", capsys=capsys)
    assert code == 2 and "train.explore_prior_scale: checkpoint has 1.0, config has 2.0" in err
    code, err = pearl("resume", str(folder), "--set", "train.num_iterations=6", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in folder.glob("ckpt_*.pt"))[-1] == "ckpt_000006.pt"


def test_malicious_checkpoint_is_refused_by_the_cli_and_its_payload_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "payload_ran"
    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.save({"format": "pearl-checkpoint", "x": _Payload(str(marker))}, folder / "ckpt_000003.pt")
    for command in (["evaluate", str(folder / "ckpt_000003.pt")], ["resume", str(folder)]):
        code, err = pearl(*command, capsys=capsys)
        assert code == 2 and "refused" in err and "posix.system" in err, err
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ----------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_prints_adaptation_curve_and_logs_to_the_run(
    reference: dict, capsys: pytest.CaptureFixture
) -> None:
    from mlflow import MlflowClient

    code = pearl("evaluate", reference["run_id"], "--episodes", "3", "--tracking-uri", reference["uri"])[0]
    out = capsys.readouterr().out
    assert code == 0
    assert "episode  z from     mean return  std" in out
    lines = out.splitlines()
    header = lines.index("episode  z from     mean return  std")
    assert [ln.split()[:2] for ln in lines[header + 1 : header + 4]] == [["0", "prior"], ["1", "posterior"],
                                                                         ["2", "posterior"]]
    adapted = float(next(ln for ln in lines if ln.startswith("adapted return:")).split()[-1])
    assert f"logged to run {reference['run_id']} as evaluate/test/*" in out
    client = MlflowClient(reference["uri"])
    metrics = client.get_run(reference["run_id"]).data.metrics
    assert metrics["evaluate/test/return_adapted"] == pytest.approx(adapted, abs=5e-4)
    assert {"evaluate/test/return_prior", "evaluate/test/return_episode_2"} <= set(metrics)
    assert client.get_run(reference["run_id"]).info.status == "FINISHED"  # evaluating does not reopen the run


def test_evaluate_with_sampled_exploration_logs_apart(reference: dict, capsys: pytest.CaptureFixture) -> None:
    from mlflow import MlflowClient

    code = pearl("evaluate", reference["run_id"], "--episodes", "3", "--deterministic", "last", "--runs", "2",
                 "--tracking-uri", reference["uri"])[0]
    out = capsys.readouterr().out
    assert code == 0 and "sampled actions before the last episode" in out
    assert f"logged to run {reference['run_id']} as evaluate/test_sampled/*" in out
    metrics = MlflowClient(reference["uri"]).get_run(reference["run_id"]).data.metrics
    assert "evaluate/test_sampled/return_adapted" in metrics
    assert metrics["evaluate/test_sampled/num_runs"] == 2  # how precise the re-evaluation is, for reports


def test_evaluate_with_the_decoder_posterior_needs_a_decoder(reference: dict, capsys: pytest.CaptureFixture) -> None:
    """The tiny run has no reward decoder and a 3-dimensional z: --posterior decoder is refused, saying why."""
    code, err = pearl("evaluate", reference["run_id"], "--posterior", "decoder", "--tracking-uri", reference["uri"],
                      capsys=capsys)
    assert code == 2 and "eval.posterior: 'decoder' needs algo.reward_decoder_weight > 0" in err


# ----------------------------------------------------------------------------------------------
# failing writes: a full disk, a tracking store that stops answering


def test_disk_full_at_a_checkpoint_fails_the_run_clearly_and_resume_recovers(
    reference: dict, tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import errno

    from pearl.checkpoint import list_checkpoints

    real_save, calls = torch.save, []

    def fills_up(obj, f, *args, **kwargs):  # the 2nd checkpoint meets a full disk halfway
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_up)
    uri = new_store(tmp_path, template)
    code, err = pearl("train", str(write_tiny(tmp_path)), *SCHEDULE, capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert "cannot write checkpoint" in err and "ckpt_000002.pt: No space left on device (disk full)" in err
    run = only_run(uri)
    assert run.info.status == "FAILED" and f"continue with: pearl resume {run.info.run_id}" in err
    folder = Path(run.data.tags["pearl.checkpoint_dir"])
    assert [p.name for p in list_checkpoints(folder)] == ["ckpt_000001.pt"] and not list(folder.glob(".ckpt_*"))

    monkeypatch.setattr(torch, "save", real_save)  # space was freed
    code, _ = pearl("resume", run.info.run_id, capsys=capsys)
    assert code == 0 and only_run(uri).info.status == "FINISHED"
    assert_same_metrics(metrics_of(uri, run.info.run_id), reference["metrics"])


def test_tracking_store_failing_mid_run_loses_no_metrics_after_resume(
    reference: dict, tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    real_log_batch, metric_calls = MlflowClient.log_batch, []

    def store_fills_up(self, run_id, metrics=(), *args, **kwargs):  # metrics of iteration 3 on: disk full
        if metrics:
            metric_calls.append(1)
            if len(metric_calls) >= 3:
                raise MlflowException("(sqlite3.OperationalError) database or disk is full")
        return real_log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", store_fills_up)
    uri = new_store(tmp_path, template)
    code, err = pearl("train", str(write_tiny(tmp_path)), *SCHEDULE, capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert f"cannot write metrics to the MLflow tracking store at {uri} (database or disk is full)" in err
    assert "Training stopped after iteration 3" in err and "ckpt_000002.pt" in err

    monkeypatch.setattr(MlflowClient, "log_batch", real_log_batch)  # the store works again
    run = only_run(uri)
    code, _ = pearl("resume", run.info.run_id, capsys=capsys)
    assert code == 0 and only_run(uri).info.status == "FINISHED"
    assert_same_metrics(metrics_of(uri, run.info.run_id), reference["metrics"])
