"""Duplicates and the train/eval split: ``record_key`` and ``split_without_leaks`` (issue 12 item 1)."""

from __future__ import annotations

import json
import random

import pytest

from aihf.data import (
    DataError, Demonstration, Preference, PromptRecord, read_demonstrations, read_preferences, record_key,
    split_without_leaks,
)

CHAT = [{"role": "user", "content": "q"}]


def demos(n: int) -> list[Demonstration]:
    return [Demonstration(f"prompt {i}", f"response {i}") for i in range(n)]


def old_split(records, fraction, seed):
    """aihf.lm.train._split before issue 12: the split a clean file must keep getting."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(fraction * len(records)))
    return [records[i] for i in order[cut:]], [records[i] for i in order[:cut]]


def keys(records) -> set:
    return {record_key(r) for r in records}


def test_duplicate_key_is_prompt_and_responses():
    assert record_key(Demonstration("q", "a")) == record_key(Demonstration("q", "a", finished=False))
    assert record_key(Demonstration("q", "a")) != record_key(Demonstration("q", "a "))  # text as stored
    assert record_key(Demonstration("q", "a")) != record_key(Demonstration(CHAT, "a"))  # plain vs chat prompt
    assert record_key(Demonstration(CHAT, "a")) == record_key(Demonstration([dict(CHAT[0])], {"role": "assistant",
                                                                                             "content": "a"}))
    assert record_key(Preference("q", "a", "b")) == record_key(Preference("q", "a", "b", rejected_finished=False))
    assert record_key(Preference("q", "a", "b")) != record_key(Preference("q", "b", "a"))  # opposite label
    assert record_key(PromptRecord("q")) != record_key(Demonstration("q", "a"))
    with pytest.raises(TypeError):
        record_key({"prompt": "q"})


@pytest.mark.parametrize("fraction, seed", [(0.1, 0), (0.25, 3), (0.5, 7)])
def test_clean_records_split_as_before(fraction, seed):
    records = demos(41)
    train, held, report = split_without_leaks(records, fraction, seed)
    assert (train, held) == old_split(records, fraction, seed)
    assert report.clean and (report.duplicates, report.train, report.held) == (0, len(train), len(held))
    assert split_without_leaks(records, fraction, seed, dedupe=False)[:2] == (train, held)


def test_dedupe_drops_copies_and_logs_the_count(caplog):
    base = demos(20)
    records = base + [base[3], base[3], Demonstration("prompt 5", "response 5", finished=False)]
    with caplog.at_level("WARNING", logger="aihf.data"):
        train, held, report = split_without_leaks(records, 0.2, 0, name="d.jsonl")
    assert (report.records, report.duplicates, report.dropped) == (23, 3, 3)
    assert len(train) + len(held) == 20 and not keys(train) & keys(held)
    assert len(keys(train + held)) == 20
    assert "d.jsonl: 23 records, 3 exact duplicates (dropped)" in caplog.text
    # no eval split: copies are still dropped from training
    train, held, report = split_without_leaks(records, 0.0, 0)
    assert (len(train), held, report.dropped) == (20, [], 3)


@pytest.mark.parametrize("seed", range(20))
def test_without_dedupe_copies_stay_on_one_side(seed, caplog):
    base = demos(30)
    records = base + [base[i] for i in (0, 0, 1, 2, 2, 2, 29)]
    with caplog.at_level("WARNING", logger="aihf.data"):
        train, held, report = split_without_leaks(records, 0.2, seed, dedupe=False)
    assert sorted(map(repr, train + held)) == sorted(map(repr, records))  # every copy kept
    assert not keys(train) & keys(held)
    assert len(held) >= 7 and (report.duplicates, report.dropped) == (7, 0)
    assert "7 exact duplicates (kept, all copies on one side)" in caplog.text


def test_reversed_preferences_stay_on_one_side():
    records = [Preference(f"q{i}", "a", "b") for i in range(10)] + [Preference(f"q{i}", "b", "a") for i in range(10)]
    for seed in range(10):
        train, held, report = split_without_leaks(records, 0.3, seed)
        assert report.duplicates == 0 and report.reversed == 20
        assert not {r.prompt for r in train} & {r.prompt for r in held}


def test_eval_file_overlap_is_counted_and_dropped_on_request(caplog):
    train_records, eval_records = demos(10), demos(13)[8:] + [demos(13)[12]]  # 8, 9 overlap; 12 twice
    with caplog.at_level("WARNING", logger="aihf.data"):
        train, held, report = split_without_leaks(train_records, 0.5, 0, eval_records=eval_records)
    assert train == train_records and held == demos(13)[8:]  # fraction ignored; eval copies dropped
    assert (report.overlap, report.eval_duplicates) == (2, 1)
    assert "2 training records are also in the eval file (kept in both)" in caplog.text
    train, held, report = split_without_leaks(train_records, 0.0, 0, eval_records=eval_records, drop_overlap=True)
    assert train == train_records[:8] and held == demos(13)[8:]
    assert "2 training records are also in the eval file (dropped from training)" in report.summary()
    train, held, report = split_without_leaks(train_records, 0.0, 0, eval_records=eval_records, dedupe=False)
    assert train == train_records and held == eval_records and report.overlap == 2
    # the same file as both: allowed, and said
    train, held, report = split_without_leaks(demos(3), 0.0, 0, eval_records=demos(3))
    assert (len(train), len(held), report.overlap) == (3, 3, 3)
    with pytest.raises(DataError, match="every one of the 2 training records is also in the eval file"):
        split_without_leaks(demos(2), 0.0, 0, eval_records=demos(3), drop_overlap=True)


def test_too_few_records_to_hold_out_is_an_error():
    with pytest.raises(DataError, match=r"^d\.jsonl: 1 records in 1 distinct groups: too few to hold out"):
        split_without_leaks([Demonstration("q", "a")] * 3, 0.1, 0, name="d.jsonl")
    with pytest.raises(DataError, match="too few to hold out"):
        split_without_leaks([Demonstration("q", "a")] * 3, 0.1, 0, dedupe=False)
    assert split_without_leaks([], 0.1, 0)[:2] == ([], [])
    with pytest.raises(ValueError, match="fraction"):
        split_without_leaks(demos(3), 1.0, 0)


def test_read_then_split_names_the_file(tmp_path, caplog):
    path = tmp_path / "prefs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows + rows[:2]) + "\n")
    with caplog.at_level("WARNING", logger="aihf.data"):
        train, held, report = split_without_leaks(read_preferences(path), 0.2, 0)
    assert report.source == str(path) and report.duplicates == 2 and len(train) + len(held) == 10
    assert f"{path}: 12 records, 2 exact duplicates (dropped)" in caplog.text
    # the readers' own dedupe uses the same key
    demo_path = tmp_path / "d.jsonl"
    demo_path.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "a", "finished": false}\n')
    assert read_demonstrations(demo_path, dedupe=True).report.dropped["duplicate"] == 1
