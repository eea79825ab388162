"""``pearl.sac.FusedAdam``: torch's Adam update without torch.optim, and its state_dict."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from pearl.sac import FusedAdam


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
    _train(ours, FusedAdam(ours.parameters(), lr=1e-2), 6)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-2), 6)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_without_gradient_are_left_alone() -> None:
    net = _net()
    frozen = net[2].weight.detach().clone()
    net[2].weight.requires_grad_(False)
    opt = FusedAdam(net.parameters(), lr=1e-2)
    _train(net, opt, 2)
    assert torch.equal(net[2].weight, frozen)
    assert 2 not in opt.state  # no state for a parameter that never had a gradient


@pytest.mark.parametrize("source", ["ours", "torch"])
def test_state_dict_round_trip_continues_identically(source: str) -> None:
    """A state saved after 3 steps (by FusedAdam or torch.optim.Adam) resumes to the same result."""
    net = _net()
    opt = FusedAdam(net.parameters(), lr=1e-2) if source == "ours" else torch.optim.Adam(net.parameters(), lr=1e-2)
    _train(net, opt, 3)
    saved_net, saved_state = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    _train(net, opt, 2, seed=5)

    resumed = _net()
    resumed.load_state_dict(saved_net)
    opt2 = FusedAdam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(saved_state)
    _train(resumed, opt2, 2, seed=5)
    for a, b in zip(net.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_dict_loads_into_torch_adam() -> None:
    net = _net()
    opt = FusedAdam(net.parameters(), lr=1e-2)
    _train(net, opt, 2)
    torch.optim.Adam(net.parameters(), lr=1e-2).load_state_dict(opt.state_dict())


def test_load_rejects_a_mismatched_state() -> None:
    net = _net()
    opt = FusedAdam(net.parameters(), lr=1e-2)
    _train(net, opt, 1)
    state = opt.state_dict()
    other = FusedAdam(list(net.parameters())[:2], lr=1e-2)
    with pytest.raises(ValueError, match="parameter groups"):
        other.load_state_dict(state)


def test_does_not_import_torch_dynamo() -> None:
    """The reason it exists: torch.optim's constructor imports torch._dynamo (~70 MiB resident)."""
    code = (
        "import sys, torch\n"
        "from pearl.sac import FusedAdam\n"
        "net = torch.nn.Linear(3, 1)\n"
        "opt = FusedAdam(net.parameters(), lr=0.1)\n"
        "net(torch.ones(2, 3)).sum().backward(); opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
