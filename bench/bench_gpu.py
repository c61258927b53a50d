"""The GPU measurements of issue 11, as one run: training steps against trl and generation
against transformers, on the same card, written to ``docs/benchmarks/gpu.json``.

    python bench/bench_gpu.py                              # CUDA: Pythia-160M and -1B architectures
    python bench/bench_gpu.py --quick --device cpu         # a small model on the CPU: checks the script
    python bench/bench_gpu.py --render                     # gpu.json -> the table in docs/benchmarks.md

Training steps (``what: "train-step"``): ``bench_dpo_step.py`` runs each contender in its own
process on random-weight Pythia architectures (no download), the same synthetic pairs,
batch and precision (bf16 autocast on CUDA): trl's DPOTrainer with and without
precomputed reference log-probs (``trl``, ``trl-precompute``), aihf's DPO and AIHF-DPO
(``aihf:dpo``, ``aihf:aihf-dpo``; ``options`` names the aihf settings used, e.g.
padding-free batches). Generation (``what: "generate"``): transformers' ``generate`` with
the dynamic and the static KV cache (``hf-dynamic``, ``hf-static``), aihf's ``HFSampler``
(``aihf:generate``), aihf's own decoding loop ``StaticLoopSampler`` (``aihf:generate`` with
option ``sampler=static-loop``) and, when vllm is installed, ``VLLMSampler`` (``aihf:vllm``); returned
new tokens per second, sampling at temperature 1. Each record:
{"card", "date", "model", "what", "impl", "tokens_per_s", "peak_gib", "batch", "seq_len", "options"}.
Records already in the file are kept unless this run measures the same thing (card, date,
model, what, impl and options) again; the file is rewritten after
every record, one architecture at a time (training, then generation), so a run cut short
keeps what it measured. ``--render`` rewrites the table between the ``gpu.json`` markers of
docs/benchmarks.md. On the device machine ``bench/gpu_bench.sh`` runs this script with the
wheels the image lacks.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN_IMPLS = {"trl": "trl", "trl-precompute": "trl-precompute", "aihf:dpo": "aihf-dpo", "aihf:aihf-dpo": "aihf-aihf-dpo"}
GENERATE_IMPLS = ("hf-dynamic", "hf-static", "aihf:generate", "aihf:vllm")
FIELDS = ("card", "date", "model", "what", "impl", "tokens_per_s", "peak_gib", "batch", "seq_len", "options")
MARKERS = ("<!-- gpu.json: begin (bench/bench_gpu.py --render) -->", "<!-- gpu.json: end -->")


def check_record(record: dict) -> dict:
    """A record of the schema above, or ValueError naming what is wrong."""
    if set(record) != set(FIELDS):
        raise ValueError(f"record keys {sorted(record)} are not {sorted(FIELDS)}")
    allowed = TRAIN_IMPLS if record["what"] == "train-step" else GENERATE_IMPLS if record["what"] == "generate" else None
    if allowed is None or record["impl"] not in allowed:
        raise ValueError(f"impl {record['impl']!r} is not one of {list(allowed or [])} for what={record['what']!r}")
    if not record["tokens_per_s"] > 0 or not record["peak_gib"] >= 0:
        raise ValueError(f"tokens_per_s and peak_gib must be positive: {record}")
    return record


def card_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def train_records(args, card: str, date: str, arch: str, emit) -> None:
    """One record per contender on ``arch``, each contender a ``bench_dpo_step`` run, passed to ``emit``."""
    shape = ["--hidden", "64", "--layers", "2"] if arch == "tiny" else ["--arch", arch]
    for impl, contender in TRAIN_IMPLS.items():
        options = ([f"weights={args.weights}"] if args.weights != "float32" else []) + (
            [f"attn={args.attn}"] if args.attn else [])
        if impl.startswith("aihf") and args.aihf_options:
            contender += "-packed-fused-chunked" if contender == "aihf-dpo" else "-packed-chunked"
            options += ["model.padding_free", "model.logprob_chunk"] + (
                ["loop.fused_optimizer"] if impl == "aihf:dpo" else [])
        if impl.startswith("aihf") and args.compile:
            contender, options = contender + "-compiled", options + ["model.compile"]
            if args.compile == "blocks":
                contender, options = contender + "-blocks", options + ["model.compile_scope=blocks"]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            command = [sys.executable, str(ROOT / "bench" / "bench_dpo_step.py"), *shape, "--device", args.device,
                       "--mixed-precision", "bf16" if args.device == "cuda" else "no",
                       "--pairs", str(args.pairs), "--prompt-words", str(args.prompt_words),
                       "--response-words", str(args.response_words), "--response-spread", str(args.response_spread),
                       "--max-length", str(args.max_length), "--steps", str(args.steps), "--warmup", "3",
                       "--repeats", "1", "--weights", args.weights, "--contenders", contender, "--json", str(out),
                       *(["--attn", args.attn] if args.attn else []),
                       *(["--profile", str(args.profile_dir / f"profile-{arch}-train-{impl.replace(':', '-')}.txt")]
                         if args.profile_dir else [])]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{arch} {impl}: no result within --timeout {args.timeout} s", file=sys.stderr, flush=True)
                continue
            if done.returncode != 0:
                print(f"{arch} {impl}: failed\n{done.stderr[-2000:]}", file=sys.stderr, flush=True)
                continue
            row = json.loads(out.read_text())["rows"][0]
        if row["weights_dtype_after"] != args.weights:
            print(f"{arch} {impl}: trained with {row['weights_dtype_after']} weights, not {args.weights}: not recorded",
                  file=sys.stderr, flush=True)
            continue
        tokens = row["tokens_per_step"]
        record = emit(check_record({
            "card": card, "date": date, "model": arch, "what": "train-step", "impl": impl,
            "tokens_per_s": round(row["tokens_per_s"], 1), "peak_gib": round(row["peak_rss_mib"] / 1024, 3),
            "batch": args.pairs,  # seq_len: mean real tokens of the sequences a step scores (AIHF-DPO: 3 per pair)
            "seq_len": round(tokens / (args.pairs * (3 if impl == "aihf:aihf-dpo" else 2)), 1),
            "options": options,
        }))
        print(f"{arch:12} {impl:16} {record['tokens_per_s']:>10,.0f} tokens/s  {record['peak_gib']:.2f} GiB", flush=True)


def generate_records(args, card: str, date: str, arch: str, emit) -> None:
    """One record per generation implementation on ``arch`` (random weights), passed to ``emit``."""
    import importlib.util

    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_dpo_step import ARCHS

    from aihf.lm.generation import HFSampler, VLLMSampler
    from aihf.lm.static_loop import StaticLoopSampler
    from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    shape = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=256) if arch == "tiny" else ARCHS[arch]
    model = tiny_causal_lm(tokenizer, seed=0, max_position_embeddings=2048, **shape).to(args.device)
    if args.device == "cuda":
        model = model.to(torch.bfloat16)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(4, len(tokenizer), (args.gen_batch, args.gen_prompt_tokens), generator=generator).tolist()
    static_loop = StaticLoopSampler(model, tokenizer)  # kept: its compiled step and KV cache serve every call
    samplers = {  # (impl, options) -> one timed call
        ("hf-dynamic", ()): lambda: _raw_generate(model, prompts, args.gen_new_tokens, None),
        ("hf-static", ()): lambda: _raw_generate(model, prompts, args.gen_new_tokens, "static"),
        ("aihf:generate", ()): lambda: HFSampler(model, tokenizer).generate(prompts, args.gen_new_tokens, seed=0),
        ("aihf:generate", ("sampler=static-loop",)): lambda: static_loop.generate(prompts, args.gen_new_tokens, seed=0),
    }
    if importlib.util.find_spec("vllm") is not None and args.device == "cuda":
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            vllm = VLLMSampler(tmp, gpu_memory_utilization=0.5)
            samplers["aihf:vllm", ()] = lambda: vllm.generate(prompts, args.gen_new_tokens, seed=0)
            _measure_all(samplers, args, card, date, arch, emit)
    else:
        print(f"{arch}: vllm is not installed (or not on CUDA): aihf:vllm not measured", flush=True)
        _measure_all(samplers, args, card, date, arch, emit)


def _raw_generate(model, prompts: list[list[int]], new_tokens: int, cache: str | None) -> list[list[int]]:
    """transformers' ``generate`` on equal-length prompts, sampling, no eos stop: the new tokens."""
    import torch

    ids = torch.tensor(prompts, device=model.device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0,
                         cache_implementation=cache, pad_token_id=0)
    return out[:, ids.shape[1]:].tolist()


