"""Language records: :class:`Demonstration` (x, y_E), :class:`Preference` (x, y_w, y_l) and
:class:`PromptRecord` (x alone: a prompt of the RL prompt set, docs/method.md section 6).

docs/method.md section 1 (Data). Two forms, one representation each after construction:

* plain text: ``prompt`` is a ``str``;
* chat: ``prompt`` is a ``tuple`` of :class:`Message` (roles ``system``/``user``/
  ``assistant``), ending with a ``user`` turn. ``is_chat`` tells the two apart, and
  :meth:`prompt_messages` / :meth:`conversation` give the ``list[dict]`` that
  ``tokenizer.apply_chat_template`` takes.

Responses (``response``, ``chosen``, ``rejected``) are always a ``str``: the assistant's
content. The constructors also accept an assistant message dict
(``{"role": "assistant", "content": ...}``) or a list holding exactly one assistant
message, and reduce it to its content. Text is kept exactly as given (never stripped),
but must not be empty or whitespace only; ``chosen`` must differ from ``rejected`` (exact string equality).

Each response also says whether it *finished*: ``Demonstration.finished``,
``Preference.chosen_finished`` and ``Preference.rejected_finished`` (``bool``, default
``True``). ``False`` means the response was cut at a length cap (e.g. a sample that hit
``max_new_tokens``): it is encoded without EOS / end-of-turn
(:meth:`aihf.lm.batching.Encoder.response`), as a policy sample cut at the same cap is.
Constructors raise :class:`~aihf.data.errors.DataError` naming the field, e.g.
``prompt[1].role``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from aihf.data.errors import DataError

ROLES = ("system", "user", "assistant")
# ShareGPT's turns ({"from", "value"}, as in its hub datasets' "conversations" column): its speaker names as roles
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
# a chat turn's two forms: (speaker key, text key, speaker -> role, the form's name, the speaker's name)
CHAT_FORM = ("role", "content", {role: role for role in ROLES}, "chat message", "role")
SHAREGPT_FORM = ("from", "value", SHAREGPT_ROLES, "ShareGPT turn", "speaker")


@dataclass(frozen=True)
class Message:
    """One chat turn. ``role`` is one of :data:`ROLES`; ``content`` is non-empty text."""

    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Prompt = Union[str, tuple[Message, ...]]


def _text(value: Any, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{what} must be a string, got {type(value).__name__}", field=field)
    if not value.strip():
        raise DataError(f"{what} is empty or whitespace only", field=field)
    return value


def to_message(value: Any, field: str) -> Message:
    """A :class:`Message` from a ``{"role", "content"}`` mapping (extra keys such as ``name`` are
    ignored), or from a ShareGPT turn ``{"from", "value"}`` whose ``from`` is ``human``, ``gpt`` or
    ``system`` (:data:`SHAREGPT_ROLES`) when the mapping has neither ``role`` nor ``content``."""
    if isinstance(value, Message):
        value = value.as_dict()
    if not isinstance(value, Mapping):
        raise DataError(
            f"a chat message must be a mapping with 'role' and 'content', got {type(value).__name__}", field=field
        )
    sharegpt = "role" not in value and "content" not in value and ("from" in value or "value" in value)
    speaker_key, text_key, roles, what, who = SHAREGPT_FORM if sharegpt else CHAT_FORM
    for key in (speaker_key, text_key):
        if key not in value:
            raise DataError(f"{what} has no '{key}'", field=f"{field}.{key}")
    speaker = value[speaker_key]
    if not isinstance(speaker, str) or speaker not in roles:
        raise DataError(f"unknown {who} {speaker!r}; expected one of {list(roles)}", field=f"{field}.{speaker_key}")
    return Message(roles[speaker], _text(value[text_key], f"{field}.{text_key}", "message content"))


def to_messages(value: Any, field: str) -> tuple[Message, ...]:
    """A non-empty tuple of messages from a list of message mappings."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise DataError(f"chat messages must be a list, got {type(value).__name__}", field=field)
    messages = tuple(to_message(m, f"{field}[{i}]") for i, m in enumerate(value))
    if not messages:
        raise DataError("chat message list is empty", field=field)
    return messages


def to_prompt(value: Any, field: str = "prompt") -> Prompt:
    """A plain prompt (non-empty ``str``) or a chat prompt (messages ending with a user turn)."""
    if isinstance(value, str):
        return _text(value, field, "prompt")
    if isinstance(value, (list, tuple)):
        messages = to_messages(value, field)
        if messages[-1].role != "user":
            raise DataError(
                f"a chat prompt must end with a user turn, got {messages[-1].role!r}",
                field=f"{field}[{len(messages) - 1}].role",
            )
        return messages
    raise DataError(f"prompt must be a string or a list of chat messages, got {type(value).__name__}", field=field)


