"""``train(name, config, preferences=dataset)``: data held in memory (a ``datasets.Dataset``, a
list of dicts or of records) train the run that the same rows in a file train, are checked as a
file's rows are, and identify the run (aihf.lm.in_memory)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from test_lm_engine import task
from test_run_safety import config

from aihf import run_folder
from aihf.config import ConfigError
from aihf.data import DataError, Preference
from aihf.lm.in_memory import store, with_stored_data
from aihf.lm.train import train, train_from_cli


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AIHF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def preference_rows() -> list[dict]:
    return [p.to_dict() for p in task()[1]]


def test_a_dataset_trains_the_run_its_file_trains(tmp_path, cache, caplog):
    args = ("loop.max_steps=3", "data.eval_fraction=0")
    from_file = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'file'}", *args))
    in_memory = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'memory'}", *args),
                      preferences=datasets.Dataset.from_list(preference_rows()))
    assert [h["loss"] for h in in_memory.history] == [h["loss"] for h in from_file.history]
    named = Path(yaml.safe_load((tmp_path / "memory" / "config.yaml").read_text())["data"]["preferences"])
    assert named.parent == cache / "data" and named.name.startswith("preferences-")
    rows = [json.loads(line) for line in named.read_text(encoding="utf-8").splitlines()]
    assert rows == preference_rows()  # the config names a file a command line can train from again
    assert train_from_cli("dpo", str(tmp_path / "memory" / "config.yaml"), []) == 0
    assert "nothing to train" in caplog.text  # the command line found the same run, finished


def test_the_same_rows_are_the_same_run_and_other_rows_another(tmp_path):
    out = tmp_path / "run"
    args = (f"loop.output_dir={out}", "loop.max_steps=2", "data.eval_fraction=0")
    first = train("dpo", config(tmp_path, *args), preferences=preference_rows())
    stamp = (out / "final" / "policy" / "model.safetensors").stat().st_mtime_ns
    again = train("dpo", config(tmp_path, *args), preferences=task()[1])  # records: the same rows
    assert again.history == first.history
    assert (out / "final" / "policy" / "model.safetensors").stat().st_mtime_ns == stamp  # not trained again
    other = preference_rows()[:-1]
    with pytest.raises(run_folder.RunFolderError, match="data.preferences"):
        train("dpo", config(tmp_path, *args), preferences=other)


def test_a_bad_row_names_the_dataset_the_row_and_the_field_before_anything_is_written(tmp_path, cache):
    rows = preference_rows()
    rows[2] = {**rows[2], "chosen": 7}
    with pytest.raises(DataError) as caught:
        train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'run'}"), preferences=rows)
    assert (caught.value.row, caught.value.field) == (2, "chosen") and "<list>" in str(caught.value)
    assert not (tmp_path / "run").exists() and not (cache / "data").exists()
    rows = preference_rows()
    rows[3] = {**rows[3], "rejected": " "}
    with pytest.raises(DataError, match=r"<Dataset>, index 3 \(0-based\), field 'rejected'"):
        train("dpo", config(tmp_path), eval_preferences=datasets.Dataset.from_list(rows))


def test_the_stored_file_is_addressed_by_its_records(tmp_path):
    rows = preference_rows()
    path = store("preferences", rows, tmp_path)
    assert store("eval_preferences", [Preference(**r) for r in rows], tmp_path) == path
    assert store("preferences", list(reversed(rows)), tmp_path) != path
    assert len(list(tmp_path.iterdir())) == 2  # the two files, no temporary one left


def test_a_path_is_named_as_it_is_and_an_unknown_field_is_an_error(tmp_path):
    base = config(tmp_path)
    given = with_stored_data(base, {"demonstrations": "elsewhere.jsonl", "preferences": None}, tmp_path)
    assert given.data.demonstrations == "elsewhere.jsonl" and given.data.preferences == base.data.preferences
    with pytest.raises(TypeError, match="demos"):
        with_stored_data(base, {"demos": []}, tmp_path)


def test_a_model_object_trains_the_run_its_folder_trains(tmp_path, cache):
    from aihf.lm.models import load_causal_lm

    args = ("loop.max_steps=3", "data.eval_fraction=0")
    policy, tokenizer = load_causal_lm("tiny")  # the config's default model.name_or_path, built in Python
    by_name = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'name'}", *args))
    given = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'object'}", *args), model=policy,
                  tokenizer=tokenizer)
    assert [h["loss"] for h in given.history] == [h["loss"] for h in by_name.history]
    folder = Path(yaml.safe_load((tmp_path / "object" / "config.yaml").read_text())["model"]["name_or_path"])
    assert folder.parent == cache / "models" and (folder / "model.safetensors").is_file()
    assert not list((cache / "models").glob(".*"))  # no temporary folder left
    again = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'object'}", *args), model=policy,
                  tokenizer=tokenizer)
    assert again.history == given.history and len(list((cache / "models").iterdir())) == 1
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    with pytest.raises(run_folder.RunFolderError, match="model.name_or_path"):  # other weights: another run
        train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'object'}", *args), model=policy,
              tokenizer=tokenizer)


def test_a_model_needs_its_tokenizer_and_a_peft_model_is_refused(tmp_path):
    from aihf.lm.models import LoraSettings, apply_lora, load_causal_lm

    policy, tokenizer = load_causal_lm("tiny")
    with pytest.raises(ConfigError, match="together"):
        train("dpo", config(tmp_path), model=policy)
    with pytest.raises(ConfigError, match="merge_and_unload"):
        train("dpo", config(tmp_path), model=apply_lora(policy, LoraSettings(r=2)), tokenizer=tokenizer)


@pytest.mark.parametrize("form", ["save_to_disk", "dataset_dict", "folder of files"])
def test_a_dataset_named_in_the_config_trains_the_run_its_file_trains(tmp_path, form):
    """``data.preferences`` names a dataset instead of a file: a save_to_disk folder (of a
    DatasetDict: FOLDER:SPLIT), or a folder of data files that datasets.load_dataset reads as
    it reads a hub dataset NAME:SPLIT."""
    rows = preference_rows()
    if form == "save_to_disk":
        datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "ds")
        named = str(tmp_path / "ds")
    elif form == "dataset_dict":
        datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "ds")
        named = f"{tmp_path / 'ds'}:test"
    else:
        (tmp_path / "ds").mkdir()
        (tmp_path / "ds" / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        named = str(tmp_path / "ds")
    args = ("loop.max_steps=2", "data.eval_fraction=0")
    from_file = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'file'}", *args))
    from_dataset = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'named'}", *args,
                                       f"data.preferences={named}"))
    assert [h["loss"] for h in from_dataset.history] == [h["loss"] for h in from_file.history]


def test_a_dataset_of_several_configurations_is_named_name_config_split(tmp_path):
    """``NAME:CONFIG:SPLIT``: one configuration (subset) of a dataset that has several, as a hub
    dataset's card declares them; here a folder of data files with such a card, which
    datasets.load_dataset reads as it reads the hub's (offline)."""
    rows = preference_rows()
    folder = tmp_path / "ds"
    for config_name, subset in (("first", rows[:3]), ("rest", rows[3:])):
        (folder / config_name).mkdir(parents=True)
        for split, part in (("train", subset), ("test", subset[:1])):
            (folder / config_name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train.jsonl\n"
        f"  - split: test\n    path: {name}/test.jsonl\n" for name in ("first", "rest")) + "---\n")
    stored = with_stored_data(config(tmp_path, f"data.preferences={folder}:rest:train",
                                     f"data.eval_preferences={folder}:first:test"), {}, tmp_path / "cache")
    assert [json.loads(line) for line in Path(stored.data.preferences).read_text().splitlines()] == rows[3:]
    assert [json.loads(line) for line in Path(stored.data.eval_preferences).read_text().splitlines()] == rows[:1]
    datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "saved")
    with pytest.raises(ConfigError, match="a save_to_disk folder has no configurations"):
        with_stored_data(config(tmp_path, f"data.preferences={tmp_path / 'saved'}:rest:train"), {}, tmp_path)


