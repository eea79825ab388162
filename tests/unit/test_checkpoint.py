"""pearl.checkpoint: atomic writes, verified and safe loads, keep-N, set-aside, config checks, folder lock."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from pearl.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    FolderLock,
    config_differences,
    incompatible_differences,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_aside,
    state_digest,
)
from tests.conftest import REPO


def _state(value: float = 1.0, n: int = 1000) -> dict:
    return {
        "weights": {"w": torch.full((n,), value), "b": torch.arange(3)},
        "rng": {"numpy": {"state": {"state": 2**100 + 7, "inc": 3}}, "python": (3, (1, 2, 3), None)},
        "iteration": 1, "name": "x", "ids": [1, 2], "nothing": None, "flag": True, "wall_time": 0.5,
    }


def _tensor_data_offset(path: Path) -> int:
    """Byte offset, inside a torch zip file, of the first byte of its largest tensor record."""
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


# ----------------------------------------------------------------------------------------------
# round trip, keep-N


def test_round_trip_keeps_every_value_and_type(tmp_path: Path) -> None:
    path = save_checkpoint(_state(), tmp_path, 1, keep=2)
    assert path == tmp_path / "ckpt_000001.pt"
    state = load_checkpoint(path)
    assert torch.equal(state["weights"]["w"], torch.full((1000,), 1.0))
    assert state["rng"]["numpy"]["state"]["state"] == 2**100 + 7
    assert state["rng"]["python"] == (3, (1, 2, 3), None)  # tuples stay tuples (random.setstate needs them)
    assert state["format"] == "pearl-checkpoint" and state["pearl_version"] and state["torch_version"]
    assert state["checksum"] == state_digest(state)


def test_keeps_the_newest_n_in_iteration_order(tmp_path: Path) -> None:
    for it in (1, 2, 9, 10, 11):
        save_checkpoint(_state(it), tmp_path, it, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000010.pt", "ckpt_000011.pt"]
    assert latest_checkpoint(tmp_path)["weights"]["w"][0] == 11


def test_non_plain_values_are_refused_at_save_not_at_load(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="plain data"):
        save_checkpoint({"x": object()}, tmp_path, 1, keep=1)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# a write that fails or is killed midway


def test_write_failing_midway_leaves_previous_checkpoint_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = save_checkpoint(_state(1.0), tmp_path, 1, keep=1)
    good_bytes = good.read_bytes()
    real_save = torch.save

    def disk_fills_up(obj, f):
        real_save(obj, f)  # the bytes are out ...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... then the disk is full

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(_state(2.0, n=100_000), tmp_path, 2, keep=1)
    message = str(info.value)
    assert "ckpt_000002.pt" in message and "No space left on device (disk full)" in message
    assert "earlier checkpoints" in message and "intact" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_000001.pt"]  # no target, no temp file
    assert good.read_bytes() == good_bytes and latest_checkpoint(tmp_path)["weights"]["w"][0] == 1.0


_KILLED_WRITER = """
import sys, time, torch
from pathlib import Path
from pearl.checkpoint import save_checkpoint

folder = Path(sys.argv[1])
save_checkpoint({"w": torch.full((1000,), 1.0)}, folder, 1, keep=2)
real_save = torch.save

class Stalls:  # the real torch.save streams into this; it stalls once 1 MB is out, as a slow disk would
    def __init__(self, f):
        self.f, self.n = f, 0
    def write(self, data):
        self.f.write(data)
        self.n += memoryview(data).nbytes
        if self.n > 1_000_000:
            self.f.flush()
            (folder / "MIDWRITE").touch()
            time.sleep(120)
        return memoryview(data).nbytes
    def flush(self):
        self.f.flush()

