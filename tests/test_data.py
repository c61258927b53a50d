"""Language data: records, readers (JSONL, Parquet, datasets), bad inputs, filtering report.

Prompt-only records (the RL prompt set, ``read_prompts``) go through the same reader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aihf.data import (
    DataError, Demonstration, Message, Preference, PromptRecord, read_demonstrations, read_preferences, read_prompts,
    write_jsonl,
)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
GOOD_PREF = {"prompt": "p", "chosen": "good", "rejected": "bad"}
GOOD_DEMO = {"prompt": "p", "response": "r"}


def jsonl(tmp_path: Path, *lines: str | bytes | dict, name: str = "data.jsonl") -> Path:
    """A JSONL file of the given lines (dicts are JSON-encoded; bytes are written as is)."""
    path = tmp_path / name
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            f.write(line if isinstance(line, bytes) else line.encode() + b"\n")
    return path


def messages(*pairs: str) -> list[dict[str, str]]:
    roles = [pairs[i] for i in range(0, len(pairs), 2)]
    return [{"role": r, "content": c} for r, c in zip(roles, pairs[1::2])]


# (id, reader, lines, kwargs, line, field, reason regex)
BAD_JSONL = [
    ("missing field", read_preferences, [GOOD_PREF, {"prompt": "p", "chosen": "c"}], {}, 2, "rejected", r"missing"),
    ("null field", read_demonstrations, [{"prompt": "p", "response": None}], {}, 1, "response", r"response is null"),
    ("null demonstration prompt", read_demonstrations, [GOOD_DEMO, {"prompt": None, "response": "r"}], {}, 2, "prompt",
     r"prompt is null \(a demonstration needs"),
    ("null preference prompt with HH texts", read_preferences,
     [{"prompt": None, "chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}], {}, 1,
     "prompt", r"prompt is null \(a preference row needs a text or chat prompt in 'prompt'; for full texts .* leave"),
    ("null preference prompt", read_preferences, [GOOD_PREF, {**GOOD_PREF, "prompt": None}], {}, 2, "prompt",
     r"prompt is null"),
    ("missing field names the fields there", read_demonstrations, [{"text": "p", "label": 1}], {}, 1, "prompt",
     r"missing \(a demonstration needs .*\); the row's fields are \['label', 'text'\]$"),
    ("number response", read_demonstrations, [{"prompt": "p", "response": 3.5}], {}, 1, "response",
     r"response must be a string or an assistant message, got float"),
    ("list of text as chosen", read_preferences, [{"prompt": "p", "chosen": ["a", "b"], "rejected": "c"}], {}, 1,
     "chosen[0]", r"a chat message must be a mapping"),
    ("empty response", read_demonstrations, [{"prompt": "p", "response": ""}], {}, 1, "response",
     r"response is empty or whitespace only"),
    ("int prompt", read_demonstrations, [GOOD_DEMO, GOOD_DEMO, {"prompt": 7, "response": "r"}], {}, 3, "prompt",
     r"prompt must be a string or a list of chat messages, got int"),
    ("list response of text", read_demonstrations, [{"prompt": "p", "response": ["a"]}], {}, 1, "response[0]",
     r"a chat message must be a mapping"),
    ("whitespace chosen", read_preferences, [{"prompt": "p", "chosen": " \n\t", "rejected": "b"}], {}, 1, "chosen",
     r"chosen is empty or whitespace only"),
    ("empty prompt", read_preferences, [GOOD_PREF, {"prompt": "", "chosen": "a", "rejected": "b"}], {}, 2, "prompt",
     r"prompt is empty"),
    ("chosen == rejected", read_preferences, [GOOD_PREF] * 6 + [{"prompt": "p", "chosen": "x", "rejected": "x"}], {},
     7, "chosen", r"chosen is identical to rejected"),
    ("message without role", read_demonstrations, [{"prompt": [{"content": "hi"}], "response": "r"}], {}, 1,
     "prompt[0].role", r"chat message has no 'role'"),
    ("message without content", read_preferences,
     [{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant"}, {"role": "user", "content": "q"}],
       "chosen": "a", "rejected": "b"}], {}, 1, "prompt[1].content", r"chat message has no 'content'"),
    ("unknown role", read_demonstrations, [{"prompt": [{"role": "human", "content": "q"}], "response": "r"}], {}, 1,
     "prompt[0].role", r"unknown role 'human'"),
    ("messages not a list", read_demonstrations, [{"messages": {"role": "user", "content": "q"}}], {}, 1, "messages",
     r"chat messages must be a list, got dict"),
    ("empty messages", read_demonstrations, [{"messages": []}], {}, 1, "messages", r"chat message list is empty"),
    ("conversation without assistant end", read_demonstrations, [{"messages": messages("user", "q", "user", "q2")}],
     {}, 1, "messages[1].role", r"a conversation must end with the assistant's response"),
    ("prompt ends with assistant", read_preferences,
     [{"prompt": messages("user", "q", "assistant", "a"), "chosen": "x", "rejected": "y"}], {}, 1, "prompt[1].role",
     r"a chat prompt must end with a user turn, got 'assistant'"),
    ("response with user role", read_preferences, [{"prompt": "q", "chosen": {"role": "user", "content": "x"},
                                                     "rejected": "y"}], {}, 1, "chosen.role", r"a response message must have role 'assistant', got 'user'"),
    ("conversations that differ early", read_preferences,
     [{"chosen": messages("user", "q", "assistant", "a", "user", "q2", "assistant", "b"),
       "rejected": messages("user", "q", "assistant", "z", "user", "q2", "assistant", "c")}], {}, 1, "chosen",
     r"after the 1 messages shared .* 3 messages are left"),
    ("HH text without shared prompt", read_preferences,
     [{"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}], {}, 1, "prompt",
     r"missing, and 'chosen'/'rejected' share no text ending in"),
    ("implicit prompt, no shared text", read_preferences, [{"chosen": "one", "rejected": "two"}], {}, 1, "prompt",
     r"missing, and 'chosen'/'rejected' share no leading text to take as the prompt \(implicit prompt"),
    ("implicit prompt, shared part of a word only", read_preferences, [{"chosen": "Paris is", "rejected": "Pisa is"}],
     {}, 1, "prompt", r"missing, and 'chosen'/'rejected' share no leading text"),
    ("implicit prompt, whitespace only", read_preferences, [{"chosen": " \n yes", "rejected": " \n no"}], {}, 1,
     "prompt", r"missing, and 'chosen'/'rejected' share no leading text"),
    ("implicit prompt, rejected is a prefix", read_preferences, [{"chosen": "Q? Yes, sure.", "rejected": "Q? Yes"}],
     {}, 1, "rejected", r"'rejected' is a prefix of 'chosen': with no 'prompt' column .* give a 'prompt' column"),
    ("implicit prompt, chosen is a prefix", read_preferences, [GOOD_PREF, {"chosen": "Q? A", "rejected": "Q? A or B"}],
     {}, 2, "chosen", r"'chosen' is a prefix of 'rejected'"),
    ("implicit prompt, identical texts", read_preferences, [{"chosen": "Q? A", "rejected": "Q? A"}], {}, 1, "chosen",
     r"chosen is identical to rejected"),
    ("implicit prompt, chosen not text", read_preferences, [{"chosen": {"role": "assistant", "content": "a"},
                                                             "rejected": "Q? b"}], {}, 1, "prompt",
     r"missing \(a preference row needs 'prompt' unless 'chosen' and 'rejected' are both full texts"),
    ("unknown field, strict", read_demonstrations, [{"prompt": "p", "response": "r", "score": 1}], {"strict": True}, 1,
     "score", r"unknown field"),
    ("invalid UTF-8", read_demonstrations, [GOOD_DEMO, b'{"prompt": "caf\xe9", "response": "r"}\n'], {}, 2, None,
     r"invalid UTF-8 at byte 15"),
    ("truncated JSON", read_demonstrations, [GOOD_DEMO, b'{"prompt": "p", "resp'], {}, 2, None,
     r"invalid JSON: .*truncated\?"),
    ("invalid JSON", read_demonstrations, ["{'prompt': 'p'}"], {}, 1, None, r"invalid JSON: Expecting property name"),
    ("line not an object", read_preferences, [GOOD_PREF, "", '["p", "a", "b"]'], {}, 3, None,
     r"a JSONL line must be a JSON object, got list"),
    ("custom column missing", read_preferences, [GOOD_PREF], {"chosen_field": "better"}, 1, "better", r"missing"),
    ("prompt row without prompt", read_prompts, [{"prompt": "p"}, {"text": "p"}], {}, 2, "prompt",
     r"missing \(a prompt row needs 'prompt'\)"),
    ("null prompt", read_prompts, [{"prompt": None}], {}, 1, "prompt", r"prompt is null \(a prompt row needs 'prompt'\)"),
    ("prompt not text", read_prompts, [{"prompt": 7}], {}, 1, "prompt",
     r"prompt must be a string or a list of chat messages, got int"),
    ("prompt-set chat ends with assistant", read_prompts, [{"prompt": messages("user", "q", "assistant", "a")}], {},
     1, "prompt[1].role", r"a chat prompt must end with a user turn, got 'assistant'"),
    ("prompt-set message without content", read_prompts, [{"query": [{"role": "user"}]}], {"prompt_field": "query"},
     1, "query[0].content", r"chat message has no 'content'"),
    ("prompt row with a response, strict", read_prompts, [GOOD_DEMO], {"strict": True}, 1, "response",
     r"unknown field \(strict=True reads only \['prompt'\]\)"),
    ("finished not a boolean", read_demonstrations, [GOOD_DEMO, {**GOOD_DEMO, "finished": "false"}], {}, 2,
     "finished", r"finished must be true or false, got str"),
    ("finished as 0", read_demonstrations, [{"messages": messages("user", "q", "assistant", "a"), "finished": 0}],
     {}, 1, "finished", r"finished must be true or false, got int"),
    ("chosen_finished not a boolean", read_preferences, [{**GOOD_PREF, "chosen_finished": 1}], {}, 1,
     "chosen_finished", r"chosen_finished must be true or false, got int"),
    ("rejected_finished not a boolean", read_preferences,
     [GOOD_PREF, {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b",
                  "rejected_finished": "no"}], {}, 2, "rejected_finished",
     r"rejected_finished must be true or false, got str"),
]


@pytest.mark.parametrize("reader, lines, kwargs, line, field, reason",
                         [case[1:] for case in BAD_JSONL], ids=[case[0] for case in BAD_JSONL])
def test_bad_jsonl_names_file_line_field(tmp_path, reader, lines, kwargs, line, field, reason):
    path = jsonl(tmp_path, *lines)
    where = f"{re.escape(str(path))}, line {line}" + (f", field '{re.escape(field)}'" if field else "")
    with pytest.raises(DataError, match=f"^{where}: {reason}") as info:
        reader(path, **kwargs)
    err = info.value
    assert (err.source, err.row, err.row_kind, err.field) == (str(path), line, "line", field)
    assert isinstance(err, ValueError)


def test_error_message_format(tmp_path):
    path = jsonl(tmp_path, *[GOOD_PREF] * 6, {"prompt": "p", "chosen": "x", "rejected": "x"}, name="prefs.jsonl")
    with pytest.raises(DataError) as info:
        read_preferences(path)
    assert str(info.value) == f"{path}, line 7, field 'chosen': chosen is identical to rejected"


def test_empty_file_and_unsupported_sources(tmp_path):
    for content in (b"", b"\n  \n"):
        path = tmp_path / "empty.jsonl"
        path.write_bytes(content)
        with pytest.raises(DataError, match=f"^{re.escape(str(path))}: no rows: the source is empty") as info:
            read_demonstrations(path)
        assert (info.value.source, info.value.row, info.value.field) == (str(path), None, None)
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        read_demonstrations(tmp_path / "x.csv")
    with pytest.raises(DataError, match="unsupported source of type int"):
        read_demonstrations(3)
    with pytest.raises(DataError, match=r"^<list>, index 1 \(0-based\): a row must be a mapping, got str"):
        read_demonstrations([GOOD_DEMO, "prompt"])


def test_parquet_and_dataset_errors_use_zero_based_index(tmp_path):
    rows = [GOOD_PREF, GOOD_PREF, {"prompt": "p", "chosen": "same", "rejected": "same"}]
    path = tmp_path / "prefs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, index 2 \(0-based\), field 'chosen': chosen is identical") as info:
        read_preferences(path)
    assert (info.value.row, info.value.row_kind) == (2, "index")
    dataset = datasets.Dataset.from_list(rows, info=datasets.DatasetInfo(dataset_name="toy_prefs"))
    with pytest.raises(DataError, match=r"^dataset 'toy_prefs', index 2 \(0-based\), field 'chosen'") as info:
        read_preferences(dataset)
    assert info.value.source == "dataset 'toy_prefs'"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}: not a readable Parquet file"):
        read_preferences(bad)


def test_records_normalise_chat_and_responses():
    demo = Demonstration(CHAT, {"role": "assistant", "content": "Paris."})
    assert demo.is_chat and demo.response == "Paris."
    assert demo.prompt == (Message("system", "Be brief."), Message("user", "Capital of France?"))
    assert demo.conversation(demo.response) == [*CHAT, {"role": "assistant", "content": "Paris."}]
    assert Demonstration(CHAT, [{"role": "assistant", "content": "Paris."}]) == demo
    plain = Preference("2+2?", "4", "5")
    assert not plain.is_chat and plain.prompt_messages() == [{"role": "user", "content": "2+2?"}]
    assert hash(demo) == hash(Demonstration(tuple(CHAT), "Paris."))
    with pytest.raises(DataError, match="^field 'response': a response must be one assistant message, got 2"):
        Demonstration("q", messages("assistant", "a", "assistant", "b"))


def sample_records():
    demos = [Demonstration("Say hi", "hi"), Demonstration("Ünïcode ✓", "ok ✓"), Demonstration(CHAT, "Paris.")]
    prefs = [Preference("Say hi", "hi", "no"), Preference(CHAT, "Paris.", "Lyon.")]
    return demos, prefs


def test_jsonl_round_trip(tmp_path):
    demos, prefs = sample_records()
    assert write_jsonl(demos, tmp_path / "d.jsonl") == 3
    write_jsonl(prefs, tmp_path / "p.jsonl")
    assert read_demonstrations(tmp_path / "d.jsonl") == demos
    assert read_preferences(tmp_path / "p.jsonl") == prefs


def test_finished_flags_read_write_and_default_to_true(tmp_path):
    cut = Demonstration("Say hi", "hi the", finished=False)
    pref = Preference(CHAT, "Paris.", "Lyon is", rejected_finished=False)
    assert Demonstration("Say hi", "hi").finished and Preference("q", "a", "b").chosen_finished
    assert cut != Demonstration("Say hi", "hi the")  # the flag is part of the record
    # written only when false, so files of finished responses are unchanged
    assert Demonstration("Say hi", "hi").to_dict() == {"prompt": "Say hi", "response": "hi"}
    assert cut.to_dict() == {"prompt": "Say hi", "response": "hi the", "finished": False}
    assert pref.to_dict()["rejected_finished"] is False and "chosen_finished" not in pref.to_dict()
    demos, prefs = [cut, Demonstration("q", "a")], [pref, Preference("q", "a", "b", chosen_finished=False)]
    write_jsonl(demos, tmp_path / "d.jsonl")
    write_jsonl(prefs, tmp_path / "p.jsonl")
    assert read_demonstrations(tmp_path / "d.jsonl", strict=True) == demos
    assert read_preferences(tmp_path / "p.jsonl", strict=True) == prefs
    # Parquet / datasets: a column missing from some rows reads as null there, which means true
    for records, reader in ((demos, read_demonstrations), (prefs[1:], read_preferences)):
        path = tmp_path / f"{reader.__name__}.parquet"
        pq.write_table(pa.Table.from_pylist([r.to_dict() for r in records]), path)
        assert reader(path) == records
        assert reader(datasets.Dataset.from_list([r.to_dict() for r in records])) == records
    # every row layout takes the flags
    conversation = {"messages": [*CHAT, {"role": "assistant", "content": "Paris"}], "finished": False}
    assert read_demonstrations([conversation]) == [Demonstration(CHAT, "Paris", finished=False)]
    history = messages("user", "q1")
    ultrafeedback = {"chosen": [*history, {"role": "assistant", "content": "good"}],
                     "rejected": [*history, {"role": "assistant", "content": "bad"}], "chosen_finished": False}
    assert read_preferences([ultrafeedback], strict=True) == [Preference(history, "good", "bad", chosen_finished=False)]
    hh = {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b",
          "rejected_finished": False, "chosen_finished": None}
    (read,) = read_preferences([hh])
    assert (read.chosen_finished, read.rejected_finished) == (True, False)
    with pytest.raises(DataError, match="^field 'finished': finished must be true or false, got str"):
        Demonstration("q", "a", finished="yes")


def test_parquet_and_dataset_round_trip(tmp_path):
    demos, prefs = sample_records()
    for records, reader in ((demos[:2], read_demonstrations), (prefs[1:], read_preferences)):
        path = tmp_path / f"{reader.__name__}.parquet"  # one prompt type per column
        pq.write_table(pa.Table.from_pylist([r.to_dict() for r in records]), path)
        assert reader(path) == records
        assert reader(datasets.Dataset.from_list([r.to_dict() for r in records])) == records
        assert reader([r.to_dict() for r in records]) == records


def test_ultrachat_messages_form_and_custom_fields():
    row = {"prompt": "ignored", "prompt_id": "x1", "messages": [*CHAT, {"role": "assistant", "content": "Paris."}]}
    assert read_demonstrations([row]) == [Demonstration(CHAT, "Paris.")]
    renamed = [{"instruction": "Say hi", "output": "hi"}]
    assert read_demonstrations(renamed, prompt_field="instruction", response_field="output") == [
        Demonstration("Say hi", "hi")
    ]


def test_sharegpt_turns_read_as_the_chat_messages_they_stand_for():
    """ShareGPT's ``{"from", "value"}`` turns (human, gpt, system), e.g. a ``conversations`` column:
    the records of the same chat in ``{"role", "content"}`` form, as demonstrations and as preferences."""
    sharegpt = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Capital of France?"},
                {"from": "gpt", "value": "Paris."}]
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."}]
    assert read_demonstrations([{"conversations": sharegpt}], messages_field="conversations") == read_demonstrations(
        [{"messages": chat}])
    pair = {"chosen": sharegpt, "rejected": [*sharegpt[:2], {"from": "gpt", "value": "Lyon."}]}
    assert read_preferences([pair]) == [Preference(tuple(Message(**m) for m in chat[:2]), "Paris.", "Lyon.")]
    for turn, field, message in (({"from": "bot", "value": "x"}, "messages[0].from", "unknown speaker 'bot'"),
                                 ({"from": "human"}, "messages[0].value", "ShareGPT turn has no 'value'"),
                                 ({"from": "human", "value": " "}, "messages[0].value", "message content is empty")):
        with pytest.raises(DataError, match=message) as caught:
            read_demonstrations([{"messages": [turn, *sharegpt[2:]]}])
        assert caught.value.field == field


def test_ultrafeedback_conversations_split_on_shared_prefix():
    history = messages("user", "q1", "assistant", "a1", "user", "q2")
    row = {
        "prompt": "q1",
        "chosen": [*history, {"role": "assistant", "content": "good"}],
        "rejected": [*history, {"role": "assistant", "content": "bad"}],
        "score_chosen": 8.0,
    }
    (pref,) = read_preferences([row])
    assert pref == Preference(history, "good", "bad")
    assert pref.prompt_messages() == history


def test_hh_text_split_on_last_shared_assistant_marker():
    prompt = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant:"
    row = {"chosen": prompt + " Why did the chicken cross the road?", "rejected": prompt + " No."}
    (pref,) = read_preferences([row])
    assert (pref.prompt, pref.chosen, pref.rejected) == (prompt, " Why did the chicken cross the road?", " No.")
    # Responses that share their first words still split at the marker, not mid-response.
    (pref,) = read_preferences([{"chosen": prompt + " Sure, here", "rejected": prompt + " Sure, no"}])
    assert pref.prompt == prompt and pref.chosen == " Sure, here"


@pytest.mark.parametrize(
    "chosen, rejected, prompt",
    [
        ("The sky is blue.", "The sky is green.", "The sky is"),  # as trl: the space goes to the responses
        ("Capital of Italy? Paris", "Capital of Italy? Pisa", "Capital of Italy?"),  # trl: "Capital of Italy? P"
        ("answer: 42", "answer: 47", "answer:"),
        ("It is 4.", "It is 45", "It is"),  # parted where one text goes on with the word
        ("Question?\nYes", "Question?\nNo", "Question?\n"),
        ("Say hi. hi", "Say hi. no", "Say hi."),
        ("User: hi\nAssistant: hello", "User: hi\nAssistant: bye", "User: hi\nAssistant:"),
    ],
)
def test_implicit_prompt_is_the_shared_start(tmp_path, chosen, rejected, prompt):
    """trl's standard implicit-prompt preference format: full texts, no prompt column."""
    (pref,) = read_preferences([{"chosen": chosen, "rejected": rejected}])
    assert (pref.prompt, pref.prompt + pref.chosen, pref.prompt + pref.rejected) == (prompt, chosen, rejected)
    path = tmp_path / "prefs.parquet"
    pq.write_table(pa.Table.from_pylist([{"chosen": chosen, "rejected": rejected, "score": 1.0}]), path)
    assert read_preferences(path, strict=False) == [pref]