def test_a_name_datasets_cannot_load_is_one_config_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"data.preferences: 'nobody/no-such-dataset:train' is not a file, and "
                                          r"datasets cannot load it"):
        train("dpo", config(tmp_path, "data.preferences=nobody/no-such-dataset:train"))
    with pytest.raises(ConfigError, match="data.preferences: .*missing.jsonl is not a file"):
        train("dpo", config(tmp_path, f"data.preferences={tmp_path / 'missing.jsonl'}"))


def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch):
    """The README's "From Python" block, executed in a fresh folder: it trains and prints the
    policy's folder (its 50 steps of the tiny model take a few seconds)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "train(\"aihf-dpo\", config, preferences=preferences" in block
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / namespace["result"].output_dir / "final" / "policy" / "model.safetensors").is_file()
    assert len(namespace["result"].history) == 50



def test_dpo_starts_at_log_2_on_a_model_with_dropout(tmp_path):
    """A model saved with dropout (GPT-2 style): with ``model.disable_dropout`` (default) DPO's
    first loss is log 2, the policy being its own reference; with dropout left on, the policy's
    log-probs are noisy copies of the reference's and the first loss is not log 2."""
    import math

    from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, attention_dropout=0.3, hidden_dropout=0.3)
    args = ("loop.max_steps=1", "data.eval_fraction=0")
    off = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'off'}", *args), model=model, tokenizer=tok)
    assert off.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    on = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'on'}", "model.disable_dropout=false", *args),
               model=model, tokenizer=tok)
    assert abs(on.history[0]["loss"] - math.log(2)) > 1e-3


