"""Latent inspection: the probe can succeed and fail, contraction on synthetic encoders, the table,
context collection, plots, and the trainer's periodic summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from encoders import ContextEncoder
from encoders.gaussian import diagonal_gaussian, product_of_gaussians
from pearl import latents
from pearl.agent import PEARLAgent
from pearl.latents.measures import fit_ridge, select_alpha


# ----------------------------------------------------------------------------------------------
# the probe


def test_probe_recovers_a_linear_relation() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 2))
    x_train, x_test = rng.normal(size=(40, 5)), rng.normal(size=(20, 5))
    probe = latents.ridge_probe(x_train, x_train @ weights + 3.0, x_test, x_test @ weights + 3.0)
    assert probe.r2_cv > 0.99 and probe.r2_test > 0.99
    np.testing.assert_allclose(probe.pred_test, x_test @ weights + 3.0, atol=0.05)


def test_probe_is_near_zero_on_noise() -> None:
    """The measure can fail: targets independent of the inputs score R² about 0 (or below), not high."""
    rng = np.random.default_rng(1)
    scores = []
    for _ in range(5):
        x_train, x_test = rng.normal(size=(40, 5)), rng.normal(size=(20, 5))
        probe = latents.ridge_probe(x_train, rng.uniform(-1, 1, (40, 2)), x_test, rng.uniform(-1, 1, (20, 2)))
        scores.append((probe.r2_cv, probe.r2_test))
    assert np.max(scores) < 0.2
    assert abs(np.mean(scores)) < 0.15


def test_probe_held_out_score_is_not_inflated_by_choosing_alpha() -> None:
    """Many inputs, few tasks, pure noise: an in-sample fit looks good, the nested CV score must not."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(24, 16)), rng.normal(size=(24, 2))
    in_sample = fit_ridge(x, y, alpha=1e-3).predict(x)
    assert latents.r2_per_output(y, in_sample).mean() > 0.5
    assert latents.ridge_probe(x, y).r2_cv < 0.1


def test_probe_picks_strong_shrinkage_for_noise_and_weak_for_signal() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    assert select_alpha(x, x[:, :2] * 2.0, rng=rng) <= 1.0
    assert select_alpha(x, rng.normal(size=(40, 2)), rng=rng) >= 10.0


def test_probe_on_a_constant_input_is_zero_not_an_error() -> None:
    rng = np.random.default_rng(4)
    probe = latents.ridge_probe(np.zeros((20, 3)), rng.normal(size=(20, 2)), np.zeros((5, 3)), rng.normal(size=(5, 2)))
    assert probe.r2_cv <= 0.0 and math.isfinite(probe.r2_test)


# ----------------------------------------------------------------------------------------------
# contraction and the table, on synthetic encoders


class FixedPrecisionEncoder(ContextEncoder):
    """Each transition c contributes the factor N(c[:L], 1): the product has std exactly 1/sqrt(n)."""

    def forward(self, context: Tensor) -> torch.distributions.Distribution:
        mu = context[..., : self.latent_dim]
        return diagonal_gaussian(*product_of_gaussians(mu, torch.ones_like(mu)))


class MeanPoolEncoder(ContextEncoder):
    """Averages the context and keeps a fixed std of 0.5: it never grows more certain."""

    def forward(self, context: Tensor) -> torch.distributions.Distribution:
        mu = context[..., : self.latent_dim].mean(dim=1)
        return diagonal_gaussian(mu, torch.full_like(mu, 0.25))


def _agent(encoder_cls: type[ContextEncoder], latent_dim: int = 2, context_dim: int = 4) -> PEARLAgent:
    encoder = encoder_cls(context_dim=context_dim, latent_dim=latent_dim)
    return PEARLAgent(encoder, obs_dim=1, action_dim=1, hidden_sizes=[4])


def test_contraction_of_a_product_of_gaussians_is_one_over_sqrt_n() -> None:
    agent = _agent(FixedPrecisionEncoder)
    contexts = [torch.full((20, 4), float(k)) for k in range(6)]  # every transition says z = k
    curve = latents.contraction_curve(agent, contexts)
    assert curve.n_context.tolist() == [1, 2, 4, 8, 16, 20]
    np.testing.assert_allclose(curve.mean_std, 1 / np.sqrt(curve.n_context), rtol=1e-5)
    assert np.all(np.diff(curve.kl_to_prior) > 0)  # more context, further from the prior
    assert curve.n_tasks.tolist() == [6] * 6


