#!/usr/bin/env bash
# The paper's cheetah-vel config (experiments/paper/cheetah_vel.yaml) on a machine with a CUDA device,
# 3 seeds side by side on one GPU (CUDA graphs), each for MAX_SECONDS of wall clock, evaluated every
# 2 iterations. One JSON record per seed (benchmarks/learning.py: the learning curve by env steps) in
# OUT_DIR/cheetah_vel_seedN.json, progress in OUT_DIR/cheetah_vel_seedN.log. Run from the repo root.
# Usage: bash benchmarks/gpu_paper_scale.sh [MAX_SECONDS=360] [OUT_DIR=gpu_paper_scale]
set -u
export PYTHONUNBUFFERED=1
max_s=${1:-360}
out=${2:-gpu_paper_scale}
mkdir -p "$out"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
for seed in 0 1 2; do
  python3 benchmarks/learning.py --config experiments/paper/cheetah_vel.yaml --seeds "$seed" --full --target 0 \
    --eval-every 2 --max-seconds "$max_s" --threads 2 \
    --set device=cuda --set algo.compile=true --set algo.compile_mode=reduce-overhead \
    > "$out/cheetah_vel_seed$seed.json" 2> "$out/cheetah_vel_seed$seed.log" &
done
wait
tail -n 3 "$out"/cheetah_vel_seed*.log