def _measure_all(samplers: dict, args, card: str, date: str, arch: str, emit) -> None:
    import torch

    for (impl, options), run in samplers.items():
        try:
            run()  # warm-up (compilation, cache allocation)
        except Exception as error:  # one implementation failing (another transformers there) leaves the others
            print(f"{arch} {impl} {' '.join(options)}: failed: {type(error).__name__}: {error}"[:2000], file=sys.stderr,
                  flush=True)
            continue
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        best = 0.0
        for _ in range(args.gen_repeats):
            start = time.perf_counter()
            responses = run()
            if args.device == "cuda":
                torch.cuda.synchronize()
            best = max(best, sum(len(r) for r in responses) / (time.perf_counter() - start))
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
        if args.profile_dir and impl in ("hf-static", "aihf:generate"):
            name = "-".join((arch, impl, *options)).replace(":", "-").replace("=", "-")  # plain file names
            _profile(run, args.profile_dir / f"profile-{name}.txt")
        emit(check_record({
            "card": card, "date": date, "model": arch, "what": "generate", "impl": impl,
            "tokens_per_s": round(best, 1), "peak_gib": round(peak, 3), "batch": args.gen_batch,
            "seq_len": args.gen_prompt_tokens + args.gen_new_tokens, "options": list(options),
        }))
        print(f"{arch:12} {impl:16} {best:>10,.0f} tokens/s  {' '.join(options)}", flush=True)


