"""Tokens/s and peak memory of one DPO-style training step: trl's DPOTrainer vs aihf's loop.

Contenders (same random GPT-NeoX, same tokenizer, same preference pairs, same optimizer
settings, same CPU, one run):
  trl            trl DPOTrainer, fp32 and no gradient checkpointing like aihf's loop here;
                 reference model passed explicitly (a frozen copy), its forward pass runs
                 inside every step (trl's default)
  trl-precompute the same with precompute_ref_log_probs=True (reference pass once, before
                 training, outside the timed steps)
  trl-defaults   trl's own defaults: bf16 autocast and gradient checkpointing on (DPOConfig
                 turns both on unless told otherwise), reference pass inside every step
  aihf-dpo       aihf.lm.trainer.Trainer + ImplicitRewardMethod("dpo"): reference log-probs
                 computed once per round with the policy itself (no copy), outside the timed steps
  aihf-aihf-dpo  the same loop with "aihf-dpo": each step also trains on as many demonstrations
                 as preference pairs (supervised term), so it moves 1.5x the tokens of a DPO step
  suffixes       -packed (model.padding_free), -fused (loop.fused_optimizer), -chunked
                 (model.logprob_chunk = --logprob-chunk: log-probs from the hidden states at the
                 response positions, without the full-vocabulary logits), -compiled
                 (model.compile: the body torch.compiled with dynamic shapes; the compilation
                 falls in the --warmup steps, which are not timed), -compiled-blocks (the same,
                 block by block: model.compile_scope=blocks)

Each contender runs in its own subprocess, so memory figures do not mix; the contenders
run round-robin ``--repeats`` times and the run with the lowest median CPU time per step is
reported. On a shared machine wall time mostly measures the neighbours' load; with one
torch thread, the process's CPU time (user + system) per step is the steadier measure of
the work a step costs, so the table leads with it and gives wall-clock tokens/s beside it.
Measured per process: the median CPU and wall time of the timed steps (after warm-up steps), the policy's real
(non-padding) training tokens per step (counted by a forward hook on the policy in train
mode), and memory on CPU as RSS: ``peak`` is ru_maxrss (the process's high-water mark, which
includes imports and set-up), ``growth`` is ru_maxrss at the end minus the RSS measured
after both libraries were imported and the policy and data were built (so it counts a
reference copy, optimizer state, dataset processing and activations). tracemalloc is not used: it does not see torch's
tensor allocations.

    python bench/bench_dpo_step.py                      # tiny model, all contenders
    python bench/bench_dpo_step.py --hidden 256 --layers 4 --response-words 56
    python bench/bench_dpo_step.py --contenders trl,aihf-dpo,aihf-dpo-chunked --vocab 50304 --prompt-words 40 \
        --response-words 56 --pairs 8
    python bench/bench_dpo_step.py --device cuda --arch pythia-1b --mixed-precision bf16 \
        --prompt-words 40 --response-words 150 --max-length 512 --repeats 1

On CUDA the clocks synchronise the device first, the table's memory columns are
``torch.cuda.max_memory_allocated`` (peak) and that peak minus the memory allocated after
set-up (growth), and ``--mixed-precision bf16`` runs both libraries under bf16 autocast
with float32 master weights (trl's ``bf16=True``, accelerate's ``mixed_precision="bf16"``).
``--weights bfloat16`` casts the policy (and so trl's reference copy and both optimizers'
states) to bfloat16 for every contender alike: no float32 master copy (aihf's
``model.dtype: bfloat16``; for trl, a model loaded in bfloat16).

``--count-ops`` adds one step after the timed ones, run under :class:`OpCounter`, and puts
its counts beside the times: the aten operators the step dispatched (forward, backward and
optimizer), those of them that do work (``kernels``: not views or aliases, so on a GPU each
is at least one kernel launch), and the **host synchronisations**: reads of a tensor's value
on the host (``item``/``float``/``bool`` of a tensor, ``tolist``, ``numpy``) and operators
whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``...). These
counts do not depend on the machine's load or the hidden size, only on the code path, the
layer count and the batch: on a small model on a GPU, where launching kernels and waiting
for the device cost more than the arithmetic, they are what a step's time is made of, and
they can be read on a CPU. The counter's own overhead falls in the extra step only.
``--profile FILE`` runs that extra step under torch.profiler instead (:class:`StepProfiler`):
where its time goes, by operator, on the device and on the host (``bench_gpu.py
--profile-dir`` asks for one per training contender on the GPU).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTIONS = ("packed", "fused", "chunked", "compiled", "blocks")  # suffixes: model.padding_free, loop.fused_optimizer,
#   model.logprob_chunk, model.compile
CONTENDERS = ("trl", "trl-precompute", "trl-defaults") + tuple(
    "-".join((base, *combo)) for base in ("aihf-dpo", "aihf-aihf-dpo")
    for n in range(len(OPTIONS) + 1) for combo in itertools.combinations(OPTIONS, n))
DEFAULT_CONTENDERS = ("trl", "trl-precompute", "trl-defaults", "aihf-dpo", "aihf-aihf-dpo", "aihf-dpo-packed",
                      "aihf-aihf-dpo-packed", "aihf-dpo-fused", "aihf-dpo-packed-fused")
ARCHS = {  # GPTNeoXConfig fields of the named Pythia architectures (random weights)
    "pythia-160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=50304),
    "pythia-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8, intermediate_size=8192, vocab_size=50304),
}
CUDA = False  # set by the worker when --device cuda
POSITIVE = "great wonderful amazing brilliant fantastic beautiful perfect superb delightful charming moving fun".split()
NEGATIVE = "terrible awful horrible boring dull bad poor weak stupid silly mess bland".split()
TOPICS = "movie film story plot acting script music ending cast director scene show".split()


def make_records(n: int, prompt_words: int, response_words: int, spread: float = 0.0) -> list[dict[str, str]]:
    """Deterministic synthetic (prompt, chosen, rejected, demonstration) texts: responses of
    ``response_words`` words, or with ``spread`` > 0 of a length that cycles through
    (1 - spread) x that to that (as real answers differ in length)."""
    records = []
    for i in range(n):
        topic = [TOPICS[(i + j) % len(TOPICS)] for j in range(prompt_words - 2)]
        prompt = "review : " + " ".join(topic)
        words = [max(1, round(response_words * (1 - spread * ((i * 7 + k * 3) % 8) / 7))) for k in range(3)]
        chosen = " " + " ".join(POSITIVE[(i * 7 + j) % len(POSITIVE)] for j in range(words[0]))
        rejected = " " + " ".join(NEGATIVE[(i * 5 + j) % len(NEGATIVE)] for j in range(words[1]))
        demo = " " + " ".join(POSITIVE[(i * 3 + j) % len(POSITIVE)] for j in range(words[2]))
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "demonstration": demo})
    return records


SYNC_OPS = frozenset({  # operators that make the host wait for the device (value read, data-dependent size)
    "aten._local_scalar_dense", "aten.is_nonzero", "aten.equal", "aten.nonzero", "aten.nonzero_static",
    "aten.masked_select", "aten._unique2", "aten.unique_consecutive", "aten.unique_dim", "aten.bincount", "aten.histc",
})  # and aten.repeat_interleave with a tensor of repeats and no output_size (an int of repeats never reaches it)
MASK_INDEXING = frozenset({"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"})


class OpCounter:
    """Counts the aten operators dispatched, and the host synchronisations, while it is on.

    A ``TorchDispatchMode`` sees every operator below autograd, so the backward pass and the
    optimizer count too. ``tolist`` and ``numpy`` of a CPU tensor dispatch nothing (on a GPU
    they copy to the host and wait), so they are counted by wrapping the two methods. Turned
    on and off by :meth:`start` / :meth:`stop` (trl's step begins and ends in two callbacks).

    The optimizer's step is counted apart (``optimizer_*``; torch's global optimizer step
    hooks mark it): on a CPU, torch's AdamW runs its per-parameter loop and reads each
    parameter's step counter with ``item``, while on a GPU its default multi-tensor kernels
    keep the counter on the host. The optimizer's figures are the CPU's; the rest of the
    step (batch, forward, loss, backward, clipping, metrics) is the same code path on both.
    Each synchronisation outside the optimizer is attributed to the first frame of a library
    (aihf, trl, transformers, accelerate) on the stack: ``sync_sites``. Indexing with a boolean
    mask counts as one (the result's size is the mask's count), and so does ``repeat_interleave``
    with a tensor of repeats unless ``output_size`` is given (with an int it never syncs). Not seen on a CPU: a blocking
    copy from the host to a GPU (``.to(device)`` without ``non_blocking``), which waits for the
    device's stream too; read the code for those. Host-side batch building (aihf's
    ``collate``/``pack``, trl's collator) is not counted: on a GPU it launches nothing.
    """

    LIBRARIES = ("/aihf/", "/trl/", "/transformers/", "/accelerate/")

    def __init__(self, host_side: tuple[tuple[object, str], ...] = ()) -> None:
        """``host_side``: (module, function name) pairs whose work is not counted while the
        counter is on (host-side batch building), the module attribute wrapped in :meth:`start`."""
        import collections

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = str(func.overloadpacket)
                if name in MASK_INDEXING and any(
                        isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in args[1] if t is not None):
                    name += " (boolean mask)"  # the mask's count of True sets the output's size: a sync
                if name == "aten.repeat_interleave" and (kwargs or {}).get("output_size") is None:
                    name += " (size from the repeats)"  # their sum sets the output's size: a sync
                counter.count(name, func.is_view or name in ("aten.detach", "aten.alias", "aten.lift_fresh"))
                return func(*args, **(kwargs or {}))

        self.ops: collections.Counter[str] = collections.Counter()
        self.figures = collections.Counter()
        self.sync_sites: collections.Counter[str] = collections.Counter()
        self.paused, self.in_optimizer = 0, False
        self._mode, self._patched, self._hooks, self._host_side = Mode(), {}, [], host_side

    def count(self, name: str, alias: bool) -> None:
        if self.paused:
            return
        part = "optimizer_" if self.in_optimizer else ""
        self.figures[part + "ops"] += 1
        self.figures[part + "kernels"] += not alias
        if name in SYNC_OPS or name.endswith(("(boolean mask)", "(size from the repeats)")) or name in ("tolist", "numpy"):
            self.figures[part + "syncs"] += 1
            if not self.in_optimizer:
                self.sync_sites[f"{name} at {self._library_frame()}"] += 1
        if not self.in_optimizer:
            self.ops[name] += 1

    def _paused_in(self, function):
        """``function``, with the counter paused while it runs."""

        def paused(*args, **kwargs):
            self.paused += 1
            try:
                return function(*args, **kwargs)
            finally:
                self.paused -= 1

        return paused

    def _library_frame(self) -> str:
        import traceback

        for frame in reversed(traceback.extract_stack()):
            if any(library in frame.filename for library in self.LIBRARIES):
                return f"{frame.filename.rsplit('/', 2)[-2]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
        return "elsewhere"

    def start(self) -> None:
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        for method in ("tolist", "numpy"):
            original = self._patched.setdefault(method, getattr(torch.Tensor, method))

            def read(tensor, *args, _original=original, _name=method, **kwargs):
                self.count(_name, alias=True)
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, method, read)
        self._host_originals = [(module, name, getattr(module, name)) for module, name in self._host_side]
        for module, name, function in self._host_originals:
            setattr(module, name, self._paused_in(function))
        self._hooks = [register_optimizer_step_pre_hook(lambda *_: setattr(self, "in_optimizer", True)),
                       register_optimizer_step_post_hook(lambda *_: setattr(self, "in_optimizer", False))]
        self._mode.__enter__()

    def stop(self) -> None:
        import torch

        self._mode.__exit__(None, None, None)
        for method, original in self._patched.items():
            setattr(torch.Tensor, method, original)
        for hook in self._hooks:
            hook.remove()
        for module, name, function in self._host_originals:
            setattr(module, name, function)

    def result(self) -> dict:
        keys = ("ops", "kernels", "syncs", "optimizer_ops", "optimizer_kernels", "optimizer_syncs")
        return {**{key: self.figures[key] for key in keys}, "op_counts": dict(self.ops.most_common()),
                "sync_sites": dict(self.sync_sites.most_common())}


class StepProfiler:
    """torch.profiler around what runs between :meth:`start` and :meth:`stop`; at the stop, the
    operators by their own device time (on a GPU) and by their own host time go to ``path``
    as text tables (where a step's milliseconds go)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        self.cuda = torch.cuda.is_available()
        self._profile = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else []))
        self._profile.__enter__()

    def stop(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self._profile.__exit__(None, None, None)
        table = self._profile.key_averages()
        sections = [("self device time", "self_device_time_total")] if self.cuda else []
        text = "".join(f"## by {title}\n{table.table(sort_by=key, row_limit=25)}\n"
                       for title, key in sections + [("self host time", "self_cpu_time_total")])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text, encoding="utf-8")
        print(f"profile -> {self.path}", file=sys.stderr, flush=True)

    def result(self) -> dict:
        return {"profile": str(self.path)}


