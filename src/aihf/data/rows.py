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
* ``chosen``/``rejected`` are strings, there is no ``prompt`` column, and both hold an
  ``"\\n\\nAssistant:"`` turn (Anthropic-HH conversations): the prompt is the shared text up
  to and including the last shared ``"\\n\\nAssistant:"``; the responses are the rest
  (keeping HH's leading space);
* ``chosen``/``rejected`` are strings and there is no ``prompt`` column (trl's standard
  "implicit prompt" format): the prompt is their longest common prefix, as trl's
  ``extract_prompt`` takes it, with one difference: where the texts part in the middle of
  a word (``"... is Paris"`` / ``"... is Pisa"``) the prompt ends before that word, so no
  word is cut in two. A space just before the split goes to the responses (as in trl).
  No shared text, or one text being a prefix of the other (nothing left of it to compare),
  is an error: give a ``prompt`` column;
* otherwise ``{prompt, chosen, rejected}`` as for demonstrations. A ``prompt`` column that
  is null is an error (it does not fall back to the implicit-prompt layouts): leave the
  column out for those.

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
    if column not in row:
        fields = f"; the row's fields are {sorted(map(str, row))}" if row else ""
        raise DataError(f"missing{hint}{fields}", field=column)
    value = row[column]
    if value is None:
        raise DataError(f"{column} is null{hint}", field=column)
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
    shared = _common_prefix(chosen, rejected)
    cut = chosen.rfind(HH_ASSISTANT, 0, shared)
    return cut + len(HH_ASSISTANT) if cut >= 0 else 0


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    shared = 0
    while shared < limit and a[shared] == b[shared]:
        shared += 1
    return shared


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _split_implicit(chosen: str, rejected: str) -> int:
    """Length of the implicit prompt of two full texts (trl's ``extract_prompt``, word-safe).

    The longest common prefix; if the texts part inside a word, cut before that word; then
    a space just before the cut goes to the responses. Equal to ``min(len)`` when one text
    is a prefix of the other (the caller refuses it)."""
    shared = _common_prefix(chosen, rejected)
    if shared == min(len(chosen), len(rejected)):
        return shared
    if shared and _word(chosen[shared - 1]) and (_word(chosen[shared]) or _word(rejected[shared])):
        while shared and _word(chosen[shared - 1]):
            shared -= 1
    if shared and chosen[shared - 1] == " ":
        shared -= 1
    return shared


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
    if prompt in row or not (isinstance(y_w, str) and isinstance(y_l, str)):
        hint = (
            f" (a preference row needs a text or chat prompt in '{prompt}'; for full texts in "
            f"'{chosen}'/'{rejected}' with the prompt inside them, leave the '{prompt}' column out)"
            if prompt in row
            else f" (a preference row needs '{prompt}' unless '{chosen}' and '{rejected}' are both full texts "
            "or conversations that hold it)"
        )
        return _build(
            Preference, {"prompt": prompt, "chosen": chosen, "rejected": rejected},
            prompt=_get(row, prompt, hint), chosen=y_w, rejected=y_l, **flags,
        )
    if HH_ASSISTANT in y_w and HH_ASSISTANT in y_l:  # Anthropic-HH conversations
        shared = _split_hh(y_w, y_l)
        if shared == 0:
            raise DataError(
                f"missing, and '{chosen}'/'{rejected}' share no text ending in {HH_ASSISTANT!r} to split off",
                field=prompt,
            )
    else:  # trl's implicit prompt: the shared start of two full texts
        shared = _split_implicit(y_w, y_l)
        if y_w == y_l:
            raise DataError(f"{chosen} is identical to {rejected}", field=chosen)
        if shared == min(len(y_w), len(y_l)):
            short, long = (chosen, rejected) if len(y_w) < len(y_l) else (rejected, chosen)
            raise DataError(
                f"'{short}' is a prefix of '{long}': with no '{prompt}' column the shared text is the prompt "
                f"(implicit prompt), which leaves nothing of '{short}'; give a '{prompt}' column",
                field=short,
            )
        if not y_w[:shared].strip():
            raise DataError(
                f"missing, and '{chosen}'/'{rejected}' share no leading text to take as the prompt "
                f"(implicit prompt: their common start, whole words only); give a '{prompt}' column",
                field=prompt,
            )
    return _build(
        Preference, {"prompt": chosen, "chosen": chosen, "rejected": rejected},
        prompt=y_w[:shared], chosen=y_w[shared:], rejected=y_l[shared:], **flags,
    )
