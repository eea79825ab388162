"""benchmarks/results.py: docs/results.md is regenerated from run records read from an MLflow store."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Param

from pearl import runs
from pearl.config import config_from_dict
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import results  # noqa: E402


def test_results_tables_and_plots_come_from_the_runs(tmp_path: Path, tiny_config_dict: dict) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tiny_config_dict["tracking"].update(tracking_uri=uri, checkpoint_dir=str(tmp_path / "checkpoints"))
    ids = {}
    for seed in (0, 1):
        cfg = config_from_dict({**tiny_config_dict, "seed": seed}, "tiny")
        with runs.start(cfg, source="experiments/tiny.yaml", overrides=[f"seed={seed}", "algo.kl_lambda=0.5"]) as run:
            outcome = run.train()
        ids[seed] = outcome.run_id
    loaded = runs.load_run(ids[0], tracking_uri=uri, overrides=["eval.num_runs=2"])  # `pearl evaluate --runs 2`
    again = runs.evaluate(loaded)
    runs.log_evaluation(loaded, again, split="test", tracking_uri=uri)
    out = tmp_path / "docs" / "results.md"
    stale = out.parent / "results" / "an_entry_renamed_since.png"  # its slug changed with today's config
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"png")
    records = tmp_path / "runs.jsonl"
    others = ["--out", str(out), "--runs", str(records), "--scores", str(tmp_path / "no_scores.jsonl"),
              "--learning", str(tmp_path / "no_learning.jsonl"), "--diagnoses", str(tmp_path / "none.jsonl"),
              "--explorers", str(tmp_path / "none.jsonl")]
    results.main(["--tracking-uri", uri, *others])
    text = out.read_text()
    assert "## `experiments/tiny.yaml` with `algo.kl_lambda=0.5`" in text  # both seeds in one entry
    assert "`pearl train experiments/tiny.yaml --set seed=SEED --set algo.kl_lambda=0.5`" in text
    client = MlflowClient(uri)
    for seed, run_id in ids.items():
        metrics = client.get_run(run_id).data.metrics
        row = next(line for line in text.splitlines() if line.startswith(f"| {seed} | FINISHED |"))
        assert f"**{metrics['eval/test/return_adapted']:.1f}**" in row
        assert f"| {int(metrics['progress/env_steps']):,} |" in row
        assert row.endswith(f" {again.return_adapted:.1f} (2) |" if seed == 0 else " – |")  # re-evaluated or not
    (figure,) = (out.parent / "results").glob("*.png")  # the stale one removed
    assert f"]({figure.relative_to(out.parent).as_posix()})" in text and figure.stat().st_size > 1000
    summary_row = next(line for line in text.splitlines() if line.startswith("| `experiments/tiny.yaml`"))
    finals = [client.get_run(i).data.metrics["eval/test/return_adapted"] for i in ids.values()]
    assert f"**{sum(finals) / 2:.1f}**" in summary_row
    # the records alone regenerate the same document, the store gone
    assert len(records.read_text().splitlines()) == 2
    (tmp_path / "mlflow.db").unlink()
    figure.unlink()
    out.unlink()
    results.main(others)
    assert out.read_text() == text and figure.stat().st_size > 1000


def test_run_records_merge_by_run_and_keep_runs_without_curves(tmp_path: Path) -> None:
    """A run read again replaces its record, other records stay; a run kept without its curve (only its
    final evaluation) shows its recorded best, counts at fixed minutes only past its end, and an entry
    of such runs shows the figure drawn while their curves existed."""
    import json

    def record(run_id: str, seed: int, adapted: list[float], minutes: list[float], **extra) -> dict:
        return {"run_id": run_id, "config": "experiments/gone.yaml", "overrides_recorded": "", "setting": {},
                "env": "point-robot", "seed": seed, "status": "FINISHED", "machine": "cpu", "iterations": 9,
                "env_steps": [100 * (i + 1) for i in range(len(adapted))], "adapted": adapted, "minutes": minutes,
                "prior": -20.0, "success": None, "episodes": [-20.0, adapted[-1]], "episode_success": None,
                "reevaluated": None, **extra}
    path = tmp_path / "runs.jsonl"
    kept = record("old", 0, [-9.0], [50.0], best=-4.0, recovered="an earlier document", figure="results/kept/old.png")
    results.archive(path, [kept, record("a", 1, [-30.0], [1.0])])
    every = results.archive(path, [record("a", 1, [-30.0, -12.0, -8.0], [10.0, 31.0, 50.0])])
    assert [r["run_id"] for r in every] == ["old", "a"] and every[1]["adapted"] == [-30.0, -12.0, -8.0]
    assert [json.loads(line)["run_id"] for line in path.read_text().splitlines()] == ["old", "a"]
    (entry,) = results.group(every)
    old, new = entry.runs
    assert (old.best_adapted, new.best_adapted) == (-4.0, -8.0)
    assert results._at_minute(old, 30) is None and results._at_minute(old, 60) == -9.0
    cut = record("cut", 2, [-7.0], [40.0], status="KILLED", recovered="an earlier document")
    (with_cut,) = results.group([cut, every[1]])
    row = next(line for line in results.summary([with_cut]) if line.startswith("| `experiments/gone.yaml`"))
    assert "| – | -12.0 | -8.0 |" in row  # past its end the stopped run is left out, not unknown
    row = next(line for line in results.summary([entry]) if line.startswith("| `experiments/gone.yaml`"))
    assert "| – | – | **-8.5** |" not in row and "| – | – | -8.5 |" in row  # at 30 and 45 min the kept run is unknown
    text = "\n".join(results.section(entry, "results/gone.png"))
    assert "| 0 | FINISHED | 9 | 100 | 50.0 | **-9.0** | -4.0 | -20.0 |" in text
    assert "Seed 0 is kept from an earlier document, without its learning curve." in text

    out = tmp_path / "docs" / "results.md"
    figure = out.parent / "results" / "kept" / "old.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"drawn from the store")
    only_kept = tmp_path / "kept.jsonl"
    results.archive(only_kept, [kept])
    results.main(["--runs", str(only_kept), "--out", str(out), "--scores", str(tmp_path / "none.jsonl"),
                  "--learning", str(tmp_path / "none.jsonl"), "--diagnoses", str(tmp_path / "none.jsonl"),
                  "--explorers", str(tmp_path / "none.jsonl")])
    assert figure.read_bytes() == b"drawn from the store" and "](results/kept/old.png)" in out.read_text()
    assert not (out.parent / "results" / "gone.png").exists()


def test_an_entry_names_the_settings_that_differ_from_todays_config_file() -> None:
    """A config file may change after its runs: the command repeats a run with today's file."""
    from pearl.config import flatten, load_config

    config = "experiments/quickstart.yaml"
    logged = {k: str(v) for k, v in flatten(load_config(REPO / config, ["algo.kl_lambda=0.5",
                                                                       "algo.hidden_sizes=[8, 8]"]).to_dict()).items()}
    setting = {k: v for k, v in logged.items() if not k.startswith(results.NOT_SETTINGS)}
    assert results._overrides(config, setting, recorded="") == "algo.hidden_sizes=[8,8] algo.kl_lambda=0.5"
    kwargs = {**setting, "encoder.kwargs.n_components": "4", "algo.renamed_since": "1"}
    assert results._overrides(config, kwargs, recorded="") == \
        "algo.hidden_sizes=[8,8] algo.kl_lambda=0.5 encoder.kwargs.n_components=4"
    assert results._overrides("experiments/gone.yaml", setting, recorded="seed=3 algo.kl_lambda=0.5") == \
        "algo.kl_lambda=0.5"