def test_contraction_is_flat_for_an_encoder_that_does_not_accumulate() -> None:
    curve = latents.contraction_curve(_agent(MeanPoolEncoder), [torch.randn(16, 4) for _ in range(3)])
    np.testing.assert_allclose(curve.mean_std, 0.5, rtol=1e-6)


def test_contraction_averages_only_tasks_with_enough_context() -> None:
    curve = latents.contraction_curve(_agent(FixedPrecisionEncoder), [torch.randn(3, 4), torch.randn(8, 4)])
    assert curve.n_context.tolist() == [1, 2, 4, 8]
    assert curve.n_tasks.tolist() == [2, 2, 1, 1]


def _contexts(n_train: int = 5, n_test: int = 3, n: int = 10) -> latents.TaskContexts:
    rng = np.random.default_rng(0)
    k = n_train + n_test
    tasks = rng.uniform(-1, 1, (k, 2))
    # the context carries the task: z's posterior mean is the goal itself
    ctx = [torch.as_tensor(np.concatenate([np.tile(t, (n, 1)), rng.normal(size=(n, 2))], axis=1), dtype=torch.float32)
           for t in tasks]
    return latents.TaskContexts(tasks, [*range(n_train), *range(n_test)], ["train"] * n_train + ["test"] * n_test, ctx)


