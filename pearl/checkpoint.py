"""Checkpoints: atomic writes, safe and verified loads, the last N kept, one writer per folder.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings and containers of
them, loaded with ``torch.load(weights_only=True)``: a file that would run code on load is refused
before anything in it runs. Every file carries a BLAKE2b digest of its whole content (tensor bytes
included), checked on load: ``torch.load`` itself does not notice flipped bytes inside a tensor.

Writes go to a hidden temporary file in the same folder (``.ckpt_*.tmp``, which no reader takes for
a checkpoint), are fsynced, then renamed over the target and the folder is fsynced, so a kill or a
full disk mid-write leaves the previous checkpoints intact. See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

FORMAT = "pearl-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")
_TMP_GLOB = ".ckpt_*.tmp"
_LOCK_NAME = ".lock"

# Config keys that may differ between a checkpoint and the config it is resumed with: the schedule's
# end, what is evaluated and how often, where results go, the device. Anything else (networks,
# learning rates, the task split, buffer sizes, the seed) would be silently ignored or break the run.
RESUME_MAY_CHANGE = (
    "train.num_iterations", "train.max_minutes", "eval.every", "eval.num_episodes", "eval.num_exp_traj_eval",
    "eval.n_test_tasks", "eval.latent_every", "eval.deterministic_episodes",
    "tracking.", "device", "num_threads",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted, foreign or incompatible."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions); earlier checkpoints are intact."""


def checkpoint_path(folder: str | Path, iteration: int) -> Path:
    return Path(folder) / f"ckpt_{iteration:06d}.pt"


def iteration_of(path: str | Path) -> int | None:
    """The iteration in a checkpoint file name, or None for any other file."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------------
# writing


def save_checkpoint(state: dict[str, Any], folder: str | Path, iteration: int, *, keep: int) -> Path:
    """Write ``state`` atomically as ``folder/ckpt_<iteration>.pt``; delete all but the newest ``keep``.

    Raises:
        CheckpointWriteError: the write failed (e.g. disk full); no checkpoint was changed or removed.
    """
    import pearl

    folder = Path(folder)
    target = checkpoint_path(folder, iteration)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "pearl_version": pearl.__version__,
               "torch_version": str(torch.__version__), "saved_at": time.time(), **state}
    payload["checksum"] = state_digest(payload)
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ckpt_", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(folder)  # make the rename itself durable
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        hint = " (disk full)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise CheckpointWriteError(
            f"cannot write checkpoint {target}: {reason}{hint}; the earlier checkpoints in {folder} are intact"
        ) from err
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in folder.glob(_TMP_GLOB):  # left by a process killed mid-write (one writer per folder)
        stale.unlink(missing_ok=True)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def state_digest(state: dict[str, Any]) -> str:
    """BLAKE2b over every key and value except ``checksum``, tensors by dtype, shape and bytes."""
    h = hashlib.blake2b(digest_size=32)
    _feed(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    elif type(obj) in (type(None), bool, int, float, str):  # exact types: subclasses would not load
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"checkpoints hold plain data only, got {type(obj).__name__}")


# ----------------------------------------------------------------------------------------------
# reading


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first (temporary and set-aside files are not checkpoints)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(it, p) for p in folder.iterdir() if (it := iteration_of(p)) is not None]
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
        with warnings.catch_warnings():  # e.g. torch's note on pickle protocols; the outcome is what counts
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever a damaged file makes the unpickler raise
        raise CheckpointError(f"{path}: {_why_unloadable(err)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file (a torch file, but not one written by pearl)")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')} (written by pearl "
            f"{state.get('pearl_version', '?')}) is not supported; this pearl reads version {FORMAT_VERSION}"
        )
    try:
        digest = state_digest(state)
    except TypeError as err:
        raise CheckpointError(f"{path}: corrupted checkpoint ({err})") from None
    if state.get("checksum") != digest:
        raise CheckpointError(f"{path}: corrupted checkpoint: its content does not match the checksum written with it")
    return state


def _why_unloadable(err: Exception) -> str:
    import pickle

    text = " ".join(str(err).split())
    if isinstance(err, pickle.UnpicklingError):
        # torch's restricted unpickler stops at the first thing that is not plain data and names it
        m = re.search(r"GLOBAL (\S+)|(Unsupported operand \d+)", text)
        detail = (f"it asks for {m.group(1)}" if m.group(1) else m.group(2)) if m else text[:120]
        return (f"refused: not a plain-data checkpoint ({detail}); it was loaded with weights_only=True, "
                "so nothing in it was run")
    return f"truncated or corrupted checkpoint ({type(err).__name__}: {text[:160] or 'no detail'})"


def latest_checkpoint(folder: str | Path, *, skipped: list[tuple[Path, str]] | None = None) -> dict[str, Any] | None:
    """The newest checkpoint in ``folder`` that loads, or None if the folder holds none.

    Broken newer files are skipped; each is appended to ``skipped`` as ``(path, reason)``.

    Raises:
        CheckpointError: there are checkpoint files but none of them loads.
    """
    errors = []
    for path in reversed(list_checkpoints(folder)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            errors.append(str(err))
            if skipped is not None:
                skipped.append((path, str(err)))
            continue
        state["_path"] = str(path)
        return state
    if errors:
        raise CheckpointError("no checkpoint in {} loads:\n  {}".format(folder, "\n  ".join(errors)))
    return None


def set_aside(path: str | Path) -> Path:
    """Rename a broken checkpoint to ``<name>.broken`` so it is neither loaded, pruned nor overwritten."""
    path = Path(path)
    target = path.with_name(path.name + ".broken")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.broken{n}")
    os.replace(path, target)
    return target


# ----------------------------------------------------------------------------------------------
# compatibility


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)`` for every key whose value differs."""
    from pearl.config import flatten

    missing = "<absent>"
    a, b = flatten(saved), flatten(current)
    return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)]


def incompatible_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The differences that a resumed run cannot take, one line each (empty: compatible)."""
    return [f"{key}: checkpoint has {old!r}, config has {new!r}"
            for key, old, new in config_differences(saved, current)
            if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)]


# ----------------------------------------------------------------------------------------------
# one writer per folder


class FolderLock:
    """An exclusive, non-blocking lock on a checkpoint folder, held while a process trains into it.

    The OS drops the lock when the holder dies (even by SIGKILL), so a killed run can be resumed at
    once, while a second ``pearl resume`` of a run that is still training is refused.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one writer per folder is then up to the user
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CheckpointError(
                f"{self.folder} is in use by another pearl process (pid {holder}); "
                "wait for it to finish or stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
