"""The expert trainer's resume: an interrupted run, run again, is the uninterrupted run
(same checkpoints to the bit, same episodes), on both SAC backends, reading no pickle; a
resume folder of the older pickled format is refused."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aihf.control import expert
from aihf.control.expert import ExpertConfig, train_expert


class _Stop(Exception):
    """Stands for the process being killed."""


def _episodes(folder):
    return [(line["step"], line["return"], line["length"])
            for line in map(json.loads, (folder / "progress.jsonl").read_text().splitlines())]


def _stopped_at_320(cfg: ExpertConfig, out, monkeypatch) -> None:
    """Run ``cfg`` into ``out`` as a process killed right after its checkpoint at step 320."""
    save = expert._Checkpointer.save

    def save_then_stop(self):
        save(self)
        if self.num_timesteps >= 320:
            raise _Stop
    monkeypatch.setattr(expert._Checkpointer, "save", save_then_stop)
    with pytest.raises(_Stop):
        train_expert(cfg, out)
    monkeypatch.setattr(expert._Checkpointer, "save", save)


@pytest.mark.e2e
@pytest.mark.parametrize("backend,batched", [("sb3", 1), ("sbx", 4)])
def test_a_resumed_expert_run_is_the_uninterrupted_run(tmp_path, monkeypatch, forbid_unpickling, backend, batched):
    cfg = ExpertConfig(env="Hopper-v5", steps=480, seed=0, net_arch=[16], learning_starts=100, checkpoint_every=160,
                       eval_episodes=2, backend=backend, batched_updates=batched, buffer_size=1000)
    whole = train_expert(cfg, tmp_path / "whole")

    _stopped_at_320(cfg, tmp_path / "parts", monkeypatch)
    assert json.loads((tmp_path / "parts" / "resume" / "state.json").read_text())["step"] == 320
    assert {p.suffix for p in (tmp_path / "parts" / "resume").iterdir()} <= {".json", ".safetensors"}
    forbid_unpickling()
    parts = train_expert(cfg, tmp_path / "parts")

    assert parts["resumed"] and not whole["resumed"]
    assert parts["eval_returns"] == whole["eval_returns"]
    assert _episodes(tmp_path / "parts") == _episodes(tmp_path / "whole") and len(_episodes(tmp_path / "whole")) > 5
    names = sorted(p.name for p in (tmp_path / "whole" / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "parts" / "checkpoints").iterdir())
    assert names == ["step_0000160.safetensors", "step_0000320.safetensors", "step_0000480.safetensors"]
    for name in names:
        a, b = (load_file(str(tmp_path / run / "checkpoints" / name)) for run in ("whole", "parts"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.e2e
def test_a_run_continues_only_with_its_own_settings_and_may_end_at_a_checkpoint(tmp_path, monkeypatch):
    """Stopped at step 320 of 480: continuing with another network is refused, naming it;
    continuing with steps=320 ends the run there, its provenance saying what was planned."""
    cfg = ExpertConfig(env="Hopper-v5", steps=480, seed=0, net_arch=[16], learning_starts=100, checkpoint_every=160,
                       eval_episodes=1, buffer_size=1000)
    _stopped_at_320(cfg, tmp_path, monkeypatch)
    with pytest.raises(ValueError, match=r"other settings \(net_arch\)"):
        train_expert(ExpertConfig(**{**cfg.__dict__, "net_arch": [32]}), tmp_path)
    record = train_expert(ExpertConfig(**{**cfg.__dict__, "steps": 320}), tmp_path)
    assert record["steps"] == 320 and record["steps_planned_before"] == 480 and record["resumed"]
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 320
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir())[-1] == "step_0000320.safetensors"


def test_a_resume_folder_of_the_pickled_format_is_refused_not_read(tmp_path, forbid_unpickling):
    cfg = ExpertConfig(env="Hopper-v5", steps=480, net_arch=[16], learning_starts=100, buffer_size=1000)
    (tmp_path / "resume").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(cfg.__dict__))
    (tmp_path / "resume" / "state.json").write_text(json.dumps({"step": 320, "elapsed_s": 1.0}))
    (tmp_path / "resume" / "model.zip").write_bytes(b"PK")
    forbid_unpickling()
    with pytest.raises(ValueError, match=r"resume was written by an older aihf .*model\.zip"):
        train_expert(cfg, tmp_path)


@pytest.mark.e2e
def test_a_target_return_ends_the_run_at_the_first_checkpoint_that_reaches_it(tmp_path):
    """Evaluating checkpoints changes nothing in the run (a target never reached: the same
    checkpoints to the bit as no target); a reachable one ends the run at the first checkpoint
    whose evaluation reaches it, and that checkpoint is the final policy."""
    cfg = ExpertConfig(env="Hopper-v5", steps=480, seed=0, net_arch=[16], learning_starts=100, checkpoint_every=160,
                       eval_episodes=2, backend="sbx", batched_updates=4, buffer_size=1000)
    whole = train_expert(cfg, tmp_path / "whole")
    never = train_expert(ExpertConfig(**{**cfg.__dict__, "target_return": 1e9}), tmp_path / "never")
    assert never["steps"] == whole["steps"] == 480 and not never["stopped_at_target"]
    assert never["eval_returns"] == whole["eval_returns"]
    for name in ("step_0000160.safetensors", "step_0000320.safetensors", "step_0000480.safetensors"):
        a, b = (load_file(str(tmp_path / run / "checkpoints" / name)) for run in ("whole", "never"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    evaluated = {int(k): v["eval_return_mean"] for k, v in json.loads((tmp_path / "never" / "evaluations.json").read_text()).items()}
    assert sorted(evaluated) == [160, 320]  # those written during training; the last one is the final policy
    target = evaluated[320]
    first = min(step for step, mean in evaluated.items() if mean >= target)  # 160 or 320
    reached = train_expert(ExpertConfig(**{**cfg.__dict__, "target_return": target}), tmp_path / "reached")
    assert reached["stopped_at_target"] and reached["steps"] == first
    assert reached["final_policy"] == f"step_{first:07d}.safetensors"
    assert sorted(p.name for p in (tmp_path / "reached" / "checkpoints").iterdir())[-1] == reached["final_policy"]
    a, b = (load_file(str(tmp_path / run / "checkpoints" / reached["final_policy"])) for run in ("whole", "reached"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.e2e
def test_a_run_stopped_after_its_checkpoint_reached_the_target_ends_there_when_run_again(tmp_path, monkeypatch):
    """Killed right after the checkpoint that reached the target (before provenance.json):
    running it again trains no further and ends at that checkpoint."""
    evaluations = {160: 5.0, 320: 12.0}  # the checkpoints' evaluated returns, stood in for
    monkeypatch.setattr(expert, "_evaluate_checkpoint",
                        lambda policy, cfg, step, out: {"eval_return_mean": evaluations[step], "eval_return_std": 0.0})
    cfg = ExpertConfig(env="Hopper-v5", steps=480, seed=0, net_arch=[16], learning_starts=100, checkpoint_every=160,
                       eval_episodes=1, buffer_size=1000, target_return=10.0)
    _stopped_at_320(cfg, tmp_path, monkeypatch)
    record = train_expert(cfg, tmp_path)
    assert record["stopped_at_target"] and record["steps"] == 320 and record["resumed"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000160.safetensors",
                                                                             "step_0000320.safetensors"]


def test_checkpoints_are_spread_over_the_range_of_returns():
    from aihf.control.expert_data import spread_by_return

    assert spread_by_return([0.0, 10.0, 11.0, 12.0, 50.0, 100.0], 3) == [0, 4, 5]
    assert spread_by_return([5.0, 1.0, 3.0], 2) == [0, 1]  # the worst and the best, in step order
    assert spread_by_return([4.0, 4.0, 4.0], 2) == [0, 1]  # equal returns: each checkpoint once
    assert spread_by_return([1.0, 2.0], 5) == [0, 1]


def test_the_demonstrator_is_the_last_the_best_or_a_named_checkpoint():
    from aihf.control.expert_data import _demonstrator_index

    paths = [Path("step_1.safetensors"), Path("step_2.safetensors"), Path("step_3.safetensors")]
    evaluated = {"step_1.safetensors": 5.0, "step_2.safetensors": 9.0, "step_3.safetensors": 7.0}
    assert _demonstrator_index("last", paths, evaluated) == 2
    assert _demonstrator_index("best", paths, evaluated) == 1
    assert _demonstrator_index("step_1.safetensors", paths, {}) == 0
    with pytest.raises(ValueError, match="step_9.safetensors.*step_1.safetensors"):
        _demonstrator_index("step_9.safetensors", paths, {})


@pytest.mark.e2e
def test_data_from_an_expert_run_draws_segments_from_the_checkpoints_chosen_by_return(tmp_path):
    """make_data on a short Hopper run's 3 checkpoints, 2 quality levels: every segment comes
    from the two checkpoints the evaluation chose (the worst and the best), whose evaluated
    returns are in the provenance with the between-checkpoint share and the label agreement;
    the demonstrations come from the best evaluated checkpoint."""
    from aihf.control.expert_data import ExpertDataConfig, load_data, make_data

    train_expert(ExpertConfig(env="Hopper-v5", steps=480, seed=0, net_arch=[16], learning_starts=100,
                              checkpoint_every=160, eval_episodes=1, buffer_size=1000), tmp_path / "expert")
    cfg = ExpertDataConfig(env="Hopper-v5", n_demos=200, segment_len=10, min_segment_len=3, segments_per_checkpoint=12,
                           n_prefs=40, low_checkpoint=0, quality_levels=2, eval_episodes=2, demonstrator="best")
    record = make_data(cfg, tmp_path / "expert" / "checkpoints", tmp_path / "data")
    returns = list(record["checkpoint_eval_return"].values())
    assert len(returns) == 3
    chosen = [returns.index(min(returns)), returns.index(max(returns))]
    assert record["demonstrator_checkpoint"] == record["checkpoints"][chosen[1]]
    assert record["pool_checkpoints"] == [record["checkpoints"][i] for i in sorted(chosen)]
    assert list(record["segment_return_by_checkpoint"]) == record["pool_checkpoints"]
    assert 0.0 <= record["between_checkpoint_share_of_return_variance"] <= 1.0
    assert 0.5 <= record["pref_label_agrees_with_true_return"] <= 1.0
    demos, prefs = load_data(tmp_path / "data")
    assert len(demos) == 200 and len(prefs) == 40 and record["sizes"]["segments"] == 24
