"""Config: round trip, strict validation, overrides, inheritance, every experiment YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pearl.config import (
    RENAMED,
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    flatten,
    load_config,
    saved_config_dict,
)
from tests.conftest import EXPERIMENTS

ALL_YAML = sorted(p for p in EXPERIMENTS.rglob("*.yaml"))


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = ExperimentConfig()
    cfg.algo.kl_lambda = 0.7
    cfg.encoder.kwargs = {"hidden_sizes": [8, 8]}
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_yaml_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(path.parent))  # custom encoders next to their config
    cfg = load_config(path)
    assert cfg.train.num_iterations > 0


def test_experiments_exist() -> None:
    names = {p.relative_to(EXPERIMENTS).as_posix() for p in ALL_YAML}
    assert {"quickstart.yaml", "point_robot_fast.yaml", "paper/point_robot.yaml",
            "paper/sparse_point_robot.yaml"} <= names


@pytest.mark.parametrize(
    "data, key, expected",
    [
        ({"algo": {"kl_lambda": -1}}, "algo.kl_lambda", ">= 0"),
        ({"algo": {"discount": 1.5}}, "algo.discount", "[0, 1]"),
        ({"algo": {"batch_size": 0}}, "algo.batch_size", "> 0"),
        ({"algo": {"batch_size": "many"}}, "algo.batch_size", "an integer"),
        ({"algo": {"batch_size": 2.5}}, "algo.batch_size", "an integer"),
        ({"algo": {"batch_size": True}}, "algo.batch_size", "an integer"),
        ({"algo": {"variant": "td3"}}, "algo.variant", "'pearl'"),
        ({"algo": {"klambda": 1}}, "algo.klambda", "unknown key"),
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"train": {"num_steps_prior": -5}}, "train.num_steps_prior", ">= 0"),
        ({"train": {"max_minutes": 0}}, "train.max_minutes", "> 0"),
        ({"train": {"lr_decay_start": -1}}, "train.lr_decay_start", ">= 0"),
        ({"train": {"lr_decay_factor": 1.5}}, "train.lr_decay_factor", "[0, 1]"),
        ({"algo": {"critic_reward": "shaped"}}, "algo.critic_reward", "'dense'"),
        ({"algo": {"critic_trains_encoder": False}}, "algo.critic_trains_encoder", "reward_decoder_weight > 0"),
        ({"algo": {"reward_decoder_weight": -1}}, "algo.reward_decoder_weight", ">= 0"),
        ({"algo": {"rl_context": "uniform", "context_window": "episodes", "reward_decoder_weight": 1.0}},
         "algo.rl_context", "critic_trains_encoder: false"),
        ({"algo": {"rl_context": "uniform", "critic_trains_encoder": False, "reward_decoder_weight": 1.0}},
         "algo.rl_context", "context_window: episodes"),
        ({"algo": {"rl_tasks": "rewarded"}}, "algo.rl_tasks", "rl_context: uniform"),
        ({"algo": {"reward_free_kl": 1.0}}, "algo.reward_free_kl", "no sparse reward"),
        ({"train": {"keep_rewarded_context": True}}, "train.keep_rewarded_context", "no sparse reward"),
        ({"algo": {"prior_match_projections": 0}}, "algo.prior_match_projections", "> 0"),
        ({"algo": {"decode_contexts": "rewarded"}}, "algo.decode_contexts", "reward_decoder_weight > 0"),
        ({"algo": {"decode_contexts": "rewarded", "reward_decoder_weight": 1.0}}, "algo.decode_contexts",
         "sparse reward"),
        ({"algo": {"rl_tasks": "rewarded", "rl_context": "uniform", "context_window": "episodes",
                   "critic_trains_encoder": False, "reward_decoder_weight": 1.0}}, "algo.rl_tasks", "sparse reward"),
        ({"algo": {"hidden_sizes": [64, "x"]}}, "algo.hidden_sizes[1]", "an integer"),
        ({"env": {"name": "no-such-env"}}, "env.name", "point-robot"),
        ({"encoder": {"name": "no-such-encoder"}}, "encoder.name", "mlp"),
        ({"encoder": {"name": "nomodule_xyz:Enc"}}, "encoder.name", "nomodule_xyz"),
        ({"eval": {"num_episodes": 2, "num_exp_traj_eval": 3}}, "eval.num_exp_traj_eval", "at most"),
        ({"device": "tpu"}, "device", "'cpu'"),
        ({"algo": "fast"}, "algo", "a mapping"),
    ],
)
def test_bad_values_name_the_key(data: dict, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ")
    assert f" {key}: " in message
    assert expected in message


def test_overrides_parse_yaml_values() -> None:
    data = apply_overrides({}, ["algo.kl_lambda=1.0", "seed=3", "algo.hidden_sizes=[8, 8]", "env.n_test_tasks=null"])
    cfg = config_from_dict(data)
    assert cfg.algo.kl_lambda == 1.0 and cfg.seed == 3 and cfg.algo.hidden_sizes == [8, 8]
    assert cfg.env.n_test_tasks is None


@pytest.mark.parametrize("item", ["algo.kl_lambda", "=3", "seed.x=1"])
def test_malformed_overrides(item: str) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(apply_overrides({"seed": 1}, [item]))


def test_base_inheritance_and_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("algo: {kl_lambda: 0.5, batch_size: 32}\nseed: 4\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nalgo: {batch_size: 64}\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert (cfg.algo.kl_lambda, cfg.algo.batch_size, cfg.seed) == (0.5, 64, 4)
    # a list of bases merges in order, each later one over the earlier, then the file itself
    (tmp_path / "recipe.yaml").write_text("algo: {batch_size: 16, discount: 0.9}\ntrain: {num_iterations: 7}\n")
    (tmp_path / "e.yaml").write_text("base: [b.yaml, recipe.yaml]\nalgo: {discount: 0.95}\n")
    cfg = load_config(tmp_path / "e.yaml")
    assert (cfg.algo.kl_lambda, cfg.algo.batch_size, cfg.algo.discount, cfg.train.num_iterations, cfg.seed) == \
        (0.5, 16, 0.95, 7, 4)
    for bad in ("[]", "[b.yaml, 3]", "{a: b.yaml}"):
        (tmp_path / "f.yaml").write_text(f"base: {bad}\n")
        with pytest.raises(ConfigError, match="base: expected a path"):
            load_config(tmp_path / "f.yaml")
    (tmp_path / "g.yaml").write_text("base: [a.yaml, h.yaml]\n")
    (tmp_path / "h.yaml").write_text("base: [g.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "g.yaml")
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "c.yaml")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("algo: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(tmp_path / "list.yaml")


def test_flatten_gives_dotted_params() -> None:
    flat = flatten(ExperimentConfig().to_dict())
    assert flat["algo.kl_lambda"] == 0.1 and flat["train.num_iterations"] == 500
    assert yaml.safe_load(ExperimentConfig().to_yaml())["encoder"]["name"] == "mlp"


# ----------------------------------------------------------------------------------------------
# renamed keys: a config says the new name, a checkpoint's saved config is upgraded


@pytest.mark.parametrize("old, new", sorted(RENAMED.items()))
def test_a_renamed_key_in_a_config_names_its_new_name(old: str, new: str, tmp_path: Path) -> None:
    section, key = old.split(".")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({section: {key: 1 if "tasks" in key else "last"}}))
    with pytest.raises(ConfigError, match=f"old.yaml: {old}: renamed to {new}"):
        load_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match=f"{old}: renamed to {new}"):
        load_config(path, [f"{old}=1"])


def test_a_checkpoints_saved_config_with_old_names_is_upgraded() -> None:
    saved = ExperimentConfig().to_dict()
    saved["eval"]["deterministic"] = saved["eval"].pop("deterministic_episodes")
    saved["eval"]["deterministic"] = "last"
    saved["eval"]["n_train_tasks"] = 3
    del saved["eval"]["n_train_tasks_evaluated"]
    cfg = config_from_dict(saved_config_dict(yaml.safe_dump(saved)), "checkpoint")
    assert cfg.eval.deterministic_episodes == "last" and cfg.eval.n_train_tasks_evaluated == 3
