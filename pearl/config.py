"""Typed experiment configuration, loaded strictly from YAML.

A config is a tree of dataclasses. Each field carries its help text and, where it has one, its
range (``check``) in the field metadata, so a config file is validated completely before anything
runs: an unknown key, a wrong type, an out-of-range value or an unregistered env/encoder raises
:class:`ConfigError` with one message naming the file, the dotted key and what was expected.

Examples:
    >>> cfg = ExperimentConfig()
    >>> cfg.algo.kl_lambda
    0.1
    >>> apply_overrides({"algo": {"kl_lambda": 0.1}}, ["algo.kl_lambda=1.0"])
    {'algo': {'kl_lambda': 1.0}}
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid; the message names file, key and expectation."""


def _field(default: Any, help: str, *, check: str | None = None, choices: tuple = ()) -> Any:
    """A dataclass field with help text and an optional range check.

    ``check`` is one of ``positive`` (> 0), ``nonneg`` (>= 0), ``prob`` (in [0, 1]).
    """
    meta = {"help": help, "check": check, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class EnvConfig:
    """Which task distribution to train and test on."""

    name: str = _field("point-robot", "registered task family (see `pearl list`)")
    n_train_tasks: int | None = _field(None, "training tasks; null = the family's default", check="positive")
    n_test_tasks: int | None = _field(None, "held-out test tasks; null = the family's default", check="positive")
    max_path_length: int | None = _field(None, "episode cap in steps; null = the family's default", check="positive")
    kwargs: dict[str, Any] = _field({}, "extra keyword arguments of the task family")


@dataclass
class EncoderConfig:
    """The context encoder q(z|c)."""

    name: str = _field("mlp", "registered encoder name or 'package.module:ClassName'")
    latent_dim: int = _field(5, "size of the latent task variable z", check="positive")
    use_next_obs: bool = _field(False, "context transitions are (s, a, r, s') instead of (s, a, r)")
    kwargs: dict[str, Any] = _field({}, "keyword arguments of the encoder class (e.g. hidden_sizes)")


@dataclass
class AlgoConfig:
    """The SAC learner conditioned on z, and the encoder's training signal.

    The fields after ``compile_mode`` belong to one variant each (``pearl.sac``): the pearl variant
    reads ``vf_lr`` and the policy regularisers, the modern variant ``alpha_lr``, ``target_entropy``
    and ``init_alpha``; the other variant ignores them. The keys stay in one flat section so that a
    config switches variants by ``variant`` alone.
    """

    variant: str = _field(
        "pearl",
        "'pearl': the paper's SAC (value net, fixed entropy weight, reward_scale); "
        "'modern': twin target Q and automatic entropy tuning",
        choices=("pearl", "modern"),
    )
    hidden_sizes: list[int] = _field([300, 300, 300], "hidden layer sizes of policy, Q and V networks")
    policy_lr: float = _field(3e-4, "policy learning rate", check="positive")
    qf_lr: float = _field(3e-4, "Q-function learning rate", check="positive")
    context_lr: float = _field(3e-4, "encoder learning rate", check="positive")
    discount: float = _field(0.99, "discount factor gamma", check="prob")
    soft_target_tau: float = _field(0.005, "Polyak averaging rate of the target networks", check="prob")
    reward_scale: float = _field(5.0, "reward multiplier; the inverse entropy weight of the pearl variant", check="positive")
    kl_lambda: float = _field(0.1, "weight of KL(q(z|c) || N(0, I)) in the encoder loss", check="nonneg")
    meta_batch: int = _field(16, "tasks per gradient step", check="positive")
    batch_size: int = _field(256, "RL transitions per task per gradient step", check="positive")
    embedding_batch_size: int = _field(64, "context transitions per task per gradient step", check="positive")
    context_window: str = _field(
        "uniform", "how a training context is drawn from a task's context buffer (for the gradient steps and for "
        "the posterior-z episodes of collection): 'uniform' (the paper's: embedding_batch_size transitions at "
        "random) or 'episodes' (k episode lengths of consecutive transitions, k uniform in "
        "1..max(1, embedding_batch_size // max_path_length), one k per meta-batch: the encoder also learns from contexts "
        "as short as a meta-test's first episodes, on a sparse task often without a reward)",
        choices=("uniform", "episodes"),
    )
    sparse_rewards: bool | None = _field(
        None, "the context sees the env's sparse reward, the critic the dense one; null = as the task family "
        "defines it (true for sparse-point-robot), and a value that contradicts the family is refused"
    )
    critic_reward: str = _field(
        "dense", "the reward the critic learns from on a sparse task: 'dense' (the paper's: the env's dense "
        "reward) or 'sparse' (the one the context sees; a critic that cannot score near misses gives a "
        "policy no reason to hedge between candidate goals) or 'dense+sparse' (dense + critic_sparse_weight x sparse: "
        "the dense term still pulls the policy toward goals it never reaches, the sparse term makes a hit worth more "
        "than hedging between candidates)", choices=("dense", "sparse", "dense+sparse"),
    )
    critic_sparse_weight: float = _field(
        1.0, "weight of the sparse reward in critic_reward 'dense+sparse' (set it only there)", check="nonneg"
    )
    reward_decoder_weight: float = _field(
        0.0, "weight 1/(2 sigma^2) of a reward decoder's Gaussian likelihood on the encoder (0 = off, the paper): "
        "a decoder predicts the context's own rewards from its (s, a) and z ~ q(z|c), summed over its "
        "transitions; with the KL a VAE on the context, whose q(z|c) approaches p(z|c) (broad after a context "
        "that rules little out, as posterior sampling needs)", check="nonneg"
    )
    critic_trains_encoder: bool = _field(
        True, "the critic's loss reaches the encoder (the paper); false needs reward_decoder_weight > 0 and "
        "leaves the encoder to the decoder and the KL"
    )
    rl_context: str = _field(
        "same", "the context whose q(z|c) gives the critic's and actor's z: 'same' (the paper's: the encoder's "
        "training context) or 'uniform' (a second draw, embedding_batch_size transitions at random from the task's "
        "context buffer, z detached; with context_window: episodes and critic_trains_encoder: false, the encoder "
        "learns from short contexts while the policy learns to act on a z that names its task, as posterior sampling "
        "assumes, instead of hedging over what a reward-free context leaves open)", choices=("same", "uniform"),
    )
    reward_free_kl: float = _field(
        0.0, "on a sparse task, an extra weight on KL(q(z|c) || p(z)) of the training contexts that hold no sparse "
        "reward (0 = off, the paper): the encoder learns that a context without a reward tells little, so that "
        "posterior sampling after one draws z near the prior (goals anywhere) instead of a code that explains no "
        "reward at all", check="nonneg",
    )
    decode_contexts: str = _field(
        "all", "the training contexts whose rewards the reward decoder predicts: 'all', or on a sparse task 'rewarded' "
        "(only those that hold a sparse reward): a decoder that must explain reward-free contexts is served best by a "
        "region of z that means 'no goal anywhere', and prior samples landing there name no task to explore; decoding "
        "only rewarded contexts lets every z name a goal, and reward-free contexts learn from the KL alone",
        choices=("all", "rewarded"),
    )
    prior_match_weight: float = _field(
        0.0, "weight of a sliced Wasserstein-2 distance between the meta-batch's z ~ q(z|c) of the contexts that hold a "
        "reward and p(z) = N(0, I) (0 = off, the paper): the meta-test's exploring z come from the prior, which names "
        "every training task equally often only if the tasks' codes fill it; the per-task KL alone lets the codes "
        "gather in a part of it, and prior samples then explore a part of the task space", check="nonneg",
    )
    prior_match_projections: int = _field(
        16, "random projections of prior_match_weight's sliced distance per gradient step (a 1-dimensional latent "
        "uses its axis)", check="positive",
    )
    rl_tasks: str = _field(
        "all", "the tasks of a gradient step's meta-batch: 'all' (the paper's: uniform over the training tasks) or, on a "
        "sparse task with rl_context: uniform, 'rewarded' (only tasks whose context buffer holds a sparse reward, all "
        "while none does): the policy then never learns from a z that a reward-free context left broad",
        choices=("all", "rewarded"),
    )
    autocast_bf16: bool = _field(
        False, "run the policy, Q and V matmuls in bfloat16 (torch.autocast; output layers, losses, encoder and "
        "optimiser stay float32): faster on CPUs with AVX512-BF16/AMX and on recent GPUs (benchmarks/README.md)"
    )
    compile: bool = _field(
        False, "torch.compile the losses of the gradient step (the first steps compile, a minute or more; "
        "cached by torch's inductor cache)"
    )
    compile_mode: str = _field(
        "default", "torch.compile mode when compile is on ('reduce-overhead' uses CUDA graphs on a GPU)",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    )
    # the pearl variant's own
    vf_lr: float = _field(3e-4, "value-function learning rate (pearl variant)", check="positive")
    policy_mean_reg_weight: float = _field(1e-3, "L2 weight on the policy mean (pearl variant)", check="nonneg")
    policy_std_reg_weight: float = _field(1e-3, "L2 weight on the policy log-std (pearl variant)", check="nonneg")
    policy_pre_activation_weight: float = _field(0.0, "L2 weight on the pre-tanh action (pearl variant)", check="nonneg")
    # the modern variant's own
    alpha_lr: float = _field(3e-4, "entropy-weight learning rate (modern variant)", check="positive")
    target_entropy: float | None = _field(None, "entropy target (modern variant); null = -action_dim")
    init_alpha: float = _field(1.0, "initial entropy weight (modern variant)", check="positive")


@dataclass
class TrainConfig:
    """The meta-training schedule (PEARL's Algorithm 1), in env steps per task."""

    num_iterations: int = _field(500, "meta-training iterations", check="positive")
    num_initial_steps: int = _field(2000, "prior-z steps per training task before the first iteration", check="nonneg")
    num_tasks_sample: int = _field(
        5, "training-task visits per iteration, drawn with replacement (as the official code draws them, so it "
        "may exceed the number of training tasks; a task drawn twice is collected on twice)", check="nonneg",
    )
    num_steps_prior: int = _field(400, "steps per sampled task with z from the prior (to both buffers)", check="nonneg")
    num_steps_posterior: int = _field(0, "steps per sampled task with z from q(z|c) (to both buffers)", check="nonneg")
    num_extra_rl_steps_posterior: int = _field(
        400, "steps per sampled task with z from q(z|c), to the RL buffer only", check="nonneg"
    )
    posterior_phase_start: str = _field(
        "posterior", "z of the first episode of each posterior-z phase (num_steps_posterior and "
        "num_extra_rl_steps_posterior): 'posterior' draws it from q(z|c) of the task's context buffer, as the "
        "paper's Algorithm 1; 'prior' draws it from the prior, as the official code's collection does (it resets "
        "z before each phase). Either way later episodes re-infer q(z|c) after every episode",
        choices=("posterior", "prior"),
    )
    explore_prior_scale: float = _field(
        1.0, "training collection's prior-z episodes draw z from the prior scaled by this factor about 0 "
        "(N(0, s^2 I) for the N(0, I) prior; 1 = the prior itself, the paper). A factor above 1 sends some of "
        "those episodes to z beyond the codes of the goals found so far, so the goals the policy can reach "
        "grow outward instead of staying where the first rewards were met; the meta-test always draws from "
        "the prior", check="positive",
    )
    keep_rewarded_context: bool = _field(
        False, "on a sparse task, a visit whose context episodes meet no sparse reward keeps the task's previous "
        "context buffer if that held one (false: the paper's fresh context per visit): a goal that the current "
        "exploring policy misses keeps its code, so the policy keeps learning to reach it and its z stays among those "
        "the prior names, instead of the task dropping out of what posterior sampling can find",
    )
    num_train_steps_per_itr: int = _field(2000, "gradient steps per iteration", check="nonneg")
    max_minutes: float | None = _field(
        None, "wall-clock budget: training ends with the iteration whose collection and updates pass this many "
        "minutes of training time (iterations' wall clock, evaluation included, summed over resumed segments); "
        "that iteration evaluates as the last does. null = num_iterations alone ends training", check="positive",
    )
    replay_buffer_size: int = _field(1_000_000, "RL buffer capacity per task, in transitions", check="positive")
    lr_decay_start: int | None = _field(
        None, "iteration from which every learning rate falls linearly, reaching lr_decay_factor times its "
        "configured value at num_iterations (quiets the late swings of a small fast config); null = constant, "
        "the paper's", check="nonneg",
    )
    lr_decay_factor: float = _field(0.1, "learning-rate multiplier at num_iterations when lr_decay_start is set",
                                     check="prob")

    def lr_factor(self, iteration: int) -> float:
        """The learning-rate multiplier of iteration ``iteration`` (0-based): 1 up to ``lr_decay_start``,
        then linear to ``lr_decay_factor`` at ``num_iterations``."""
        if self.lr_decay_start is None or iteration <= self.lr_decay_start:
            return 1.0
        done = min(1.0, (iteration - self.lr_decay_start) / (self.num_iterations - self.lr_decay_start))
        return 1.0 - done * (1.0 - self.lr_decay_factor)


@dataclass
class EvalConfig:
    """Meta-test protocol: exploration with prior z, then adaptation with q(z|c)."""

    every: int = _field(1, "evaluate every this many iterations (and always after the last)", check="positive")
    num_episodes: int = _field(3, "episodes per task, exploration included", check="positive")
    num_exp_traj_eval: int = _field(1, "leading episodes with z from the prior (posterior sampling)", check="positive")
    num_runs: int = _field(
        1, "independent meta-tests per task (each from an empty context), averaged per episode index: the "
        "official code's num_evals", check="positive",
    )
    deterministic_episodes: str = _field(
        "all", "which meta-test episodes act with the policy's mean action: 'all' (the paper's protocol) or "
        "'last' (earlier episodes sample actions, as meta-training collects the contexts the encoder learns "
        "from; only the last, reported adapted episode is deterministic)", choices=("all", "last"),
    )
    n_test_tasks: int | None = _field(None, "test tasks evaluated (the first of env.n_test_tasks); null = all",
                                      check="positive")
    n_train_tasks_evaluated: int = _field(
        5, "training tasks evaluated too, drawn once from env.n_train_tasks (0 = none)", check="nonneg")
    posterior: str = _field(
        "encoder", "what the meta-test's posterior episodes draw z from: 'encoder', q(z|c) (the paper), or "
        "'decoder', the exact posterior of a 1-dimensional z under the reward decoder's likelihood and the prior, "
        "on a grid (pearl/decoder_posterior.py: it may have several modes and learns from transitions without "
        "reward; needs algo.reward_decoder_weight > 0 and encoder.latent_dim 1; training is unchanged)",
        choices=("encoder", "decoder"),
    )
    latent_every: int = _field(
        0, "log a latent summary (latent/probe_r2_test, active dims, contraction; see docs/latents.md) every this "
        "many iterations and after the last, from fresh rollouts on all train and test tasks; 0 = off",
        check="nonneg",
    )


@dataclass
class TrackingConfig:
    """Where results go: an MLflow tracking store, checkpoints as run artifacts."""

    tracking_uri: str | None = _field(
        None, "MLflow tracking URI; null = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working directory"
    )
    experiment_name: str = _field("pearl", "MLflow experiment name")
    run_name: str | None = _field(None, "MLflow run name; null = '<env>__<encoder>__<seed>__<time>'")
    checkpoint_every: int = _field(10, "checkpoint every this many iterations (and after the last)", check="positive")
    keep_checkpoints: int = _field(2, "how many recent checkpoints to keep on disk", check="positive")
    checkpoint_dir: str = _field("checkpoints", "local folder for checkpoints, one subfolder per run")
    progress: bool = _field(True, "show a progress bar")


@dataclass
class ExperimentConfig:
    """A whole experiment."""

    env: EnvConfig = field(default_factory=EnvConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = _field(0, "seeds every random number generator", check="nonneg")
    device: str = _field("cpu", "torch device: 'cpu', 'cuda', 'cuda:N' or 'auto'")
    num_threads: int = _field(
        0, "torch CPU threads; 0 = torch's default (one per core). 1 is often fastest for small networks "
        "and on a busy machine", check="nonneg",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------------
# Loading


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_describe(item)}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is Any:
        return "any value"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against type ``tp``; return it (ints widened to float where a float is due)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {key}: expected {_describe(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is Any:
        return value
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _from_dict(tp, value, where, prefix=key + ".")
    elif origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: {key}: expected {_describe(tp)}, got {value!r}")


_CHECKS = {
    "positive": (lambda v: v > 0, "a value > 0"),
    "nonneg": (lambda v: v >= 0, "a value >= 0"),
    "prob": (lambda v: 0.0 <= v <= 1.0, "a value in [0, 1]"),
}


RENAMED = {"eval.deterministic": "eval.deterministic_episodes", "eval.n_train_tasks": "eval.n_train_tasks_evaluated"}
"""Old dotted key -> its name now. A config file or ``--set`` with an old name is refused with a
message naming the new one; a checkpoint's saved config is upgraded (:func:`saved_config_dict`)."""


def saved_config_dict(config_yaml: str) -> dict[str, Any]:
    """A config saved in a checkpoint as a mapping, keys renamed since it was written upgraded and keys
    added since at their defaults (the run trained with the behaviour a new key's default keeps)."""
    data = yaml.safe_load(config_yaml)
    for old, new in RENAMED.items():
        (section, old_key), (_, new_key) = old.split("."), new.split(".")
        values = data.get(section, {})
        if old_key in values and new_key not in values:
            values[new_key] = values.pop(old_key)
    for key, default in ExperimentConfig().to_dict().items():
        if key not in data:
            data[key] = default
        elif isinstance(default, dict) and isinstance(data[key], dict):
            data[key] = {**default, **data[key]}
    return data


def _from_dict(cls: type, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if prefix + key in RENAMED:
            raise ConfigError(f"{where}: {prefix}{key}: renamed to {RENAMED[prefix + key]} (same values)")
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: {prefix}{key}: unknown key (known keys here: {known})")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        value = _convert(value, hints[name], key, where)
        meta = fields[name].metadata
        check, choices = meta.get("check"), meta.get("choices")
        if check and value is not None:
            ok, expected = _CHECKS[check]
            if not ok(value):
                raise ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "kwargs":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config file as a plain mapping, resolving ``base: other.yaml`` (relative to the file), or a
    list of bases merged in order, each later one over the earlier (an env's config, then a recipe)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: base: configs extend each other in a cycle ({chain})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    bases = [base] if isinstance(base, str) else base
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: base: expected a path to another config file, or a list of them, got {base!r}")
    merged: dict[str, Any] = {}
    for b in bases:
        merged = _deep_merge(merged, read_yaml(Path(b) if Path(b).is_absolute() else path.parent / b, (*_seen, resolved)))
    return _deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str = "--set") -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides; values are parsed as YAML (``1e-3``, ``[64, 64]``, ``null``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: {item!r}: expected KEY=VALUE, e.g. algo.kl_lambda=1.0")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}: {key}: value {raw!r} is not valid YAML: {err}") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: {'.'.join(parts[: depth + 1])}: is not a section")
            node = child
        node[parts[-1]] = value
    return data


def config_from_dict(data: dict[str, Any], where: str = "<config>", *, check_registries: bool = True) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a plain mapping."""
    cfg = _from_dict(ExperimentConfig, data, where)
    _validate(cfg, where, check_registries=check_registries)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None, *, check_registries: bool = True) -> ExperimentConfig:
    """Load a YAML config file strictly, apply ``--set`` overrides, validate everything.

    Raises:
        ConfigError: naming the file, the dotted key and what was expected.
    """
    data = read_yaml(path)
    data = apply_overrides(data, overrides or [], where=f"{path} (--set)")
    # a custom encoder named "module:Class" may live next to its config file
    folder = str(Path(path).resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    return config_from_dict(data, str(path), check_registries=check_registries)


def _validate(cfg: ExperimentConfig, where: str, *, check_registries: bool) -> None:
    """Cross-field checks and registry look-ups."""
    if cfg.eval.num_exp_traj_eval > cfg.eval.num_episodes:
        raise ConfigError(
            f"{where}: eval.num_exp_traj_eval: expected at most eval.num_episodes "
            f"({cfg.eval.num_episodes}), got {cfg.eval.num_exp_traj_eval}"
        )
    if cfg.eval.posterior == "decoder" and (cfg.algo.reward_decoder_weight == 0 or cfg.encoder.latent_dim != 1):
        raise ConfigError(
            f"{where}: eval.posterior: 'decoder' needs algo.reward_decoder_weight > 0 and encoder.latent_dim 1 (the "
            f"grid is over one dimension), got reward_decoder_weight {cfg.algo.reward_decoder_weight} and latent_dim "
            f"{cfg.encoder.latent_dim}"
        )
    _validate_schedule(cfg.train, where)
    _validate_algo(cfg.algo, where)
    device = cfg.device
    if not (device in ("cpu", "auto", "cuda", "mps") or device.startswith("cuda:")):
        raise ConfigError(f"{where}: device: expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}")
    if not check_registries:
        return
    import encoders
    import envs

    families = envs.registered_task_families()
    if cfg.env.name not in families:
        raise ConfigError(
            f"{where}: env.name: expected a registered task family ({', '.join(sorted(families))}), got {cfg.env.name!r}"
        )
    sparse = families[cfg.env.name].sparse_reward
    a = cfg.algo
    sparse_only = {"algo.reward_free_kl": (a.reward_free_kl, a.reward_free_kl > 0),
                   "algo.decode_contexts": (a.decode_contexts, a.decode_contexts != "all"),
                   "algo.rl_tasks": (a.rl_tasks, a.rl_tasks != "all"),
                   "algo.critic_reward": (a.critic_reward, a.critic_reward != "dense"),
                   "train.keep_rewarded_context": ("true", cfg.train.keep_rewarded_context)}
    for name, (value, used) in sparse_only.items():
        if used and not sparse:
            raise ConfigError(f"{where}: {name}: {value!r} needs a task family with a sparse reward; "
                              f"{cfg.env.name!r} has no sparse reward")
    if cfg.algo.sparse_rewards is not None and cfg.algo.sparse_rewards != sparse:
        kind = "a sparse reward, which the context sees" if sparse else "no sparse reward"
        raise ConfigError(
            f"{where}: algo.sparse_rewards: expected null or {str(sparse).lower()} (task family {cfg.env.name!r} has "
            f"{kind}; the family decides), got {str(cfg.algo.sparse_rewards).lower()}"
        )
    try:
        encoders.resolve_encoder_class(cfg.encoder.name)
    except encoders.EncoderError as err:
        raise ConfigError(f"{where}: encoder.name: {err}") from None


def _validate_algo(a: AlgoConfig, where: str) -> None:
    """Cross-field checks within ``algo``."""
    if any(s <= 0 for s in a.hidden_sizes) or not a.hidden_sizes:
        raise ConfigError(f"{where}: algo.hidden_sizes: expected a non-empty list of sizes > 0, got {a.hidden_sizes}")
    if not a.critic_trains_encoder and a.reward_decoder_weight == 0:
        raise ConfigError(f"{where}: algo.critic_trains_encoder: false needs algo.reward_decoder_weight > 0 (the "
                          "encoder would learn from the KL alone), got reward_decoder_weight 0")
    if a.rl_context == "uniform" and (a.critic_trains_encoder or a.context_window != "episodes"):
        raise ConfigError(f"{where}: algo.rl_context: 'uniform' needs algo.context_window: episodes (else both contexts "
                          "are the same kind of draw) and algo.critic_trains_encoder: false (else the critic would "
                          "train the encoder on a context that neither the KL nor the decoder sees), got context_window "
                          f"{a.context_window!r}, critic_trains_encoder {str(a.critic_trains_encoder).lower()}")
    if a.decode_contexts != "all" and a.reward_decoder_weight == 0:
        raise ConfigError(f"{where}: algo.decode_contexts: {a.decode_contexts!r} needs a reward decoder "
                          "(algo.reward_decoder_weight > 0), got reward_decoder_weight 0")
    if a.rl_tasks == "rewarded" and a.rl_context != "uniform":
        raise ConfigError(f"{where}: algo.rl_tasks: 'rewarded' needs algo.rl_context: uniform (else the policy's z comes "
                          f"from a window that may hold no reward), got rl_context {a.rl_context!r}")
    if a.critic_sparse_weight != 1.0 and a.critic_reward != "dense+sparse":
        raise ConfigError(f"{where}: algo.critic_sparse_weight: weighs the sparse reward of critic_reward "
                          f"'dense+sparse' only (critic_reward is {a.critic_reward!r}), got "
                          f"{a.critic_sparse_weight}")


def _validate_schedule(t: TrainConfig, where: str) -> None:
    """Refuses schedules that cannot run as written: collection that would leave a buffer empty when a
    gradient step samples it, a learning-rate decay that would start after the last iteration."""
    if t.num_tasks_sample > 0 and t.num_steps_prior + t.num_steps_posterior == 0:
        raise ConfigError(
            f"{where}: train.num_steps_prior: expected num_steps_prior + num_steps_posterior > 0 when "
            f"train.num_tasks_sample > 0 (a visit clears the task's context buffer and only these steps refill "
            f"it), got {t.num_steps_prior} and {t.num_steps_posterior}"
        )
    if t.lr_decay_start is not None and t.lr_decay_start >= t.num_iterations:
        raise ConfigError(
            f"{where}: train.lr_decay_start: expected an iteration before train.num_iterations ({t.num_iterations}), "
            f"got {t.lr_decay_start}"
        )
    if t.num_train_steps_per_itr > 0 and t.num_initial_steps == 0:
        raise ConfigError(
            f"{where}: train.num_initial_steps: expected > 0 when train.num_train_steps_per_itr > 0 (a gradient "
            "step may sample any training task, so each needs transitions before the first step), got 0"
        )


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys: ``{'algo': {'kl_lambda': .1}} -> {'algo.kl_lambda': .1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def field_help(cls: type = ExperimentConfig, prefix: str = "") -> dict[str, str]:
    """Dotted key -> help text for every field, for documentation and ``--help``."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(field_help(hint, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = f.metadata.get("help", "")
    return out