def aihf_host_side() -> tuple[tuple[object, str], ...]:
    """aihf's host-side batch building, for :class:`OpCounter` (trl's collator runs before its step begins)."""
    import aihf.lm.methods as methods

    return (methods, "collate"), (methods, "pack")


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc); on CUDA, allocated device memory."""
    if CUDA:
        import torch

        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_mib() -> float:
    if CUDA:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def clocks() -> tuple[float, float]:
    """(wall, CPU) clock readings; CPU time is this process's user + system time."""
    if CUDA:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


class TokenCounter:
    """Counts real tokens of every forward pass of ``model`` while it is in train mode."""

    def __init__(self, model, ops: OpCounter | None = None) -> None:
        self.tokens, self.op_counter = 0, ops
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.op_counter:  # the count of the bench's own sum and read is not the step's
            self.op_counter.paused += 1
        self.tokens += int(mask.sum()) if mask is not None else int(ids.numel())
        if self.op_counter:
            self.op_counter.paused -= 1


class SequenceTokenCounter:
    """Counts the real tokens (prompt + response) of every sequence ``method.logps`` scores
    with a model in train mode: a packed batch's filler tokens are not counted, as a padded
    batch's padding is not by :class:`TokenCounter`."""

    def __init__(self, method) -> None:
        self.tokens = 0
        logps = method.logps

        def counted(model, sequences, *args, **kwargs):
            if model.training:
                self.tokens += sum(len(prompt) + len(response) for prompt, response in sequences)
            return logps(model, sequences, *args, **kwargs)

        method.logps = counted