def _profile(run, path: Path) -> None:
    """One more call of ``run`` under torch.profiler (``bench_dpo_step.StepProfiler``): the
    operators by their own device and host time (where a decoding step's milliseconds go)."""
    from bench_dpo_step import StepProfiler

    profiler = StepProfiler(path)
    profiler.start()
    run()
    profiler.stop()


SHARED_CONDITIONS = ("weights", "attn")  # options every contender of a run shares (--weights, --attn)


def conditions(record: dict) -> tuple[str, ...]:
    """The options a record shares with its peers of the same run (``weights=...``, ``attn=...``;
    absent: float32 weights, the model's default attention)."""
    return tuple(sorted(o for o in record["options"] if o.split("=", 1)[0] in SHARED_CONDITIONS))


def same_measurement(a: dict, b: dict) -> bool:
    """Whether two records measure the same thing (card, date, model, what, impl and options) (a new run
    replaces the old)."""
    return all(a[k] == b[k] for k in ("card", "date", "model", "what", "impl")) and sorted(a["options"]) == sorted(b["options"])


def render_table(records: list[dict]) -> str:
    """The records as one markdown table, newest first, with each aihf figure's ratio to its
    peers on the same card, date, model and shared conditions (weights, attention): trl's DPOTrainer as configured by default
    and with precomputed reference log-probs (the fairer peer: aihf computes its reference
    log-probs before training too) for training, the HF static cache for generation."""
    found = {(r["card"], r["date"], r["model"], r["what"], r["impl"], conditions(r)): r["tokens_per_s"] for r in records}

    def ratio(record: dict, peer_impl: str) -> str:
        peer = found.get((record["card"], record["date"], record["model"], record["what"], peer_impl, conditions(record)))
        return f"{record['tokens_per_s'] / peer:.2f}x" if peer and record["impl"].startswith("aihf") else ""

    lines = ["| card | date | model | what | impl | tokens/s | vs trl / hf-static | vs trl-precompute | peak GiB | batch "
             "| seq len | options |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["date"], r["card"], r["model"], r["what"]), reverse=True):
        training = r["what"] == "train-step"
        lines.append(f"| {r['card']} | {r['date']} | {r['model']} | {r['what']} | {r['impl']} | {r['tokens_per_s']:,.0f} | "
                     f"{ratio(r, 'trl' if training else 'hf-static')} | {ratio(r, 'trl-precompute') if training else ''} | "
                     f"{r['peak_gib']:.2f} | {r['batch']} | {r['seq_len']} | {', '.join(r['options'])} |")
    return "\n".join(lines) + "\n"


def render(json_path: Path, markdown: Path) -> None:
    records = [check_record(r) for r in json.loads(json_path.read_text(encoding="utf-8"))]
    text = markdown.read_text(encoding="utf-8")
    begin, end = (text.index(marker) for marker in MARKERS)
    markdown.write_text(text[: begin + len(MARKERS[0])] + "\n" + render_table(records) + text[end:], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="default docs/benchmarks/gpu.json (--quick: runs/bench-gpu-quick.json)")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the table from --out")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--archs", nargs="+", default=["pythia-1b", "pythia-160m"],
                        help="Pythia architectures, or tiny, measured in this order")
    parser.add_argument("--quick", action="store_true", help="the tiny model and small sizes (a check of the script)")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--prompt-words", type=int, default=40)
    parser.add_argument("--response-words", type=int, default=150)
    parser.add_argument("--response-spread", type=float, default=0.5, help="responses of many lengths (bench_dpo_step)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--aihf-options", action=argparse.BooleanOptionalAction, default=True,
                        help="aihf with padding-free batches, log-probs from hidden states (model.logprob_chunk) "
                        "and, for DPO, the fused AdamW")
    parser.add_argument("--attn", help="attention kernel of every training contender (transformers' "
                        "attn_implementation, e.g. flex_attention; aihf's model.attn_implementation); default the model's")
    parser.add_argument("--weights", choices=("float32", "bfloat16"), default="float32",
                        help="the policy's dtype in the training steps, for trl and aihf alike (bfloat16: no float32 "
                        "master weights; recorded as weights=bfloat16 in every row's options)")
    parser.add_argument("--compile", nargs="?", const="body", choices=("body", "blocks"),
                        help="aihf's training steps with model.compile, of the whole body (--compile) or block by "
                        "block (--compile blocks); the compilation falls in the untimed warm-up steps: allow for it "
                        "in --timeout")
    parser.add_argument("--gen-batch", type=int, default=64)
    parser.add_argument("--gen-prompt-tokens", type=int, default=64)
    parser.add_argument("--gen-new-tokens", type=int, default=256)
    parser.add_argument("--gen-repeats", type=int, default=2)
    parser.add_argument("--profile-dir", type=Path, help="also profile one more step of each training contender, and "
                        "one call of hf-static and of each aihf:generate (torch.profiler operator tables, one text "
                        "file each, here)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per training contender")
    parser.add_argument("--skip", choices=("train", "generate"), action="append", default=[])
    args = parser.parse_args()
    args.out = args.out or ROOT / ("runs/bench-gpu-quick.json" if args.quick else "docs/benchmarks/gpu.json")
    if args.render:
        render(args.out, args.markdown)
        return
    if args.quick:
        args.archs, args.pairs, args.prompt_words, args.response_words, args.max_length = ["tiny"], 4, 8, 24, 128
        args.steps, args.gen_batch, args.gen_prompt_tokens, args.gen_new_tokens = 3, 4, 8, 16
    card, date = card_name(args.device), time.strftime("%Y-%m-%d", time.gmtime())
    start = time.time()
    earlier = [check_record(r) for r in json.loads(args.out.read_text(encoding="utf-8"))] if args.out.is_file() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = []

    def emit(record: dict) -> dict:
        """Keep the record (replacing an earlier one of the same measurement) and rewrite --out at once, so that
        a run cut short keeps what it measured."""
        records.append(record)
        kept = [r for r in earlier if not any(same_measurement(r, new) for new in records)]
        partial = args.out.with_name(args.out.name + ".tmp")
        partial.write_text(json.dumps(kept + records, indent=1) + "\n", encoding="utf-8")
        partial.replace(args.out)
        return record

    for arch in args.archs:  # one architecture whole (training, then generation) before the next
        if "train" not in args.skip:
            train_records(args, card, date, arch, emit)
        if "generate" not in args.skip:
            generate_records(args, card, date, arch, emit)
    print(render_table(records))
    print(f"{len(records)} records in {time.time() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