def to_response(value: Any, field: str = "response") -> str:
    """The assistant's text from a ``str``, an assistant message, or a list of one assistant message."""
    if isinstance(value, str):
        return _text(value, field, field)
    if isinstance(value, (list, tuple)):
        messages = to_messages(value, field)
        if len(messages) != 1:
            raise DataError(f"a response must be one assistant message, got {len(messages)} messages", field=field)
        value, field = messages[0], f"{field}[0]"
    if isinstance(value, (Mapping, Message)):
        message = to_message(value, field)
        if message.role != "assistant":
            raise DataError(
                f"a response message must have role 'assistant', got {message.role!r}", field=f"{field}.role"
            )
        return message.content
    raise DataError(f"{field} must be a string or an assistant message, got {type(value).__name__}", field=field)


def to_flag(value: Any, field: str) -> bool:
    """A ``bool`` (a NumPy boolean is accepted too); anything else, 0 and 1 included, is an error."""
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):  # numpy.bool_
        value = value.item()
    if not isinstance(value, bool):
        raise DataError(f"{field} must be true or false, got {type(value).__name__}", field=field)
    return value


@dataclass(frozen=True)
class _Prompted:
    prompt: Prompt

    @property
    def is_chat(self) -> bool:
        """True when the prompt is a message list (apply the tokenizer's chat template)."""
        return not isinstance(self.prompt, str)

    def prompt_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages; a plain prompt becomes one user turn."""
        if isinstance(self.prompt, str):
            return [{"role": "user", "content": self.prompt}]
        return [m.as_dict() for m in self.prompt]

    def conversation(self, response: str) -> list[dict[str, str]]:
        """Prompt messages followed by ``response`` as the assistant turn."""
        return [*self.prompt_messages(), {"role": "assistant", "content": response}]

    def _prompt_json(self) -> str | list[dict[str, str]]:
        return self.prompt if isinstance(self.prompt, str) else self.prompt_messages()


@dataclass(frozen=True)
class PromptRecord(_Prompted):
    """A prompt x alone: the RL methods sample y ~ pi(.|x) on it (docs/method.md sections 3 and 6).

    ``prompt`` is a :data:`Prompt` (plain text or chat messages ending with a user turn),
    validated as a demonstration's or preference's prompt is.
    """

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", to_prompt(self.prompt))

    def to_dict(self) -> dict[str, Any]:
        """``{"prompt"}`` with a chat prompt as a list of message dicts (JSON-ready)."""
        return {"prompt": self._prompt_json()}


@dataclass(frozen=True)
class Demonstration(_Prompted):
    """A prompt x and an expert response y_E (docs/method.md section 1).

    ``finished=False``: the response was cut at a length cap and carries no EOS.
    """

    response: str
    finished: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", to_prompt(self.prompt))
        object.__setattr__(self, "response", to_response(self.response, "response"))
        object.__setattr__(self, "finished", to_flag(self.finished, "finished"))

    def to_dict(self) -> dict[str, Any]:
        """``{"prompt", "response"}`` with a chat prompt as a list of message dicts (JSON-ready);
        ``"finished": false`` is added only for an unfinished response."""
        row: dict[str, Any] = {"prompt": self._prompt_json(), "response": self.response}
        if not self.finished:
            row["finished"] = False
        return row


@dataclass(frozen=True)
class Preference(_Prompted):
    """A prompt x, a preferred response y_w (``chosen``) and a dispreferred y_l (``rejected``).

    ``chosen_finished`` / ``rejected_finished`` ``False``: that response was cut at a length
    cap and carries no EOS.
    """

    chosen: str
    rejected: str
    chosen_finished: bool = True
    rejected_finished: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", to_prompt(self.prompt))
        object.__setattr__(self, "chosen", to_response(self.chosen, "chosen"))
        object.__setattr__(self, "rejected", to_response(self.rejected, "rejected"))
        for name in ("chosen_finished", "rejected_finished"):
            object.__setattr__(self, name, to_flag(getattr(self, name), name))
        if self.chosen == self.rejected:
            raise DataError("chosen is identical to rejected", field="chosen")

    def to_dict(self) -> dict[str, Any]:
        """``{"prompt", "chosen", "rejected"}`` with a chat prompt as a list of message dicts;
        ``"chosen_finished": false`` / ``"rejected_finished": false`` are added only for an
        unfinished response."""
        row: dict[str, Any] = {"prompt": self._prompt_json(), "chosen": self.chosen, "rejected": self.rejected}
        for name in ("chosen_finished", "rejected_finished"):
            if not getattr(self, name):
                row[name] = False
        return row
