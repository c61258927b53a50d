"""``aihf eval``: score a trained policy (or reward model) on held-out data.

For a policy pi with reference pi_ref, on held-out preferences:
    implicit reward        r(x, y) = beta * [log pi(y|x) - log pi_ref(y|x)]     (docs/method.md section 4)
    preference accuracy    mean 1[ r(x, y_w) > r(x, y_l) ]
    reward margin          mean ( r(x, y_w) - r(x, y_l) )
Without a reference, r = log pi(y|x) (the ranking a likelihood model implies).
For a reward model (a directory written by ``RewardModel.save``), r is its output.
On held-out demonstrations: the mean per-sequence log-likelihood log pi(y_E|x) (sum over
response tokens) and its token mean, and the perplexity exp(-token mean).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from aihf import objective
from aihf.config import ConfigError
from aihf.lm.batching import Encoder, Sequence, collate
from aihf.lm.in_memory import check_columns, field_columns, named_dataset, read_records
from aihf.lm.models import RewardModel, is_saved_reward_model, load_causal_lm, load_reward_model


@torch.no_grad()
def sequence_scores(
    model, sequences: list[Sequence], pad_id: int, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of response-token log-probs, number of response tokens) per sequence, in batches.

    With a :class:`RewardModel` the first tensor is its reward and the second is ones. ``model``
    may be anything with ``.device`` that returns ``.logits`` (e.g. an ``AdapterDisabledReference``);
    put it in eval mode first.
    """
    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    totals, counts = [], []
    for start in range(0, len(sequences), batch_size):
        batch = collate(sequences[start : start + batch_size], pad_id).to(device)
        if isinstance(model, RewardModel):
            totals.append(model(batch.input_ids, batch.attention_mask).float())
            counts.append(torch.ones_like(totals[-1]))
            continue
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        totals.append(objective.sequence_logprobs(logits, batch.input_ids, batch.loss_mask))
        counts.append(batch.loss_mask[:, 1:].sum(-1).clamp(min=1).float())
    return torch.cat(totals).cpu(), torch.cat(counts).cpu()


