"""Train only the IMDb pipeline's base model and SFT stages of a preset and print their SHA-256,
to learn before a long grid whether this machine gives the pi_SFT an export was made with
(docs/reproducibility.md: the same code gives another pi_SFT on another kind of CPU).

    OMP_NUM_THREADS=1 python scripts/imdb_sft_fingerprint.py configs/imdb/scratch-cpu-tune.yaml \
        --expect docs/results/imdb-scratch-cpu-tune/imdb-tune/state.json

Runs the pipeline's own split and SFT code (`pipeline.run_sft`) in a temporary folder (or
`--output-dir`) with the thread count the pipeline would use (the preset's `threads`, else
torch's default: set OMP_NUM_THREADS as the run did, since the thread count changes the sums
too), and prints the split, the SFT demonstrations, the base model and each stage's weights,
the thread count and this machine (`runtime.provenance()`). With `--expect STATE_JSON` (written by
`scripts/imdb_export_units.py`) it exits with status 1 when pi_SFT differs from the one
recorded there, naming the machine that recorded it when the file says: that export's units
would be trained again here, not reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from aihf.experiments.imdb import data, pipeline
from aihf.experiments.imdb.presets import load_preset
from aihf.lm.models import weights_sha256
from aihf.runtime import file_sha256, machine_of, provenance, set_torch_threads


def fingerprint(preset: str, overrides: list[str], out: Path) -> dict[str, str]:
    """SHA-256 of the split, the SFT demonstrations, the base model (a scratch or tiny preset's),
    every SFT stage's weights and pi_SFT's (the last stage's, or the base's without SFT stages), as
    the pipeline makes them in ``out``."""
    config = load_preset(preset, overrides)
    if config.threads is not None:  # as pipeline.run does
        set_torch_threads(config.threads)
    reviews = data.load_reviews()
    split = data.load_or_make_split(out / "split.json", reviews, config.split, config.prompts)
    checkpoints = pipeline.run_sft(config, reviews, split, out)
    hashes = {"split": file_sha256(out / "split.json"),
              "sft demonstrations": file_sha256(out / "sft" / "demonstrations.jsonl")}
    if (out / "base" / "config.json").is_file():
        hashes["base model"] = weights_sha256(out / "base")
    for stage, checkpoint in enumerate(checkpoints if config.sft.stage_steps else []):
        hashes[f"SFT stage {stage}"] = weights_sha256(checkpoint)
    hashes["pi_SFT"] = weights_sha256(checkpoints[-1])  # the base itself without SFT stages
    return hashes


def mismatch(state: dict, pi_sft: str, where: Path) -> str | None:
    """Why an export's ``state.json`` (``state``, read from ``where``) does not name this
    machine's pi_SFT (``pi_sft``: its SHA-256), or None when it does."""
    if state["pi_sft_sha256"] == pi_sft:
        return None
    return (f"pi_SFT differs from {where}'s {state['pi_sft_sha256']}, made on {machine_of(state.get('versions'))}: "
            "its units would be trained again here, unless the export carries its SFT stages "
            "(scripts/imdb_export_units.py --with-sft)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="an IMDb preset name or YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--expect", type=Path, metavar="STATE_JSON", help="an export's state.json: exit 1 if pi_SFT differs")
    p.add_argument("--output-dir", type=Path, help="keep the stages here (default: a temporary folder, removed); "
                   "stages already finished there are reused, not trained again")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sft-fingerprint-") as tmp:
        hashes = fingerprint(args.preset, args.overrides, args.output_dir or Path(tmp))
    here = provenance()
    for name, digest in hashes.items():
        print(f"{name:>20}  {digest}")
    print(f"{'machine':>20}  {machine_of(here)}, {torch.get_num_threads()} torch thread(s)")
    if args.expect:
        problem = mismatch(json.loads(args.expect.read_text(encoding="utf-8")), hashes["pi_SFT"], args.expect)
        if problem:
            sys.exit(problem)
        print(f"pi_SFT is {args.expect}'s: its units are reused here")


if __name__ == "__main__":
    main()
