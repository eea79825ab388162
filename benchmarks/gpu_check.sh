#!/usr/bin/env bash
# The GPU checks of issue 8, as one short script for a machine with a CUDA device (run from the repo
# root): the fast-path tests on CUDA, then update_speed.py at the paper's point-robot configuration
# eager (with the plain baseline), bf16 autocast, torch.compile, and compile with CUDA graphs.
set -u
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 1
python -m pytest -q -p no:cacheprovider tests/unit/test_fast_path.py -k cuda
python benchmarks/update_speed.py --device cuda --steps 50 --repeats 5
python benchmarks/update_speed.py --device cuda --steps 50 --repeats 5 --no-baseline --dtype bfloat16
python benchmarks/update_speed.py --device cuda --steps 50 --repeats 5 --no-baseline --compile --warmup 10
python benchmarks/update_speed.py --device cuda --steps 50 --repeats 5 --no-baseline --cuda-graph --warmup 10