@pytest.mark.e2e
def test_a_reward_model_object_trains_the_run_its_folder_trains(tmp_path, cache):
    """``train("rlhf", ..., reward_model=reward, reward_tokenizer=tokenizer)``: an aihf RewardModel
    held in memory is stored (its own ``save``) under the cache and named by
    ``model.reward_model``, and trains the run its saved folder trains, step by step; a TRL-style
    one-label classifier object is taken too; a reward without its tokenizer is refused."""
    from test_reward_export import reward_and_tokenizer

    reward, tokenizer = reward_and_tokenizer()
    reward.save(tmp_path / "reward", tokenizer)
    args = ("loop.max_steps=2", "method.max_new_tokens=3", "method.rloo_k=2", "data.eval_fraction=0")
    by_folder = train("rlhf", config(tmp_path, f"loop.output_dir={tmp_path / 'folder'}",
                                     f"model.reward_model={tmp_path / 'reward'}", *args))
    given = train("rlhf", config(tmp_path, f"loop.output_dir={tmp_path / 'object'}", *args), reward_model=reward,
                  reward_tokenizer=tokenizer)
    assert [h["loss"] for h in given.history] == [h["loss"] for h in by_folder.history]
    stored = Path(yaml.safe_load((tmp_path / "object" / "config.yaml").read_text())["model"]["reward_model"])
    assert stored.parent == cache / "models" and not (tmp_path / "object" / "reward").exists()
    classifier, classifier_tokenizer, _ = reward.to_sequence_classification(tokenizer)
    as_trl = train("rlhf", config(tmp_path, f"loop.output_dir={tmp_path / 'trl'}", *args), reward_model=classifier,
                   reward_tokenizer=classifier_tokenizer)
    assert len(as_trl.history) == 2
    with pytest.raises(ConfigError, match=r"reward_model=\.\.\., reward_tokenizer=\.\.\."):
        train("rlhf", config(tmp_path), reward_model=reward)


RENAMED = {"prompt": "question", "chosen": "better", "rejected": "worse"}


def renamed_rows() -> list[dict]:
    """The preference rows under other column names, with a column aihf does not read."""
    return [{RENAMED[key]: value for key, value in row.items()} | {"source": "x"} for row in preference_rows()]


