"""``pearl.optim.Adam``: torch's fused Adam through its public function, without torch.optim.Optimizer."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

from pearl.optim import Adam
from tests.conftest import REPO


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _train(net: torch.nn.Module, opt, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=g)
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()


def test_matches_torch_adam_over_several_steps() -> None:
    ours, theirs = _net(), _net()
    _train(ours, Adam(ours.parameters(), lr=1e-2), 6)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-2), 6)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_is_torch_fused_adam_to_the_bit() -> None:
    """The same kernel as ``torch.optim.Adam(fused=True)``: if torch changes ``torch.optim.adam.adam``
    (its arguments, or what fused means), this says so before training does."""
    ours, theirs = _net(), _net()
    opt_ours, opt_theirs = Adam(ours.parameters(), lr=1e-2), torch.optim.Adam(theirs.parameters(), lr=1e-2, fused=True)
    for step in range(5):
        _train(ours, opt_ours, 1, seed=step)
        _train(theirs, opt_theirs, 1, seed=step)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b), f"step {step + 1}: pearl.optim.Adam and torch's fused Adam differ"
    for i, state in opt_ours.state.items():
        theirs_state = opt_theirs.state[list(theirs.parameters())[i]]
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[key], theirs_state[key]), key


def test_parameters_without_gradient_are_left_alone() -> None:
    net = _net()
    frozen = net[2].weight.detach().clone()
    net[2].weight.requires_grad_(False)
    opt = Adam(net.parameters(), lr=1e-2)
    _train(net, opt, 2)
    assert torch.equal(net[2].weight, frozen)
    assert 2 not in opt.state  # no state for a parameter that never had a gradient


@pytest.mark.parametrize("source", ["ours", "torch"])
def test_state_dict_round_trip_continues_identically(source: str) -> None:
    """A state saved after 3 steps (by pearl.optim.Adam or torch.optim.Adam) resumes to the same result."""
    net = _net()
    opt = Adam(net.parameters(), lr=1e-2) if source == "ours" else torch.optim.Adam(net.parameters(), lr=1e-2)
    _train(net, opt, 3)
    saved_net, saved_state = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    _train(net, opt, 2, seed=5)

    resumed = _net()
    resumed.load_state_dict(saved_net)
    opt2 = Adam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(saved_state)
    _train(resumed, opt2, 2, seed=5)
    for a, b in zip(net.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_dict_loads_into_torch_adam() -> None:
    net = _net()
    opt = Adam(net.parameters(), lr=1e-2)
    _train(net, opt, 2)
    torch.optim.Adam(net.parameters(), lr=1e-2).load_state_dict(opt.state_dict())


def test_load_rejects_a_mismatched_state() -> None:
    net = _net()
    opt = Adam(net.parameters(), lr=1e-2)
    _train(net, opt, 1)
    state = opt.state_dict()
    other = Adam(list(net.parameters())[:2], lr=1e-2)
    with pytest.raises(ValueError, match="parameter groups"):
        other.load_state_dict(state)


def test_does_not_import_torch_dynamo() -> None:
    """The reason it exists: torch.optim's constructor imports torch._dynamo (tens of MiB resident)."""
    code = (
        "import sys, torch\n"
        "from pearl.optim import Adam\n"
        "net = torch.nn.Linear(3, 1)\n"
        "opt = Adam(net.parameters(), lr=0.1)\n"
        "net(torch.ones(2, 3)).sum().backward(); opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's pearl, not an installed one
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"
