"""One PEARL gradient step: critic + KL train the encoder, the actor sees z detached.

Two SAC variants:

``pearl`` (the paper's)::

    q_target   = reward_scale · r + (1 - d) · γ · V_targ(s', z)
    L_critic   = Σ_{i=1,2} mean (Q_i(s, a, z) - q_target)²          → Q_1, Q_2, encoder
    L_kl       = kl_lambda · Σ_tasks KL(q(z|c) ‖ p(z))                → encoder
    V_target   = min_i Q_i(s, ã, z̄) - log π(ã|s, z̄),  ã ~ π(·|s, z̄)   (Q after its update)
    L_value    = mean (V(s, z̄) - V_target)²                          → V
    L_policy   = mean (log π(ã|s, z̄) - min_i Q_i(s, ã, z̄)) + regularisers on μ, log σ, pre-tanh → π

``modern``: twin target Q networks instead of V, and an entropy weight α tuned towards a target
entropy: ``q_target = reward_scale · r + (1 - d) γ (min_i Q_targ_i(s', a') - α log π(a'|s', z))``.

Here z̄ is z detached. The KL is summed over the tasks of the meta-batch, as in the paper's code.
Time-limit truncation never enters ``d``: only true terminations stop the bootstrap.

How it runs fast without changing any of the above (``tests/unit/test_fast_path.py`` checks losses,
gradients and parameters against a plain reference; figures in ``benchmarks/README.md``): the
networks keep activations feature-major (``pearl/networks.py``), the twin Q is one batched network,
Q in the actor's loss is evaluated with detached parameters (no Q weight gradients are computed
only to be discarded), Adam is torch's fused kernel, and V's loss is backpropagated after the
policy's so their activations are not alive together. ``autocast_bf16`` runs the hidden layers in
bfloat16 and ``compile`` compiles the three losses; both are off by default.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import torch
from torch import nn

from pearl.agent import PEARLAgent
from pearl.buffers import TransitionBatch
from pearl.config import AlgoConfig
from pearl.networks import EnsembleMLP, mlp


class FusedAdam:
    """Adam (Kingma & Ba 2015) with every tensor updated by torch's fused Adam kernel.

    The update is ``torch.optim.Adam(params, lr, fused=True)``'s (the same ``torch._fused_adam_``
    kernel, CPU and CUDA) and so is the ``state_dict`` format, but this class does not go through
    ``torch.optim``: constructing a ``torch.optim.Optimizer`` imports ``torch._dynamo`` (and sympy),
    about 70 MiB of resident memory a training run otherwise never needs.

    m ← β₁ m + (1 - β₁) g,  v ← β₂ v + (1 - β₂) g²,  θ ← θ - lr · m̂ / (√v̂ + ε)
    with the bias-corrected m̂ = m / (1 - β₁ᵗ), v̂ = v / (1 - β₂ᵗ).

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
        self.state: dict[int, dict[str, torch.Tensor]] = {}  # per parameter index, created at its first step

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(self.params):
            if p.grad is not None:
                groups.setdefault((p.device, p.dtype), []).append(i)
        for indices in groups.values():
            for i in indices:
                if i not in self.state:
                    p = self.params[i]
                    self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            states = [self.state[i] for i in indices]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                [self.params[i] for i in indices], [self.params[i].grad for i in indices],
                [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
                lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                amsgrad=False, maximize=False,
            )

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


