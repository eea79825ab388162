"""Adam through torch's public functional API, without ``torch.optim.Optimizer``.

Why not ``torch.optim.Adam(fused=True)``: constructing any ``torch.optim.Optimizer`` imports
``torch._dynamo`` (and sympy), resident memory that a training run otherwise never needs
(figures in ``benchmarks/README.md``). :class:`Adam` calls the function that optimizer's ``step``
calls, ``torch.optim.adam.adam(..., fused=True)``: the same kernel, the same update, and the same
``state_dict`` format, so either can load the other's state. ``tests/unit/test_optim.py`` compares
the two step by step and fails if torch changes the function or stops keeping it public.

The update (Kingma & Ba 2015):
    m ← β₁ m + (1 - β₁) g,  v ← β₂ v + (1 - β₂) g²,  θ ← θ - lr · m̂ / (√v̂ + ε),
    with the bias-corrected m̂ = m / (1 - β₁ᵗ), v̂ = v / (1 - β₂ᵗ).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.optim.adam import adam


class Adam:
    """Adam over ``params``, updated by torch's fused kernel.

    Args:
        params: the parameters to train.
        lr: learning rate.
        betas: (β₁, β₂).
        eps: ε.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.state: dict[int, dict[str, torch.Tensor]] = {}  # per parameter index, made at its first step

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        states = [self.state[i] for i in live]
        adam([self.params[i] for i in live], [self.params[i].grad for i in live], [s["exp_avg"] for s in states],
             [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], fused=True, amsgrad=False,
             beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=0.0, eps=self.eps, maximize=False)

    def state_dict(self) -> dict:
        """``torch.optim.Adam``'s format: ``{"state": {i: {step, exp_avg, exp_avg_sq}}, "param_groups": [...]}``."""
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0.0, "amsgrad": False,
                 "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                 "fused": True, "decoupled_weight_decay": False, "params": list(range(len(self.params)))}
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state saved by this class or by ``torch.optim.Adam`` over the same parameters."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            sizes = [len(g["params"]) for g in groups]
            raise ValueError(f"optimizer state has parameter groups of sizes {sizes}; "
                             f"expected one of {len(self.params)}")
        group = groups[0]
        self.lr, self.betas, self.eps = float(group["lr"]), tuple(map(float, group["betas"])), float(group["eps"])
        position = {saved: i for i, saved in enumerate(group["params"])}
        self.state = {}
        for saved, s in state_dict["state"].items():
            p = self.params[position[saved]]
            if s["exp_avg"].shape != p.shape:
                raise ValueError(f"optimizer state of parameter {saved}: shape {tuple(s['exp_avg'].shape)}, "
                                 f"parameter {tuple(p.shape)}")
            self.state[position[saved]] = {
                "step": torch.as_tensor(s["step"], dtype=torch.float32).to(p.device).clone(),
                "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone(),
            }
