"""What ``model.compile`` costs at the start: the first training step's wall time (forward and
backward, almost all of it compilation) of a GPT-NeoX body compiled whole
(``model.compile_scope: body``) against compiled block by block (``blocks``,
``models.compile_body``), beside the eager model, then the step time
after compilation. Each mode runs in its own process (a fresh compiler cache in memory;
inductor's on-disk cache is pointed at a new temporary folder per process so no mode reuses
another's kernels).

    OMP_NUM_THREADS=1 python bench/bench_compile_start.py --layers 8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def worker(mode: str, layers: int, device: str) -> dict:
    import torch

    from aihf.lm.models import compile_body
    from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer

    model = tiny_causal_lm(tiny_tokenizer(), seed=0, num_hidden_layers=layers, hidden_size=64,
                           intermediate_size=256).to(device)
    if mode != "eager":
        compile_body(model, scope=mode)
    generator = torch.Generator().manual_seed(0)

    def step(length: int) -> float:
        ids = torch.randint(4, 500, (4, length), generator=generator).to(device)
        start = time.perf_counter()
        model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    first = [step(length) for length in (40, 33, 51)]  # three lengths: dynamic shapes, no recompilation expected
    after = sorted(step(45) for _ in range(7))[3]
    return {"mode": mode, "first_steps_s": first, "step_after_s": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["eager", "blocks", "body"],
                        help="eager, or a model.compile_scope")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.layers, args.device)))
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.layers} blocks (hidden 64), batch 4, "
          f"{args.device}, load average {os.getloadavg()[0]:.1f}")
    print("| mode | first step | 2nd, 3rd (new lengths) | step after (median of 7) |\n|---|---|---|---|")
    for mode in args.modes:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            done = subprocess.run([sys.executable, __file__, "--worker", mode, "--layers", str(args.layers),
                                   "--device", args.device], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        first = row["first_steps_s"]
        print(f"| {mode} | {first[0]:.2f} s | {first[1]:.2f} s, {first[2]:.2f} s | {row['step_after_s'] * 1000:.1f} ms |",
              flush=True)


if __name__ == "__main__":
    main()
