"""The scored answers of an experiment's evaluation, written for people to read back:
every answer as ``<name>-seed-<s>.jsonl`` and ``samples.md``, the first prompts with each
policy's answer of the first seed and its scores side by side."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def readable(text: str) -> str:
    """``text`` on one markdown line: whitespace runs as one space, ``|`` escaped (tables), and
    a control character a model emitted (a byte-level model can) as its ``\\xNN`` escape,
    which a page shows instead of garbling the line."""
    line = " ".join(text.split()).replace("|", "\\|")
    return CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", line)


def write_generations(folder: Path, generations: dict[tuple[str, int], list[dict]], seed: int,
                      prompts: Sequence[str], title: str, score_keys: Sequence[str],
                      num_samples: int = 8, fenced_prompts: bool = False) -> Path:
    """Write ``generations`` ((name, seed) -> scored rows, one per prompt) to ``folder``;
    ``samples.md`` shows ``seed``'s answers to the first ``num_samples`` prompts with the row
    values of ``score_keys`` (a prompt in a code block when ``fenced_prompts``: multi-line
    dialogues). Returns the path of ``samples.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    for (name, run_seed), rows in generations.items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (folder / f"{name}-seed-{run_seed}.jsonl").write_text(text, encoding="utf-8")
    names = [name for name, run_seed in generations if run_seed == seed]
    lines = [f"# Sample generations (seed {seed}; {title})\n"]
    for i, prompt in enumerate(prompts[:num_samples]):
        shown = f"\n\n```\n{prompt.strip()}\n```\n\n" if fenced_prompts else f": {prompt!r}\n"
        lines.append(f"\n## Prompt {i + 1}{shown}")
        for name in names:
            row = generations[(name, seed)][i]
            scores = " / ".join(f"{row[key]:+.2f}" for key in score_keys)
            lines.append(f"- **{name}** ({scores}): {readable(row['response'])}\n")
    path = folder / "samples.md"
    path.write_text("".join(lines), encoding="utf-8")
    return path