def run_trl(args, tokenizer, policy, records, variant: str, extra) -> tuple[list[tuple[float, float]], int]:
    import copy

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[tuple[float, float]] = []

        def on_step_begin(self, *_, **__) -> None:
            if extra and len(self.times) == args.warmup + args.steps:
                extra.start()
            self.start = clocks()

        def on_step_end(self, *_, **__) -> None:
            if extra and len(self.times) == args.warmup + args.steps:
                extra.stop()
            self.times.append(elapsed(self.start))

    reference = copy.deepcopy(policy).eval().requires_grad_(False)  # see RESOURCES.md: needed for a config-built model
    timer = StepTimer()  # the token counter after the copy: the reference carries no counting hook
    counter = TokenCounter(policy, extra if isinstance(extra, OpCounter) else None)
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=args.pairs,
            max_steps=total_steps(args),
            learning_rate=args.lr,
            beta=0.1,
            max_grad_norm=1.0,
            max_length=args.max_length,
            optim="adamw_torch",
            lr_scheduler_type="constant",
            precompute_ref_log_probs=variant == "trl-precompute",
            gradient_checkpointing=variant == "trl-defaults",
            bf16=variant == "trl-defaults" or args.mixed_precision == "bf16",
            use_cpu=args.device == "cpu",
            report_to="none",
            save_strategy="no",
            logging_steps=10**6,
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records])
        trainer = DPOTrainer(
            model=policy, ref_model=reference, args=config, train_dataset=data,
            processing_class=tokenizer, callbacks=[timer],
        )
        trainer.train()
    return timer.times[args.warmup : args.warmup + args.steps], counter.tokens // total_steps(args)


