"""`pearl sweep` on a local Ray and `pearl compare`: trials as MLflow child runs, the aggregates, a re-run
after the driver was killed, bad input, and a real MLflow tracking server over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from tests.conftest import REPO

pytest.importorskip("ray", reason="pearl sweep needs the 'ray' extra")

ADAPTED = "eval/test/return_adapted"


@pytest.fixture
def ray_env(tmp_path: Path):
    """Environment of a `pearl sweep` process: its own store, and Ray's files in a short temporary folder
    (Ray's socket paths must stay under about 100 characters), removed afterwards."""
    scratch = tempfile.mkdtemp(prefix="ray")
    yield {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_TMPDIR": scratch, "TMPDIR": scratch,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for pid in processes_with_env(f"RAY_TMPDIR={scratch}"):  # Ray's agents outlive a killed driver for a while
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(scratch, ignore_errors=True)


def processes_with_env(entry: str) -> list[int]:
    """Ids of this user's processes whose environment holds ``entry`` (Linux; elsewhere none)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return found


def pearl(*args: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pearl.cli", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def write_config(folder: Path, data: dict, **train: int) -> Path:
    data["train"].update(train)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def all_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def sweep_runs(uri: str) -> tuple:
    """The one parent run and its child runs by trial key."""
    runs = all_runs(uri)
    (parent,) = [r for r in runs if "pearl.sweep.name" in r.data.tags]
    children = {r.data.tags["pearl.sweep.trial"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(runs) == 1 + len(children)
    return parent, children


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def check_aggregates(folder: Path, children, uri: str) -> None:
    """The CSV numbers equal a direct computation on the runs' metrics; the PNG was drawn."""
    assert (folder / "comparison.png").stat().st_size > 10_000
    summary = pd.read_csv(folder / "summary.csv").set_index("group")
    learning = pd.read_csv(folder / "learning_curves.csv")
    adaptation = pd.read_csv(folder / "adaptation_curves.csv")
    client = _client(uri)
    for group, row in summary.iterrows():
        members = [r for r in children if r.data.tags["pearl.sweep.group"] == group]
        finals = np.array([r.data.metrics[ADAPTED] for r in members])
        assert row["runs"] == len(members) == 2
        assert row["mean"] == pytest.approx(finals.mean()) and row["iqm"] == pytest.approx(scipy.stats.trim_mean(finals, 0.25))
        for name in ("mean", "iqm"):
            assert finals.min() - 1e-9 <= row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"] <= finals.max() + 1e-9
        histories = [{m.step: m.value for m in client.get_metric_history(r.info.run_id, ADAPTED)} for r in members]
        curve = learning[learning["group"] == group]
        assert list(curve["env_steps"]) == sorted(histories[0])
        assert np.allclose(curve["mean"], [np.mean([h[s] for h in histories]) for s in curve["env_steps"]])
        episodes = adaptation[adaptation["group"] == group]
        expected = [np.mean([r.data.metrics[f"eval/test/return_episode_{e}"] for r in members]) for e in episodes["episode"]]
        assert len(episodes) == 2 and np.allclose(episodes["mean"], expected)
    seeds = pd.read_csv(folder / "seeds.csv", dtype={"run_id": str}).set_index("run_id")
    assert {r.info.run_id: r.data.metrics[ADAPTED] for r in children} == pytest.approx(seeds["final_return"].to_dict())


def wait_for_checkpoints(proc: subprocess.Popen, folder: Path, n_folders: int, timeout: float = 300) -> None:
    """Poll until ``n_folders`` run folders under ``folder`` hold a checkpoint. On a timeout the sweep is
    killed and reaped, so that no process or pipe outlives the test to fail the next one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({p.parent for p in folder.glob("*/ckpt_*.pt")}) >= n_folders:
            return
        if proc.poll() is not None:
            pytest.fail(f"pearl sweep ended (exit {proc.returncode}) too early:\n{proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    proc.communicate()
    pytest.fail(f"no checkpoint appeared in {timeout:.0f} s")


GRID = {(f"algo.kl_lambda={v} seed={s}", f"algo.kl_lambda={v}", str(s)) for v in ("0.1", "1.0") for s in (0, 1)}


def test_sweep_killed_midway_runs_only_what_is_missing_and_ends_with_child_runs_and_aggregates(
        tmp_path: Path, tiny_config_dict: dict, ray_env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 seeds x 2 grid values on a local Ray with 2 CPUs, one trial at a time; the driver is killed while
    the second trial trains. Run again, the first trial is kept, the second resumes, the other two start."""
    cfg = write_config(tmp_path, tiny_config_dict, num_iterations=8)
    args = ("sweep", str(cfg), "--seeds", "2", "--grid", "algo.kl_lambda=0.1,1.0", "--cpus", "2",
            "--max-concurrent", "1", "--name", "grid", "--no-progress", "--out", "cmp")
    proc = subprocess.Popen([sys.executable, "-m", "pearl.cli", *args], cwd=tmp_path, env={**os.environ, **ray_env},
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_checkpoints(proc, tmp_path / "checkpoints", n_folders=2)  # one at a time: the first has finished
    proc.kill()  # SIGKILL: nothing is marked, Ray's processes lose their driver
    proc.wait()
    proc.stderr.close()
    uri = ray_env["MLFLOW_TRACKING_URI"]
    _, before = sweep_runs(uri)
    by_status = {status: [k for k, r in before.items() if r.info.status == status] for status in ("FINISHED", "RUNNING")}
    assert len(by_status["FINISHED"]) == 1 and len(by_status["RUNNING"]) == 1, by_status
    (done,), (interrupted,) = by_status["FINISHED"], by_status["RUNNING"]
    missing = {key for key, _, _ in GRID} - set(before)
    assert len(missing) == 2

    out = pearl(*args, cwd=tmp_path, env=ray_env)
    assert out.returncode == 0, out.stderr
    assert f"{done}: finished before" in out.stderr
    resumed = re.search(rf"{interrupted}: running \(resumed run (\w+) after iteration (\d+)\)", out.stderr)
    assert resumed and resumed.group(1) == before[interrupted].info.run_id and int(resumed.group(2)) >= 1
    assert all(f"{key}: running (new run" in out.stderr for key in missing)
    parent, after = sweep_runs(uri)  # one run per trial: nothing duplicated
    assert after[done].info.run_id == before[done].info.run_id and after[done].info.end_time == before[done].info.end_time
    assert after[interrupted].info.run_id == before[interrupted].info.run_id
    assert parent.info.status == "FINISHED" and parent.data.tags["pearl.sweep.name"] == "grid"
    check_trial_runs(after, cfg)
    check_aggregates(tmp_path / "cmp", after.values(), uri)
    logged = {a.path for a in _client(uri).list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/summary.csv", "comparison/seeds.csv", "comparison/comparison.png"} <= logged
    assert "iqm" in out.stdout and "algo.kl_lambda=1.0" in out.stdout
    from pearl.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["compare", "grid", "--out", "again", "--no-log"]) == 0  # by name, as the sweep compared it
    assert (tmp_path / "again" / "summary.csv").read_text() == (tmp_path / "cmp" / "summary.csv").read_text()


def check_trial_runs(children: dict, cfg: Path) -> None:
    """Four FINISHED runs, tagged with their trial, seed and grid point, made as `pearl train` makes them."""
    assert {(key, r.data.tags["pearl.sweep.group"], r.data.tags["pearl.sweep.seed"]) for key, r in children.items()} == GRID
    for run in children.values():
        tags, params = run.data.tags, run.data.params
        value = tags["pearl.sweep.group"].removeprefix("algo.kl_lambda=")
        assert run.info.status == "FINISHED"
        assert params["seed"] == tags["pearl.sweep.seed"] and params["algo.kl_lambda"] == value
        assert tags["pearl.config"] == str(cfg)  # how to repeat it, as `pearl train` records it
        assert tags["pearl.overrides"] == f"algo.kl_lambda={value} seed={params['seed']}"


@pytest.mark.parametrize("args, says", [
    (["--grid", "algo.typo=1,2"], "algo.typo"),
    (["--grid", "algo.kl_lambda="], "the grid is empty"),
    (["--grid", "algo.kl_lambda=0.1", "--grid", "algo.kl_lambda=1"], "given twice"),
    (["--grid", "algo.kl_lambda=lots"], "algo.kl_lambda"),
    (["--seeds", "0"], "--seeds"),
    (["--address", "ray://127.0.0.1:10001"], "start an MLflow tracking server"),
])
def test_bad_sweep_input_exits_2_and_creates_no_run(args: list, says: str, tmp_path: Path, tiny_config_dict: dict,
                                                     capsys: pytest.CaptureFixture) -> None:
    from pearl.cli import main

    cfg = write_config(tmp_path, tiny_config_dict)
    assert main(["sweep", str(cfg), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "mlflow.db").exists() or all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}") == []


def test_sweep_without_ray_says_how_to_install_it(tmp_path: Path, tiny_config_dict: dict,
                                                  capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from pearl.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", str(write_config(tmp_path, tiny_config_dict)), "--seeds", "2"]) == 2
    assert "pip install 'pearl-metarl[ray]'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """`mlflow server` on 127.0.0.1: a free port, a SQLite backend, artifacts in a temporary folder."""
    port, folder = _free_port(), tmp_path / "server"
    folder.mkdir()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{folder / 'store.db'}", "--artifacts-destination", str(folder / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()}")
                time.sleep(0.2)
        yield url, folder / "artifacts"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a throwaway server: no need to wait for a graceful stop
        proc.wait()


def test_sweep_against_an_mlflow_tracking_server_over_http(tmp_path: Path, tiny_config_dict: dict, ray_env: dict,
                                                           mlflow_server: tuple) -> None:
    url, artifacts = mlflow_server
    cfg = write_config(tmp_path, tiny_config_dict, num_iterations=1)
    out = pearl("sweep", str(cfg), "--seeds", "2", "--cpus", "2", "--no-progress", cwd=tmp_path,
                env={**ray_env, "MLFLOW_TRACKING_URI": url})
    assert out.returncode == 0, out.stderr
    parent, children = sweep_runs(url)
    assert parent.info.status == "FINISHED"
    assert sorted(children) == ["seed=0", "seed=1"] and all(r.info.status == "FINISHED" for r in children.values())
    # the outputs went through the server into its artifact folder
    assert list(artifacts.glob(f"*/{parent.info.run_id}/artifacts/comparison/summary.csv"))
    assert all(list(artifacts.glob(f"*/{r.info.run_id}/artifacts/model/model.pt")) for r in children.values())
    assert not (tmp_path / "mlflow.db").exists()