def test_the_posterior_comparison_comes_from_the_score_records(tmp_path: Path) -> None:
    """docs/posterior_scores.jsonl -> a row per config with its seeds' scores, and a plot; a seed scored
    twice keeps its latest record."""
    import json

    def record(config: str, seed: int, score: float, modes: float | None, overrides: tuple = ()) -> dict:
        return {"config": config, "overrides": list(overrides), "seed": seed, "score": score, "curve": [-18.0, -12.0, -9.0],
                "train_minutes": 8.1, "iterations": 60, "protocol": "3 episodes, 1 from the prior",
                "first_path_posterior": {"std": 0.25, "kl": 3.5, "n_modes": modes}}
    scores = tmp_path / "scores.jsonl"
    rows = [record("experiments/posteriors/mlp.yaml", 0, 0.1, None), record("experiments/posteriors/mlp.yaml", 0, 0.5, None),
            record("experiments/posteriors/mlp.yaml", 1, 0.6, None), record("experiments/posteriors/mixture.yaml", 0, 0.7, 1.5),
            record("experiments/posteriors/mixture.yaml", 0, 0.2, 1.0, ["encoder.kwargs.n_components=3"]),
            {"config": "experiments/posteriors/mixture.yaml", "overrides": [], "seed": 1, "diverged": "NaN"}]
    scores.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    groups = results.read_scores(scores)
    assert [r["score"] for r in groups["`experiments/posteriors/mlp.yaml`"]] == [0.5, 0.6]
    assert len(groups) == 3  # the overrides make a row of their own
    figure = tmp_path / "results" / "posteriors.png"
    results.plot_scores({"`diverged.yaml`": [rows[-1]]}, tmp_path / "none.png")  # only diverged seeds: no score
    results.plot_scores(groups, figure)
    text = "\n".join(results.scores_section(groups, "results/posteriors.png"))
    assert "| `experiments/posteriors/mlp.yaml` | 0, 1 | **0.55** (0.50, 0.60) | -18.0, -12.0, -9.0 | 60 |" in text
    assert "| `experiments/posteriors/mixture.yaml` `--set encoder.kwargs.n_components=3` | 0 | **0.20** (0.20) |" in text
    assert "| `experiments/posteriors/mixture.yaml` | 0; diverged: 1 | **0.70** (0.70) |" in text  # counted, not dropped
    assert "| 0.25, 3.50, – |" in text and "| 0.25, 3.50, 1.50 |" in text  # modes only for the mixture
    assert figure.stat().st_size > 1000


