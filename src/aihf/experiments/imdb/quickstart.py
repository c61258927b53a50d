"""``aihf quickstart``: the IMDb experiment at the ``quickstart`` preset, with a before/after summary.

The preset (``configs/imdb/quickstart.yaml``) runs the whole pipeline of ``pipeline.py``
on 2 CPU cores in a few minutes with nothing from a hub: a small GPT-NeoX built from
scratch on the SFT split, SFT, D and P built from its answers with the gold reward, DPO
and AIHF-DPO over three seeds, and the evaluation on held-out prompts. The summary puts
each method's metrics next to pi_SFT's (before) and names the files written.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from aihf import logs
from aihf.config import ConfigError
from aihf.data import DataError
from aihf.eval.metrics import METRICS
from aihf.eval.plots import format_stat, label
from aihf.experiments.imdb.pipeline import BASELINE, run
from aihf.experiments.imdb.presets import load_preset

PRESET = "quickstart"


def before_after(results: dict) -> str:
    """Per setting, pi_SFT (before) and each trained method (after): every metric as mean ± 95% CI."""
    header = ["", *(label(results, metric) for metric in METRICS)]
    lines = []
    for setting, methods in results["settings"].items():
        rows = [[f"before: {BASELINE}", *(format_stat(methods[BASELINE][m], 2) for m in METRICS)]]
        rows += [[f"after: {name}", *(format_stat(entry[m], 2) for m in METRICS)] for name, entry in methods.items() if name != BASELINE]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        lines.append(f"setting {setting!r} ({results['data'][setting]['demonstrations']} demonstrations, "
                     f"{results['data'][setting]['preferences']} preferences):")
        for row in [header, *rows]:
            lines.append("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    return "\n".join(lines)


def run_quickstart(output_dir: str, overrides: list[str]) -> int:
    """Run the quickstart preset (with ``overrides``) into ``output_dir`` and print the summary."""
    logs.setup(logging.WARNING)
    start = time.perf_counter()
    try:
        config = load_preset(PRESET, overrides)
        print(f"aihf quickstart: IMDb sentiment, {', '.join(config.methods)} from pi_SFT, "
              f"{logs.count(len(config.seeds), 'seed')}, outputs in {output_dir}/", flush=True)
        results = run(config, output_dir)
    except (ConfigError, DataError, FileNotFoundError, ImportError) as err:
        print(f"aihf: {err}", file=sys.stderr)
        return 2
    out = Path(output_dir)
    print()
    print(before_after(results))
    print(
        f"\ngold reward: logit of a TF-IDF sentiment classifier trained on IMDb labels "
        f"({results['gold_heldout_accuracy']:.1%} held-out accuracy); judge: {results['judge']['name']}, "
        f"never trained on; KL and win rate against pi_SFT on {config.generation.num_eval_prompts} "
        f"held-out prompts; ± is a 95% t-interval over seeds."
    )
    print(f"finished in {time.perf_counter() - start:.0f} s")
    print(f"plot: {out / 'reward_vs_kl.png'} (and {', '.join(f'{m}.png' for m in METRICS)})")
    print(f"table: {out / 'results.md'}; samples: {out / 'generations'}/<setting>/samples.md")
    return 0