def test_hh_conversations_keep_the_hh_split():
    """Texts holding HH turns split at the last shared marker, not at the common prefix."""
    prompt = "\n\nHuman: Name a colour.\n\nAssistant:"
    (pref,) = read_preferences([{"chosen": prompt + " Blue, like the sky", "rejected": prompt + " Blue cheese"}])
    assert (pref.prompt, pref.chosen, pref.rejected) == (prompt, " Blue, like the sky", " Blue cheese")


def test_compressed_jsonl_is_read_directly(tmp_path):
    import bz2
    import gzip
    import lzma

    text = (json.dumps(GOOD_DEMO) + "\n\n" + json.dumps({"prompt": "q", "response": "r"}) + "\n").encode()
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        path = tmp_path / f"demos.jsonl{suffix}"
        path.write_bytes(compress(text))
        assert read_demonstrations(path) == [Demonstration("p", "r"), Demonstration("q", "r")]
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(text + b'{"prompt": 3, "response": "r"}\n'))
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}, line 4, field 'prompt'"):
        read_demonstrations(bad)
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(text * 200)[:-40])
    with pytest.raises(DataError, match=rf"^{re.escape(str(truncated))}: cannot decompress the gzip data after line \d+ "
                                        r"\(.*\): truncated or not gzip\?"):
        read_demonstrations(truncated)
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_bytes(text)
    with pytest.raises(DataError, match=rf"^{re.escape(str(plain))}: is named \.gz but is not gzip-compressed "
                                        r"\(it looks like plain JSON text: name it \.jsonl\)"):
        read_demonstrations(plain)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\x1f\x8b\x08\x00rest", r"looks like a gzip-compressed file, not JSONL text; decompress it or name it "
                                 r"\.jsonl\.gz \(read directly\)"),
        (b"BZh91AY&SY", r"looks like a bzip2-compressed file, .* name it \.jsonl\.bz2"),
        (b"\xfd7zXZ\x00\x00", r"looks like an xz-compressed file, .* name it \.jsonl\.xz"),
        (b"(\xb5/\xfd\x00", r"looks like a zstd-compressed file, not JSONL text; decompress it to \.jsonl"),
        (b"PK\x03\x04\x14\x00", r"looks like a zip archive, not JSONL text; decompress it"),
        (b"PAR1\x15\x04", r"looks like a Parquet file, not JSONL text; name it \.parquet"),
    ],
    ids=["gzip", "bzip2", "xz", "zstd", "zip", "parquet"],
)
def test_binary_file_named_jsonl_says_what_it_is(tmp_path, content, reason):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {reason}") as info:
        read_preferences(path)
    assert (info.value.source, info.value.row, info.value.field) == (str(path), None, None)


