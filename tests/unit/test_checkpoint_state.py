"""Trainer state: a checkpoint round trip continues exactly; signals and divergence stop cleanly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from pearl.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from pearl.config import config_from_dict
from pearl.trainer import Trainer, TrainingDiverged, TrainingInterrupted


def _untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def test_restored_trainer_continues_exactly_like_the_original(tiny_config, tmp_path: Path) -> None:
    a = Trainer(tiny_config, checkpoint_dir=tmp_path)
    a.run_iteration()
    a.save()
    # torch's and Python's RNGs are process-global (torch.distributions samples from them), so the
    # original runs on before the copy starts rather than interleaved with it
    want = [_untimed(a.run_iteration().metrics) for _ in range(2)]
    b = Trainer(tiny_config, checkpoint_dir=tmp_path)
    torch.manual_seed(123)  # whatever happened in between: the checkpoint's RNG states win
    assert b.restore_latest() and b.iteration == 1
    assert [_untimed(b.run_iteration().metrics) for _ in range(2)] == want
    assert b.env_steps == a.env_steps
    for (name, pa), pb in zip(a.learner.state_dict().items(), b.learner.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_loading_into_a_different_config_names_what_differs(tiny_config_dict: dict, tmp_path: Path) -> None:
    a = Trainer(config_from_dict(tiny_config_dict), checkpoint_dir=tmp_path)
    a.save()
    tiny_config_dict["algo"]["hidden_sizes"] = [8, 8]
    tiny_config_dict["train"]["num_iterations"] = 9  # allowed: the schedule may be extended
    b = Trainer(config_from_dict(tiny_config_dict), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError) as info:
        b.restore_latest()
    assert "algo.hidden_sizes: checkpoint has [16, 16], config has [8, 8]" in str(info.value)
    assert "num_iterations" not in str(info.value)


def test_state_missing_parts_is_not_a_training_checkpoint(tiny_config) -> None:
    trainer = Trainer(tiny_config)
    state = trainer.state_dict()
    del state["rl_buffer"]
    with pytest.raises(CheckpointError, match="not a training checkpoint .*rl_buffer"):
        trainer.load_state_dict(state)


def test_sigint_stops_after_the_iteration_with_a_checkpoint(tiny_config_dict: dict, tmp_path: Path) -> None:
    tiny_config_dict["train"]["num_iterations"] = 5
    tiny_config_dict["tracking"]["checkpoint_every"] = 10
    trainer = Trainer(config_from_dict(tiny_config_dict), checkpoint_dir=tmp_path)
    before = signal.getsignal(signal.SIGINT)

    def on_iteration(result) -> None:
        if result.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="SIGINT received: stopped after iteration 2, checkpoint written"):
        trainer.train(on_iteration)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000002.pt"]  # off-schedule, at the stop
    assert latest_checkpoint(tmp_path)["iteration"] == 2
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_second_signal_stops_at_once_without_a_new_checkpoint(tiny_config_dict: dict, tmp_path: Path) -> None:
    tiny_config_dict["train"]["num_iterations"] = 5
    trainer = Trainer(config_from_dict(tiny_config_dict), checkpoint_dir=tmp_path)

    def on_iteration(result) -> None:
        if result.iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(KeyboardInterrupt):
        trainer.train(on_iteration)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000001.pt"]


def test_nan_parameter_stops_naming_the_loss_and_iteration(tiny_config, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config, checkpoint_dir=tmp_path)
    trainer.train()  # two good iterations, checkpointed
    trainer.cfg.train.num_iterations = 3
    with torch.no_grad():
        next(trainer.learner.vf.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration 3.*train/loss_value = (nan|inf)"):
        trainer.train()
    assert latest_checkpoint(tmp_path)["iteration"] == 2