torch.save = lambda obj, f: real_save(obj, Stalls(f))
save_checkpoint({"w": torch.full((5_000_000,), 2.0)}, folder, 2, keep=2)  # 20 MB
"""


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "MIDWRITE").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the writer never got midway"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    (partial,) = tmp_path.glob(".ckpt_*.tmp")  # the half-written file is there ...
    assert partial.stat().st_size > 1_000_000
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000001.pt"]  # ... but is no checkpoint
    assert not (tmp_path / "ckpt_000002.pt").exists()
    state = latest_checkpoint(tmp_path)
    assert state["_path"].endswith("ckpt_000001.pt") and torch.equal(state["w"], torch.full((1000,), 1.0))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(partial)

    save_checkpoint({"w": torch.zeros(2)}, tmp_path, 2, keep=2)  # the next write clears the leftover
    assert not list(tmp_path.glob(".ckpt_*.tmp"))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000001.pt", "ckpt_000002.pt"]


# ----------------------------------------------------------------------------------------------
# damaged, foreign and malicious files


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(_state(), tmp_path, 1, keep=1)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupted checkpoint"):
            load_checkpoint(path)


def test_flipped_byte_inside_tensor_data_is_caught_by_the_checksum(tmp_path: Path) -> None:
    path = save_checkpoint(_state(), tmp_path, 1, keep=1)
    data = bytearray(path.read_bytes())
    offset = _tensor_data_offset(path) + 123
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    state = torch.load(path, weights_only=True)  # torch itself loads it without complaint ...
    assert not torch.equal(state["weights"]["w"], torch.full((1000,), 1.0))
    with pytest.raises(CheckpointError, match="does not match the checksum"):  # ... we do not
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello\n" * 20, b"PK\x03\x04" + bytes(100), pickle.dumps({"a": 1})])
def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ckpt_000001.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_foreign_torch_file_and_newer_format_are_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(3)}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="not a pearl-checkpoint file"):
        load_checkpoint(tmp_path / "a.pt")
    state = load_checkpoint(save_checkpoint(_state(), tmp_path, 1, keep=1))
    state.update(format_version=2, pearl_version="0.9.0")
    state["checksum"] = state_digest(state)
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"format version 2 \(written by pearl 0.9.0\) is not supported"):
        load_checkpoint(tmp_path / "b.pt")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "payload_ran"
    payload = {"format": "pearl-checkpoint", "format_version": 1, "x": _Payload(marker)}
    path = tmp_path / "ckpt_000001.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload does work when unpickled
    assert (tmp_path / "control").exists()

    with pytest.raises(CheckpointError, match="refused: not a plain-data checkpoint") as info:
        load_checkpoint(path)
    assert "nothing in it was run" in str(info.value)
    with pytest.raises(CheckpointError, match="no checkpoint in .* loads"):
        latest_checkpoint(tmp_path)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# latest good, set aside


def test_latest_skips_broken_newer_files_and_reports_them(tmp_path: Path) -> None:
    save_checkpoint(_state(1.0), tmp_path, 1, keep=3)
    bad = save_checkpoint(_state(2.0), tmp_path, 2, keep=3)
    broken = bad.read_bytes()[:100]
    bad.write_bytes(broken)
    skipped: list = []
    state = latest_checkpoint(tmp_path, skipped=skipped)
    assert state["_path"].endswith("ckpt_000001.pt")
    assert [(p.name, "truncated" in why) for p, why in skipped] == [("ckpt_000002.pt", True)]

    moved = set_aside(bad)
    assert moved.name == "ckpt_000002.pt.broken" and moved.read_bytes() == broken
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000001.pt"]
    save_checkpoint(_state(3.0), tmp_path, 2, keep=1)  # neither overwritten nor pruned
    assert moved.read_bytes() == broken


def test_empty_or_missing_folder_has_no_latest(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "nope") is None


# ----------------------------------------------------------------------------------------------
# config compatibility


def test_config_differences_name_each_key() -> None:
    saved = {"seed": 0, "algo": {"qf_lr": 3e-4, "hidden_sizes": [300]}, "train": {"num_iterations": 5},
             "tracking": {"progress": True}}
    current = {"seed": 0, "algo": {"qf_lr": 1e-3, "hidden_sizes": [300]}, "train": {"num_iterations": 9},
               "tracking": {"progress": False}, "device": "cpu"}
    assert config_differences(saved, current) == [
        ("algo.qf_lr", 3e-4, 1e-3), ("device", "<absent>", "cpu"), ("tracking.progress", True, False),
        ("train.num_iterations", 5, 9),
    ]
    assert incompatible_differences(saved, current) == ["algo.qf_lr: checkpoint has 0.0003, config has 0.001"]


# ----------------------------------------------------------------------------------------------
# one writer per folder


def test_folder_lock_refuses_a_second_writer_and_is_released(tmp_path: Path) -> None:
    with FolderLock(tmp_path / "run"):
        with pytest.raises(CheckpointError, match=rf"in use by another pearl process \(pid {os.getpid()}\)"):
            with FolderLock(tmp_path / "run"):
                pass
    with FolderLock(tmp_path / "run"):  # free again
        pass