def test_missing_files_directories_and_misnamed_parquet(tmp_path):
    for name in ("missing.jsonl", "missing.parquet", "missing.jsonl.gz"):
        with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / name))}: no such file$"):
            read_demonstrations(tmp_path / name)
    for path in (tmp_path, tmp_path / "shards.parquet"):
        path.mkdir(exist_ok=True)
        with pytest.raises(DataError, match=f"^{re.escape(str(path))}: is a directory, not a data file"):
            read_demonstrations(path)
    misnamed = jsonl(tmp_path, GOOD_DEMO, name="demos.parquet")
    with pytest.raises(DataError, match=rf"^{re.escape(str(misnamed))}: not a readable Parquet file .*; it looks like JSON "
                                        r"text: name it \.jsonl$"):
        read_demonstrations(misnamed)


def test_parquet_with_other_columns_names_the_columns(tmp_path):
    path = tmp_path / "reviews.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "great", "label": 1}]), path)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, index 0 \(0-based\), field 'chosen': missing; "
                                        r"the row's fields are \['label', 'text'\]$"):
        read_preferences(path)


def test_skip_dedupe_and_max_chars_report_every_drop(tmp_path, caplog):
    path = jsonl(
        tmp_path,
        GOOD_DEMO,
        {"prompt": "p", "response": "r", "meta": 1},  # duplicate record (metadata ignored)
        {"prompt": "p", "response": " "},
        {"prompt": 3, "response": "r"},
        {"prompt": [{"role": "user", "content": "q"}, {"role": "bot", "content": "q"}], "response": "r"},
        {"prompt": [{"role": "bot", "content": "q"}], "response": "r"},
        b"{broken\n",
        {"prompt": "p", "response": "x" * 50},
        {"prompt": "q", "response": "r"},
    )
    with caplog.at_level("WARNING", logger="aihf.data"):
        records = read_demonstrations(path, on_error="skip", dedupe=True, max_chars=20)
    assert records == [Demonstration("p", "r"), Demonstration("q", "r")]
    report = records.report
    assert (report.rows, report.kept) == (9, 2)
    assert dict(report.dropped) == {
        "duplicate": 1,
        "invalid field 'response'": 1,
        "invalid field 'prompt'": 1,
        "invalid field 'prompt[].role'": 2,
        "invalid row": 1,
        "longer than max_chars": 1,
    }
    assert report.examples[0] == f"{path}, line 2: duplicate of an earlier record"
    assert "read 9 rows, kept 2" in caplog.text and "1 duplicate" in caplog.text
    # Strict by default: the same file raises at the first bad row.
    with pytest.raises(DataError, match=r"line 3, field 'response'"):
        read_demonstrations(path)
    with pytest.raises(DataError, match=r"no rows left after filtering"):
        read_demonstrations(path, on_error="skip", max_chars=1)
    with pytest.raises(ValueError, match="on_error"):
        read_demonstrations(path, on_error="ignore")


