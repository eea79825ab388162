"""Checkpoints: atomic writes, safe loads, the last N kept.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings and containers of
them, and is loaded with ``torch.load(weights_only=True)``: a file that would run code on load is
refused. Writes go to a temporary file in the same folder, are fsynced, then renamed over the
target, so a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "pearl-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted, foreign or incompatible."""


def checkpoint_path(folder: str | Path, iteration: int) -> Path:
    return Path(folder) / f"ckpt_{iteration:06d}.pt"


def save_checkpoint(state: dict[str, Any], folder: str | Path, iteration: int, *, keep: int) -> Path:
    """Write ``state`` atomically as ``folder/ckpt_<iteration>.pt``; delete all but the newest ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(folder, iteration)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=".ckpt_", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint without executing anything in it.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused: the file is not a plain-data checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    return state


def latest_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    """The newest checkpoint in ``folder`` that loads, skipping broken ones (with their errors kept)."""
    errors = []
    for path in reversed(list_checkpoints(folder)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        state["_path"] = str(path)
        return state
    if errors:
        raise CheckpointError("no checkpoint in {} loads:\n  {}".format(folder, "\n  ".join(errors)))
    return None