def run_aihf(args, tokenizer, policy, records, method_name: str, extra) -> tuple[list[tuple[float, float]], int]:
    from accelerate import Accelerator

    from aihf.data import Demonstration, Preference
    from aihf.lm.batching import Encoder
    from aihf.lm.methods import ImplicitRewardMethod, MethodConfig
    from aihf.lm.trainer import LoopConfig, Trainer

    prefs = [Preference(prompt=r["prompt"], chosen=r["chosen"], rejected=r["rejected"]) for r in records]
    demos = [Demonstration(prompt=r["prompt"], response=r["demonstration"]) for r in records]
    encoder = Encoder(tokenizer, max_length=args.max_length, max_prompt_length=args.max_length // 2)
    parts = method_name.split("-")
    fused, packed, chunked = ("fused" in parts), ("packed" in parts), ("chunked" in parts)
    if "blocks" in parts and "compiled" not in parts:
        raise SystemExit(f"{method_name}: -blocks is a scope of -compiled: write -compiled-blocks")
    if "compiled" in parts:
        from aihf.lm.models import compile_body

        compile_body(policy, scope="blocks" if "blocks" in parts else "body")
    method_name = "-".join(part for part in parts if part not in OPTIONS)
    method = ImplicitRewardMethod(
        method_name, MethodConfig(beta=0.1), tokenizer, encoder, policy,
        {"train": demos if method_name == "aihf-dpo" else []}, {"train": prefs}, padding_free=packed,
        logprob_chunk=args.logprob_chunk if chunked else None,
    )
    counter = SequenceTokenCounter(method)
    with tempfile.TemporaryDirectory() as out:
        loop = LoopConfig(
            output_dir=out, max_steps=total_steps(args), micro_batch_size=args.pairs,
            learning_rate=args.lr, max_grad_norm=1.0, log_with="none", progress=False, seed=0, fused_optimizer=fused,
        )
        trainer = Trainer(method, loop, Accelerator(cpu=args.device == "cpu", mixed_precision=args.mixed_precision))
        method.start_round(0, seed=0)  # reference log-probs, as Trainer.fit does before step 1
        policy.train()
        times = []
        for _ in range(args.warmup + args.steps):
            start = clocks()
            trainer.train_step()  # the body of Trainer.fit's loop, timed alone
            times.append(elapsed(start))
            trainer.step += 1
        if extra:
            extra.start()
            trainer.train_step()
            extra.stop()
    return times[args.warmup :], counter.tokens // total_steps(args)


def total_steps(args) -> int:
    """Warm-up and timed steps, and the untimed step of ``--count-ops`` or ``--profile``."""
    return args.warmup + args.steps + bool(args.count_ops or args.profile)


def worker(args) -> dict:
    global CUDA
    import torch

    CUDA = args.device == "cuda"
    torch.set_num_threads(args.threads)
    # Every contender imports both stacks before the RSS baseline, so imports count alike.
    import datasets  # noqa: F401
    from trl import DPOConfig, DPOTrainer  # noqa: F401

    import aihf.lm.methods  # noqa: F401
    import aihf.lm.trainer  # noqa: F401
    from aihf.lm.models import use_attention
    from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    shape = ARCHS[args.arch] if args.arch else dict(
        hidden_size=args.hidden, num_hidden_layers=args.layers, intermediate_size=4 * args.hidden,
        **({"vocab_size": args.vocab} if args.vocab else {}),
    )
    policy = tiny_causal_lm(tokenizer, seed=0, max_position_embeddings=2048, **shape).to(
        args.device, dtype=getattr(torch, args.weights))
    use_attention(policy, args.attn)  # every contender alike (trl trains this policy too)
    records = make_records(args.pairs * total_steps(args), args.prompt_words, args.response_words,
                           args.response_spread)
    extra = (OpCounter(host_side=aihf_host_side()) if args.count_ops
             else StepProfiler(args.profile) if args.profile else None)
    baseline = rss_mib()
    if args.worker.startswith("trl"):
        times, tokens = run_trl(args, tokenizer, policy, records, args.worker, extra)
    else:
        times, tokens = run_aihf(args, tokenizer, policy, records, args.worker.removeprefix("aihf-"), extra)
    step = statistics.median(wall for wall, _ in times)
    cpu = statistics.median(cpu for _, cpu in times)
    return {
        "contender": args.worker,
        "step_s_median": step,
        "step_cpu_s_median": cpu,
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / step,
        "tokens_per_cpu_s": tokens / cpu,
        "peak_rss_mib": peak_rss_mib(),
        "growth_mib": peak_rss_mib() - baseline,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "weights_dtype_after": str(next(policy.parameters()).dtype).removeprefix("torch."),  # as trained, not as asked
        **(extra.result() if extra else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                        help="comma-separated; aihf's take any of the suffixes -packed, -fused, -chunked, -compiled, -blocks in that order (-blocks only after -compiled)")
    parser.add_argument("--pairs", type=int, default=8, help="preference pairs per step")
    parser.add_argument("--prompt-words", type=int, default=8)
    parser.add_argument("--response-words", type=int, default=24)
    parser.add_argument("--response-spread", type=float, default=0.0,
                        help="responses of (1 - this) x --response-words to --response-words words")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--vocab", type=int, help="output vocabulary (default: the tiny tokenizer's); a Pythia-sized "
                        "one (50304) shows the cost of full-vocabulary logits")
    parser.add_argument("--logprob-chunk", type=int, default=1024, help="model.logprob_chunk of the -chunked contenders")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--arch", choices=sorted(ARCHS), help="a Pythia architecture instead of --hidden/--layers")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--weights", choices=("float32", "bfloat16"), default="float32",
                        help="the policy's dtype, for every contender (bfloat16: no float32 master weights)")
    parser.add_argument("--attn", help="the policy's attention kernel for every contender (transformers' "
                        "attn_implementation: sdpa, eager, flex_attention, flash_attention_2...); default the model's")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender; the fastest is reported")
    extra = parser.add_mutually_exclusive_group()
    extra.add_argument("--count-ops", action="store_true", help="count the operators and host synchronisations of "
                       "one more step (OpCounter): columns ops, kernels, syncs per step")
    extra.add_argument("--profile", type=Path, help="profile one more step (torch.profiler; one contender): its "
                       "operator tables by device and host time go to this file")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    names, load_before = args.contenders.split(","), os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for _ in range(args.repeats):  # round-robin, so a burst of load elsewhere hits every contender
        for name in names:
            command = [sys.executable, __file__, *sys.argv[1:], "--worker", name]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-4000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = [min(runs[name], key=lambda r: r["step_cpu_s_median"]) for name in names]
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {args.threads}; {rows[0]['parameters']:,} parameters; "
          f"best of {args.repeats} runs of {args.steps} timed steps; "
          f"{args.pairs} pairs/step; {args.weights} weights, mixed precision {args.mixed_precision}, attention "
          f"{args.attn or 'the model default'}; load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    memory = "CUDA allocated" if args.device == "cuda" else "RSS"
    counted = " | ops/step | kernels/step | host syncs/step | optimizer kernels, syncs (CPU)" if args.count_ops else ""
    print("| contender | step CPU time | step wall time | tokens/step | tokens per CPU-s | tokens/s (wall) "
          f"| peak {memory} | {memory} growth{counted} |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * (4 * args.count_ops))
    for r in rows:
        counts = (f" | {r['ops']:,} | {r['kernels']:,} | {r['syncs']} | {r['optimizer_kernels']:,}, "
                  f"{r['optimizer_syncs']}" if args.count_ops else "")
        print(f"| {r['contender']} | {r['step_cpu_s_median'] * 1000:.1f} ms | {r['step_s_median'] * 1000:.1f} ms | "
              f"{r['tokens_per_step']} | {r['tokens_per_cpu_s']:,.0f} | {r['tokens_per_s']:,.0f} | "
              f"{r['peak_rss_mib']:.0f} MiB | {r['growth_mib']:.0f} MiB{counts} |")
    for r in rows if args.count_ops else ():
        sites = "; ".join(f"{n} x {site}" for site, n in r["sync_sites"].items()) or "none"
        print(f"\nhost syncs of {r['contender']} outside the optimizer: {sites}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
