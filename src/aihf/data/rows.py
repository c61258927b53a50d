"""One row (a ``dict``) to one record: which columns to read, and how conversations split.

Demonstration rows, in this order of precedence:

* ``{prompt, response}``: prompt a ``str`` or a message list; response a ``str`` or an
  assistant message (see :mod:`aihf.data.records`);
* ``{messages}`` (UltraChat): a conversation whose last message is the assistant's
  response; the messages before it are the prompt. Any ``prompt`` column is ignored.

Preference rows:

* ``chosen``/``rejected`` are conversations (message lists, UltraFeedback-binarized):
  the longest shared prefix is the prompt, and each must then have exactly one assistant
  message left. A ``prompt`` column is ignored (the conversations carry it);
* ``chosen``/``rejected`` are strings and there is no ``prompt`` column (Anthropic-HH):
  the prompt is the shared text up to and including the last ``"\\n\\nAssistant:"``;
  the responses are the rest (keeping HH's leading space);
* otherwise ``{prompt, chosen, rejected}`` as for demonstrations.

Whether a response finished (see :mod:`aihf.data.records`): optional boolean columns
``finished`` (demonstration rows, either layout) and ``chosen_finished`` /
``rejected_finished`` (preference rows, every layout). Absent or null means ``true`` (the
response ended on its own and is encoded with EOS / end-of-turn); ``false`` means it was
cut at a length cap and is encoded without. Any other value is an error naming the column.

Prompt rows (the RL prompt set): ``{prompt}``, the prompt a ``str`` or a message list
ending with a user turn. Other columns (e.g. a demonstration's ``response``) are
metadata, so a demonstration or ``{prompt, chosen, rejected}`` file also reads as prompts.

Column names are configurable. Other columns are metadata and ignored, unless
``strict=True``, which makes any column not read an error. Errors name the column the
bad value came from (e.g. ``messages[3].role``), never the record's internal field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aihf.data.errors import DataError
from aihf.data.records import Demonstration, Message, Preference, PromptRecord, to_messages

R = TypeVar("R")
HH_ASSISTANT = "\n\nAssistant:"
FINISHED = "finished"
PREFERENCE_FINISHED = ("chosen_finished", "rejected_finished")


def _get(row: Mapping[str, Any], column: str, hint: str = "") -> Any:
    value = row.get(column)
    if value is None:
        raise DataError(f"missing{' (null)' if column in row else ''}{hint}", field=column)
    return value


def _check_columns(row: Mapping[str, Any], used: set[str], strict: bool) -> None:
    unknown = sorted(set(row) - used)
    if strict and unknown:
        raise DataError(f"unknown field (strict=True reads only {sorted(used)})", field=unknown[0])


def _flags(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The finished flags present (and not null) in ``row``; checked by the record."""
    return {name: row[name] for name in names if row.get(name) is not None}


def _build(make: Callable[..., R], columns: dict[str, str], **values: Any) -> R:
    """``make(**values)``, with an error's record field (``prompt[1].role``) renamed to its column."""
    try:
        return make(**values)
    except DataError as err:
        field = err.field
        if field is not None:
            head, rest = re.match(r"([a-z_]+)(.*)", field).groups()
            field = columns.get(head, head) + rest
        raise DataError(err.reason, field=field) from None


def demonstration_from_row(
    row: Mapping[str, Any],
    *,
    prompt: str = "prompt",
    response: str = "response",
    messages: str = "messages",
    strict: bool = False,
) -> Demonstration:
    """A :class:`Demonstration` from a ``{prompt, response}`` or a ``{messages}`` row."""
    flags = _flags(row, (FINISHED,))
    if response in row or messages not in row:
        _check_columns(row, {prompt, response, FINISHED}, strict)
        hint = f" (a demonstration needs '{prompt}' and '{response}', or '{messages}')"
        return _build(
            Demonstration, {"prompt": prompt, "response": response},
            prompt=_get(row, prompt, hint), response=_get(row, response, hint), **flags,
        )
    _check_columns(row, {messages, FINISHED}, strict)
    turns = to_messages(_get(row, messages), messages)
    last = len(turns) - 1
    if last == 0 or turns[last].role != "assistant":
        raise DataError(
            "a conversation must end with the assistant's response after at least one user turn",
            field=f"{messages}[{last}].role",
        )
    return _build(
        Demonstration, {"prompt": messages, "response": f"{messages}[{last}]"},
        prompt=turns[:last], response=turns[last], **flags,
    )