def test_learning_records_are_read_beside_the_runs_of_the_same_env_at_equal_env_steps(tmp_path: Path) -> None:
    """benchmarks/learning.py records (a GPU run, say) -> a table per seed, and each beside-entry read at the
    fewest env steps any recorded seed reached; the summary line's machine fills the seeds that lack one."""
    import json

    import numpy as np

    def point(it: int, steps: int, ret: float) -> dict:
        return {"iteration": it, "env_steps": steps, "train_s": 60.0 * it, "wall_s": 66.0 * it,
                "return_adapted": ret, "return_prior": -200.0, "grad_steps_per_s": 80.0}

    rows = [{"benchmark": "learning", "config": "experiments/paper/cheetah_vel.yaml", "overrides": ["device=cuda"],
             "seed": 0, "target": 0.0, "curve": [point(2, 210, -250.0), point(4, 220, -150.0)]},
            {"benchmark": "learning", "config": "experiments/paper/cheetah_vel.yaml", "overrides": ["device=cuda"],
             "seed": 1, "target": 0.0, "curve": [point(2, 210, -230.0), point(4, 220, -130.0), point(6, 230, -90.0)]},
            {"benchmark": "learning", "seed": "all", "config": "experiments/paper/cheetah_vel.yaml",
             "overrides": ["device=cuda"], "machine": {"cuda": "GPU-X", "cpu_count": 16, "torch": "2.x", "torch_threads": 2}}]
    source = tmp_path / "learning.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (name, records), = results.read_learning(source).items()
    assert [r["seed"] for r in records] == [0, 1] and records[1]["machine"]["cuda"] == "GPU-X"

    def seed_run(seed: int, adapted: list[float]) -> results.SeedRun:
        return results.SeedRun(run_id=str(seed), seed=seed, status="FINISHED", machine="cpu",
                               steps=np.array([100, 200, 225]), adapted=np.array(adapted), minutes=np.array([1., 2., 3.]),
                               prior=-200.0, success=None, episodes=np.array([-200.0, -60.0]), episode_success=None,
                               iterations=3)
    fast = results.Entry("experiments/cheetah_vel_fast.yaml", "", "cheetah-vel",
                         [seed_run(0, [-200.0, -80.0, -10.0]), seed_run(1, [-180.0, -60.0, -20.0])])
    text = "\n".join(results.learning_section(name, records, [fast], "results/x.png"))
    assert "| 1 | 6 | 230 | 6.6 | **-90.0** | -200.0 | 80.0 |" in text
    assert "Machine: GPU-X, 16 CPU cores" in text
    # at 220 env steps: the recorded seeds' last evaluations -150, -130; the fast runs' evaluations at 200
    assert "At 220 env steps (each run's last evaluation at or before): these runs **-140.0** (-150.0, -130.0); " \
           "`experiments/cheetah_vel_fast.yaml` **-70.0** (-80.0, -60.0)." in text
    results.plot_learning(records, [fast], tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000


def test_sparse_diagnoses_are_rows_named_by_the_entry_of_their_run(tmp_path: Path) -> None:
    """docs/sparse_meta_test.jsonl -> a row per run (its latest record), named by config, overrides and seed."""
    import dataclasses
    import json

    import numpy as np

    run = results.SeedRun(run_id="abc123456", seed=2, status="FINISHED", machine="cpu", steps=np.array([10]),
                          adapted=np.array([5.0]), minutes=np.array([1.0]), prior=1.0, success=0.5,
                          episodes=np.array([1.0]), episode_success=np.array([0.5]), iterations=120)
    since = dataclasses.replace(run, run_id="def456789", seed=3)  # a run diagnosed under both posteriors
    entry = results.Entry("experiments/sparse_point_robot_fast.yaml", "algo.critic_reward=sparse",
                          "sparse-point-robot", [run, since])

    def record(run_id: str, success: float, **extra) -> dict:
        return {"run_id": run_id, "iteration": 120, "meta_tests": 60, "success_last": success, **extra,
                "found_while_exploring": 26, "found_later": 14, "never_found": 20,
                "end_radius_of_exploring_episodes": 0.923, "end_radius_of_never_found_posterior_episodes": 0.745,
                "posterior_std_of_never_found": [0.267, 0.141], "closest_to_goal_of_never_found": 0.366,
                "direction_span_of_never_found_deg": 95.0}
    path = tmp_path / "diagnoses.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [record("abc123456", 0.1), record("abc123456", 0.65),
                                                       record("abc123456", 0.8, prior_until_found=True,
                                                              found_then_missed_last=3,
                                                              closest_to_goal_of_found_then_missed=[0.081, 0.214]),
                                                       record("gone98765", 0.3),
                                                       record("def456789", 0.95, posterior="decoder"),
                                                       record("def456789", 0.7, posterior="encoder")]) + "\n")
    text = "\n".join(results.diagnoses_section(path, [entry]))
    # a record that names its posterior says which, either way; the older one without stays as it was
    assert "| `sparse_point_robot_fast` `algo.critic_reward=sparse`, *decoder posterior* | 3 | 120 | **0.95** |" in text
    assert "| `sparse_point_robot_fast` `algo.critic_reward=sparse`, *q(z|c)* | 3 | 120 | **0.70** |" in text
    assert ("| `sparse_point_robot_fast` `algo.critic_reward=sparse` | 2 | 120 | **0.65** | 26 / 14 / 20 of 60 | – | "
            "0.92, 0.74 | 0.27, 0.14 | 0.37, 95° |") in text  # recorded before the missed-last count existed
    assert ("| `sparse_point_robot_fast` `algo.critic_reward=sparse`, *prior until found* | 2 | 120 | **0.80** | "
            "26 / 14 / 20 of 60 | 3 (closest 0.08 after the find, 0.21 at the end) |") in text
    assert "| gone9876 | – | 120 | **0.30** |" in text and "**0.10**" not in text


