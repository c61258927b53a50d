"""``aihf export-reward``: a reward model trained here (``final/reward``, ``RewardModel.save``)
written as transformers' ``AutoModelForSequenceClassification`` with one label, the form TRL
takes a reward model in (``GRPOTrainer`` and ``RLOOTrainer`` with ``reward_funcs=FOLDER``, its
experimental online DPO; trl 1.16) and reward servers load.

    aihf export-reward runs/rlhf/reward/final/reward --out reward-hf

The folder holds the classifier (safetensors), its tokenizer (with a pad token of its own when
the pad was EOS: ``RewardModel.to_sequence_classification``) and ``aihf_reward_offset.json``:
the head's bias, which the classifier's score layer has no place for; its logit plus that offset
is the reward aihf computes on the same right-padded tokens. ``model.reward_model`` reads such
a folder back (the offset restored), and any TRL reward model likewise.
"""

from __future__ import annotations

import json
from pathlib import Path

from aihf.config import ConfigError
from aihf.lm.models import REWARD_OFFSET, is_saved_reward_model, load_reward_model
from aihf.runtime import atomic_directory


def export_reward(source: str | Path, out: str | Path, dtype: str = "float32",
                  trust_remote_code: bool = False) -> float:
    """Write the reward model saved in ``source`` to ``out`` (atomically) as a one-label sequence
    classifier; returns the offset to add to its logit."""
    if not is_saved_reward_model(source):
        raise ConfigError(f"{source} is not a saved reward model (a final/reward folder of `aihf train reward`, "
                          "rlhf or aihf)")
    reward, tokenizer = load_reward_model(source, dtype, trust_remote_code)
    classifier, tokenizer, offset = reward.to_sequence_classification(tokenizer)
    with atomic_directory(out) as tmp:
        classifier.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / REWARD_OFFSET).write_text(json.dumps({
            "offset": offset,
            "meaning": "aihf's reward = this classifier's logit + offset, on right-padded token ids",
            "source": str(source)}, indent=1), encoding="utf-8")
    return offset


def export_reward_from_cli(source: str, out: str, dtype: str, trust_remote_code: bool) -> int:
    offset = export_reward(source, out, dtype, trust_remote_code)
    print(f"reward model in {out}: AutoModelForSequenceClassification, num_labels=1; "
          f"aihf's reward is its logit {'+' if offset >= 0 else '-'} {abs(offset):.6g} ({REWARD_OFFSET})")
    return 0