def test_table_has_one_row_per_task_and_the_documented_columns(tmp_path) -> None:
    table = latents.posterior_table(_agent(FixedPrecisionEncoder), _contexts(), ("goal_x", "goal_y"))
    frame = table.to_dataframe()
    assert list(frame.columns) == ["task_id", "split", "goal_x", "goal_y", "n_context", "kl_to_prior",
                                   "z_mean_0", "z_mean_1", "z_std_0", "z_std_1"]
    assert frame.shape == (8, 10)
    assert frame["split"].tolist() == ["train"] * 5 + ["test"] * 3
    assert frame["task_id"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    np.testing.assert_allclose(table.z_mean, table.params, atol=1e-6)
    np.testing.assert_allclose(table.z_std, 1 / np.sqrt(10), rtol=1e-5)
    assert (table.n_context == 10).all() and (table.kl_to_prior > 0).all()

    csv, npz = table.save(tmp_path)
    import pandas as pd

    assert pd.read_csv(csv).shape == (8, 10)
    again = latents.LatentTable.load(npz)
    np.testing.assert_array_equal(again.z_mean, table.z_mean)
    assert again.param_names == ("goal_x", "goal_y") and again.splits.tolist() == table.splits.tolist()


def test_table_of_the_first_n_transitions() -> None:
    table = latents.posterior_table(_agent(FixedPrecisionEncoder), _contexts(), ("goal_x", "goal_y"), n_context=4)
    assert (table.n_context == 4).all()
    np.testing.assert_allclose(table.z_std, 0.5, rtol=1e-5)


def test_empty_task_set_is_refused() -> None:
    empty = latents.TaskContexts(np.zeros((0, 2)), [], [], [])
    with pytest.raises(latents.LatentError, match="empty"):
        latents.posterior_table(_agent(FixedPrecisionEncoder), empty, ("goal_x", "goal_y"))


def test_active_dims_counts_dims_whose_mean_varies_across_tasks() -> None:
    rng = np.random.default_rng(0)
    z = np.column_stack([rng.normal(size=50), 0.01 * rng.normal(size=50), np.zeros(50)])
    assert latents.active_dims(z).tolist() == [True, False, False]


def test_an_encoder_that_carries_the_task_probes_to_one_and_plots(tmp_path) -> None:
    contexts = _contexts(n_train=12, n_test=6)
    report = latents.inspect_latents(_agent(FixedPrecisionEncoder), contexts, param_names=("goal_x", "goal_y"),
                                     env="synthetic", episode_length=5)
    summary = report.summary()
    assert summary["probe_r2_cv"] > 0.99 and summary["probe_r2_test"] > 0.99
    assert summary["active_dims"] == 2 and summary["std_context_full"] < summary["std_context_1"]
    files = report.save(tmp_path, title="run abc · synthetic")
    assert {p.name for p in files} == {"latents.csv", "latents.npz", "contraction.csv", "summary.json",
                                       "projection.png", "contraction.png", "probe.png"}
    figs = report.figures(title="run abc · synthetic")
    proj = figs["projection.png"]
    assert "run abc · synthetic" in proj.texts[0].get_text()  # suptitle names run and env
    panel = proj.axes[0]
    assert panel.get_xlabel().startswith("PC 1") and panel.get_ylabel().startswith("PC 2")
    assert {"true goal_x", "true goal_y"} <= {ax.get_ylabel() for ax in proj.axes}  # one colour bar per panel
    assert len(panel.patches) == len(contexts)  # one uncertainty ellipse per task
    import matplotlib.pyplot as plt

    for fig in figs.values():
        plt.close(fig)


class MirrorEncoder(ContextEncoder):
    """Two hypotheses, z = +c[:L] or z = -c[:L], each a product of unit factors; the transitions' column L
    is evidence for the first: its logit is their sum."""

    def forward(self, context: Tensor) -> torch.distributions.Distribution:
        import pyro.distributions as dist

        mu = context[..., : self.latent_dim]
        loc, var = product_of_gaussians(mu, torch.ones_like(mu))  # [T, L] each
        evidence = context[..., self.latent_dim].sum(dim=1)  # [T]
        logits = torch.stack([evidence, torch.zeros_like(evidence)], dim=-1)  # [T, 2]
        return dist.MixtureOfDiagNormals(torch.stack([loc, -loc], dim=1), var.sqrt()[:, None].expand(-1, 2, -1), logits)


def test_mixture_posteriors_report_their_modes(tmp_path) -> None:
    """Ten ambiguous transitions then ten that favour one hypothesis: two modes, then one."""
    contexts = _contexts(n_train=6, n_test=3, n=20)
    for c in contexts.contexts:
        c[:10, 2], c[10:, 2] = 0.0, 1.0
    agent = _agent(MirrorEncoder)
    ambiguous = latents.posterior_table(agent, contexts, ("goal_x", "goal_y"), n_context=10)
    assert ambiguous.n_modes.tolist() == [2] * 9
    np.testing.assert_allclose(ambiguous.z_mean, 0.0, atol=1e-6)  # halfway between the two modes
    np.testing.assert_allclose(ambiguous.z_std**2, contexts.tasks**2 + 0.1, rtol=1e-4)  # law of total variance
    report = latents.inspect_latents(agent, contexts, param_names=("goal_x", "goal_y"), env="synthetic")
    assert report.table.n_modes.tolist() == [1] * 9
    assert report.contraction.n_modes.tolist() == [2, 2, 2, 2, 1, 1]  # after 1, 2, 4, 8, 16, 20 transitions
    assert report.summary()["n_modes"] == 1.0
    assert "mixture modes (weight >= 5%): 1.00 per task on average, 1 at most" in report.summary_text()
    by_context = "by context transitions seen: 1: 2.00, 2: 2.00, 4: 2.00, 8: 2.00, 16: 1.00, 20: 1.00"
    assert by_context in report.summary_text()
    _, npz = report.table.save(tmp_path)
    assert "n_modes" in report.table.to_dataframe().columns
    np.testing.assert_array_equal(latents.LatentTable.load(npz).n_modes, report.table.n_modes)
    assert latents.posterior_table(_agent(FixedPrecisionEncoder), contexts, ("goal_x", "goal_y")).n_modes is None


def test_tsne_projection_has_no_ellipses() -> None:
    pytest.importorskip("sklearn")
    table = latents.posterior_table(_agent(FixedPrecisionEncoder), _contexts(), ("goal_x", "goal_y"))
    plane = latents.project(table, "tsne")
    assert plane.xy.shape == (8, 2) and plane.cov is None and plane.labels[0] == "t-SNE 1"


def test_unknown_projection_is_a_latent_error() -> None:
    table = latents.posterior_table(_agent(FixedPrecisionEncoder), _contexts(), ("goal_x", "goal_y"))
    with pytest.raises(latents.LatentError, match="unknown projection"):
        latents.project(table, "isomap")


# ----------------------------------------------------------------------------------------------
# with a real (untrained) agent on the point robot


@pytest.fixture
def point_trainer():
    from pearl.config import config_from_dict
    from pearl.trainer import Trainer

    cfg = config_from_dict({
        "env": {"name": "point-robot", "n_train_tasks": 40, "n_test_tasks": 20, "kwargs": {"start": "origin"}},
        "encoder": {"latent_dim": 5, "kwargs": {"hidden_sizes": [32, 32]}},
        "algo": {"hidden_sizes": [32, 32]},
        "train": {"num_initial_steps": 30, "num_tasks_sample": 5},
        "eval": {"num_episodes": 3},
    }, "test")
    return Trainer(cfg)


def test_rollout_context_follows_the_meta_test_protocol(point_trainer) -> None:
    t = point_trainer
    ctx = latents.collect_contexts(t.agent, t.collector, t.tasks.test_tasks[:3], n_transitions=25,
                                   num_exp_traj_eval=1, use_next_obs=False, sparse_rewards=False)
    assert [c.shape for c in ctx] == [torch.Size([25, 5])] * 3  # (x, y, a_x, a_y, r): one episode of 20, then 5
    first_obs = torch.stack([c[0, :2] for c in ctx])
    assert torch.allclose(first_obs, torch.zeros_like(first_obs))  # every task starts afresh at the origin
    assert torch.allclose(ctx[0][20, :2], torch.zeros(2))  # second episode starts at the origin again


def test_untrained_agent_probes_near_zero(point_trainer) -> None:
    """An encoder that has learnt nothing: the probe must say so (R² about 0 on held-out tasks)."""
    report = latents.embed_trainer(point_trainer)
    summary = report.summary()
    assert len(report.table) == 60 and (report.table.n_context == 60).all()
    assert summary["probe_r2_cv"] < 0.3 and summary["probe_r2_test"] < 0.3


def test_buffer_source_reads_the_context_buffer(point_trainer) -> None:
    t = point_trainer
    t.collect_initial()
    contexts = latents.gather_contexts(t, splits=("train",), source="buffer", n_context=10)
    assert len(contexts) == 40 and (contexts.n_context == 10).all()
    stored = t.enc_buffer.all_of(3)
    torch.testing.assert_close(contexts.contexts[3][:, :2], stored.observations[0, :10])
    with pytest.raises(latents.LatentError, match="test tasks have no buffer"):
        latents.gather_contexts(t, splits=("test",), source="buffer")


def test_buffer_source_with_empty_buffers_is_an_empty_task_set(point_trainer) -> None:
    with pytest.raises(latents.LatentError, match="task set is empty"):
        latents.gather_contexts(point_trainer, splits=("train",), source="buffer")


def test_periodic_latent_summary_is_logged_and_does_not_change_training(tiny_config_dict) -> None:
    from pearl.config import config_from_dict
    from pearl.runs import build_trainer
    from pearl.trainer import Trainer

    def run(latent_every: int) -> tuple[Trainer, list[dict]]:
        d = {**tiny_config_dict, "eval": {**tiny_config_dict["eval"], "latent_every": latent_every}}
        trainer = build_trainer(config_from_dict(d, "tiny"))  # the latent summary is a hook it adds
        return trainer, [trainer.run_iteration().metrics for _ in range(2)]

    with_summary, metrics_on = run(1)
    without, metrics_off = run(0)
    for key in ("latent/probe_r2_cv", "latent/probe_r2_test", "latent/active_dims", "latent/std_context_1",
                "latent/std_context_full", "latent/kl_to_prior"):
        assert key in metrics_on[0] and key in metrics_on[1]
    assert not any(k.startswith("latent/probe") for k in metrics_off[1])
    for a, b in zip(with_summary.learner.parameters(), without.learner.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert metrics_on[1]["eval/test/return_adapted"] == metrics_off[1]["eval/test/return_adapted"]


def test_projection_is_checked_before_any_work() -> None:
    with pytest.raises(latents.LatentError, match="unknown projection"):
        latents.check_projection("isomap")
    latents.check_projection("pca")
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(latents.LatentError, match="pip install umap-learn"):
            latents.check_projection("umap")
