"""The paper configs hold the official values: each is pinned to the authors' published settings.

The official settings are katerakelly/oyster's ``configs/default.py`` overridden by one JSON file per
family, and the network sizes of its ``launch_experiment.py``. They are written out below (official
key names), so an edit of ``experiments/paper/*.yaml`` that drifts from them fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from pearl.config import ExperimentConfig, load_config
from tests.conftest import EXPERIMENTS

# oyster configs/default.py (algo_params, plus latent_size and net_size)
OFFICIAL_DEFAULT: dict[str, Any] = {
    "latent_size": 5, "net_size": 300, "meta_batch": 16, "num_iterations": 500, "num_initial_steps": 2000,
    "num_tasks_sample": 5, "num_steps_prior": 400, "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 400,
    "num_train_steps_per_itr": 2000, "num_evals": 2, "num_steps_per_eval": 600, "batch_size": 256,
    "embedding_batch_size": 64, "max_path_length": 200, "discount": 0.99, "soft_target_tau": 0.005,
    "policy_lr": 3e-4, "qf_lr": 3e-4, "vf_lr": 3e-4, "context_lr": 3e-4, "reward_scale": 5.0,
    "sparse_rewards": False, "kl_lambda": 0.1, "use_information_bottleneck": True,
    "use_next_obs_in_context": False, "update_post_train": 1, "num_exp_traj_eval": 1, "recurrent": False,
    "replay_buffer_size": 1_000_000, "eval_deterministic": True,  # the last from rlkit/core/rl_algorithm.py
}

# (our config, the official file, its overrides of the defaults)
OFFICIAL = [
    ("point_robot", "configs/point-robot.json", {
        "n_train_tasks": 80, "n_eval_tasks": 20, "num_initial_steps": 200, "num_steps_prior": 200,
        "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 200, "num_train_steps_per_itr": 1000,
        "num_steps_per_eval": 60, "max_path_length": 20, "reward_scale": 100.0, "kl_lambda": 0.1}),
    ("sparse_point_robot", "configs/sparse-point-robot.json", {
        "n_train_tasks": 80, "n_eval_tasks": 20, "num_initial_steps": 200, "num_tasks_sample": 10,
        "num_steps_prior": 100, "num_steps_posterior": 900, "num_extra_rl_steps_posterior": 0,
        "num_train_steps_per_itr": 1000, "num_steps_per_eval": 400, "embedding_batch_size": 1024,
        "max_path_length": 20, "discount": 0.90, "reward_scale": 100.0, "sparse_rewards": True, "kl_lambda": 1.0,
        "num_exp_traj_eval": 5}),
    ("cheetah_vel", "configs/cheetah-vel.json", {
        "n_train_tasks": 100, "n_eval_tasks": 30, "num_initial_steps": 2000, "num_steps_prior": 400,
        "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 600, "num_evals": 1, "num_steps_per_eval": 600,
        "num_exp_traj_eval": 2, "embedding_batch_size": 100}),
    ("cheetah_dir", "configs/cheetah-dir.json", {
        "n_train_tasks": 2, "n_eval_tasks": 2, "meta_batch": 4, "num_initial_steps": 2000, "num_steps_prior": 1000,
        "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 1000, "num_evals": 4, "num_steps_per_eval": 600,
        "num_exp_traj_eval": 2, "embedding_batch_size": 256}),
    ("ant_dir", "configs/ant-dir.json", {
        "n_train_tasks": 2, "n_eval_tasks": 2, "meta_batch": 4, "num_initial_steps": 2000, "num_steps_prior": 400,
        "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 600, "num_train_steps_per_itr": 4000,
        "num_evals": 4, "num_steps_per_eval": 600, "num_exp_traj_eval": 2, "embedding_batch_size": 256}),
    ("ant_goal", "configs/ant-goal.json", {
        "n_train_tasks": 150, "n_eval_tasks": 30, "meta_batch": 10, "num_initial_steps": 2000,
        "num_steps_prior": 400, "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 600,
        "num_train_steps_per_itr": 4000, "num_evals": 1, "num_steps_per_eval": 600, "num_exp_traj_eval": 2,
        "embedding_batch_size": 256, "kl_lambda": 1.0}),
    ("humanoid_dir", "configs/humanoid-dir.json", {
        "n_train_tasks": 100, "n_eval_tasks": 30, "num_initial_steps": 2000, "num_steps_prior": 400,
        "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 600, "num_train_steps_per_itr": 4000,
        "num_evals": 1, "num_steps_per_eval": 600, "num_exp_traj_eval": 2, "embedding_batch_size": 256}),
    ("walker_rand_params", "configs/walker_rand_params.json", {
        "n_train_tasks": 40, "n_eval_tasks": 10, "use_next_obs_in_context": True, "meta_batch": 10,
        "num_initial_steps": 2000, "num_steps_prior": 400, "num_steps_posterior": 0,
        "num_extra_rl_steps_posterior": 600, "num_train_steps_per_itr": 4000, "num_evals": 2,
        "num_steps_per_eval": 600, "num_exp_traj_eval": 2, "embedding_batch_size": 100}),
    ("hopper_rand_params", "configs/hopper_rand_params.json", {
        "n_train_tasks": 40, "n_eval_tasks": 10, "use_next_obs_in_context": True, "meta_batch": 10,
        "num_initial_steps": 2000, "num_steps_prior": 400, "num_steps_posterior": 0,
        "num_extra_rl_steps_posterior": 600, "num_train_steps_per_itr": 4000, "num_evals": 2,
        "num_steps_per_eval": 600, "num_exp_traj_eval": 2, "embedding_batch_size": 100}),
]

# PEARL's encoder and the family of each config (the official env names)
ENV_NAMES = {"point_robot": "point-robot", "sparse_point_robot": "sparse-point-robot", "cheetah_vel": "cheetah-vel",
             "cheetah_dir": "cheetah-dir", "ant_dir": "ant-dir", "ant_goal": "ant-goal",
             "humanoid_dir": "humanoid-dir", "walker_rand_params": "walker-rand-params",
             "hopper_rand_params": "hopper-rand-params"}


def ours(official: dict[str, Any]) -> dict[str, Any]:
    """The official settings in our config's dotted keys."""
    o = official
    assert o["update_post_train"] == 1 and not o["recurrent"] and o["use_information_bottleneck"]
    assert o["eval_deterministic"] and o["num_steps_per_eval"] % o["max_path_length"] == 0
    return {
        "env.n_train_tasks": o["n_train_tasks"], "env.n_test_tasks": o["n_eval_tasks"],
        "env.max_path_length": o["max_path_length"],
        "encoder.name": "mlp",  # product of Gaussians with the information bottleneck, not recurrent
        "encoder.latent_dim": o["latent_size"], "encoder.use_next_obs": o["use_next_obs_in_context"],
        "encoder.kwargs.hidden_sizes": [200, 200, 200],  # launch_experiment.py
        "algo.variant": "pearl", "algo.hidden_sizes": [o["net_size"]] * 3,
        **{f"algo.{k}": o[k] for k in ("policy_lr", "qf_lr", "vf_lr", "context_lr", "discount", "soft_target_tau",
                                       "reward_scale", "kl_lambda", "meta_batch", "batch_size",
                                       "embedding_batch_size")},
        "algo.sparse_rewards": o["sparse_rewards"],
        **{f"train.{k}": o[k] for k in ("num_iterations", "num_initial_steps", "num_tasks_sample", "num_steps_prior",
                                        "num_steps_posterior", "num_extra_rl_steps_posterior",
                                        "num_train_steps_per_itr", "replay_buffer_size")},
        # collect_data() clears z before every phase and re-infers it after each trajectory
        "train.posterior_phase_start": "prior",
        "eval.num_episodes": o["num_steps_per_eval"] // o["max_path_length"],
        "eval.num_exp_traj_eval": o["num_exp_traj_eval"], "eval.num_runs": o["num_evals"],
        "eval.deterministic_episodes": "all", "eval.n_test_tasks": None,
    }


def _get(cfg: ExperimentConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


@pytest.mark.parametrize(("name", "source", "overrides"), OFFICIAL, ids=[row[0] for row in OFFICIAL])
def test_paper_config_holds_the_official_values(name: str, source: str, overrides: dict[str, Any]) -> None:
    cfg = load_config(EXPERIMENTS / "paper" / f"{name}.yaml")
    assert cfg.env.name == ENV_NAMES[name]
    want = ours({**OFFICIAL_DEFAULT, **overrides})
    if cfg.algo.sparse_rewards is None:  # null: the family decides, which must agree with the official file
        import envs

        cfg.algo.sparse_rewards = envs.registered_task_families()[cfg.env.name].sparse_reward
    got = {key: _get(cfg, key) for key in want}
    differ = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not differ, f"experiments/paper/{name}.yaml differs from oyster {source} (ours, official): {differ}"


def test_every_paper_family_is_pinned() -> None:
    paper = {p.stem for p in (EXPERIMENTS / "paper").glob("*.yaml")
             if not p.stem.endswith("_smoke") and not p.stem.startswith("metaworld")}  # no official Meta-World
    assert paper == {row[0] for row in OFFICIAL}