def prompt_from_row(row: Mapping[str, Any], *, prompt: str = "prompt", strict: bool = False) -> PromptRecord:
    """A :class:`PromptRecord` from a ``{prompt}`` row."""
    _check_columns(row, {prompt}, strict)
    return _build(PromptRecord, {"prompt": prompt}, prompt=_get(row, prompt, f" (a prompt row needs '{prompt}')"))


def _split_conversations(chosen: tuple[Message, ...], rejected: tuple[Message, ...]) -> int:
    """Length of the shared prompt prefix: leaves at least one message on each side."""
    limit = min(len(chosen), len(rejected)) - 1
    shared = 0
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    return shared


def _split_hh(chosen: str, rejected: str) -> int:
    """Length of the shared HH prompt, up to and including the last shared ``HH_ASSISTANT``."""
    shared = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        shared += 1
    cut = chosen.rfind(HH_ASSISTANT, 0, shared)
    return cut + len(HH_ASSISTANT) if cut >= 0 else 0


def preference_from_row(
    row: Mapping[str, Any],
    *,
    prompt: str = "prompt",
    chosen: str = "chosen",
    rejected: str = "rejected",
    strict: bool = False,
) -> Preference:
    """A :class:`Preference` from a ``{prompt, chosen, rejected}`` row or two full conversations."""
    y_w, y_l = _get(row, chosen), _get(row, rejected)
    flags, flag_columns = _flags(row, PREFERENCE_FINISHED), set(PREFERENCE_FINISHED)
    conversation = any(isinstance(y, (list, tuple)) and len(y) > 1 for y in (y_w, y_l))
    if conversation:
        _check_columns(row, {chosen, rejected} | flag_columns | ({prompt} if prompt in row else set()), strict)
        y_w, y_l = to_messages(y_w, chosen), to_messages(y_l, rejected)
        shared = _split_conversations(y_w, y_l)
        for column, turns in ((chosen, y_w), (rejected, y_l)):
            if len(turns) - shared != 1:
                raise DataError(
                    f"after the {shared} messages shared by '{chosen}' and '{rejected}' (the prompt), "
                    f"{len(turns) - shared} messages are left; expected one assistant response",
                    field=column,
                )
        return _build(
            Preference, {"prompt": chosen, "chosen": f"{chosen}[{shared}]", "rejected": f"{rejected}[{shared}]"},
            prompt=y_w[:shared], chosen=y_w[shared], rejected=y_l[shared], **flags,
        )
    _check_columns(row, {prompt, chosen, rejected} | flag_columns, strict)
    if row.get(prompt) is None and isinstance(y_w, str) and isinstance(y_l, str):
        shared = _split_hh(y_w, y_l)
        if shared == 0:
            raise DataError(
                f"missing, and '{chosen}'/'{rejected}' share no text ending in {HH_ASSISTANT!r} to split off",
                field=prompt,
            )
        return _build(
            Preference, {"prompt": chosen, "chosen": chosen, "rejected": rejected},
            prompt=y_w[:shared], chosen=y_w[shared:], rejected=y_l[shared:], **flags,
        )
    return _build(
        Preference, {"prompt": prompt, "chosen": chosen, "rejected": rejected},
        prompt=_get(row, prompt), chosen=y_w, rejected=y_l, **flags,
    )
