#!/usr/bin/env bash
# bench/bench_gpu.py on the device machine: the wheels its image lacks, the card and versions, then the run.
#   bash bench/gpu_bench.sh [bench_gpu.py arguments...]   (records to $OUT/gpu.json, log to $OUT/bench.log,
#   profiles of one training step per contender and of generation to $OUT/profile-*.txt)
# Carry (device tool `carry`): [".whl/gpu"]: py3.12 wheels of what the image lacks (trl and datasets, with
# dill and multiprocess; pyarrow, pandas, xxhash and fsspec are in the image), about 2 MiB, made here with
#   pip download --no-deps --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 \
#     --platform any -d .whl/gpu trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# Back here: copy $OUT/gpu.json over docs/benchmarks/gpu.json (it holds the earlier records too, a rerun measurement
# replacing its old row), then `python bench/bench_gpu.py --render`.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; WHEELS=${WHEELS:-.whl/gpu}; mkdir -p "$OUT"
# start from the repository's records, so that $OUT/gpu.json can simply replace docs/benchmarks/gpu.json here
[ -f docs/benchmarks/gpu.json ] && [ ! -f "$OUT/gpu.json" ] && cp docs/benchmarks/gpu.json "$OUT/gpu.json"
if [ -d "$WHEELS" ] && ! python3 -c "import trl" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl 2>&1 | tail -3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
  python3 -c "import trl, datasets; print('trl', trl.__version__, 'datasets', datasets.__version__)" 2>&1 | tail -1
  python3 bench/bench_gpu.py --out "$OUT/gpu.json" --profile-dir "$OUT" "$@" 2>&1
} | tee "$OUT/bench.log"