def test_renamed_columns_train_the_run_that_aihfs_names_train(tmp_path, cache):
    """``data.columns`` (train.DataConfig): a file or a dataset whose columns have other names
    trains the run that the rows under aihf's names train; the run's config names the stored file
    of those records, with ``columns`` empty, so the command line reruns it (and finds it finished)."""
    args = ("loop.max_steps=3", "data.eval_fraction=0")
    canonical = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'canonical'}", *args))
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in renamed_rows()), encoding="utf-8")
    columns = "data.columns={preferences: {prompt: question, chosen: better, rejected: worse}}"
    from_file = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'file'}", f"data.preferences={path}",
                                    columns, *args))
    assert [h["loss"] for h in from_file.history] == [h["loss"] for h in canonical.history]
    saved = yaml.safe_load((tmp_path / "file" / "config.yaml").read_text())["data"]
    assert saved["columns"] == {} and Path(saved["preferences"]).parent == cache / "data"
    assert [json.loads(line) for line in Path(saved["preferences"]).read_text().splitlines()] == preference_rows()
    # the demonstrations file, which columns does not name, is named as it is
    assert saved["demonstrations"] == config(tmp_path).data.demonstrations
    from_dataset = train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'file'}", columns, *args),
                         preferences=datasets.Dataset.from_list(renamed_rows()))
    assert from_dataset.history == from_file.history  # the same records: the same (finished) run
    assert train_from_cli("dpo", str(tmp_path / "file" / "config.yaml"), []) == 0


def test_an_eval_key_takes_its_kinds_columns_unless_it_has_its_own(tmp_path):
    rows = renamed_rows()
    base = config(tmp_path, "data.columns={preferences: {prompt: question, chosen: better, rejected: worse}}")
    given = with_stored_data(base, {"preferences": rows, "eval_preferences": rows[:2]}, tmp_path)
    held = [json.loads(line) for line in Path(given.data.eval_preferences).read_text().splitlines()]
    assert held == preference_rows()[:2]
    own = config(tmp_path, "data.columns={preferences: {prompt: question, chosen: better, rejected: worse}, "
                           "eval_preferences: {}}")  # an entry of its own, even empty, is used
    given = with_stored_data(own, {"preferences": rows, "eval_preferences": preference_rows()[:2]}, tmp_path)
    held = [json.loads(line) for line in Path(given.data.eval_preferences).read_text().splitlines()]
    assert held == preference_rows()[:2]
    with pytest.raises(DataError) as caught:
        with_stored_data(own, {"preferences": rows, "eval_preferences": rows[:2]}, tmp_path)
    assert (caught.value.row, caught.value.field) == (0, "chosen")  # aihf's name, as the entry is empty


def test_a_renamed_column_missing_from_the_data_is_named_in_the_error(tmp_path):
    rows = renamed_rows()
    del rows[1]["worse"]
    base = config(tmp_path, "data.columns={preferences: {prompt: question, chosen: better, rejected: worse}}")
    with pytest.raises(DataError) as caught:
        with_stored_data(base, {"preferences": rows}, tmp_path)
    assert (caught.value.row, caught.value.field) == (1, "worse")
    with pytest.raises(ConfigError, match="data.preferences: .*missing.jsonl is not a file"):
        with_stored_data(base, {"preferences": str(tmp_path / "missing.jsonl")}, tmp_path)


@pytest.mark.parametrize(("columns", "message"), [
    ("{prefs: {prompt: q}}", "'prefs' is not a data key; the keys are demonstrations, preferences"),
    ("{prompts: {response: a}}", "columns.prompts: 'response' is not a column aihf reads there; those are prompt"),
    ("{preferences: question}", "columns.preferences: expected a mapping"),
    ("{demonstrations: {prompt: ''}}", "columns.demonstrations.prompt must name a column"),
])
def test_bad_columns_are_config_errors_that_say_what_is_allowed(tmp_path, columns, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, f"data.columns={columns}")
