"""The ``pearl`` command line: parse the arguments, call :mod:`pearl.runs`, print.

Exit codes: 0 success; 1 training failed (diverged, crashed); 2 bad input (config, encoder, env,
checkpoint, run id); 130 stopped by a signal after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A bad command-line argument: printed as one line, exit code 2."""


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from pearl.runs import BAD_INPUT

    return (UsageError, *BAD_INPUT)


def cmd_train(args: argparse.Namespace) -> int:
    from pearl import runs
    from pearl.config import load_config

    cfg = load_config(args.config, args.set)
    if args.no_progress:
        cfg.tracking.progress = False
    with runs.start(cfg, source=str(args.config), overrides=args.set) as run:
        return _train(run)


def cmd_resume(args: argparse.Namespace) -> int:
    from pearl import runs

    overrides = [*args.set, *(["tracking.progress=false"] if args.no_progress else [])]
    try:
        run = runs.resume(args.run, overrides=overrides, tracking_uri=args.tracking_uri)
    except runs.NothingToResume as done:
        print(done, file=sys.stderr)
        return EXIT_OK
    with run:
        for note in run.notes:
            print(f"warning: {note}", file=sys.stderr)
        return _train(run)


def _train(run: Any) -> int:
    """Train a :class:`pearl.runs.TrainingRun` with a progress bar; print how it ended."""
    print(f"run {run.run_id} ({'resumed from ' + run.source if run.resumed else run.source})", file=sys.stderr)
    print(f"  tracking: {run.tracking_uri}   checkpoints: {run.checkpoint_dir}", file=sys.stderr)
    bar, update = _progress_bar(run.trainer) if run.trainer.cfg.tracking.progress else (None, None)
    try:
        outcome = run.train(update)
    finally:
        if bar is not None:
            bar.close()
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if outcome.status == "FAILED":
        print(f"error: {outcome.message}", file=sys.stderr)
        return EXIT_FAILED
    if outcome.status == "KILLED":
        print(outcome.message, file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"\ndone: run {outcome.run_id}, final test return (adapted) {outcome.final_return:.3f}")
    print(f"  view it:  mlflow ui --backend-store-uri {run.tracking_uri}   (then open http://127.0.0.1:5000)")
    return EXIT_OK


def _progress_bar(trainer: Any) -> tuple[Any, Callable[[Any], None]]:
    """A tqdm bar over the iterations (env steps, seconds per iteration, the last test return) and its update."""
    from tqdm import tqdm

    bar = tqdm(total=trainer.cfg.train.num_iterations, initial=trainer.iteration, desc="meta-train", unit="it",
               file=sys.stderr, dynamic_ncols=True)
    shown = {"test_return": "-"}

    def update(result: Any) -> None:
        m = result.metrics
        if "eval/test/return_adapted" in m:
            shown["test_return"] = f"{m['eval/test/return_adapted']:.2f}"
        budget = trainer.cfg.train.max_minutes  # the bar counts iterations; a budget may end the run first
        clock = {"min": f"{m['time/total_s'] / 60:.1f}/{budget:g}"} if budget is not None else {}
        bar.set_postfix({"steps": result.env_steps, "s/it": f"{m['time/iteration_s']:.1f}", **clock, **shown},
                        refresh=False)
        bar.update(1)

    return bar, update


