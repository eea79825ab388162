"""Meta-training (PEARL's Algorithm 1), read top to bottom as its flow.

Per iteration:
  1. collect on ``num_tasks_sample`` training tasks drawn with replacement: per visit, clear the
     task's context buffer, then prior-z steps (both buffers), posterior-z steps (both buffers),
     extra posterior-z steps (RL buffer only);
  2. ``num_train_steps_per_itr`` gradient steps on meta-batches of tasks;
  3. meta-test on held-out tasks (and some training tasks), log to MLflow, checkpoint.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import encoders
import envs
from pearl.agent import PEARLAgent
from pearl.buffers import MultiTaskBuffer, context_dim, context_reward_index, make_context
from pearl.checkpoint import CheckpointError, incompatible_differences, latest_checkpoint, save_checkpoint
from pearl.collect import Rollouts, VectorCollector
from pearl.config import ConfigError, ExperimentConfig, saved_config_dict
from pearl.decoder_posterior import DecoderPosterior
from pearl.evaluation import MetaTestResult, meta_test
from pearl.sac import make_learner

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A loss, gradient or parameter became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was written at the last safe point."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an unavailable device is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available on this machine")
    return device


@dataclass(frozen=True)
class IterationHook:
    """Extra metrics of an iteration, every ``every`` iterations and after the last (e.g. the latent
    summary, :func:`pearl.latents.training_summary`). ``metrics`` runs after the evaluation and must
    leave the training as it found it (RNG states included)."""

    every: int
    metrics: Callable[[Trainer], dict[str, float]]


@dataclass
class IterationResult:
    """What one iteration produced (for callers and progress displays)."""

    iteration: int
    env_steps: int
    metrics: dict[str, float]
    test: MetaTestResult | None


class Trainer:
    """Builds every component from a config and runs meta-training.

    Args:
        cfg: the validated experiment config.
        checkpoint_dir: where this run's checkpoints go (None: no checkpoints).
        hooks: extra metrics per iteration. ``eval.latent_every`` is such a hook, added by
            :func:`pearl.runs.build_trainer`; a bare ``Trainer(cfg)`` logs no latent summary.
    """

    def __init__(self, cfg: ExperimentConfig, *, checkpoint_dir: str | Path | None = None,
                 hooks: Sequence[IterationHook] = ()) -> None:
        self.cfg = cfg
        self.hooks = list(hooks)
        self.device = resolve_device(cfg.device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.rng = np.random.default_rng(cfg.seed)

        self.tasks = envs.make_task_distribution(
            cfg.env.name, seed=cfg.seed, n_train_tasks=cfg.env.n_train_tasks,
            n_test_tasks=cfg.env.n_test_tasks, **cfg.env.kwargs,
        )
        self.max_path_length = cfg.env.max_path_length or self.tasks.max_episode_steps
        self.n_train = len(self.tasks.train_tasks)
        probe = self.tasks.make_env(self.tasks.train_tasks[0])
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        self.action_dim = int(np.prod(probe.action_space.shape))
        probe.close()
        self.sparse_rewards = self.tasks.sparse_reward  # the family decides (the config may only agree)

        ctx_dim = context_dim(self.obs_dim, self.action_dim, use_next_obs=cfg.encoder.use_next_obs)
        encoder = encoders.build_encoder(cfg.encoder.name, context_dim=ctx_dim, latent_dim=cfg.encoder.latent_dim,
                                         kwargs=cfg.encoder.kwargs)
        self.agent = PEARLAgent(encoder, obs_dim=self.obs_dim, action_dim=self.action_dim,
                                hidden_sizes=cfg.algo.hidden_sizes).to(self.device)
        self.learner = make_learner(self.agent, obs_dim=self.obs_dim, action_dim=self.action_dim,
                                    cfg=cfg.algo).to(self.device)

        buffer_shape = dict(n_tasks=self.n_train, obs_dim=self.obs_dim, action_dim=self.action_dim)
        self.rl_buffer = MultiTaskBuffer(capacity=cfg.train.replay_buffer_size, **buffer_shape)
        steps_per_itr = max(cfg.train.num_initial_steps, cfg.train.num_steps_prior + cfg.train.num_steps_posterior)
        self.enc_buffer = MultiTaskBuffer(capacity=max(steps_per_itr, 1), **buffer_shape)

        self.test_tasks = self.tasks.test_tasks[: cfg.eval.n_test_tasks]
        n_eval_train = min(cfg.eval.n_train_tasks_evaluated, self.n_train)
        self.eval_train_ids = np.sort(self.rng.choice(self.n_train, n_eval_train, replace=False))
        runs = cfg.eval.num_runs  # one slot per meta-test run, so that the runs go side by side
        n_slots = max(min(cfg.train.num_tasks_sample, self.n_train), len(self.test_tasks) * runs, n_eval_train * runs, 1)
        self.collector = VectorCollector(self.tasks.make_env, n_slots=n_slots, max_path_length=self.max_path_length,
                                         seed=cfg.seed, device=self.device)
        self.iteration = 0  # iterations completed
        self.env_steps = 0  # environment steps of training collection
        self.wall_time = 0.0  # seconds spent in completed iterations
        self.run_id: str | None = None  # the MLflow run this training belongs to
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------------------------------
    # 1. collection

    def collect_initial(self) -> None:
        """``num_initial_steps`` prior-z steps on every training task, to both buffers."""
        n = self.cfg.train.num_initial_steps
        slots = len(self.collector.envs)
        for start in range(0, self.n_train, slots):
            ids = np.arange(start, min(start + slots, self.n_train))
            self._collect(ids, n, posterior=False, to_context=True)

    def collect_iteration(self) -> np.ndarray:
        """Algorithm 1's data collection on ``num_tasks_sample`` training tasks drawn with replacement.

        Visits of distinct tasks run side by side; a task drawn ``n`` times is visited ``n`` times
        in turn, each visit clearing its context buffer first, as sequential visits would.

        Returns:
            ``[num_tasks_sample]`` the task ids drawn, in drawing order.
        """
        t = self.cfg.train
        ids = self.rng.integers(0, self.n_train, t.num_tasks_sample)
        for visit in visit_rounds(ids):
            kept = self._rewarded_contexts(visit) if t.keep_rewarded_context else {}
            for i in visit:
                self.enc_buffer.clear(int(i))
            self._collect(visit, t.num_steps_prior, posterior=False, to_context=True)
            self._collect(visit, t.num_steps_posterior, posterior=True, to_context=True)
            if kept:  # a visit that met no sparse reward keeps the task's previous context, which held one
                held = self.enc_buffer.holds_nonzero("sparse_rewards")
                for i, snapshot in kept.items():
                    if not held[i]:
                        self.enc_buffer.restore_task(i, snapshot)
            self._collect(visit, t.num_extra_rl_steps_posterior, posterior=True, to_context=False)
        return ids

    def _rewarded_contexts(self, task_ids: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
        """Snapshots of the context buffers among ``task_ids`` that hold a sparse reward."""
        held = self.enc_buffer.holds_nonzero("sparse_rewards")
        return {int(i): self.enc_buffer.task_snapshot(int(i)) for i in task_ids if held[i]}

    def _collect(self, task_ids: np.ndarray, n_steps: int, *, posterior: bool, to_context: bool) -> None:
        """Roll out ``n_steps`` per task. Posterior z is re-inferred from the task's context buffer
        after every episode-length chunk (PEARL's ``update_post_train`` of one trajectory); with
        ``train.posterior_phase_start: prior`` the phase's first chunk draws z from the prior."""
        if n_steps <= 0 or len(task_ids) == 0:
            return
        chunk = self.max_path_length if posterior else n_steps
        prior_first = posterior and self.cfg.train.posterior_phase_start == "prior"
        done = 0
        while done < n_steps:
            steps = min(chunk, n_steps - done)
            from_prior = not posterior or (prior_first and done == 0)
            z_dist = self.agent.prior(len(task_ids)) if from_prior else self._posterior_from_buffer(task_ids)
            # a fresh z ~ z_dist for every episode start
            sample = z_dist.sample
            if from_prior and self.cfg.train.explore_prior_scale != 1.0:
                sample = functools.partial(_scaled_sample, z_dist, self.cfg.train.explore_prior_scale)
            rollouts = self.collector.rollout(self.agent, self.tasks.train_tasks[task_ids], steps, sample)
            self._store(task_ids, rollouts, to_context=to_context)
            done += steps

    @torch.no_grad()
    def _posterior_from_buffer(self, task_ids: np.ndarray) -> torch.distributions.Distribution:
        """q(z|c) from ``embedding_batch_size`` context transitions per task; the prior for tasks
        with an empty context buffer."""
        has_context = self.enc_buffer.sizes[task_ids] > 0
        if not has_context.any():
            return self.agent.prior(len(task_ids))
        if has_context.all():
            return self.agent.posterior(self._context(task_ids))
        prior, post = self.agent.prior(len(task_ids)), self.agent.posterior(self._context(task_ids[has_context]))
        return _Mixed(prior, post, torch.as_tensor(has_context, device=self.device))

    def _context(self, task_ids: np.ndarray, window: str | None = None) -> torch.Tensor:
        """``[T, N, context dim]`` a training context per task: N = embedding_batch_size transitions, or with
        ``context_window`` (or ``window``) ``episodes`` k episode lengths (at least one) of consecutive transitions."""
        n, sequential = self.cfg.algo.embedding_batch_size, self.agent.encoder.recurrent
        if (window or self.cfg.algo.context_window) == "episodes":
            k = int(self.rng.integers(1, max(n // self.max_path_length, 1) + 1))
            n, sequential = k * self.max_path_length, True
        batch = self.enc_buffer.sample(task_ids, n, self.rng, sequential=sequential, device=self.device)
        return make_context(batch, use_next_obs=self.cfg.encoder.use_next_obs, sparse_rewards=self.sparse_rewards)

    def _store(self, task_ids: np.ndarray, rollouts: Rollouts, *, to_context: bool) -> None:
        for k, task_id in enumerate(task_ids):
            self.rl_buffer.add(int(task_id), **rollouts.task(k))
            if to_context:
                self.enc_buffer.add(int(task_id), **rollouts.task(k))
        self.env_steps += rollouts.rewards.shape[0] * rollouts.rewards.shape[1]

    # ------------------------------------------------------------------------------------------
    # 2. gradient steps

    def train_steps(self, n_steps: int) -> dict[str, float]:
        """``n_steps`` gradient steps; returns the mean of every loss term."""
        a = self.cfg.algo
        totals: dict[str, torch.Tensor] = {}
        pool = np.arange(self.n_train)
        if a.rl_tasks == "rewarded":  # the context buffers change only in collection
            rewarded = np.flatnonzero(self.enc_buffer.holds_nonzero("sparse_rewards"))
            pool = rewarded if len(rewarded) else pool
        for step in range(n_steps):
            task_ids = pool[self.rng.integers(0, len(pool), a.meta_batch)]
            batch = self.rl_buffer.sample(task_ids, a.batch_size, self.rng, device=self.device)
            if a.critic_reward == "sparse":
                batch = batch._replace(rewards=batch.sparse_rewards)
            elif a.critic_reward == "dense+sparse":
                batch = batch._replace(rewards=batch.rewards + a.critic_sparse_weight * batch.sparse_rewards)
            context = self._context(task_ids)
            extra = {"rl_context": self._context(task_ids, window="uniform")} if a.rl_context == "uniform" else {}
            try:
                out = self.learner.update(batch, context, **extra)
            except (ValueError, RuntimeError):
                # NaN weights make distributions refuse their parameters mid-iteration: report the
                # divergence (and the losses that went non-finite so far), not the symptom
                partial = {k: float(v) / max(step, 1) for k, v in totals.items()}
                self._check_finite(partial, where=f", gradient step {step + 1} of {n_steps}")
                raise
            for key, value in out.items():
                totals[key] = totals[key] + value if key in totals else value
        return {k: float(v) / max(n_steps, 1) for k, v in totals.items()}

    # ------------------------------------------------------------------------------------------
    # 3. evaluation

    def evaluate(self, tasks: np.ndarray, *, num_episodes: int | None = None) -> MetaTestResult:
        e = self.cfg.eval
        return meta_test(
            self.agent, self.collector, tasks, num_episodes=num_episodes or e.num_episodes,
            num_exp_traj_eval=e.num_exp_traj_eval, use_next_obs=self.cfg.encoder.use_next_obs,
            sparse_rewards=self.sparse_rewards, has_success=self.tasks.has_success,
            deterministic=e.deterministic_episodes, num_runs=e.num_runs, posterior=self.acting_posterior(),
        )

    def acting_posterior(self) -> Callable[[torch.Tensor], torch.distributions.Distribution]:
        """What the meta-test's posterior episodes draw z from (``eval.posterior``): q(z|c), or a fresh
        :class:`DecoderPosterior` (one per meta-test: it keeps a running sum over the growing contexts)."""
        if self.cfg.eval.posterior == "encoder":
            return self.agent.posterior
        return DecoderPosterior(self.learner.reward_decoder, weight=self.cfg.algo.reward_decoder_weight,
                                reward_col=context_reward_index(self.obs_dim, self.action_dim))

    # ------------------------------------------------------------------------------------------
    # the loop

    def run_iteration(self) -> IterationResult:
        """Collect, update, evaluate once; returns the iteration's metrics."""
        cfg, t0 = self.cfg, time.perf_counter()
        if self.iteration == 0 and self.env_steps == 0:
            self.collect_initial()
        self.collect_iteration()
        t1 = time.perf_counter()
        lr_scale = cfg.train.lr_factor(self.iteration)
        self.learner.scale_lr(lr_scale)
        losses = self.train_steps(cfg.train.num_train_steps_per_itr)
        t2 = time.perf_counter()
        self._check_finite(losses)
        metrics = {f"train/{k}": v for k, v in losses.items()}
        metrics["latent/posterior_std"] = metrics.pop("train/posterior_std", float("nan"))
        if cfg.train.lr_decay_start is not None:
            metrics["train/lr_factor"] = lr_scale
        test = None
        last = self.iteration + 1 == cfg.train.num_iterations or self._over_budget(self.wall_time + t2 - t0)
        if (self.iteration + 1) % cfg.eval.every == 0 or last:
            test = self.evaluate(self.test_tasks)
            metrics.update(test.metrics("eval/test"))
            if len(self.eval_train_ids):
                metrics.update(self.evaluate(self.tasks.train_tasks[self.eval_train_ids]).metrics("eval/train"))
        for hook in self.hooks:
            if (self.iteration + 1) % hook.every == 0 or last:
                metrics.update(hook.metrics(self))
        t3 = time.perf_counter()
        self.iteration += 1
        self.wall_time += t3 - t0
        metrics.update({
            "time/collect_s": t1 - t0, "time/update_s": t2 - t1, "time/eval_s": t3 - t2,
            "time/iteration_s": t3 - t0, "time/total_s": self.wall_time,
            "time/grad_steps_per_s": cfg.train.num_train_steps_per_itr / max(t2 - t1, 1e-9),
            "progress/iteration": self.iteration, "progress/env_steps": self.env_steps,
        })
        return IterationResult(self.iteration, self.env_steps, metrics, test)

    def _over_budget(self, seconds: float) -> bool:
        budget = self.cfg.train.max_minutes
        return budget is not None and seconds >= 60.0 * budget

    @property
    def done(self) -> bool:
        """``num_iterations`` reached, or the wall-clock budget ``train.max_minutes`` spent."""
        return self.iteration >= self.cfg.train.num_iterations or self._over_budget(self.wall_time)

    def _check_finite(self, losses: dict[str, float], *, where: str = "") -> None:
        """Stop before a non-finite iteration is logged or checkpointed: the last good checkpoint stays
        the latest. Losses are iteration means, so one NaN step anywhere in the iteration shows."""
        itr = f"iteration {self.iteration + 1}{where}"
        bad = sorted((not k.startswith("loss_"), k) for k, v in losses.items() if not math.isfinite(v))
        if bad:
            named = ", ".join(f"train/{k} = {losses[k]}" for _, k in bad)
            raise TrainingDiverged(f"non-finite loss at {itr}: {named}")
        # a NaN/Inf gradient shows up here: the optimiser step has written it into the parameters
        for name, p in self.learner.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"parameter {name} became non-finite at {itr} (a NaN or Inf gradient reached it)")

    def train(self, on_iteration: Callable[[IterationResult], None] | None = None) -> None:
        """Run to ``num_iterations`` or the ``max_minutes`` budget, checkpointing on schedule; SIGINT/SIGTERM
        stop at the next safe point (in the main thread: a Ray Tune trial trains in another, where Python
        cannot take signals)."""
        cfg = self.cfg
        main_thread = threading.current_thread() is threading.main_thread()
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
        self._stop_signal = None

        def request_stop(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop_signal is not None:  # a second signal acts at once; a write in flight is
                raise KeyboardInterrupt(name)  # abandoned and the previous checkpoint stays intact
            self._stop_signal = signum
            log.warning("%s received: stopping after this iteration and writing a checkpoint "
                        "(send it again to stop at once)", name)

        for s in handlers:
            signal.signal(s, request_stop)
        try:
            while not self.done:
                result = self.run_iteration()
                if on_iteration is not None:
                    on_iteration(result)
                last = self.done
                if self._stop_signal is not None or last or self.iteration % cfg.tracking.checkpoint_every == 0:
                    self.save()
                if self._stop_signal is not None and not last:  # on the last iteration: just finish
                    name = signal.Signals(self._stop_signal).name
                    raise TrainingInterrupted(
                        f"{name} received: stopped after iteration {self.iteration}, checkpoint written"
                        + (f" to {self.checkpoint_dir}" if self.checkpoint_dir else "")
                    )
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------------------------------
    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimisers, buffers, RNGs, counters."""
        return {
            "config_yaml": self.cfg.to_yaml(),
            "run_id": self.run_id or "",
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_time": self.wall_time,
            "learner": self.learner.state_dict(),
            "optimizers": self.learner.optimizer_state_dict(),
            "rl_buffer": _to_tensors(self.rl_buffer.state_dict()),
            "enc_buffer": _to_tensors(self.enc_buffer.state_dict()),
            "eval_train_ids": torch.as_tensor(self.eval_train_ids),
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "python": random.getstate(),
                "torch": torch.get_rng_state(),
                "torch_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "envs": [env.unwrapped.np_random.bit_generator.state for env in self.collector.envs],
                "action_spaces": [env.action_space.np_random.bit_generator.state for env in self.collector.envs],
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; it must come from a config that differs from ours at most in
        :data:`pearl.checkpoint.RESUME_MAY_CHANGE` (schedule end, evaluation, tracking, device).

        Raises:
            CheckpointError: naming each config key that differs, or what does not fit.
        """
        where = state.get("_path", "checkpoint")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{where}: not a training checkpoint (it lacks {', '.join(missing)}; "
                                  f"written by pearl {state.get('pearl_version', '?')})")
        diffs = incompatible_differences(saved_config_dict(state["config_yaml"]), self.cfg.to_dict())
        if diffs:
            raise CheckpointError(f"{where}: written with a different config; these keys cannot change when "
                                  "resuming:\n  " + "\n  ".join(diffs))
        try:
            self.learner.load_state_dict(state["learner"])
            self.learner.load_optimizer_state_dict(state["optimizers"])
            self.rl_buffer.load_state_dict(_to_arrays(state["rl_buffer"]))
            self.enc_buffer.load_state_dict(_to_arrays(state["enc_buffer"]))
            rng = state["rng"]
            if len(rng["envs"]) != len(rng["action_spaces"]):
                raise ValueError(f"{len(rng['envs'])} env RNG states for {len(rng['action_spaces'])} action spaces")
            self.rng.bit_generator.state = rng["numpy"]
            random.setstate(_as_tuple(rng["python"]))
            torch.set_rng_state(rng["torch"])
            if rng.get("torch_cuda") and self.device.type == "cuda":
                torch.cuda.set_rng_state_all(rng["torch_cuda"])
            # The slot count follows eval.n_test_tasks, which a resume may change: slots that exist in
            # both continue their streams, a new slot starts from its seed.
            for env, env_state, space_state in zip(self.collector.envs, rng["envs"], rng["action_spaces"]):
                env.unwrapped.np_random.bit_generator.state = env_state
                env.action_space.np_random.bit_generator.state = space_state
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{where}: does not fit the model built from its config "
                                  f"(written by pearl {state.get('pearl_version', '?')}): {err}") from None
        self.eval_train_ids = state["eval_train_ids"].numpy()
        self.iteration, self.env_steps = int(state["iteration"]), int(state["env_steps"])
        self.wall_time = float(state["wall_time"])

    def save(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        return save_checkpoint(self.state_dict(), self.checkpoint_dir, self.iteration,
                               keep=self.cfg.tracking.keep_checkpoints)

    def restore_latest(self) -> bool:
        """Load the newest good checkpoint of ``checkpoint_dir``; False if there is none."""
        if self.checkpoint_dir is None:
            return False
        state = latest_checkpoint(self.checkpoint_dir)
        if state is None:
            return False
        self.load_state_dict(state)
        return True


_STATE_KEYS = ("config_yaml", "iteration", "env_steps", "wall_time", "learner", "optimizers", "rl_buffer",
               "enc_buffer", "eval_train_ids", "rng")


class _Mixed(torch.distributions.Distribution):
    """Prior for tasks without context, posterior for the others (sampling only)."""

    def __init__(self, prior: Any, posterior: Any, mask: torch.Tensor) -> None:
        self.prior, self.posterior, self.mask = prior, posterior, mask
        super().__init__(prior.batch_shape, prior.event_shape, validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        z = self.prior.sample(sample_shape)
        z[..., self.mask, :] = self.posterior.sample(sample_shape)
        return z


def _scaled_sample(z_dist: torch.distributions.Distribution, scale: float) -> torch.Tensor:
    """``[T, L]`` one draw of ``z_dist`` scaled about 0 (``train.explore_prior_scale``)."""
    return z_dist.sample() * scale


def visit_rounds(task_ids: np.ndarray) -> list[np.ndarray]:
    """Splits task visits into rounds of distinct tasks: round ``r`` holds, sorted, every task drawn
    more than ``r`` times, so each task's visits keep their order.

    Examples:
        >>> [r.tolist() for r in visit_rounds(np.array([3, 1, 3, 0, 3]))]
        [[0, 1, 3], [3], [3]]
    """
    tasks, counts = np.unique(np.asarray(task_ids, dtype=np.int64), return_counts=True)
    return [tasks[counts > r] for r in range(int(counts.max(initial=0)))]


def _to_tensors(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _to_arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in state.items()}


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
