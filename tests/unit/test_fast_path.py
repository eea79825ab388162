"""The fast gradient step computes what the plain one does.

``SACLearner.update`` runs the twin critics as one batched network, skips Q's weight gradients in
the actor loss and uses fused Adam. Here a reference written the plain
way (separate row-major MLPs, textbook formulas, default ``torch.optim.Adam``) starts from the same
parameters and the same random draws, and the two must agree on the losses, the gradients and the
parameters after several steps, for both SAC variants.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import encoders
from pearl.agent import PEARLAgent
from pearl.buffers import TransitionBatch, context_dim
from pearl.config import AlgoConfig
from pearl import sac
from pearl.sac import SACLearner

O, A, L, T, B, N = 2, 2, 3, 3, 5, 4
HIDDEN, ENC_HIDDEN = [16, 16], [12]
Layers = list[tuple[torch.Tensor, torch.Tensor]]  # (weight [out, in], bias [out]) per layer

DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])]


def make_learner(variant: str, device: str = "cpu", **overrides) -> SACLearner:
    torch.manual_seed(0)
    enc = encoders.build_encoder("mlp", context_dim=context_dim(O, A, use_next_obs=False), latent_dim=L,
                                 kwargs={"hidden_sizes": ENC_HIDDEN})
    agent = PEARLAgent(enc, obs_dim=O, action_dim=A, hidden_sizes=HIDDEN)
    cfg = AlgoConfig(variant=variant, hidden_sizes=HIDDEN, reward_scale=5.0, kl_lambda=0.1, **overrides)
    return sac.make_learner(agent, obs_dim=O, action_dim=A, cfg=cfg).to(device)


def make_batch(seed: int, device: str = "cpu") -> tuple[TransitionBatch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    terminals = (torch.rand(T, B, 1, generator=g) < 0.2).float().to(device)
    actions = (torch.rand(T, B, A, generator=g) * 2 - 1).to(device)
    batch = TransitionBatch(r(T, B, O), actions, r(T, B, 1), r(T, B, O), terminals, r(T, B, 1))
    return batch, r(T, N, O + A + 1)


# ----------------------------------------------------------------------------------------------
# the plain reference


def leaves(pairs: Layers) -> Layers:
    return [(w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()) for w, b in pairs]


def linear_layers(sequential: torch.nn.Module) -> Layers:
    return [(m.weight, m.bias) for m in sequential if isinstance(m, torch.nn.Linear)]


def reference_params(learner: SACLearner) -> dict[str, Layers]:
    """Copies of the learner's parameters, one list of (W, b) per network, as separate MLPs."""
    params = {
        "encoder": leaves(linear_layers(learner.agent.encoder.net)),
        "policy": leaves(linear_layers(learner.agent.policy.net)),
        "qf1": leaves([(layer.weight[0], layer.bias[0]) for layer in learner.qf.layers]),
        "qf2": leaves([(layer.weight[1], layer.bias[1]) for layer in learner.qf.layers]),
    }
    if learner.cfg.variant == "pearl":
        params["vf"] = leaves(linear_layers(learner.vf))
        params["target_vf"] = leaves(linear_layers(learner.target_vf))
    else:
        params["target_qf1"] = leaves([(layer.weight[0], layer.bias[0]) for layer in learner.target_qf.layers])
        params["target_qf2"] = leaves([(layer.weight[1], layer.bias[1]) for layer in learner.target_qf.layers])
        params["log_alpha"] = [(learner.log_alpha.detach().clone().requires_grad_(), torch.zeros(()))]
    return params


def flat_params(layers: Layers) -> list[torch.Tensor]:
    return [t for pair in layers for t in pair]


