"""A sweep's specification (grid, seeds, trials) and the comparison's statistics, without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from pearl import compare, sweep


def test_grid_values_split_on_commas_outside_brackets() -> None:
    assert sweep.parse_grid("algo.hidden_sizes=[64,64], [32]") == ("algo.hidden_sizes", ("[64,64]", "[32]"))
    assert sweep.parse_grid("algo.kl_lambda=0.1,1.0") == ("algo.kl_lambda", ("0.1", "1.0"))


@pytest.mark.parametrize("item", ["algo.kl_lambda", "=1,2", "algo.kl_lambda=", "algo.kl_lambda=1,,2",
                                  "algo.kl_lambda=1,1", "seed=1,2"])
def test_bad_grid_is_refused(item: str) -> None:
    with pytest.raises(sweep.SweepError):
        sweep.parse_grid(item)


def test_seeds_are_a_count_or_a_list() -> None:
    assert sweep.parse_seeds("3") == (0, 1, 2)
    assert sweep.parse_seeds("5,0,7") == (5, 0, 7)
    for bad in ("0", "-1,2", "1,1", "x"):
        with pytest.raises(sweep.SweepError):
            sweep.parse_seeds(bad)


def test_trials_are_every_grid_point_times_every_seed(tmp_path, tiny_config_dict: dict) -> None:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict))
    spec = sweep.SweepSpec(str(path), seeds=(0, 1), grid=(("algo.kl_lambda", ("0.1", "1.0")),
                                                          ("algo.discount", ("0.9",))), sets=("eval.every=2",))
    plan = sweep.prepare(spec)
    assert [t.key for t in plan.trials] == [f"algo.kl_lambda={v} algo.discount=0.9 seed={s}"
                                            for v in ("0.1", "1.0") for s in (0, 1)]
    assert plan.trials[1].overrides == ("eval.every=2", "algo.kl_lambda=0.1", "algo.discount=0.9", "seed=1")
    assert plan.name == f"tiny-{plan.spec_hash[:8]}" and sweep.prepare(spec).spec_hash == plan.spec_hash
    other = sweep.prepare(sweep.SweepSpec(str(path), seeds=(0, 2), grid=spec.grid, sets=spec.sets))
    assert other.spec_hash != plan.spec_hash


def test_local_stores_are_refused_with_a_cluster_address() -> None:
    for uri in ("sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns"):
        with pytest.raises(sweep.SweepError, match="mlflow server"):
            sweep.check_address("auto", uri)
    sweep.check_address("auto", "http://10.0.0.1:5000")
    sweep.check_address(None, "sqlite:///mlflow.db")


def test_bootstrap_resamples_within_each_stratum() -> None:
    """Two task families of three runs each: resampling within each keeps three of each, so the mean
    never moves; pooled, it would."""
    strata = [np.zeros(3), np.full(3, 10.0)]
    low, high = compare.bootstrap_interval(strata, compare.STATISTICS["mean"])
    assert low == pytest.approx(5.0) and high == pytest.approx(5.0)
    low, high = compare.bootstrap_interval([np.concatenate(strata)], compare.STATISTICS["mean"])
    assert low < 5.0 < high


def test_iqm_is_the_mean_of_the_middle_half_and_one_run_has_no_interval() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])
    assert compare.STATISTICS["iqm"](values, axis=-1) == pytest.approx(scipy.stats.trim_mean(values, 0.25)) == 3.5
    low, high = compare.bootstrap_interval([np.array([1.0])], compare.STATISTICS["mean"])
    assert np.isnan(low) and np.isnan(high)