def cmd_sweep(args: argparse.Namespace) -> int:
    from pearl import sweep

    spec = sweep.SweepSpec(str(args.config), seeds=sweep.parse_seeds(args.seeds) if args.seeds else None,
                           grid=tuple(sweep.parse_grid(item) for item in args.grid), sets=tuple(args.set),
                           name=args.name)
    plan = sweep.plan_sweep(spec, address=args.address)
    n_points = len(spec.points())
    print(f"sweep {plan.name}: {len(plan.trials)} trials ({n_points} grid point(s) x {len(plan.trials) // n_points} "
          f"seed(s)) of {spec.config}\n  tracking: {plan.tracking_uri}   experiment: {plan.experiment}", file=sys.stderr)
    display = _SweepDisplay(plan, bar=not args.no_progress)
    try:
        outcome = sweep.run_sweep(plan, address=args.address, num_cpus=args.cpus, max_concurrent=args.max_concurrent,
                                  on_event=display)
    except KeyboardInterrupt:  # a second Ctrl-C: Tune's graceful stop was cut short; the runs are marked
        print(f"sweep {plan.name} stopped; run the same command again to finish it", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        display.close()
    counts = {s: list(outcome.statuses.values()).count(s) for s in sorted(set(outcome.statuses.values()))}
    print(f"sweep {outcome.name} {outcome.status} (parent run {outcome.parent_run_id}): "
          + ", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    if "FINISHED" in counts:
        _compare([outcome.parent_run_id], tracking_uri=outcome.tracking_uri, out=args.out, log=True)
    if outcome.status != "FINISHED":
        print("run the same command again to finish the sweep (finished trials are kept, interrupted ones "
              "resume from their checkpoints)", file=sys.stderr)
    return {"FINISHED": EXIT_OK, "FAILED": EXIT_FAILED}.get(outcome.status, EXIT_INTERRUPTED)


class _SweepDisplay:
    """A line per trial state change and a bar over all the sweep's iterations."""

    def __init__(self, plan: Any, *, bar: bool) -> None:
        from tqdm import tqdm

        self.total = {t.key: t.num_iterations for t in plan.trials}
        self.done: dict[str, int] = {}
        self.finished = 0
        self.bar = tqdm(total=sum(self.total.values()), desc="sweep", unit="it", file=sys.stderr,
                        dynamic_ncols=True, disable=not bar)

    def __call__(self, event: Any) -> None:
        self.done[event.trial] = max(self.done.get(event.trial, 0), min(event.iteration, self.total[event.trial]))
        if event.kind in ("finished", "finished_before"):
            self.finished += 1
        if event.kind != "iteration":
            text = f"{event.trial}: {event.kind.replace('_', ' ')}" + (f" ({event.message})" if event.message else "")
            self.bar.write(text, file=sys.stderr)
        self.bar.n = sum(self.done.values())
        self.bar.set_postfix_str(f"trials finished {self.finished}/{len(self.total)}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def cmd_compare(args: argparse.Namespace) -> int:
    _compare(args.runs, tracking_uri=args.tracking_uri, out=args.out, log=not args.no_log)
    return EXIT_OK


def _compare(targets: Sequence[str], *, tracking_uri: str | None, out: Path | None, log: bool) -> None:
    """Compare runs and sweeps: print the table, write CSV and PNG to ``out``, log them to a sweep's parent."""
    from pearl import compare

    result = compare.compare(targets, tracking_uri=tracking_uri)
    folder = out or Path("comparisons") / result.label
    files = result.save(folder)
    print(result.table())
    print(f"wrote {folder}/: {' '.join(p.name for p in files)}")
    if log and result.log(files):
        print(f"logged to run {result.parent_run_id} under comparison/")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pearl import runs

    given = {"eval.num_runs": args.runs, "eval.deterministic_episodes": args.deterministic_episodes,
             "eval.posterior": args.posterior}
    overrides = [f"{key}={value}" for key, value in given.items() if value]
    loaded = runs.load_run(args.run, tracking_uri=args.tracking_uri, overrides=overrides)
    e = loaded.cfg.eval
    episodes = args.episodes or e.num_episodes
    if episodes < e.num_exp_traj_eval:
        raise UsageError(f"--episodes must be at least eval.num_exp_traj_eval ({e.num_exp_traj_eval})")
    result = runs.evaluate(loaded, split=args.tasks, num_episodes=episodes)
    n_tasks = result.returns.shape[0]
    print(f"checkpoint {loaded.checkpoint} (iteration {loaded.iteration}), {n_tasks} {args.tasks} tasks x "
          f"{e.num_runs} run(s), " + ("sampled actions before the last episode" if e.deterministic_episodes == "last"
                                      else "mean actions in every episode")
          + (", z of the posterior episodes from the decoder's grid posterior" if e.posterior == "decoder" else ""))
    print(result.table())
    print(f"return with z from the prior: {result.return_prior:.3f}")
    print(f"adapted return:               {result.return_adapted:.3f}")
    if loaded.run_id:
        try:
            prefix = runs.log_evaluation(loaded, result, split=args.tasks, tracking_uri=args.tracking_uri)
        except runs.RunNotInStore as err:
            print(f"warning: {err}; the evaluation was not logged (pass --tracking-uri)", file=sys.stderr)
        else:
            print(f"logged to run {loaded.run_id} as {prefix}/*")
    return EXIT_OK


def cmd_embed(args: argparse.Namespace) -> int:
    from pearl import runs
    from pearl.latents import check_projection

    check_projection(args.projection)  # before any work
    loaded = runs.load_run(args.run, tracking_uri=args.tracking_uri)
    splits = ("train", "test") if args.tasks == "all" else (args.tasks,)
    report = runs.embed(loaded, splits=splits, source=args.source, n_context=args.n_context)
    out = args.out or Path("latents") / (loaded.run_id or Path(loaded.checkpoint).stem)
    files = report.save(out, title=loaded.title, projection=args.projection, seed=loaded.cfg.seed)
    print(f"checkpoint {loaded.checkpoint} (iteration {loaded.iteration})")
    print(report.summary_text())
    print(f"wrote {out}/: {' '.join(p.name for p in files)}")
    if not loaded.run_id:
        print("not logged to MLflow: the checkpoint names no run")
    elif not args.no_log:
        try:
            runs.log_embedding(loaded, report, files, name=args.tasks, tracking_uri=args.tracking_uri)
        except runs.RunNotInStore as err:
            print(f"warning: {err}; the inspection was not logged (pass --tracking-uri)", file=sys.stderr)
        else:
            print(f"logged to run {loaded.run_id}: metrics embed/{args.tasks}/*, "
                  f"artifacts latents/{args.tasks}_{args.source}/")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    import encoders
    import envs

    for title, registry in (("task families (env.name)", envs.registered_task_families()),
                            ("encoders (encoder.name)", encoders.registered_encoders())):
        print(f"{title}:")
        for name, cls in sorted(registry.items()):
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"  {name:<22} {doc[0] if doc else ''}")
    return EXIT_OK


def cmd_check_encoder(args: argparse.Namespace) -> int:
    import encoders

    return encoders.check_encoder_cli(args.encoder, context_dim=args.context_dim, latent_dim=args.latent_dim,
                                      kwargs=args.kwargs, device=args.device)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"hidden_sizes\": [64, 64]}'")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _command(sub: Any, name: str, func: Any, *, help: str, description: str, names_a_run: bool = False,
             trains: str = "") -> argparse.ArgumentParser:
    """A subcommand's parser; one that names a run takes RUN and --tracking-uri, one that ``trains``
    takes --set (``trains`` is its help) and --no-progress."""
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    if names_a_run:
        p.add_argument("run", help="MLflow run id, checkpoint folder or checkpoint file")
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    if trains:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=trains)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_training_commands(sub: Any) -> None:
    p = _command(sub, "train", cmd_train, help="meta-train from an experiment config",
                 description="Meta-train from a YAML experiment config, logging to MLflow.",
                 trains="override a config value, e.g. --set algo.kl_lambda=1.0 --set seed=3 (repeatable)")
    p.add_argument("config", type=Path, help="experiment YAML (see experiments/)")
    _command(sub, "resume", cmd_resume, help="continue a run from its last good checkpoint", names_a_run=True,
             description="Continue a run in the same MLflow run from its last good checkpoint.",
             trains="change the saved config where a resumed run allows it, e.g. --set train.num_iterations=1000")