def _adam(params: Iterable[nn.Parameter], lr: float) -> FusedAdam:
    return FusedAdam(params, lr=lr)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: θ_targ ← (1 - τ) θ_targ + τ θ."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class SACLearner(nn.Module):
    """Owns the critics, the optimisers and the update; the agent owns encoder and policy.

    Args:
        agent: the encoder + policy being trained.
        obs_dim: O.
        action_dim: A.
        cfg: the ``algo`` section of the config.
    """

    def __init__(self, agent: PEARLAgent, *, obs_dim: int, action_dim: int, cfg: AlgoConfig) -> None:
        super().__init__()
        self.agent, self.cfg = agent, cfg
        latent_dim = agent.latent_dim
        self.qf = EnsembleMLP(2, obs_dim + action_dim + latent_dim, cfg.hidden_sizes, 1)
        self.optimizers: dict[str, FusedAdam] = {
            "policy": _adam(agent.policy.parameters(), cfg.policy_lr),
            "qf": _adam(self.qf.parameters(), cfg.qf_lr),
            "context": _adam(agent.encoder.parameters(), cfg.context_lr),
        }
        if cfg.variant == "pearl":
            self.vf = mlp(obs_dim + latent_dim, cfg.hidden_sizes, 1)
            self.target_vf = copy.deepcopy(self.vf).requires_grad_(False)
            self.optimizers["vf"] = _adam(self.vf.parameters(), cfg.vf_lr)
        else:
            self.target_qf = copy.deepcopy(self.qf).requires_grad_(False)
            self.log_alpha = nn.Parameter(torch.tensor(float(cfg.init_alpha)).log())
            self.target_entropy = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
            self.optimizers["alpha"] = _adam([self.log_alpha], cfg.alpha_lr)
        self._critic_loss_fn, self._actor_loss_fn, self._value_loss_fn = (
            self._critic_loss, self._actor_loss, self._value_loss)
        # CUDA graphs (compile mode 'reduce-overhead') replay into static memory that the next replay
        # overwrites, so outputs that outlive a call are cloned and each update starts a new step
        self._cudagraphs = cfg.compile and cfg.compile_mode == "reduce-overhead"
        if cfg.compile:
            compiled = lambda fn: _cloning_outputs(  # noqa: E731
                torch.compile(fn, mode=cfg.compile_mode, dynamic=False), enabled=self._cudagraphs)
            self._critic_loss_fn = compiled(self._critic_loss)
            self._actor_loss_fn = compiled(self._actor_loss)
            self._value_loss_fn = compiled(self._value_loss)

    def optimizer_state_dict(self) -> dict[str, dict]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_optimizer_state_dict(self, state: dict[str, dict]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])

    def _zero_grad(self, *names: str) -> None:
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)

    def _step(self, *names: str) -> None:
        for name in names:
            self.optimizers[name].step()

    def update(self, batch: TransitionBatch, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """One gradient step on a meta-batch.

        Returns detached scalar tensors (no host sync in the hot path): ``loss_critic``,
        ``loss_kl`` (weighted), ``kl`` (per task), ``loss_policy``, ``log_pi``, ``q_mean``,
        ``posterior_std`` and the variant's own terms (``loss_value`` or ``loss_alpha``/``alpha``).

        Shapes:
            batch fields [T, B, dim]; context [T, N, C].
        """
        cfg = self.cfg
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        T, B, _ = batch.observations.shape
        flat = lambda x: x.reshape(T * B, -1)  # noqa: E731  [T, B, d] -> [T*B, d]
        obs = flat(batch.observations)

        # q(z|c) per task; one z per task, shared by its B transitions
        posterior = self.agent.posterior(context)
        z = posterior.rsample()  # reparameterised: critic gradients reach the encoder
        kl = self.agent.encoder.kl_to_prior(posterior)  # [T]
        z_rows = z.unsqueeze(1).expand(T, B, z.shape[-1]).reshape(T * B, -1)

        # --- critic + KL → Q networks and encoder
        loss_critic, q_mean = self._critic_loss_fn(
            obs, flat(batch.actions), flat(batch.rewards), flat(batch.terminals), flat(batch.next_observations), z_rows
        )
        loss_kl = cfg.kl_lambda * kl.sum()
        self._zero_grad("qf", "context")
        (loss_critic + loss_kl).backward()
        self._step("qf", "context")

        # --- actor (and value network / entropy weight), z detached
        z_bar = z_rows.detach()
        actor = self._actor_loss_fn(obs, z_bar)
        if cfg.variant == "pearl":
            self._zero_grad("vf", "policy")
            actor.pop("loss").backward()
            # V after the policy's backward has freed the policy and Q activations (disjoint
            # parameters: the same gradients as one backward of the sum, with a lower memory peak)
            actor["loss_value"] = self._value_loss_fn(obs, z_bar, actor.pop("v_target"))
            actor["loss_value"].backward()
            self._step("vf", "policy")
            soft_update(self.target_vf, self.vf, cfg.soft_target_tau)
        else:
            self._zero_grad("policy", "alpha")
            actor.pop("loss").backward()
            self._step("policy", "alpha")
            soft_update(self.target_qf, self.qf, cfg.soft_target_tau)

        out = {k: v.detach() for k, v in actor.items()}
        out.update(
            loss_critic=loss_critic.detach(),
            loss_kl=loss_kl.detach(),
            kl=kl.detach().mean(),
            q_mean=q_mean,
            posterior_std=posterior.stddev.detach().mean() if _has_stddev(posterior) else z.new_zeros(()),
        )
        return out

    def _autocast(self, like: torch.Tensor) -> torch.autocast:
        """bf16 autocast of the SAC networks' matmuls when ``autocast_bf16`` is on (a no-op otherwise)."""
        return torch.autocast(like.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast_bf16)

    def _critic_loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminals: torch.Tensor,
        next_obs: torch.Tensor,
        z_rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``L_critic`` (differentiable in Q and z) and the mean predicted Q (detached).

        Shapes:
            obs, next_obs [N, O]; actions [N, A]; rewards, terminals [N, 1]; z_rows [N, L].
        """
        cfg = self.cfg
        z_bar = z_rows.detach()
        with torch.no_grad(), self._autocast(obs):
            if cfg.variant == "pearl":
                next_value = self.target_vf(torch.cat([next_obs, z_bar], -1))
            else:
                alpha = self.log_alpha.exp()
                nxt = self.agent.policy_forward(next_obs, z_bar)
                next_q = self.target_qf(torch.cat([next_obs, nxt.action, z_bar], -1)).min(0).values
                next_value = next_q - alpha * nxt.log_prob
            q_target = cfg.reward_scale * rewards + (1.0 - terminals) * cfg.discount * next_value
        with self._autocast(obs):
            q_pred = self.qf(torch.cat([obs, actions, z_rows], -1))  # [2, N, 1]
        loss_critic = ((q_pred - q_target) ** 2).mean(dim=(1, 2)).sum()
        return loss_critic, q_pred.detach().mean()

    def _actor_loss(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        """The actor's loss (``loss``: the policy's, plus the entropy weight's in the modern variant),
        its terms, and for the pearl variant the value target ``v_target`` (detached).

        Q is the critic after its update; Q's own weights get no gradient here (only the critic
        loss moves Q), so the backward skips their weight gradients and carries only ∂Q/∂a.

        Shapes:
            obs [N, O]; z_bar [N, L] (detached).
        """
        cfg = self.cfg
        with self._autocast(obs):
            pi = self.agent.policy_forward(obs, z_bar)
            q_new = self.qf.forward_detached(torch.cat([obs, pi.action, z_bar], -1)).min(0).values
        if cfg.variant == "pearl":
            loss_policy = (pi.log_prob - q_new).mean() + (
                cfg.policy_mean_reg_weight * (pi.mean**2).mean()
                + cfg.policy_std_reg_weight * (pi.log_std**2).mean()
                + cfg.policy_pre_activation_weight * (pi.pre_tanh**2).sum(-1).mean()
            )
            return {"loss": loss_policy, "loss_policy": loss_policy, "log_pi": pi.log_prob.mean(),
                    "v_target": (q_new - pi.log_prob).detach()}
        alpha = self.log_alpha.exp()
        loss_policy = (alpha.detach() * pi.log_prob - q_new).mean()
        loss_alpha = -(self.log_alpha * (pi.log_prob.detach() + self.target_entropy)).mean()
        return {"loss": loss_policy + loss_alpha, "loss_policy": loss_policy, "loss_alpha": loss_alpha,
                "alpha": alpha, "log_pi": pi.log_prob.mean()}


    def _value_loss(self, obs: torch.Tensor, z_bar: torch.Tensor, v_target: torch.Tensor) -> torch.Tensor:
        """``L_value = mean (V(s, z̄) - V_target)²`` (pearl variant). Shapes: v_target [N, 1]."""
        with self._autocast(obs):
            v_pred = self.vf(torch.cat([obs, z_bar], -1))
        return ((v_pred - v_target) ** 2).mean()


def _cloning_outputs(fn: Callable[..., Any], *, enabled: bool) -> Callable[..., Any]:
    """``fn`` whose tensor outputs (alone, in a tuple or in a dict) are cloned when ``enabled``."""
    if not enabled:
        return fn

    def clone(out: Any) -> Any:
        if isinstance(out, torch.Tensor):
            return out.clone()
        if isinstance(out, tuple):
            return tuple(clone(x) for x in out)
        if isinstance(out, dict):
            return {k: clone(v) for k, v in out.items()}
        return out

    return lambda *args: clone(fn(*args))


def _has_stddev(dist: torch.distributions.Distribution) -> bool:
    try:
        dist.stddev
    except NotImplementedError:
        return False
    return True
