"""The judge of the dialogue experiments: a reward model that no method trains on.

It scores the policies' answers to held-out prompts (docs/method.md section 6: the HH
setting is judged by a reward model none of the methods trains on). ``judge.kind``:

* ``sequence-classifier``: a Hugging Face sequence-classification reward model
  (``judge.name_or_path``, default OpenAssistant/reward-model-deberta-v3-large-v2, a hub
  name or a local folder), fed the pair (prompt text, response) as its tokenizer takes two
  texts. Its score is the logit for one label, or logit[1] - logit[0] for two;
* ``keywords``: the fixtures' scorer (:class:`~aihf.experiments.dialogue.fixtures.KeywordScorer`).

A chat prompt is given to the judge as HH-style text (``"\\n\\nHuman: ..."`` /
``"\\n\\nAssistant: ..."`` turns, :func:`prompt_text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from tqdm.auto import tqdm

from aihf.config import ConfigError, Settings, setting
from aihf.data import PromptRecord
from aihf.experiments.dialogue.fixtures import KeywordScorer

ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}


@dataclass
class JudgeSection(Settings):
    """The judge (``judge``): what scores the evaluation answers."""

    kind: Literal["sequence-classifier", "keywords"] = setting("sequence-classifier", help="reward model or fixture scorer")
    name_or_path: str = setting("OpenAssistant/reward-model-deberta-v3-large-v2", help="hub name or local folder")
    dtype: Literal["float32", "bfloat16", "float16"] = setting("float32", help="the judge's weights' dtype")
    max_length: int = setting(512, ge=8, help="tokens of prompt + response given to the judge (the default "
                              "judge, a DeBERTa-v3, was trained on 512)")
    batch_size: int = setting(16, ge=1, help="answers scored per forward pass")
    trust_remote_code: bool = setting(False, help="run the judge's own code from the hub")


class Judge(Protocol):
    name: str

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def prompt_text(record: PromptRecord) -> str:
    """The prompt as text: a plain prompt as it is, a chat prompt as HH-style turns ending in
    ``"\\n\\nAssistant:"``."""
    if not record.is_chat:
        return record.prompt
    turns = "".join(f"\n\n{ROLE_NAMES[m['role']]}: {m['content']}" for m in record.prompt_messages())
    return turns + "\n\nAssistant:"


class SequenceClassifierJudge:
    """A sequence-classification reward model on (prompt, response) pairs (module docstring)."""

    def __init__(self, config: JudgeSection, device: str) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from aihf.lm.models import as_dtype

        self.config, self.device, self.name = config, device, config.name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(config.name_or_path, trust_remote_code=config.trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            config.name_or_path, dtype=as_dtype(config.dtype), trust_remote_code=config.trust_remote_code
        ).to(device).eval()
        labels = self.model.config.num_labels
        if labels not in (1, 2):
            raise ConfigError(f"judge.name_or_path {config.name_or_path!r} has {labels} labels; a judge needs 1 (a reward) or 2")
        self._torch = torch

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        out: list[float] = []
        size = self.config.batch_size
        for start in tqdm(range(0, len(prompts), size), desc="judge scores answers", unit="batch", leave=False):
            batch = self.tokenizer(
                prompts[start : start + size], responses[start : start + size], padding=True, truncation=True,
                max_length=self.config.max_length, return_tensors="pt",
            ).to(self.device)
            with self._torch.no_grad():
                logits = self.model(**batch).logits.float()
            scores = logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]
            out += scores.cpu().tolist()
        return out


def make_judge(config: JudgeSection, device: str) -> Judge:
    """The judge ``config`` names, on ``device`` (the keyword scorer needs none)."""
    if config.kind == "keywords":
        return KeywordScorer()
    return SequenceClassifierJudge(config, device)