def _add_sweep_commands(sub: Any) -> None:
    p = _command(sub, "sweep", cmd_sweep, help="train over seeds and a grid of config values on Ray Tune",
                 description="Train one run per seed and grid point, as `pearl train` would, scheduled by Ray Tune "
                             "(a local Ray, or a cluster with --address). The runs are MLflow child runs of one "
                             "parent run; running the same sweep again finishes only what is missing. Ends with "
                             "`pearl compare` of the sweep.",
                 trains="override a config value in every trial, e.g. --set train.num_iterations=20 (repeatable)")
    p.add_argument("config", type=Path, help="experiment YAML (see experiments/)")
    p.add_argument("--seeds", metavar="N|S1,S2", help="a count (3: seeds 0, 1, 2) or a list (0,5,7); "
                                                       "default: the config's seed")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values of a config key to sweep (YAML, as --set takes them); repeatable: every combination")
    p.add_argument("--name", help="the sweep's name (default: the config's name and a hash of the sweep)")
    p.add_argument("--max-concurrent", type=_positive_int, metavar="K", help="at most K trials at once")
    p.add_argument("--cpus", type=_positive_int, metavar="N", help="CPUs of the local Ray (default: all); "
                                                                   "each trial takes one")
    p.add_argument("--address", metavar="ADDR", help="join this Ray cluster (auto, or HEAD:6379, from one of its "
                                                     "nodes); needs an MLflow tracking server, not a local store")
    p.add_argument("--out", type=Path, metavar="DIR", help="comparison output folder (default: comparisons/<name>)")
    p = _command(sub, "compare", cmd_compare, help="compare runs and sweeps: IQM, mean, CIs, curves",
                 description="Per group (a sweep's grid point): the final adapted return's IQM and mean with "
                             "stratified bootstrap 95% confidence intervals, learning and adaptation curves over "
                             "seeds, a per-seed table. Written as CSV and PNG; logged to the sweep's parent run.")
    p.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP", help="run id, sweep parent run id or sweep name")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: comparisons/<name>)")
    p.add_argument("--no-log", action="store_true", help="do not log to the sweep's parent run")


