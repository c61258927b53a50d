"""A language-model reward ensemble's cost: CPU-seconds of one Bradley-Terry reward step
(forward and backward over the chosen and rejected sequences of a batch) with one head, with
K heads on one body (``method.reward_ensemble: K``), and with K separate reward models (the
peer: an ensemble of whole reward models, as Coste et al. train them), one thread, on a GPT-NeoX
body of the IMDb ``scratch`` size unless told otherwise.

    python bench/bench_lm_reward_heads.py --heads 5 --repeats 5

Prints the median CPU-seconds of each and the ratios to one head, and the parameter counts.
"""

import argparse
import copy
import statistics
import time

import torch
from transformers import GPTNeoXConfig, GPTNeoXModel

from aihf.lm.models import RewardModel
from aihf.objective import bradley_terry_loss


def body(hidden: int, layers: int, vocab: int, seed: int) -> GPTNeoXModel:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                           intermediate_size=4 * hidden, max_position_embeddings=512)
    return GPTNeoXModel(config)


def step_seconds(models: list[RewardModel], ids: torch.Tensor, mask: torch.Tensor, repeats: int) -> float:
    """Median CPU-seconds of one step: every model's rewards on the 2B sequences, the summed
    Bradley-Terry losses of all their heads, backward."""
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        for model in models:
            model.zero_grad(set_to_none=True)
        start = time.process_time()
        loss = 0.0
        for model in models:
            chosen, rejected = model(ids, mask, members=True).chunk(2, dim=-1)
            loss = loss + bradley_terry_loss(chosen, rejected)
        loss.backward()
        times.append(time.process_time() - start)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", type=int, default=5)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=32, help="preference pairs per step")
    p.add_argument("--length", type=int, default=64, help="tokens per sequence")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (2 * args.batch, args.length), generator=generator)
    mask = torch.ones_like(ids)
    base = body(args.hidden, args.layers, args.vocab, seed=0)
    runs = {
        "1 head": [RewardModel(copy.deepcopy(base))],
        f"{args.heads} heads on one body": [RewardModel(copy.deepcopy(base), heads=args.heads)],
        f"{args.heads} reward models": [RewardModel(body(args.hidden, args.layers, args.vocab, seed=k), seed=k)
                                        for k in range(args.heads)],
    }
    seconds = {name: step_seconds(models, ids, mask, args.repeats) for name, models in runs.items()}
    one = seconds["1 head"]
    print(f"reward step, {args.batch} pairs x {args.length} tokens, GPT-NeoX hidden {args.hidden} x {args.layers} "
          f"layers, 1 thread, median of {args.repeats}:")
    for name, models in runs.items():
        params = sum(p.numel() for m in models for p in m.parameters())
        print(f"  {name}: {seconds[name]:.3f} CPU-s ({seconds[name] / one:.2f}x one head), {params:,} parameters")


if __name__ == "__main__":
    main()
