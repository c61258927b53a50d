#!/usr/bin/env bash
# One device run: every LM method a few steps on CUDA under bf16 (a smoke test of the engine
# on a GPU), then the DPO-step benchmark at Pythia-1B size against trl in the same run.
#   bash bench/gpu_check.sh OUT_DIR [BENCH_ARCH] [DEVICE]   (wheels for trl/datasets in .whl/gpu/ if missing: see bench/gpu_bench.sh)
set -uo pipefail
out=${1:-/tmp/gpu_check}; arch=${2:-pythia-1b}; device=${3:-cuda}; mkdir -p "$out"
if [ -d .whl/gpu ] && ! python3 -c "import trl" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/gpu/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)" | tee -a "$out/gpu.txt"

data=$(mktemp -d)
python3 - "$data" <<'PY'
import sys
sys.path.insert(0, "bench")
from bench_dpo_step import make_records
from aihf.data import Demonstration, Preference, write_jsonl
records = make_records(64, 6, 12)
write_jsonl([Demonstration(r["prompt"], r["demonstration"]) for r in records], f"{sys.argv[1]}/demos.jsonl")
write_jsonl([Preference(r["prompt"], r["chosen"], r["rejected"]) for r in records], f"{sys.argv[1]}/prefs.jsonl")
PY
for method in sft reward dpo ipo aihf-dpo spin self-play-aihf rlhf aihf; do
  start=$SECONDS
  timeout 120 python3 -m aihf.cli train "$method" --config configs/lm/tiny.yaml \
    data.demonstrations="$data/demos.jsonl" data.preferences="$data/prefs.jsonl" \
    loop.output_dir="$data/run-$method" loop.max_steps=6 loop.eval_every=3 loop.save_every=6 \
    loop.mixed_precision=bf16 loop.log_with=none loop.progress=false \
    method.max_new_tokens=8 method.steps_per_round=3 reward_stage_steps=3 > "$out/train-$method.log" 2>&1
  printf '%-16s rc=%s %ss  %s\n' "$method" "$?" "$((SECONDS - start))" "$(tail -1 "$out/train-$method.log")" | tee -a "$out/smoke.txt"
done

for contender in aihf-dpo aihf-aihf-dpo trl trl-precompute; do
  timeout 240 python3 bench/bench_dpo_step.py --device "$device" --arch "$arch" --mixed-precision bf16 \
    --prompt-words 40 --response-words 150 --max-length 512 --repeats 1 --steps 10 --warmup 3 \
    --contenders "$contender" --json "$out/bench-$contender.json" 2>&1 | tail -4 | tee -a "$out/bench.txt"
done
