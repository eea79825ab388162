"""Sparse rewards end to end (sparse-point-robot): the context sees the sparse reward in collection,
in the gradient step and in the meta-test; the critic learns from the dense one; returns and success
are the sparse task's, logged to the run."""

from __future__ import annotations

import torch
from mlflow import MlflowClient

from pearl import runs
from pearl.config import config_from_dict


def test_the_context_sees_sparse_rewards_the_critic_dense_ones(tiny_config_dict: dict) -> None:
    tiny_config_dict["env"]["name"] = "sparse-point-robot"
    tiny_config_dict["train"]["num_iterations"] = 1
    cfg = config_from_dict(tiny_config_dict, "tiny")
    contexts: list[torch.Tensor] = []  # every context q(z|c) is inferred from
    critic_rewards: list[torch.Tensor] = []
    with runs.start(cfg) as run:
        agent, learner = run.trainer.agent, run.trainer.learner
        posterior, update = agent.posterior, learner.update

        def recording_posterior(context: torch.Tensor):
            contexts.append(context.clone())
            return posterior(context)

        def recording_update(batch, context: torch.Tensor):
            critic_rewards.append(batch.rewards.clone())
            return update(batch, context)

        agent.posterior, learner.update = recording_posterior, recording_update
        outcome = run.train()
    assert outcome.status == "FINISHED"
    assert contexts and critic_rewards
    for context in contexts:  # (x, y, a_x, a_y, r): the sparse reward is 0 outside the goal radius, 1 - distance inside
        r = context[..., 4]
        assert torch.all((r == 0) | (r > 0.8))
    assert all(torch.all(r < 0) for r in critic_rewards)  # dense: -distance, never 0
    metrics = MlflowClient(run.tracking_uri).get_run(outcome.run_id).data.metrics
    for split in ("test", "train"):
        assert metrics[f"eval/{split}/return_adapted"] >= 0  # summed sparse rewards; a dense return is < 0
        assert 0 <= metrics[f"eval/{split}/success_adapted"] <= 1 and f"eval/{split}/success_prior" in metrics