def preference_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Accuracy (ties count half) and mean margin of rewards of chosen over rejected."""
    margin = chosen - rejected
    accuracy = ((margin > 0).float() + 0.5 * (margin == 0).float()).mean()
    return {"preference_accuracy": float(accuracy), "reward_margin": float(margin.mean()), "pairs": len(margin)}


def demonstration_metrics(total: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
    """Mean log-likelihood (sum and token-mean) of demonstrations and the token perplexity."""
    token_mean = float(total.sum() / counts.sum())
    return {
        "demo_logprob_sum": float(total.mean()),
        "demo_logprob_token_mean": token_mean,
        "demo_perplexity": math.exp(-token_mean),
        "demonstrations": len(total),
    }


def evaluate(
    model_path: str,
    preferences=None,
    demonstrations=None,
    reference_path: str | None = None,
    beta: float = 0.1,
    max_length: int = 512,
    max_prompt_length: int = 256,
    batch_size: int = 8,
    columns: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, float]:
    """The metrics of this module's docstring for a policy or reward model at ``model_path``.
    ``columns``: the data's own column names, as ``DataConfig.columns`` gives them (keys
    ``preferences``, ``demonstrations`` or their ``eval_`` forms)."""
    if preferences is None and demonstrations is None:
        raise ValueError("give held-out preferences, demonstrations or both")
    is_reward = is_saved_reward_model(model_path)
    model, tokenizer = (load_reward_model if is_reward else load_causal_lm)(model_path)
    model.eval()
    encoder = Encoder(tokenizer, max_length=max_length, max_prompt_length=max_prompt_length)
    pad = tokenizer.pad_token_id
    metrics: dict[str, float] = {}
    if preferences is not None:
        held = read_records("eval_preferences", preferences, field_columns(columns, "eval_preferences"))
        pairs = [encoder.preference(p) for p in held]
        sequences = [c for c, _ in pairs] + [r for _, r in pairs]
        scores, _ = sequence_scores(model, sequences, pad, batch_size)
        if reference_path is not None and not is_reward:
            reference, _ = load_causal_lm(reference_path)
            scores = beta * (scores - sequence_scores(reference.eval(), sequences, pad, batch_size)[0])
        metrics.update(preference_metrics(scores[: len(pairs)], scores[len(pairs) :]))
    if demonstrations is not None:
        if is_reward:
            raise ValueError("a reward model has no likelihood: demonstrations need a policy")
        held = read_records("eval_demonstrations", demonstrations, field_columns(columns, "eval_demonstrations"))
        sequences = [encoder.demonstration(d) for d in held]
        metrics.update(demonstration_metrics(*sequence_scores(model, sequences, pad, batch_size)))
    metrics["truncated_sequences"] = encoder.stats.prompts_truncated + encoder.stats.responses_truncated
    return metrics


def run_beta(model_path: str | Path) -> float | None:
    """``method.beta`` of the ``aihf train`` run whose final model is ``model_path``
    (``RUN/final/policy`` -> ``RUN/config.yaml``), or None when there is no such config."""
    config = Path(model_path).resolve().parent.parent / "config.yaml"
    if not config.is_file():
        return None
    loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    beta = (loaded.get("method") or {}).get("beta") if isinstance(loaded, dict) else None
    return float(beta) if isinstance(beta, (int, float)) and not isinstance(beta, bool) else None


def check_model_path(model: str) -> None:
    """A local ``--model`` must be a loadable folder: a run's ``final/`` (which holds ``policy/``
    and ``reward/``) or a run folder is named as such, with the folder to give instead."""
    path = Path(model)
    if not path.exists():
        if path.is_absolute() or model.startswith((".", "runs/", "outputs/")):
            raise ConfigError(f"--model {model}: no such folder")
        return  # a hub name
    if not path.is_dir():
        raise ConfigError(f"--model {model}: not a folder")
    if (path / "config.json").is_file() or is_saved_reward_model(path):
        return
    for inner in ("policy", "final/policy", "policy/final/policy", "reward", "final/reward"):
        if (path / inner / "config.json").is_file() or is_saved_reward_model(path / inner):
            raise ConfigError(f"--model {model}: a run's folder, not a model; the trained model is {path / inner}")
    raise ConfigError(f"--model {model}: no config.json (not a saved model folder)")


def parse_columns(text: str | None) -> dict[str, Any]:
    """``aihf eval --columns``: a YAML mapping as ``DataConfig.columns`` takes it, checked."""
    if not text:
        return {}
    columns = yaml.safe_load(text)
    if not isinstance(columns, dict):
        raise ConfigError(f"--columns: expected a mapping such as '{{preferences: {{prompt: question}}}}', got {text!r}")
    try:
        check_columns(columns)
    except ValueError as err:
        raise ConfigError(f"--{err}") from err
    return columns


def evaluate_from_cli(args: argparse.Namespace) -> int:
    """Entry point of ``aihf eval``."""
    check_model_path(args.model)
    held_out = {}  # flag -> a file, a dataset it names (a save_to_disk folder, a hub dataset) or None
    for flag, value in (("--preferences", args.preferences), ("--demonstrations", args.demonstrations)):
        dataset = named_dataset(flag, value) if value else None
        if value and dataset is None and not Path(value).is_file():
            raise ConfigError(f"{flag} {value}: no such file")
        held_out[flag] = value if dataset is None else dataset
    if args.reference:
        check_model_path(args.reference)
    beta = args.beta
    if beta is None:
        beta = run_beta(args.model)
        print(f"beta {beta} (from the run's config.yaml)" if beta is not None else "beta 0.1 (no run config found)")
        beta = 0.1 if beta is None else beta
    metrics = evaluate(args.model, held_out["--preferences"], held_out["--demonstrations"], args.reference, beta,
                       columns=parse_columns(args.columns))
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.output:
        Path(args.output).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        print(f"metrics written to {args.output}")
    return 0
