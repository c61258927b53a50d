"""``experiments.units``: a finished run is reused only when it was trained with the run's
method and loop sections, and a run made before a setting existed (the saved config lacks it,
the run holds it at its default) still is (``reuse_check``); a unit made with another pi_SFT is
trained again with a warning that names both pi_SFTs and the machines that made them
(``finished_unit``)."""

from __future__ import annotations

from dataclasses import asdict

import json
import logging

import pytest
import yaml

from aihf.config import ConfigError
from aihf.experiments.runs import RunSpec
from aihf.experiments.units import finished_unit, reuse_check
from aihf.runtime import provenance
from aihf.lm.methods import MethodConfig
from aihf.lm.trainer import LoopConfig


def _saved_run(tmp_path, method: dict, loop: dict):
    run_dir = tmp_path / "run"
    (run_dir / "final" / "policy").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"method": method, "loop": loop}))
    return run_dir / "final" / "policy"


def test_a_run_is_reused_only_with_the_same_settings_and_a_later_setting_at_its_default_is_the_same(tmp_path):
    spec = RunSpec("rlhf-low-beta", "rlhf", MethodConfig(beta=0.05), LoopConfig(learning_rate=1e-4, seed=3))
    method, loop = asdict(spec.method), asdict(spec.loop)
    older = {k: v for k, v in method.items() if not k.startswith("reward_ensemble")}  # saved before ensembles
    reuse_check(spec, _saved_run(tmp_path / "a", older, {**loop, "seed": 0, "output_dir": "elsewhere"}))
    with pytest.raises(ConfigError, match=r"other settings than run 'rlhf-low-beta' \(method.beta: 0.1 -> 0.05\)"):
        reuse_check(spec, _saved_run(tmp_path / "b", {**method, "beta": 0.1}, loop))
    ensemble = RunSpec("rlhf-low-beta", "rlhf", MethodConfig(beta=0.05, reward_ensemble=3), spec.loop)
    with pytest.raises(ConfigError, match="method.reward_ensemble: None -> 3"):
        reuse_check(ensemble, _saved_run(tmp_path / "c", older, loop))


def test_a_unit_of_another_pi_sft_is_trained_again_with_a_warning_naming_both_machines(tmp_path, caplog):
    spec = RunSpec("rlhf", "rlhf", MethodConfig(), LoopConfig())
    run_dir = tmp_path / "seed-0"
    run_dir.mkdir()
    key = {"evaluate_on": "validation", "prompts": ["a"], "pi_sft_sha256": "d5b13c87" + "0" * 56}
    elsewhere = {**provenance(), "cpu": "AMD EPYC 7B13", "torch_cpu_capability": "AVX2"}
    saved = {"key": {**key, "pi_sft_sha256": "d659873d" + "0" * 56}, "row": {"gold": 1.0}, "generations": [],
             "versions": elsewhere}
    (run_dir / "evaluation.json").write_text(json.dumps(saved))

    class Evaluator:
        generations: dict = {}

    with caplog.at_level(logging.WARNING, logger="aihf.experiments.units"):
        assert finished_unit(Evaluator(), spec, run_dir, 0, key) is None
    message = caplog.records[-1].getMessage()
    here = provenance()
    assert "another pi_sft_sha256" in message and "d659873d0000" in message and "d5b13c870000" in message
    assert "AMD EPYC 7B13, torch AVX2" in message and f"{here['cpu']}, torch {here['torch_cpu_capability']}" in message

    del saved["versions"]  # written before evaluation.json recorded the machine
    saved["key"]["prompts"] = ["b"]
    (run_dir / "evaluation.json").write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="aihf.experiments.units"):
        assert finished_unit(Evaluator(), spec, run_dir, 0, key) is None
    message = caplog.records[-1].getMessage()
    assert "another pi_sft_sha256, prompts" in message and "a machine it does not record" in message
    # the dialogue experiments' key names the baseline's weights
    dialogue = {"prompts": ["a"], "judge": "keywords", "baseline_sha256": "ab" * 32}
    (run_dir / "evaluation.json").write_text(json.dumps({**saved, "key": {**dialogue, "baseline_sha256": "cd" * 32}}))
    with caplog.at_level(logging.WARNING, logger="aihf.experiments.units"):
        assert finished_unit(Evaluator(), spec, run_dir, 0, dialogue) is None
    message = caplog.records[-1].getMessage()
    assert "another baseline_sha256 (start weights cdcdcdcdcdcd... made on a machine it does not record" in message