def test_scripted_explorers_are_rows_per_config_and_explorer(tmp_path: Path) -> None:
    """docs/sparse_explorers.jsonl -> a row per config and explorer, the latest record of each."""
    import json

    def record(explorer: str, success: float) -> dict:
        return {"explorer": explorer, "config": "experiments/sparse_point_robot_fast.yaml", "meta_tests": 1000,
                "found_while_exploring": 0.5, "found_by_last": 0.95, "success_last": success,
                "success_per_episode": [0.13, 0.95]}
    path = tmp_path / "explorers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [record("random", 0.5), record("random", 0.94),
                                                       record("thompson", 1.0)]) + "\n")
    text = "\n".join(results.explorers_section(path))
    assert ("| `experiments/sparse_point_robot_fast.yaml` | random | 1000 | 0.50 | 0.95 | **0.94** | 0.13, 0.95 |"
            in text)
    assert "| thompson | 1000 |" in text and "**0.50**" not in text


def test_a_run_logged_before_a_key_existed_joins_the_entry_of_its_config(tmp_path: Path) -> None:
    """Entries group runs by what differs from today's config file: a run whose params lack a key added
    since (it trained with the key's default) sits beside the newer runs of the same config."""
    from pearl.config import flatten, load_config

    config = "experiments/quickstart.yaml"
    params = {k: str(v) for k, v in flatten(load_config(REPO / config).to_dict()).items()}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e")
    for seed, drop in ((0, "algo.critic_reward"), (1, None)):
        run = client.create_run(experiment, tags={"pearl.config": config})
        for key, value in params.items():
            if key != drop:
                client.log_param(run.info.run_id, key, value if key != "seed" else str(seed))
        client.log_metric(run.info.run_id, "eval/test/return_adapted", -10.0 - seed, step=100)
        client.log_metric(run.info.run_id, "time/total_s", 60.0, step=100)
        client.set_terminated(run.info.run_id)
    (entry,) = results.read_entries(f"sqlite:///{tmp_path / 'mlflow.db'}", [])
    assert entry.overrides == "" and [r.seed for r in entry.runs] == [0, 1]