def _add_inspection_commands(sub: Any) -> None:
    p = _command(sub, "evaluate", cmd_evaluate, help="meta-test a trained agent", names_a_run=True,
                 description="Run the meta-test protocol on fresh episodes and print the adaptation curve.")
    p.add_argument("--tasks", choices=("test", "train"), default="test", help="which tasks (default: test)")
    p.add_argument("--episodes", type=_positive_int, help="episodes per task (default: the config's eval.num_episodes)")
    p.add_argument("--runs", type=_positive_int,
                   help="independent meta-tests per task, averaged (default: the config's eval.num_runs)")
    p.add_argument("--deterministic-episodes", "--deterministic", choices=("all", "last"),
                   help="episodes acting with the mean action: all (the paper's protocol) or only the last "
                        "(default: the config's eval.deterministic_episodes)")
    p.add_argument("--posterior", choices=("encoder", "decoder"),
                   help="what the posterior episodes draw z from: encoder, q(z|c) (the paper), or decoder, the exact "
                        "posterior under the reward decoder on a grid of a 1-dimensional z (default: the config's "
                        "eval.posterior)")

    p = _command(sub, "embed", cmd_embed, help="inspect latent task embeddings of a run", names_a_run=True,
                 description="Inspect the latent task embeddings q(z|c) of a trained run: a table of posteriors per "
                             "task, a linear probe to the true task parameters, posterior contraction, active latent "
                             "dims, and plots. Writes them to --out and logs them to the run.")
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
    p.add_argument("--no-log", action="store_true", help="do not log to the MLflow run")


def _add_registry_commands(sub: Any) -> None:
    _command(sub, "list", cmd_list, help="registered task families and encoders",
             description="List the registered task families (env.name) and encoders (encoder.name).")
    p = _command(sub, "check-encoder", cmd_check_encoder, help="check an encoder against the contract",
                 description="Check a registered encoder or a 'package.module:ClassName' against the contract.")
    p.add_argument("encoder", help="registered name or package.module:ClassName")
    p.add_argument("--context-dim", type=int, default=5, help="size of one context transition (default 5)")
    p.add_argument("--latent-dim", type=int, default=5, help="size of z (default 5)")
    p.add_argument("--kwargs", type=_json_object, default={}, help="encoder keyword arguments as JSON")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pearl",
        description="PEARL: probabilistic context-based off-policy meta-RL, tracked in MLflow.",
        epilog="Runs go to $MLFLOW_TRACKING_URI or sqlite:///mlflow.db; view them with `mlflow ui`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_training_commands(sub)
    _add_sweep_commands(sub)
    _add_inspection_commands(sub)
    _add_registry_commands(sub)
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
