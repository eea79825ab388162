"""One PEARL gradient step: critic + KL train the encoder, the actor sees z detached.

Both SAC variants share the step (:class:`SACLearner`); z ~ q(z|c) is one sample per task, z̄ is
z detached, and V' is the variant's value of the next state::

    q_target = reward_scale · r + (1 - d) · γ · V'(s', z̄)
    L_critic = Σ_{i=1,2} mean (Q_i(s, a, z) - q_target)²          → Q_1, Q_2, encoder
    L_kl     = kl_lambda · Σ_tasks KL(q(z|c) ‖ p(z))                → encoder
    optional (off in the paper; ``reward_decoder_weight``, ``critic_trains_encoder: false`` detaches z in L_critic):
    L_dec    = reward_decoder_weight · Σ_tasks Σ_{(s,a,r) ∈ c} (r̂(s, a, z) - r)²   → decoder r̂, encoder
        (with ``decode_contexts: rewarded`` only over the tasks whose c holds a sparse reward)
    L_match  = prior_match_weight · SW₂²({z of the contexts holding a reward}, N(0, I))                → encoder
    L_rf     = reward_free_kl · Σ_{tasks whose c holds no reward} KL(q(z|c) ‖ p(z))                → encoder
    and with ``rl_context: uniform`` the critic and actor take z̄ ~ q(z|c_rl) of a second context instead.
    then the variant's actor step on ã ~ π(·|s, z̄), with Q after its update.

``pearl`` (:class:`PearlSAC`, the paper's): a value network V and its Polyak target; the entropy
weight is fixed, as 1 / reward_scale::

    V'(s', z̄) = V_targ(s', z̄)
    L_policy  = mean (log π(ã|s, z̄) - min_i Q_i(s, ã, z̄)) + regularisers on μ, log σ, pre-tanh  → π
    L_value   = mean (V(s, z̄) - (min_i Q_i(s, ã, z̄) - log π(ã|s, z̄)))²                         → V

``modern`` (:class:`ModernSAC`): Polyak targets of the twin Q instead of V, and an entropy weight
α tuned towards a target entropy H̄::

    V'(s', z̄) = min_i Q_targ_i(s', a', z̄) - α log π(a'|s', z̄),  a' ~ π(·|s', z̄)
    L_policy  = mean (α log π(ã|s, z̄) - min_i Q_i(s, ã, z̄))                                  → π
    L_alpha   = -mean (log α · (log π(ã|s, z̄) + H̄))                                          → α

The KL is summed over the tasks of the meta-batch, as in the paper's code. Time-limit truncation
never enters ``d``: only true terminations stop the bootstrap.

Done efficiently without changing any of the above (``tests/unit/test_fast_path.py`` checks losses,
gradients and parameters against a plain reference): the twin Q is one batched network, Q in the
actor's loss is evaluated with detached parameters (no Q weight gradients are computed only to be
discarded), Adam is torch's fused kernel (:mod:`pearl.optim`), and V's loss is backpropagated after
the policy's so their activations are not alive together. ``autocast_bf16`` runs the hidden layers
in bfloat16 and ``compile`` compiles the losses; both are off by default.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from encoders.moments import posterior_moments
from pearl.agent import PEARLAgent
from pearl.buffers import TransitionBatch, context_reward_index
from pearl.config import AlgoConfig
from pearl.networks import MLP, EnsembleMLP, PolicyOutput
from pearl.optim import Adam


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: θ_targ ← (1 - τ) θ_targ + τ θ."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s, tau)


def make_learner(agent: PEARLAgent, *, obs_dim: int, action_dim: int, cfg: AlgoConfig) -> SACLearner:
    """The learner of the SAC variant ``cfg.variant`` names."""
    variants: dict[str, type[SACLearner]] = {"pearl": PearlSAC, "modern": ModernSAC}
    return variants[cfg.variant](agent, obs_dim=obs_dim, action_dim=action_dim, cfg=cfg)


class SACLearner(nn.Module):
    """The step both variants share: q(z|c), the critic and KL update, the bookkeeping. Owns the
    twin critic and the optimisers; the agent owns encoder and policy. A variant defines the next
    state's value (:meth:`next_value`) and its actor step (:meth:`actor_step`).

    Args:
        agent: the encoder + policy being trained.
        obs_dim: O.
        action_dim: A.
        cfg: the ``algo`` section of the config.
    """

    def __init__(self, agent: PEARLAgent, *, obs_dim: int, action_dim: int, cfg: AlgoConfig) -> None:
        super().__init__()
        self.agent, self.cfg = agent, cfg
        self.qf = EnsembleMLP(2, obs_dim + action_dim + agent.latent_dim, cfg.hidden_sizes, 1)
        # optional: r̂(s, a, z) of the context's own transitions, trained with the encoder (its optimiser and rate)
        self._reward_col = context_reward_index(obs_dim, action_dim)  # a context row is (s, a, r, ...)
        self.reward_decoder = (
            MLP(self._reward_col + agent.latent_dim, cfg.hidden_sizes, 1) if cfg.reward_decoder_weight > 0 else None
        )
        encoder_params = list(agent.encoder.parameters())
        if self.reward_decoder is not None:
            encoder_params += list(self.reward_decoder.parameters())
        self.optimizers: dict[str, Adam] = {
            "policy": Adam(agent.policy.parameters(), lr=cfg.policy_lr),
            "qf": Adam(self.qf.parameters(), lr=cfg.qf_lr),
            "context": Adam(encoder_params, lr=cfg.context_lr),
        }
        # CUDA graphs (compile mode 'reduce-overhead') replay into static memory that the next replay
        # overwrites, so outputs that outlive a call are cloned and each update starts a new step
        self._cudagraphs = cfg.compile and cfg.compile_mode == "reduce-overhead"
        self._critic_loss_fn = self._compiled(self._critic_loss)
        self._actor_loss_fn = self._compiled(self._actor_loss)

    def _compiled(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, through ``torch.compile`` when ``algo.compile`` is on."""
        if not self.cfg.compile:
            return fn
        return _cloning_outputs(torch.compile(fn, mode=self.cfg.compile_mode, dynamic=False),
                                enabled=self._cudagraphs)

    def optimizer_state_dict(self) -> dict[str, dict]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_optimizer_state_dict(self, state: dict[str, dict]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])

    def scale_lr(self, factor: float) -> None:
        """Set every optimiser's learning rate to ``factor`` times its configured value (``<name>_lr``)."""
        for name, opt in self.optimizers.items():
            opt.lr = factor * getattr(self.cfg, f"{name}_lr")

    def _zero_grad(self, *names: str) -> None:
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)

    def _step(self, *names: str) -> None:
        for name in names:
            self.optimizers[name].step()

    def update(self, batch: TransitionBatch, context: torch.Tensor,
               rl_context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One gradient step on a meta-batch. ``rl_context`` (``rl_context: uniform``) gives the critic and the
        actor their z, detached; the KL and the decoder stay on ``context``.

        Returns detached scalar tensors (no host sync in the hot path): ``loss_critic``,
        ``loss_kl`` (weighted), ``kl`` (per task), ``loss_policy``, ``log_pi``, ``q_mean``,
        ``posterior_std`` and the variant's own terms (``loss_value`` or ``loss_alpha``/``alpha``).

        Shapes:
            batch fields [T, B, dim]; context [T, N, C]; rl_context [T, N', C].
        """
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        T, B, _ = batch.observations.shape
        flat = lambda x: x.reshape(T * B, -1)  # noqa: E731  [T, B, d] -> [T*B, d]
        obs = flat(batch.observations)

        # q(z|c) per task; one z per task, shared by its B transitions
        posterior = self.agent.posterior(context)
        z = posterior.rsample()  # reparameterised: critic gradients reach the encoder
        kl = self.agent.encoder.kl_to_prior(posterior)  # [T]
        z_rl = z if rl_context is None else self._rl_z(rl_context)
        z_rows = z_rl.unsqueeze(1).expand(T, B, z.shape[-1]).reshape(T * B, -1)

        # critic + KL (+ reward decoder, prior match) → Q networks and encoder
        loss_critic, q_mean = self._critic_loss_fn(
            obs, flat(batch.actions), flat(batch.rewards), flat(batch.terminals), flat(batch.next_observations),
            z_rows if self.cfg.critic_trains_encoder else z_rows.detach(),
        )
        loss_kl = self._kl_loss(kl, context)
        loss = loss_critic + loss_kl
        extra = self._encoder_extra_losses(z, context)
        loss = loss + sum(extra.values())
        self._zero_grad("qf", "context")
        loss.backward()
        self._step("qf", "context")

        # PEARL: the actor (and the variant's other networks) sees z detached
        out = {k: v.detach() for k, v in self.actor_step(obs, z_rows.detach()).items()}
        out.update(
            loss_critic=loss_critic.detach(),
            loss_kl=loss_kl.detach(),
            kl=kl.detach().mean(),
            q_mean=q_mean,
            posterior_std=_posterior_std(posterior),
            **{k: v.detach() for k, v in extra.items()},
        )
        return out

    @torch.no_grad()
    def _rl_z(self, rl_context: torch.Tensor) -> torch.Tensor:
        """``[T, L]`` the critic's and actor's z with ``rl_context: uniform``: one draw of q(z|c_rl), detached."""
        return self.agent.posterior(rl_context).sample()

    def _kl_loss(self, kl: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``L_kl`` (+ ``L_rf``) from the per-task KL ``[T]`` and the context ``[T, N, C]`` whose reward column
        (the sparse reward on a sparse task) tells the reward-free tasks."""
        loss = self.cfg.kl_lambda * kl.sum()
        if self.cfg.reward_free_kl > 0:
            loss = loss + self.cfg.reward_free_kl * (kl * self._reward_free(context)).sum()
        return loss

    def _encoder_extra_losses(self, z: torch.Tensor, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """The optional encoder terms on z ``[T, L]`` (the KL's sample) and its context ``[T, N, C]``:
        ``loss_decoder`` (``reward_decoder_weight``) and ``loss_prior_match`` (``prior_match_weight``)."""
        out: dict[str, torch.Tensor] = {}
        if self.reward_decoder is not None:
            # a VAE on the context: its rewards from its (s, a) and z, a Gaussian log-likelihood summed over every
            # transition (weight = 1 / 2σ²), so that q(z|c) approaches the posterior p(z|c) of that model
            sa = context[..., : self._reward_col]  # [T, N, O+A]
            reward = context[..., self._reward_col : self._reward_col + 1]  # [T, N, 1]
            z_context = z.unsqueeze(1).expand(*context.shape[:2], z.shape[-1])
            squared = (self.reward_decoder(torch.cat([sa, z_context], -1)) - reward).square().sum(dim=(1, 2))  # [T]
            if self.cfg.decode_contexts == "rewarded":
                squared = squared * ~self._reward_free(context)
            out["loss_decoder"] = self.cfg.reward_decoder_weight * squared.sum()
        if self.cfg.prior_match_weight > 0:
            out["loss_prior_match"] = self.cfg.prior_match_weight * sliced_w2_to_standard_normal(
                z[~self._reward_free(context)], self.cfg.prior_match_projections)
        return out

    def _reward_free(self, context: torch.Tensor) -> torch.Tensor:
        """``[T]`` bool: the tasks whose context ``[T, N, C]`` holds no reward (on a sparse task, no sparse reward)."""
        return (context[..., self._reward_col] == 0).all(dim=1)

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
        with torch.no_grad(), self._autocast(obs):
            next_value = self.next_value(next_obs, z_rows.detach())
            q_target = cfg.reward_scale * rewards + (1.0 - terminals) * cfg.discount * next_value
        with self._autocast(obs):
            q_pred = self.qf(torch.cat([obs, actions, z_rows], -1))  # [2, N, 1]
        loss_critic = ((q_pred - q_target) ** 2).mean(dim=(1, 2)).sum()
        return loss_critic, q_pred.detach().mean()

    def _new_actions(self, obs: torch.Tensor, z_bar: torch.Tensor) -> tuple[PolicyOutput, torch.Tensor]:
        """ã ~ π(·|s, z̄) (reparameterised) and min_i Q_i(s, ã, z̄).

        Q is the critic after its update; Q's own weights get no gradient here (only the critic
        loss moves Q), so the backward skips their weight gradients and carries only ∂Q/∂a.

        Shapes:
            obs [N, O]; z_bar [N, L] -> (PolicyOutput with action [N, A], [N, 1])
        """
        with self._autocast(obs):
            pi = self.agent.policy_forward(obs, z_bar)
            q_new = self.qf.forward_detached(torch.cat([obs, pi.action, z_bar], -1)).min(0).values
        return pi, q_new

    def next_value(self, next_obs: torch.Tensor, z_bar: torch.Tensor) -> torch.Tensor:
        """V'(s', z̄) of the Bellman target (no gradient). Shapes: [N, O], [N, L] -> [N, 1]."""
        raise NotImplementedError

    def _actor_loss(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        """The variant's actor loss terms (``loss_policy``, ...). Shapes: obs [N, O]; z_bar [N, L]."""
        raise NotImplementedError

    def actor_step(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the actor and the variant's networks; returns the loss terms to report."""
        raise NotImplementedError


class PearlSAC(SACLearner):
    """The paper's SAC: a value network V, its Polyak target, a fixed entropy weight (module doc)."""

    def __init__(self, agent: PEARLAgent, *, obs_dim: int, action_dim: int, cfg: AlgoConfig) -> None:
        super().__init__(agent, obs_dim=obs_dim, action_dim=action_dim, cfg=cfg)
        self.vf = MLP(obs_dim + agent.latent_dim, cfg.hidden_sizes, 1)
        self.target_vf = copy.deepcopy(self.vf).requires_grad_(False)
        self.optimizers["vf"] = Adam(self.vf.parameters(), lr=cfg.vf_lr)
        self._value_loss_fn = self._compiled(self._value_loss)

    def next_value(self, next_obs: torch.Tensor, z_bar: torch.Tensor) -> torch.Tensor:
        """V'(s', z̄) = V_targ(s', z̄)."""
        return self.target_vf(torch.cat([next_obs, z_bar], -1))

    def _actor_loss(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_policy`` with its regularisers, and V's regression target (detached)."""
        cfg = self.cfg
        pi, q_new = self._new_actions(obs, z_bar)
        loss_policy = (pi.log_prob - q_new).mean() + (
            cfg.policy_mean_reg_weight * (pi.mean**2).mean()
            + cfg.policy_std_reg_weight * (pi.log_std**2).mean()
            + cfg.policy_pre_activation_weight * (pi.pre_tanh**2).sum(-1).mean()
        )
        return {"loss_policy": loss_policy, "log_pi": pi.log_prob.mean(), "v_target": (q_new - pi.log_prob).detach()}

    def _value_loss(self, obs: torch.Tensor, z_bar: torch.Tensor, v_target: torch.Tensor) -> torch.Tensor:
        """``L_value = mean (V(s, z̄) - V_target)²``. Shapes: v_target [N, 1]."""
        with self._autocast(obs):
            v_pred = self.vf(torch.cat([obs, z_bar], -1))
        return ((v_pred - v_target) ** 2).mean()

    def actor_step(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self._actor_loss_fn(obs, z_bar)
        self._zero_grad("vf", "policy")
        terms["loss_policy"].backward()
        # V after the policy's backward has freed the policy and Q activations (disjoint
        # parameters: the same gradients as one backward of the sum, with a lower memory peak)
        terms["loss_value"] = self._value_loss_fn(obs, z_bar, terms.pop("v_target"))
        terms["loss_value"].backward()
        self._step("vf", "policy")
        soft_update(self.target_vf, self.vf, self.cfg.soft_target_tau)
        return terms


class ModernSAC(SACLearner):
    """SAC with twin target Q networks and automatic entropy tuning (module doc)."""

    def __init__(self, agent: PEARLAgent, *, obs_dim: int, action_dim: int, cfg: AlgoConfig) -> None:
        super().__init__(agent, obs_dim=obs_dim, action_dim=action_dim, cfg=cfg)
        self.target_qf = copy.deepcopy(self.qf).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(cfg.init_alpha)).log())
        self.target_entropy = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.optimizers["alpha"] = Adam([self.log_alpha], lr=cfg.alpha_lr)

    def next_value(self, next_obs: torch.Tensor, z_bar: torch.Tensor) -> torch.Tensor:
        """V'(s', z̄) = min_i Q_targ_i(s', a', z̄) - α log π(a'|s', z̄), a' ~ π(·|s', z̄)."""
        alpha = self.log_alpha.exp()
        nxt = self.agent.policy_forward(next_obs, z_bar)
        next_q = self.target_qf(torch.cat([next_obs, nxt.action, z_bar], -1)).min(0).values
        return next_q - alpha * nxt.log_prob

    def _actor_loss(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_policy`` with α detached, and ``L_alpha`` with log π detached."""
        pi, q_new = self._new_actions(obs, z_bar)
        alpha = self.log_alpha.exp()
        loss_policy = (alpha.detach() * pi.log_prob - q_new).mean()
        loss_alpha = -(self.log_alpha * (pi.log_prob.detach() + self.target_entropy)).mean()
        return {"loss_policy": loss_policy, "loss_alpha": loss_alpha, "alpha": alpha, "log_pi": pi.log_prob.mean()}

    def actor_step(self, obs: torch.Tensor, z_bar: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self._actor_loss_fn(obs, z_bar)
        self._zero_grad("policy", "alpha")
        (terms["loss_policy"] + terms["loss_alpha"]).backward()
        self._step("policy", "alpha")
        soft_update(self.target_qf, self.qf, self.cfg.soft_target_tau)
        return terms


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


def _posterior_std(posterior: torch.distributions.Distribution) -> torch.Tensor:
    """Mean posterior standard deviation over tasks and dims: closed form where the distribution has
    it, else from 16 draws per task (a flow), detached."""
    with torch.no_grad():
        return posterior_moments(posterior, n_samples=16)[1].mean()


def sliced_w2_to_standard_normal(z: torch.Tensor, projections: int) -> torch.Tensor:
    """Sliced squared Wasserstein-2 distance between the empirical distribution of ``z`` ``[n, L]`` and N(0, I).

    Every projection of N(0, I) on a unit vector is N(0, 1), so each slice compares the sorted projections with
    the standard normal quantiles Φ⁻¹((i + ½) / n): mean over slices of mean_i (sorted_i - q_i)². With L = 1 the
    one slice is the axis (exact); otherwise ``projections`` random unit vectors. Zero for n < 2.
    """
    n, dim = z.shape
    if n < 2:
        return z.sum() * 0.0
    like = {"device": z.device, "dtype": z.dtype}
    directions = torch.eye(1, **like) if dim == 1 else torch.randn(dim, projections, **like)
    directions = directions / directions.norm(dim=0, keepdim=True)  # [L, P]
    sorted_projections = (z @ directions).sort(dim=0).values  # [n, P]
    quantiles = torch.special.ndtri((torch.arange(n, **like) + 0.5) / n)  # [n]
    return (sorted_projections - quantiles[:, None]).square().mean()
