"""The model card (``README.md``) written next to every trained model in ``final/``, as trl
writes one: what was trained, from what, on what, with which settings, to which metrics,
and how to load it."""

from __future__ import annotations

import dataclasses

import yaml

from aihf.lm.methods import RECIPES


def _metrics_table(history: list[dict], evaluations: list[dict]) -> str:
    rows = []
    if history:
        last = history[-1]
        rows += [(f"train/{k}", v) for k, v in last.items() if k != "step" and not k.startswith("lr/")]
    if evaluations:
        rows += [(k, v) for k, v in evaluations[-1].items() if k not in ("step", "round")]
    if not rows:
        return "No metrics were logged.\n"
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def model_card(method: str, kind: str, config, history: list[dict], evaluations: list[dict], folder: str) -> str:
    """Markdown for the ``kind`` model (``policy`` or ``reward``) that ``method`` trained with ``config``."""
    recipe, data = RECIPES[method], config.data
    files = {k: v for k, v in dataclasses.asdict(data).items() if k.endswith(("demonstrations", "preferences", "prompts")) and v}
    settings = {"method": dataclasses.asdict(config.method), "loop": dataclasses.asdict(config.loop)}
    front = {"library_name": "aihf" if kind == "reward" else "transformers", "tags": ["aihf", method, kind],
             "base_model": config.model.name_or_path}
    load = (f'from aihf.lm.models import RewardModel\nreward = RewardModel.load("{folder}")' if kind == "reward" else
            f'from transformers import AutoModelForCausalLM, AutoTokenizer\n'
            f'model = AutoModelForCausalLM.from_pretrained("{folder}")\ntokenizer = AutoTokenizer.from_pretrained("{folder}")')
    steps = history[-1]["step"] if history else 0
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# {method}: {kind}\n\n{recipe.description}. Trained with aihf for {steps} optimizer steps from "
        f"`{config.model.name_or_path}`"
        + (f", reward started from `{config.model.reward_model}`" if config.model.reward_model else "") + ".\n\n"
        "## Data\n\n" + ("".join(f"- `data.{k}`: `{v}`\n" for k, v in files.items()) or "- none recorded\n")
        + f"- `data.max_length` {data.max_length}, `data.max_prompt_length` {data.max_prompt_length}, "
        f"`data.eval_fraction` {data.eval_fraction}\n\n"
        "## Final metrics\n\n" + _metrics_table(history, evaluations)
        + "\n## Settings\n\n```yaml\n" + yaml.safe_dump(settings, sort_keys=False) + "```\n\n"
        "## Load\n\n```python\n" + load + "\n```\n"
    )