def test_clean_read_has_empty_report():
    records = read_preferences([GOOD_PREF, GOOD_PREF])
    assert len(records) == 2 and records.report.kept == 2 and not records.report.dropped


def test_prompts_read_plain_and_chat_and_ignore_response_columns(tmp_path, caplog):
    rows = [{"prompt": "Say hi", "response": "hi"}, {"prompt": CHAT, "chosen": "a", "rejected": "b"}, {"prompt": "Say hi"},
            {"prompt": " "}, {"prompt": "x" * 30}]
    with caplog.at_level("WARNING", logger="aihf.data"):
        records = read_prompts(rows, on_error="skip", dedupe=True, max_chars=28)  # CHAT: 27
    assert records == [PromptRecord("Say hi"), PromptRecord(CHAT)]
    assert records[1].is_chat and records[1].prompt_messages() == CHAT and not records[0].is_chat
    assert dict(records.report.dropped) == {"duplicate": 1, "invalid field 'prompt'": 1, "longer than max_chars": 1}
    assert "read 5 rows, kept 2" in caplog.text
    assert PromptRecord("Say hi") != Demonstration("Say hi", "hi")  # a prompt is not a demonstration
    with pytest.raises(DataError, match="^field 'prompt': prompt is empty"):
        PromptRecord("")
    assert write_jsonl(records, tmp_path / "prompts.jsonl") == 2
    assert read_prompts(tmp_path / "prompts.jsonl") == records
    path = tmp_path / "prompts.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "a"}, {"prompt": "b"}, {"prompt": ""}]), path)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, index 2 \(0-based\), field 'prompt': prompt is empty"):
        read_prompts(path)
