"""``device: cuda`` end to end: collection, updates, meta-test and checkpoints (skipped without CUDA).

A run trained on the GPU must write a checkpoint that a CPU-only machine resumes from, since that is
where people inspect what a GPU run learned.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import encoders
from pearl.config import config_from_dict
from pearl.trainer import Trainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

HEADLINE = ("train/loss_critic", "train/loss_policy", "train/kl", "eval/test/return_adapted",
            "eval/test/return_prior")


@pytest.mark.parametrize("variant", ["pearl", "modern"])
@pytest.mark.parametrize("encoder", sorted(encoders.registered_encoders()))
def test_cuda_run_resumes_on_cpu(tiny_config_dict: dict, tmp_path: Path, encoder: str, variant: str) -> None:
    tiny_config_dict["device"] = "cuda"
    tiny_config_dict["encoder"] = {"name": encoder, "latent_dim": 3, "kwargs": {}}
    tiny_config_dict["algo"]["variant"] = variant
    gpu = Trainer(config_from_dict(tiny_config_dict), checkpoint_dir=tmp_path)
    for _ in range(2):
        metrics = gpu.run_iteration().metrics
    assert all(math.isfinite(metrics[k]) for k in HEADLINE), {k: metrics[k] for k in HEADLINE}
    params = gpu.learner.state_dict()
    assert all(p.device.type == "cuda" for p in params.values() if torch.is_tensor(p))
    gpu.save()

    tiny_config_dict["device"] = "cpu"
    cpu = Trainer(config_from_dict(tiny_config_dict), checkpoint_dir=tmp_path)
    assert cpu.restore_latest() and cpu.iteration == 2
    for (name, want), got in zip(params.items(), cpu.learner.state_dict().values()):
        if torch.is_tensor(want):
            assert got.device.type == "cpu" and torch.equal(want.cpu(), got), name
    more = cpu.run_iteration().metrics
    assert math.isfinite(more["train/loss_critic"]) and cpu.iteration == 3


COMPILE_WARNINGS = pytest.mark.filterwarnings(  # dynamo and inductor internals warn
    "ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.mark.parametrize("options", [
    {"autocast_bf16": True},
    pytest.param({"compile": True}, marks=COMPILE_WARNINGS),
    pytest.param({"compile": True, "compile_mode": "reduce-overhead"}, marks=COMPILE_WARNINGS),  # CUDA graphs
], ids=["bf16", "compile", "cudagraphs"])
def test_cuda_fast_options_train(tiny_config_dict: dict, options: dict) -> None:
    tiny_config_dict["device"] = "cuda"
    tiny_config_dict["algo"].update(options)
    trainer = Trainer(config_from_dict(tiny_config_dict))
    for _ in range(3):
        metrics = trainer.run_iteration().metrics
    assert all(math.isfinite(metrics[k]) for k in HEADLINE), {k: metrics[k] for k in HEADLINE}
