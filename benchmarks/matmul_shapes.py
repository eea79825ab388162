"""GFLOP/s of the matmuls of one SAC layer, row-major against feature-major, 2-D and batched.

A hidden layer at the paper's sizes multiplies 4096 rows by a 300 x 300 weight three times per
step (forward, input gradient, weight gradient). Row-major is ``x Wᵀ`` on ``x [4096, 300]``;
feature-major is ``W xᵀ`` on ``xᵀ [300, 4096]``, what ``pearl/networks.py`` does. The batched
rows are the twin critics (two members in one ``bmm``).

Usage::

    python benchmarks/matmul_shapes.py --threads 1
    python benchmarks/matmul_shapes.py --threads 2 --dtype bfloat16

Prints one JSON line: ``{"benchmark": "matmul_shapes", "gflop_s": {name: value}, ...}``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

from common import emit, load_average, machine

import torch


def gflop_s(fn: Callable[[], torch.Tensor], flop: float, repeats: int, calls: int) -> float:
    """Best of ``repeats`` timings of ``calls`` calls."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return round(flop / best / 1e9, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--width", type=int, default=300)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    n, h = args.rows, args.width
    r = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    x, g, w, b = r(n, h), r(n, h), r(h, h), r(h)
    xt, gt, bt = r(h, n), r(h, n), r(h, 1)
    xe, ge, we, be = r(2, n, h), r(2, n, h), r(2, h, h), r(2, 1, h)
    xet, get, bet = r(2, h, n), r(2, h, n), r(2, h, 1)
    flop = 2.0 * n * h * h
    cases = {
        "row-major forward  x Wt + b": (lambda: torch.addmm(b, x, w.t()), flop),
        "row-major input grad  g W": (lambda: g @ w, flop),
        "row-major weight grad  gT x": (lambda: g.t() @ x, flop),
        "feature-major forward  W xT + b": (lambda: torch.addmm(bt, w, xt), flop),
        "feature-major input grad  Wt gT": (lambda: w.t() @ gt, flop),
        "feature-major weight grad  gT x": (lambda: gt @ xt.t(), flop),
        "twin row-major forward": (lambda: torch.baddbmm(be, xe, we.transpose(1, 2)), 2 * flop),
        "twin row-major input grad": (lambda: torch.bmm(ge, we), 2 * flop),
        "twin row-major weight grad": (lambda: torch.bmm(ge.transpose(1, 2), xe), 2 * flop),
        "twin feature-major forward": (lambda: torch.baddbmm(bet, we, xet), 2 * flop),
        "twin feature-major input grad": (lambda: torch.bmm(we.transpose(1, 2), get), 2 * flop),
        "twin feature-major weight grad": (lambda: torch.bmm(get, xet.transpose(1, 2)), 2 * flop),
    }
    load_start = load_average()
    results = {name: gflop_s(fn, fl, args.repeats, args.calls) for name, (fn, fl) in cases.items()}
    emit({"benchmark": "matmul_shapes", "gflop_s": results, "rows": n, "width": h, "dtype": args.dtype,
          "machine": machine(), "load_avg": [load_start, load_average()]})


if __name__ == "__main__":
    main()
