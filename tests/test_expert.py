"""The expert trainer's resume: an interrupted run, run again, is the uninterrupted run
(same checkpoints to the bit, same episodes), on both SAC backends."""

import json

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


@pytest.mark.e2e
@pytest.mark.parametrize("backend,batched", [("sb3", 1), ("sbx", 4)])
def test_a_resumed_expert_run_is_the_uninterrupted_run(tmp_path, monkeypatch, backend, batched):
    cfg = ExpertConfig(env="Hopper-v5", steps=480, seed=0, net_arch=[16], learning_starts=100, checkpoint_every=160,
                       eval_episodes=2, backend=backend, batched_updates=batched, buffer_size=1000)
    whole = train_expert(cfg, tmp_path / "whole")

    save = expert._Checkpointer.save
    def save_then_stop(self):
        save(self)
        if self.num_timesteps >= 320:
            raise _Stop
    monkeypatch.setattr(expert._Checkpointer, "save", save_then_stop)
    with pytest.raises(_Stop):
        train_expert(cfg, tmp_path / "parts")
    assert json.loads((tmp_path / "parts" / "resume" / "state.json").read_text())["step"] == 320
    monkeypatch.setattr(expert._Checkpointer, "save", save)
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
