"""The ``pearl`` command line: train, resume, evaluate, embed, list, check-encoder.

Exit codes: 0 success; 1 training failed (diverged, crashed); 2 bad input (config, encoder, env,
checkpoint, run id); 130 stopped by a signal after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _bad_input_types() -> tuple[type[BaseException], ...]:
    import encoders
    import envs
    from pearl.checkpoint import CheckpointError
    from pearl.config import ConfigError
    from pearl.tracking import TrackingError

    return (UsageError, ConfigError, encoders.EncoderError, envs.EnvError, CheckpointError, TrackingError)


# ----------------------------------------------------------------------------------------------
# train / resume


def cmd_train(args: argparse.Namespace) -> int:
    from pearl.config import load_config

    cfg = load_config(args.config, args.set)
    if args.no_progress:
        cfg.tracking.progress = False
    return _run_training(cfg, run_id=None, source=str(args.config))


def cmd_resume(args: argparse.Namespace) -> int:
    import yaml

    import pearl
    from pearl.checkpoint import (CheckpointError, FolderLock, incompatible_differences, iteration_of,
                                  latest_checkpoint, list_checkpoints, load_checkpoint, set_aside)
    from pearl.config import ConfigError, apply_overrides, config_from_dict
    from pearl.tracking import find_run, resolve_tracking_uri

    folder, run_id = _locate_checkpoints(args.run, args.tracking_uri)
    # One writer per folder: a run that is still training is refused before anything is touched.
    with FolderLock(folder):
        skipped: list[tuple[Path, str]] = []
        if Path(args.run).is_file():
            state = load_checkpoint(args.run)
            state["_path"] = str(args.run)
            chosen = iteration_of(args.run)
            newer = [p.name for p in list_checkpoints(folder) if chosen is not None and iteration_of(p) > chosen]
            if newer:
                raise UsageError(f"{folder} holds newer checkpoints ({', '.join(newer)}) that resuming from "
                                 f"{Path(args.run).name} would overwrite; resume from the folder instead, or move them")
        else:
            state = latest_checkpoint(folder, skipped=skipped)
        if state is None:
            raise UsageError(f"{folder}: no checkpoint to resume from")
        path = state["_path"]
        if run_id and state.get("run_id") and state["run_id"] != run_id:
            raise UsageError(f"{folder} holds checkpoints of run {state['run_id']}, not of run {run_id}")
        try:
            data = apply_overrides(yaml.safe_load(state["config_yaml"]), args.set, where="--set")
            cfg = config_from_dict(data, f"{path} (saved config)")
        except ConfigError as err:
            written_by = state.get("pearl_version", "?")
            note = "" if written_by == pearl.__version__ else f" (written by pearl {written_by}, this is {pearl.__version__})"
            raise ConfigError(f"{err}{note}") from None
        diffs = incompatible_differences(yaml.safe_load(state["config_yaml"]), cfg.to_dict())
        if diffs:
            raise CheckpointError(f"{path}: --set changes keys that a resumed run cannot take:\n  " + "\n  ".join(diffs))
        if args.tracking_uri:
            cfg.tracking.tracking_uri = args.tracking_uri
        if args.no_progress:
            cfg.tracking.progress = False
        if int(state["iteration"]) >= cfg.train.num_iterations:
            print(f"{path}: the run is complete (iteration {state['iteration']} of {cfg.train.num_iterations}); "
                  "nothing to resume. To train longer: pearl resume RUN --set train.num_iterations=N", file=sys.stderr)
            return EXIT_OK
        run_id = run_id or state.get("run_id") or None
        uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
        if run_id and find_run(uri, run_id) is None:  # checked before anything in the folder moves
            raise UsageError(f"run {run_id} (of checkpoint {path}) is not in the tracking store {uri}; "
                             "pass the store that holds it with --tracking-uri")
        for broken, why in skipped:  # kept for inspection, out of the way of new checkpoints and pruning
            print(f"warning: skipping a broken checkpoint, moved to {set_aside(broken).name}: {why}", file=sys.stderr)
        return _run_training(cfg, run_id=run_id, source=path, state=state, checkpoint_dir=folder)


def _run_training(cfg: Any, *, run_id: str | None, source: str, state: dict | None = None,
                  checkpoint_dir: Path | None = None) -> int:
    """Train (or continue) one run; ``checkpoint_dir`` given means the caller holds its folder lock."""
    from contextlib import ExitStack

    from pearl.checkpoint import CheckpointWriteError, FolderLock, list_checkpoints
    from pearl.tracking import Tracker, TrackingError, find_run, resolve_tracking_uri
    from pearl.trainer import Trainer, TrainingDiverged, TrainingInterrupted

    # Build everything first: a bad env/encoder/checkpoint is reported before any MLflow run changes.
    trainer = Trainer(cfg)
    if state is not None:
        trainer.load_state_dict(state)
    if run_id is None:
        run_name = cfg.tracking.run_name or f"{cfg.env.name}__{cfg.encoder.name.split(':')[-1]}__{cfg.seed}__{int(time.time())}"
        tracker = Tracker.start(cfg, run_name=run_name)
    else:
        uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
        if find_run(uri, run_id) is None:
            raise UsageError(f"run {run_id} (of checkpoint {source}) is not in the tracking store {uri}; "
                             "pass the store that holds it with --tracking-uri")
        tracker = Tracker(uri, run_id=run_id)
        tracker.client.update_run(run_id, status="RUNNING")
    trainer.run_id = tracker.run_id
    trainer.checkpoint_dir = checkpoint_dir or Path(cfg.tracking.checkpoint_dir).resolve() / tracker.run_id
    tracker.set_tag("pearl.checkpoint_dir", str(trainer.checkpoint_dir))
    print(f"run {tracker.run_id} ({'resumed from ' + source if state else source})", file=sys.stderr)
    print(f"  tracking: {tracker.tracking_uri}   checkpoints: {trainer.checkpoint_dir}", file=sys.stderr)

    history: dict[str, list[float]] = {"steps": [], "adapted": [], "prior": []}
    bar = _progress(cfg, trainer.iteration)

    def on_iteration(result: Any) -> None:
        tracker.log_metrics(result.metrics, step=result.env_steps)
        tracker.flush()
        m = result.metrics
        if result.test is not None:
            history["steps"].append(result.env_steps)
            history["adapted"].append(result.test.return_adapted)
            history["prior"].append(result.test.return_prior)
        if bar is not None:
            postfix = {"steps": result.env_steps, "s/it": f"{m['time/iteration_s']:.1f}"}
            if "eval/test/return_adapted" in m:
                bar.last_return = f"{m['eval/test/return_adapted']:.2f}"
            postfix["test_return"] = getattr(bar, "last_return", "-")
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)

    def last_good() -> str:
        found = list_checkpoints(trainer.checkpoint_dir)
        return f"{found[-1]}" if found else f"none yet in {trainer.checkpoint_dir}"

    resume_hint = f"pearl resume {tracker.run_id}"
    status, code = "FAILED", EXIT_FAILED
    try:
        with ExitStack() as stack:
            if checkpoint_dir is None:
                stack.enter_context(FolderLock(trainer.checkpoint_dir))
            trainer.train(on_iteration)
        status, code = "FINISHED", EXIT_OK
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}. Run marked FAILED; the last good checkpoint: {last_good()}",
              file=sys.stderr)
    except CheckpointWriteError as err:
        print(f"error: {err}. Run marked FAILED; free space, then continue with: {resume_hint}", file=sys.stderr)
    except TrackingError as err:
        print(f"error: {err}. Training stopped after iteration {trainer.iteration}; the last checkpoint: "
              f"{last_good()}. Once the store works, continue with: pearl resume {trainer.checkpoint_dir}",
              file=sys.stderr)
    except TrainingInterrupted as err:
        status, code = "KILLED", EXIT_INTERRUPTED
        print(f"stopped: {err}. Continue with: {resume_hint}", file=sys.stderr)
    except KeyboardInterrupt:
        status, code = "KILLED", EXIT_INTERRUPTED
        print(f"stopped at once by a second signal; the last checkpoint: {last_good()}. Continue with: {resume_hint}",
              file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()
        try:
            if status == "FINISHED":
                _log_final_outputs(trainer, tracker, history)
        finally:
            try:
                tracker.end(status)
            except TrackingError as err:  # already failing, or the final outputs are on disk anyway
                print(f"warning: {err}", file=sys.stderr)
    if code != EXIT_OK:
        return code
    print(f"\ndone: run {tracker.run_id}, final test return (adapted) "
          f"{history['adapted'][-1] if history['adapted'] else float('nan'):.3f}")
    print(f"  view it:  mlflow ui --backend-store-uri {tracker.tracking_uri}   (then open http://127.0.0.1:5000)")
    return EXIT_OK


def _progress(cfg: Any, start: int) -> Any:
    if not cfg.tracking.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.train.num_iterations, initial=start, desc="meta-train", unit="it", file=sys.stderr,
                dynamic_ncols=True)


def evaluation_history(tracker: Any) -> dict[str, list[float]] | None:
    """The run's test returns at every evaluation, read back from the tracking store
    (:meth:`Tracker.metric_history`: an iteration redone on resume counts once). None when the
    store cannot be read or holds none.

    Returns:
        ``{"steps": [...], "adapted": [...], "prior": [...]}``, in env-step order.
    """
    from pearl.tracking import TrackingError

    try:
        latest = {name: dict(tracker.metric_history(f"eval/test/return_{name}")) for name in ("adapted", "prior")}
    except TrackingError:  # the caller keeps its in-memory history
        return None
    steps = sorted(set(latest["adapted"]) & set(latest["prior"]))
    if not steps:
        return None
    return {"steps": steps, "adapted": [latest["adapted"][s] for s in steps],
            "prior": [latest["prior"][s] for s in steps]}


def _log_final_outputs(trainer: Any, tracker: Any, history: dict[str, list[float]]) -> None:
    """Plots, the final adaptation curve, and the model weights (no buffers) as artifacts."""
    import matplotlib.pyplot as plt
    import tempfile
    import torch

    from pearl import plots

    title = f"{trainer.cfg.env.name} / {trainer.cfg.encoder.name} (run {tracker.run_id[:8]})"
    history = evaluation_history(tracker) or history  # a resumed run: its iterations before the resume too
    if history["steps"]:
        fig = plots.learning_curve(history["steps"], history["adapted"], history["prior"], title=title)
        tracker.log_figure(fig, "plots/learning_curve.png")
        plt.close(fig)
    result = trainer.evaluate(trainer.test_tasks)
    fig = plots.adaptation_curve(result.returns, result.num_exp_traj_eval, title=title)
    tracker.log_figure(fig, "plots/adaptation_curve.png")
    plt.close(fig)
    tracker.log_text(result.table(), "eval/adaptation_curve.txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save({"config_yaml": trainer.cfg.to_yaml(), "learner": trainer.learner.state_dict()}, path)
        tracker.log_artifact(path, "model")


def _locate_checkpoints(run: str, tracking_uri: str | None) -> tuple[Path, str | None]:
    """RUN is a checkpoint file, a checkpoint folder, or an MLflow run id → (folder, run id)."""
    path = Path(run)
    if path.is_file():
        return path.parent, None
    if path.is_dir():
        return path, None
    if "/" in run or "\\" in run or run.endswith(".pt"):
        raise UsageError(f"{run}: no such checkpoint file or folder")
    from pearl.tracking import find_run, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    found = find_run(uri, run)
    if found is None:
        raise UsageError(f"{run!r} is neither a checkpoint path nor a run id in the tracking store {uri}")
    folder = found.data.tags.get("pearl.checkpoint_dir")
    if not folder:
        raise UsageError(f"run {run} has no checkpoints recorded (tag pearl.checkpoint_dir is missing)")
    if not Path(folder).is_dir():
        raise UsageError(f"run {run}: its checkpoint folder {folder} does not exist on this machine "
                         "(checkpoints stay where the run trained; copy the folder and pass its path)")
    return Path(folder), run


# ----------------------------------------------------------------------------------------------
# evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    import yaml

    from pearl.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
    from pearl.config import config_from_dict
    from pearl.tracking import Tracker, find_run, resolve_tracking_uri
    from pearl.trainer import Trainer

    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes: expected at least 1, got {args.episodes}")
    if args.runs is not None and args.runs < 1:
        raise UsageError(f"--runs: expected at least 1, got {args.runs}")
    folder, run_id = _locate_checkpoints(args.run, args.tracking_uri)
    state = load_checkpoint(args.run) if Path(args.run).is_file() else latest_checkpoint(folder)
    if state is None:
        raise UsageError(f"{folder}: no checkpoint to evaluate")
    path = state.get("_path", args.run)
    if "config_yaml" not in state or "learner" not in state:
        raise CheckpointError(f"{path}: holds no agent to evaluate")
    cfg = config_from_dict(yaml.safe_load(state["config_yaml"]), f"{path} (saved config)")
    episodes = args.episodes or cfg.eval.num_episodes
    cfg.eval.deterministic = args.deterministic or cfg.eval.deterministic
    cfg.eval.num_runs = args.runs or cfg.eval.num_runs
    if episodes < cfg.eval.num_exp_traj_eval:
        raise UsageError(f"--episodes must be at least eval.num_exp_traj_eval ({cfg.eval.num_exp_traj_eval})")
    trainer = Trainer(cfg)
    try:
        trainer.learner.load_state_dict(state["learner"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: does not fit the model built from its config: {err}") from None
    tasks = trainer.test_tasks if args.tasks == "test" else trainer.tasks.train_tasks
    if len(tasks) == 0:
        raise UsageError(f"no {args.tasks} tasks to evaluate on")
    result = trainer.evaluate(tasks, num_episodes=episodes)
    sampled = cfg.eval.deterministic == "last"
    print(f"checkpoint {path} (iteration {state['iteration']}), {len(tasks)} {args.tasks} tasks x "
          f"{cfg.eval.num_runs} run(s), "
          + ("sampled actions before the last episode" if sampled else "mean actions in every episode"))
    print(result.table())
    print(f"return with z from the prior: {result.return_prior:.3f}")
    print(f"adapted return:               {result.return_adapted:.3f}")
    run_id = run_id or state.get("run_id") or None
    if run_id:
        uri = resolve_tracking_uri(args.tracking_uri or cfg.tracking.tracking_uri)
        if find_run(uri, run_id) is None:
            print(f"warning: run {run_id} is not in the tracking store {uri}; the evaluation was not logged "
                  "(pass --tracking-uri)", file=sys.stderr)
            return EXIT_OK
        tracker = Tracker(uri, run_id=run_id)
        prefix = f"evaluate/{args.tasks}" + ("_sampled" if sampled else "")
        tracker.log_metrics(result.metrics(prefix), step=int(state["env_steps"]))
        tracker.flush()
        tracker.log_text(result.table(), f"{prefix}_adaptation_curve_{int(time.time())}.txt")
        print(f"logged to run {run_id} as {prefix}/*")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# list, check-encoder, embed


def cmd_list(args: argparse.Namespace) -> int:
    import encoders
    import envs

    print("task families (env.name):")
    for name, cls in sorted(envs.registered_task_families().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"  {name:<22} {doc[0] if doc else ''}")
    print("encoders (encoder.name):")
    for name, cls in sorted(encoders.registered_encoders().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"  {name:<22} {doc[0] if doc else ''}")
    return EXIT_OK


def cmd_check_encoder(args: argparse.Namespace) -> int:
    import encoders

    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as err:
        raise UsageError(f"--kwargs: not valid JSON: {err}") from None
    if not isinstance(kwargs, dict):
        raise UsageError("--kwargs: expected a JSON object, e.g. '{\"hidden_sizes\": [64, 64]}'")
    return encoders.check_encoder_cli(args.encoder, context_dim=args.context_dim, latent_dim=args.latent_dim,
                                      kwargs=kwargs, device=args.device)


def cmd_embed(args: argparse.Namespace) -> int:
    from pearl import latents
    from pearl.checkpoint import latest_checkpoint, load_checkpoint
    from pearl.latents.plots import check_projection
    from pearl.tracking import Tracker, resolve_tracking_uri

    try:
        check_projection(args.projection)  # before any work
    except latents.LatentError as err:
        raise UsageError(str(err)) from None
    splits = ("train", "test") if args.tasks == "all" else (args.tasks,)
    folder, run_id = _locate_checkpoints(args.run, args.tracking_uri)
    state = load_checkpoint(args.run) if Path(args.run).is_file() else latest_checkpoint(folder)
    if state is None:
        raise UsageError(f"{'run ' + run_id if run_id else folder}: no checkpoint to embed in {folder}")
    state.setdefault("_path", args.run)
    loaded = latents.from_checkpoint(state, run_id=run_id)
    trainer = loaded.trainer
    title = latents.default_title(trainer.cfg.env.name, run_id=loaded.run_id, checkpoint=loaded.checkpoint,
                                  iteration=loaded.iteration)
    out = args.out or Path("latents") / (loaded.run_id or Path(loaded.checkpoint).stem)
    try:
        report = latents.embed_trainer(trainer, splits=splits, source=args.source, n_context=args.n_context,
                                       seed=trainer.cfg.seed)
        files = report.save(out, title=title, projection=args.projection, seed=trainer.cfg.seed)
    except latents.LatentError as err:
        raise UsageError(str(err)) from None
    print(f"checkpoint {loaded.checkpoint} (iteration {loaded.iteration})")
    print(report.summary_text())
    print(f"wrote {out}/: {' '.join(p.name for p in files)}")
    if loaded.run_id and not args.no_log:
        tracker = Tracker(resolve_tracking_uri(args.tracking_uri or trainer.cfg.tracking.tracking_uri),
                          run_id=loaded.run_id)
        report.log(tracker, files, step=loaded.env_steps, prefix=f"embed/{args.tasks}",
                   artifact_path=f"latents/{args.tasks}_{args.source}")
        print(f"logged to run {loaded.run_id}: metrics embed/{args.tasks}/*, "
              f"artifacts latents/{args.tasks}_{args.source}/")
    elif not loaded.run_id:
        print("not logged to MLflow: the checkpoint names no run")
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pearl",
        description="PEARL: probabilistic context-based off-policy meta-RL, tracked in MLflow.",
        epilog="Runs go to $MLFLOW_TRACKING_URI or sqlite:///mlflow.db; view them with `mlflow ui`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="meta-train from an experiment config",
                       description="Meta-train from a YAML experiment config, logging to MLflow.")
    p.add_argument("config", type=Path, help="experiment YAML (see experiments/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set algo.kl_lambda=1.0 --set seed=3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a run from its last good checkpoint",
                       description="Continue a run in the same MLflow run from its last good checkpoint.")
    p.add_argument("run", help="MLflow run id, checkpoint folder or checkpoint file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the saved config where a resumed run allows it, e.g. --set train.num_iterations=1000")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("evaluate", help="meta-test a trained agent",
                       description="Run the meta-test protocol on fresh episodes and print the adaptation curve.")
    p.add_argument("run", help="MLflow run id, checkpoint folder or checkpoint file")
    p.add_argument("--tasks", choices=("test", "train"), default="test", help="which tasks (default: test)")
    p.add_argument("--episodes", type=int, help="episodes per task (default: the config's eval.num_episodes)")
    p.add_argument("--runs", type=int,
                   help="independent meta-tests per task, averaged (default: the config's eval.num_runs)")
    p.add_argument("--deterministic", choices=("all", "last"),
                   help="episodes acting with the mean action: all (the paper's protocol) or only the last "
                        "(default: the config's eval.deterministic)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embed", help="inspect latent task embeddings of a run",
                       description="Inspect the latent task embeddings q(z|c) of a trained run: a table of posteriors "
                                   "per task, a linear probe to the true task parameters, posterior contraction, "
                                   "active latent dims, and plots. Writes them to --out and logs them to the run.")
    p.add_argument("run", help="MLflow run id, checkpoint folder or checkpoint file")
    p.add_argument("--tasks", choices=("test", "train", "all"), default="all",
                   help="which tasks (default: all; the probe is fit on train tasks and scored on test tasks)")
    p.add_argument("--n-context", type=_positive_int, metavar="N",
                   help="context transitions per task (default: eval.num_episodes episodes for rollouts, "
                        "everything stored for the buffer)")
    p.add_argument("--source", choices=("rollouts", "buffer"), default="rollouts",
                   help="fresh rollouts with posterior sampling (default), or the training tasks' context buffer")
    p.add_argument("--projection", choices=("pca", "tsne", "umap"), default="pca",
                   help="2-D projection of the posterior means (default pca; tsne needs scikit-learn, umap umap-learn)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: latents/<run id>)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-log", action="store_true", help="do not log to the MLflow run")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("list", help="registered task families and encoders",
                       description="List the registered task families (env.name) and encoders (encoder.name).")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check-encoder", help="check an encoder against the contract",
                       description="Check a registered encoder or a 'package.module:ClassName' against the contract.")
    p.add_argument("encoder", help="registered name or package.module:ClassName")
    p.add_argument("--context-dim", type=int, default=5, help="size of one context transition (default 5)")
    p.add_argument("--latent-dim", type=int, default=5, help="size of z (default 5)")
    p.add_argument("--kwargs", default="{}", help="encoder keyword arguments as JSON")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=cmd_check_encoder)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        return args.func(args)
    except _bad_input_types() as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
