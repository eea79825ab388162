"""Helpers shared by the benchmark scripts: machine description, load, JSON output.

The benchmarks are run by hand (``python benchmarks/<name>.py``), never by the test suite.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))


def load_average() -> float:
    """The 1-minute load average (other processes compete for the same cores)."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line (the benchmark's result) and flush."""
    print(json.dumps(record, sort_keys=False), flush=True)
