"""Sampling throughput of aihf's samplers: ``HFSampler`` with the dynamic and the static KV
cache (transformers' ``generate``) and ``StaticLoopSampler`` (aihf's own decoding loop).

Returned response tokens per second (new tokens only, cut at eos as the sampler returns
them; a random model rarely emits eos) for a random GPT-NeoX from ``aihf.lm.tiny``, on whatever device torch
picks (CUDA if present). Each setting runs once to warm up, then ``--repeats`` times; the
fastest run is reported (the machine may be shared).

``--count-ops`` adds one more call of each sampler under ``bench_dpo_step.OpCounter`` and a
second table: operators and kernels per decoding step (the call's counts over ``--new-tokens``,
prefill included) and host synchronisations per call
(reads of a device value: on a GPU each one stops the host from queueing the next token's
work until the device has caught up). Counts depend on the code path, not on the load.

    python bench/bench_sampling.py
    python bench/bench_sampling.py --hidden 256 --layers 4 --batch 8,32
    python bench/bench_sampling.py --batch 8 --repeats 1 --count-ops
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from aihf.lm.generation import HFSampler
from aihf.lm.static_loop import StaticLoopSampler
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer


def measure(sampler, prompts: list[list[int]], new_tokens: int, repeats: int) -> float:
    """Best returned tokens/s over ``repeats`` runs, after one warm-up run."""
    sampler.generate(prompts, new_tokens, seed=0)
    best = 0.0
    for seed in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        responses = sampler.generate(prompts, new_tokens, seed=seed)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = max(best, sum(len(r) for r in responses) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", default="8,32", help="comma-separated batch sizes")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--count-ops", action="store_true", help="also count operators and host syncs of one call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(
        tokenizer, hidden_size=args.hidden, num_hidden_layers=args.layers, intermediate_size=4 * args.hidden
    ).to(device)
    generator = torch.Generator().manual_seed(0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {device}, torch threads {args.threads}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, {args.prompt_tokens} prompt + "
          f"{args.new_tokens} new tokens, load average {os.getloadavg()[0]:.1f}")
    samplers = {"HFSampler, dynamic cache": HFSampler(model, tokenizer, cache="dynamic"),
                "HFSampler, static cache": HFSampler(model, tokenizer, cache="static"),
                "StaticLoopSampler": StaticLoopSampler(model, tokenizer)}
    print("| batch | " + " | ".join(f"{name} tokens/s" for name in samplers) + " |")
    print("|---|" + "---|" * len(samplers))
    counts = []
    for batch in (int(b) for b in args.batch.split(",")):
        prompts = torch.randint(4, len(tokenizer), (batch, args.prompt_tokens), generator=generator).tolist()
        rates = [measure(sampler, prompts, args.new_tokens, args.repeats) for sampler in samplers.values()]
        print(f"| {batch} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
        counts += [(batch, name, *count_ops(sampler, prompts, args.new_tokens)) for name, sampler in samplers.items()
                   if args.count_ops]
    if counts:
        print(f"\n| batch | sampler | returned tokens | operators per step | kernels per step | host syncs per call |")
        print("|---|---|---|---|---|---|")
        for batch, name, tokens, result in counts:  # a step: one new token for every row (--new-tokens steps)
            print(f"| {batch} | {name} | {tokens} | {result['ops'] / args.new_tokens:.0f} | "
                  f"{result['kernels'] / args.new_tokens:.0f} | {result['syncs']} |")


def count_ops(sampler, prompts: list[list[int]], new_tokens: int) -> tuple[int, dict]:
    """(returned tokens, ``OpCounter.result()``) of one call."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_dpo_step import OpCounter

    counter = OpCounter()
    counter.start()
    try:
        responses = sampler.generate(prompts, new_tokens, seed=0)
    finally:
        counter.stop()
    return sum(len(r) for r in responses), counter.result()


if __name__ == "__main__":
    main()
