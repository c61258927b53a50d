"""Sampling throughput of ``aihf.lm.generation.HFSampler``: dynamic vs static KV cache.

Returned response tokens per second (new tokens only, cut at eos as the sampler returns
them; a random model rarely emits eos) for a random GPT-NeoX from ``aihf.lm.tiny``, on whatever device torch
picks (CUDA if present). Each setting runs once to warm up, then ``--repeats`` times; the
fastest run is reported (the machine may be shared).

    python bench/bench_sampling.py
    python bench/bench_sampling.py --hidden 256 --layers 4 --batch 8,32
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from aihf.lm.generation import HFSampler
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer


def measure(sampler: HFSampler, prompts: list[list[int]], new_tokens: int, repeats: int) -> float:
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
    print("| batch | dynamic cache tokens/s | static cache tokens/s |")
    print("|---|---|---|")
    for batch in (int(b) for b in args.batch.split(",")):
        prompts = torch.randint(4, len(tokenizer), (batch, args.prompt_tokens), generator=generator).tolist()
        dynamic = measure(HFSampler(model, tokenizer, cache="dynamic"), prompts, args.new_tokens, args.repeats)
        static = measure(HFSampler(model, tokenizer, cache="static"), prompts, args.new_tokens, args.repeats)
        print(f"| {batch} | {dynamic:,.0f} | {static:,.0f} |")


if __name__ == "__main__":
    main()
