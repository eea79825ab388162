"""Every metric of a short training run, to compare two source trees bit for bit.

Trains a config on the CPU for a few iterations in this process (no MLflow) and writes each
iteration's metrics, ``time/*`` left out, as JSON. Run it once per source tree with the same
arguments, then compare the two files:

    python benchmarks/metrics_snapshot.py --source ../base --config tiny --out base.json
    python benchmarks/metrics_snapshot.py --config tiny --out new.json
    python benchmarks/metrics_snapshot.py --compare base.json new.json

``--config tiny`` is the tiny config of ``tests/conftest.py``; any YAML path works too.
``--row-major-mlp`` runs a tree whose ``pearl.networks`` still has the feature-major MLP path with
that path switched off, so its arithmetic is the plain ``nn.Sequential``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=HERE.parent, help="source tree to import pearl from")
    p.add_argument("--config", default="tiny", help="'tiny' or a YAML path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--row-major-mlp", action="store_true", help="switch off an old tree's feature-major MLP")
    p.add_argument("--out", type=Path, help="JSON file (default: stdout)")
    p.add_argument("--compare", nargs=2, type=Path, metavar="JSON", help="compare two snapshots and exit")
    return p.parse_args(argv)


def snapshot(args: argparse.Namespace) -> list[dict[str, float]]:
    sys.path.insert(0, str(args.source.resolve()))
    import torch

    from pearl.config import apply_overrides, config_from_dict, read_yaml

    if args.row_major_mlp:
        import pearl.networks

        pearl.networks.FEATURE_MAJOR_MIN_ROWS = 1 << 62
    if args.config == "tiny":
        from tests.conftest import TINY  # the source tree's own: it spells the keys as that tree does

        data = TINY
    else:
        data = read_yaml(args.config)
    cfg = config_from_dict(apply_overrides(data, args.set), args.config)
    cfg.tracking.progress = False
    torch.set_num_threads(1)
    try:  # a tree with the run API builds the trainer with its hooks (the latent summary)
        from pearl.runs import build_trainer
    except ImportError:
        from pearl.trainer import Trainer as build_trainer
    trainer = build_trainer(cfg)
    return [{k: v for k, v in trainer.run_iteration().metrics.items() if not k.startswith("time/")}
            for _ in range(args.iterations)]


def compare(a: list[dict[str, float]], b: list[dict[str, float]]) -> list[str]:
    """One line per difference (an empty list: the same to the bit)."""
    out = [] if len(a) == len(b) else [f"{len(a)} iterations against {len(b)}"]
    for i, (x, y) in enumerate(zip(a, b)):
        for key in sorted(set(x) | set(y)):
            u, v = x.get(key), y.get(key)
            same = u == v or (u is not None and v is not None and math.isnan(u) and math.isnan(v))
            if not same:
                out.append(f"iteration {i + 1} {key}: {u!r} against {v!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        first, second = (json.loads(p.read_text()) for p in args.compare)
        differences = compare(first, second)
        n = sum(len(m) for m in first)
        print("\n".join(differences) or f"the same: {n} values over {len(first)} iterations")
        return 1 if differences else 0
    text = json.dumps(snapshot(args), indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