def mlp(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


class PlainReference:
    """The gradient step written out plainly, one network and one default Adam at a time."""

    def __init__(self, learner: SACLearner) -> None:
        self.cfg = learner.cfg
        self.p = reference_params(learner)
        lr = {"encoder": self.cfg.context_lr, "policy": self.cfg.policy_lr, "qf1": self.cfg.qf_lr,
              "qf2": self.cfg.qf_lr, "vf": self.cfg.vf_lr}
        self.opt = {name: torch.optim.Adam(flat_params(self.p[name]), lr=lr[name]) for name in lr if name in self.p}
        if self.cfg.variant == "modern":
            self.opt["alpha"] = torch.optim.Adam([self.p["log_alpha"][0][0]], lr=self.cfg.alpha_lr)

    def policy(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, log_std = mlp(torch.cat([obs, z.detach()], -1), self.p["policy"]).chunk(2, -1)
        log_std = log_std.clamp(-20.0, 2.0)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        action = torch.tanh(u)
        gauss = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        log_prob = (gauss - torch.log(1 - action**2)).sum(-1, keepdim=True)  # the textbook tanh correction
        return action, log_prob, mean, log_std, u

    def q(self, name: str, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return mlp(torch.cat([obs, action, z], -1), self.p[name])

    def step(self, batch: TransitionBatch, context: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, p = self.cfg, self.p
        flat = lambda x: x.reshape(T * B, -1)  # noqa: E731
        obs, act, rew, nxt, done = (flat(x) for x in (batch.observations, batch.actions, batch.rewards,
                                                      batch.next_observations, batch.terminals))
        # product of Gaussian factors; z = μ + σ ε; KL(N(μ, σ²) ‖ N(0, 1)) in closed form
        mu, raw = mlp(context, p["encoder"]).split(L, -1)
        var = F.softplus(raw) + 1e-7
        post_var = 1.0 / (1.0 / var).sum(1)
        post_mu = post_var * (mu / var).sum(1)
        z = post_mu + post_var.sqrt() * torch.randn(T, L, device=context.device)
        kl = 0.5 * (post_var + post_mu**2 - 1.0 - post_var.log()).sum(-1)
        z_rows = z.repeat_interleave(B, dim=0)
        z_bar = z_rows.detach()

        with torch.no_grad():
            if cfg.variant == "pearl":
                next_v = mlp(torch.cat([nxt, z_bar], -1), p["target_vf"])
            else:
                a2, lp2, *_ = self.policy(nxt, z_bar)
                q_next = torch.min(self.q("target_qf1", nxt, a2, z_bar), self.q("target_qf2", nxt, a2, z_bar))
                next_v = q_next - p["log_alpha"][0][0].exp() * lp2
            y = cfg.reward_scale * rew + (1 - done) * cfg.discount * next_v
        q1, q2 = self.q("qf1", obs, act, z_rows), self.q("qf2", obs, act, z_rows)
        loss_critic = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        loss_kl = cfg.kl_lambda * kl.sum()
        for name in ("qf1", "qf2", "encoder"):
            self.opt[name].zero_grad()
        (loss_critic + loss_kl).backward()
        grads = {name: [t.grad.clone() for t in flat_params(p[name])] for name in ("qf1", "qf2", "encoder")}
        for name in ("qf1", "qf2", "encoder"):
            self.opt[name].step()

        action, log_prob, mean, log_std, u = self.policy(obs, z_bar)
        q_new = torch.min(self.q("qf1", obs, action, z_bar), self.q("qf2", obs, action, z_bar))
        out = {"loss_critic": loss_critic, "loss_kl": loss_kl, "kl": kl.mean(), "q_mean": (q1 + q2).mean() / 2,
               "log_pi": log_prob.mean()}
        if cfg.variant == "pearl":
            v = mlp(torch.cat([obs, z_bar], -1), p["vf"])
            loss_value = ((v - (q_new - log_prob).detach()) ** 2).mean()
            loss_policy = (log_prob - q_new).mean() + cfg.policy_mean_reg_weight * (mean**2).mean() \
                + cfg.policy_std_reg_weight * (log_std**2).mean() \
                + cfg.policy_pre_activation_weight * (u**2).sum(-1).mean()
            actor_nets = ("policy", "vf")
            loss = loss_value + loss_policy
            out["loss_value"] = loss_value
        else:
            log_alpha = p["log_alpha"][0][0]
            loss_policy = (log_alpha.exp().detach() * log_prob - q_new).mean()
            loss_alpha = -(log_alpha * (log_prob.detach() - A)).mean()  # target entropy -A
            actor_nets = ("policy", "alpha")
            loss = loss_policy + loss_alpha
            out["loss_alpha"] = loss_alpha
        out["loss_policy"] = loss_policy
        for name in actor_nets:
            self.opt[name].zero_grad()
        loss.backward()
        grads["policy"] = [t.grad.clone() for t in flat_params(p["policy"])]
        if cfg.variant == "pearl":
            grads["vf"] = [t.grad.clone() for t in flat_params(p["vf"])]
        for name in actor_nets:
            self.opt[name].step()
        with torch.no_grad():
            pairs = [("target_vf", "vf")] if cfg.variant == "pearl" else [("target_qf1", "qf1"), ("target_qf2", "qf2")]
            for target, source in pairs:
                for t, s in zip(flat_params(p[target]), flat_params(p[source])):
                    t.mul_(1 - cfg.soft_target_tau).add_(cfg.soft_target_tau * s)
        self.grads = grads
        return {k: v.detach() for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# the learner's tensors in the reference's terms


def learner_params(learner: SACLearner) -> dict[str, list[torch.Tensor]]:
    def member(ensemble: torch.nn.Module, e: int) -> list[torch.Tensor]:
        return [t for layer in ensemble.layers for t in (layer.weight[e], layer.bias[e])]

    out = {
        "encoder": flat_params(linear_layers(learner.agent.encoder.net)),
        "policy": flat_params(linear_layers(learner.agent.policy.net)),
        "qf1": member(learner.qf, 0),
        "qf2": member(learner.qf, 1),
    }
    if learner.cfg.variant == "pearl":
        out["vf"] = flat_params(linear_layers(learner.vf))
        out["target_vf"] = flat_params(linear_layers(learner.target_vf))
    else:
        out["target_qf1"], out["target_qf2"] = member(learner.target_qf, 0), member(learner.target_qf, 1)
        out["log_alpha"] = [learner.log_alpha]
    return out


def learner_grads(learner: SACLearner) -> dict[str, list[torch.Tensor]]:
    """After ``update`` the gradients of its two backward passes are still in ``.grad``."""
    grads = {}
    for name, tensors in learner_params(learner).items():
        if name in ("encoder", "policy", "qf1", "qf2", "vf"):
            ensemble = name.startswith("qf")
            if ensemble:
                e = int(name[-1]) - 1
                grads[name] = [t.grad[e] for layer in learner.qf.layers for t in (layer.weight, layer.bias)]
            else:
                grads[name] = [t.grad for t in tensors]
    return grads


def assert_close_lists(actual: dict, expected: dict, what: str, **tol) -> None:
    for name in expected:
        exp = expected[name] if name != "log_alpha" else [expected[name][0][0]]
        exp = flat_params(exp) if exp and isinstance(exp[0], tuple) else exp
        assert len(actual[name]) == len(exp), f"{what} {name}: {len(actual[name])} tensors vs {len(exp)}"
        for i, (a, e) in enumerate(zip(actual[name], exp)):
            torch.testing.assert_close(a, e, msg=lambda m, n=name, i=i: f"{what} {n}[{i}]: {m}", **tol)


TOL = {"rtol": 1e-4, "atol": 2e-5}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["pearl", "modern"])
def test_update_matches_plain_reference(variant: str, device: str) -> None:
    learner = make_learner(variant, device)
    reference = PlainReference(learner)
    for step in range(3):
        batch, context = make_batch(step, device)
        torch.manual_seed(100 + step)
        out = learner.update(batch, context)
        torch.manual_seed(100 + step)
        expected = reference.step(batch, context)

        for key, value in expected.items():
            torch.testing.assert_close(out[key], value, msg=lambda m, k=key: f"step {step} {k}: {m}", **TOL)
        assert_close_lists(learner_grads(learner), reference.grads, f"step {step} gradient of", **TOL)
        assert_close_lists(learner_params(learner), reference.p, f"step {step} parameter", **TOL)


@pytest.mark.parametrize("variant", ["pearl", "modern"])
def test_actor_loss_leaves_q_weights_alone(variant: str) -> None:
    """Q's gradient after a step is the critic loss's alone: the actor's backward adds nothing to it."""
    learner = make_learner(variant)
    reference = PlainReference(learner)
    batch, context = make_batch(0)
    torch.manual_seed(7)
    learner.update(batch, context)
    torch.manual_seed(7)
    reference.step(batch, context)
    for name in ("qf1", "qf2"):
        for got, want in zip(learner_grads(learner)[name], reference.grads[name]):
            torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("variant", ["pearl", "modern"])
def test_bf16_autocast_stays_close_and_float32(variant: str) -> None:
    """bf16 autocast changes rounding only: losses near the float32 ones, parameters still float32."""
    fp32, bf16 = make_learner(variant), make_learner(variant, autocast_bf16=True)
    batch, context = make_batch(0)
    torch.manual_seed(3)
    out32 = fp32.update(batch, context)
    torch.manual_seed(3)
    out16 = bf16.update(batch, context)
    for key in ("loss_critic", "loss_policy", "q_mean", "log_pi"):
        torch.testing.assert_close(out16[key], out32[key], rtol=5e-2, atol=5e-2, msg=key)
        assert out16[key].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16.parameters())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # dynamo and inductor internals warn
def test_compiled_update_runs_and_matches_losses_statistically() -> None:
    """``compile: true`` trains the same networks; its random draws differ, so compare loosely."""
    eager, compiled = make_learner("pearl"), make_learner("pearl", compile=True)
    for step in range(3):
        batch, context = make_batch(step)
        a, b = eager.update(batch, context), compiled.update(batch, context)
        for key in ("loss_critic", "q_mean"):
            assert torch.isfinite(b[key])
            torch.testing.assert_close(b[key], a[key], rtol=0.3, atol=0.3)
