"""``experiments.units.reuse_check``: a finished run is reused only when it was trained with
the run's method and loop sections, and a run made before a setting existed (the saved
config lacks it, the run holds it at its default) still is."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import yaml

from aihf.config import ConfigError
from aihf.experiments.runs import RunSpec
from aihf.experiments.units import reuse_check
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