def test_entries_whose_overrides_begin_alike_get_figures_of_their_own() -> None:
    common = "algo.context_window=episodes algo.critic_trains_encoder=false algo.embedding_batch_size=400"
    slugs = {results.Entry("experiments/sparse.yaml", f"{common} {tail}", "sparse-point-robot").slug
             for tail in ("algo.reward_decoder_weight=10.0", "algo.reward_decoder_weight=10.0 algo.rl_context=uniform")}
    assert len(slugs) == 2 and all(len(s) <= 80 for s in slugs)
    assert results.Entry("experiments/cheetah.yaml", "seed=1", "cheetah-vel").slug == "cheetah__seed_1"


def test_a_run_resumed_with_new_settings_names_its_resume_commands(tmp_path: Path) -> None:
    """A run that `pearl resume --set` trained further (its `pearl.resumes` tag) is not repeated by its train
    command alone: its entry gives the resume commands, in order, beside the command."""
    from pearl.config import flatten, load_config

    config = "experiments/quickstart.yaml"
    params = {k: str(v) for k, v in flatten(load_config(REPO / config).to_dict()).items()}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e")
    ids = []
    for seed in (0, 1):
        run = client.create_run(experiment, tags={"pearl.config": config})
        client.log_batch(run.info.run_id, params=[Param(k, v if k != "seed" else str(seed)) for k, v in params.items()])
        client.log_metric(run.info.run_id, "eval/test/return_adapted", -10.0, step=100)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    client.set_tag(ids[1], runs.RESUMES_TAG, "train.max_minutes=55\ntrain.max_minutes=90 eval.every=2")
    (entry,) = results.read_entries(f"sqlite:///{tmp_path / 'mlflow.db'}", [])
    text = "\n".join(results.section(entry, "results/q.png"))
    assert (f"Beyond that command, seed 1 was then resumed with `pearl resume {ids[1]} --set train.max_minutes=55`, "
            f"then `pearl resume {ids[1]} --set train.max_minutes=90 --set eval.every=2`.") in text
    assert f"pearl resume {ids[0]}" not in text


def test_a_key_a_run_did_not_log_counts_at_its_default_against_todays_file() -> None:
    """A run logged before a key existed trained with the key's default (the config's, or the encoder
    class's for its kwargs); where today's file sets the key otherwise, the command says the default."""
    from pearl.config import flatten, load_config

    config = "experiments/sparse_point_robot_fast.yaml"
    logged = {k: str(v) for k, v in flatten(load_config(REPO / config).to_dict()).items()}
    setting = {k: v for k, v in logged.items() if not k.startswith(results.NOT_SETTINGS)}
    assert results._overrides(config, setting, recorded="") == ""
    for key in ("algo.context_window", "encoder.kwargs.prior_factor", "encoder.kwargs.gate_column"):
        del setting[key]
    assert results._overrides(config, setting, recorded="") == \
        "algo.context_window=uniform encoder.kwargs.gate_column=null encoder.kwargs.prior_factor=false"


def test_a_reevaluation_is_read_under_the_runs_own_protocol_with_its_success(tiny_config_dict: dict) -> None:
    """`pearl evaluate RUN` logs under the prefix of the run's own meta-test (z from the decoder's posterior,
    sampled exploration): results.py reads it there, and shows a sparse task's re-evaluated success."""
    from pearl.config import flatten

    tiny_config_dict["encoder"]["latent_dim"] = 1
    tiny_config_dict["algo"]["reward_decoder_weight"] = 1.0
    for changes in ({}, {"posterior": "decoder"}, {"posterior": "decoder", "deterministic_episodes": "last"}):
        cfg = config_from_dict({**tiny_config_dict, "eval": {**tiny_config_dict["eval"], **changes}})
        params = {k: str(v) for k, v in flatten(cfg.to_dict()).items()}
        assert results._reevaluation_prefix(params) == runs.evaluation_prefix(cfg, "test")

    def record(run_id: str, seed: int, reevaluated: list | None) -> dict:
        return {"run_id": run_id, "config": "experiments/gone.yaml", "overrides_recorded": "", "setting": {},
                "env": "sparse-point-robot", "seed": seed, "status": "FINISHED", "machine": "cpu", "iterations": 9,
                "env_steps": [100], "adapted": [6.0], "minutes": [30.0], "prior": 1.0, "success": 0.9,
                "episodes": [1.0, 6.0], "episode_success": [0.1, 0.9], "reevaluated": reevaluated}
    (entry,) = results.group([record("new", 0, [5.25, 8, 0.95]), record("old", 1, [4.5, 8])])
    text = "\n".join(results.section(entry, "results/gone.png"))
    assert "| 5.2 (8), success 0.95 | 0.90 |" in text and "| 4.5 (8) | 0.90 |" in text
