#!/usr/bin/env bash
# The GPU checks of issue 8, as one short script for a machine with a CUDA device (run from the repo
# root): the CUDA tests (fast path against the plain reference, training end to end with checkpoints
# resumed on the CPU), then update_speed.py at the paper's point-robot configuration: eager (with the
# plain baseline), bf16 autocast, torch.compile, and compile with CUDA graphs.
set -u
export PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
python3 -m pytest -q -p no:cacheprovider -m gpu tests/unit/test_fast_path.py tests/integration/test_cuda.py
python3 benchmarks/update_speed.py --device cuda --steps 50 --repeats 5
python3 benchmarks/update_speed.py --device cuda --steps 50 --repeats 5 --no-baseline --dtype bfloat16
python3 benchmarks/update_speed.py --device cuda --steps 50 --repeats 5 --no-baseline --compile --warmup 10
python3 benchmarks/update_speed.py --device cuda --steps 50 --repeats 5 --no-baseline --cuda-graph --warmup 10
