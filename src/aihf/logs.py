"""What the aihf commands print besides their results: each message once, no library noise.

:func:`setup` is called by every command before it works:

* aihf's log records (``level`` and above; other libraries' from WARNING up, so no "JAX
  version ... available" from datasets) go to stderr as ``LEVEL logger: message``, and a
  message identical to one already shown in this command (same logger, level and text: the
  truncation count of the same data, met again by every seed and stage) is not shown again;
* transformers logs errors only (its per-load "LOAD REPORT" tables of weights a model class
  does not use, e.g. a causal LM's head when a reward model is read from its checkpoint)
  unless the user set ``TRANSFORMERS_VERBOSITY``; its progress bars ("Loading weights",
  "Writing model shards") are off. aihf's own bars (training, sampling) stay.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(levelname)s %(name)s: %(message)s"


class OncePerCommand(logging.Filter):
    """Passes a record only the first time its (logger, level, message) is seen."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class Console(logging.StreamHandler):
    """A handler on ``sys.stderr`` as it is when each record is written (a redirected or
    captured stream included)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self.once = OncePerCommand()
        self.addFilter(self.once)

    @property
    def stream(self):  # noqa: D102 - the stream StreamHandler writes to
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns one: always stderr
        pass


def setup(level: int = logging.INFO) -> None:
    """Route aihf's log records at ``level`` and above, other libraries' at WARNING and
    above, to stderr, each once, and quiet transformers.

    Called again (a second command in one process), it forgets the messages already shown."""
    root = logging.getLogger()
    console = next((h for h in root.handlers if isinstance(h, Console)), None)
    if console is None:
        console = Console()
        root.addHandler(console)
    console.once.seen.clear()
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("aihf").setLevel(level)
    from transformers.utils import logging as hf_logging

    if "TRANSFORMERS_VERBOSITY" not in os.environ:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def count(n: int, noun: str) -> str:
    """``1 seed``, ``3 seeds``: a number with its noun in the right number (plural: + "s")."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def seeds_by_status(statuses: list[tuple[int, str]]) -> str:
    """``seeds 0, 1: reused; seed 2: to train``: (seed, status) pairs as one line, the seeds of a status
    together, statuses in the order they first come (a dry run's line for one run)."""
    grouped: dict[str, list[int]] = {}
    for seed, status in statuses:
        grouped.setdefault(status, []).append(seed)
    return "; ".join(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}: {status}"
                     for status, seeds in grouped.items())
