"""Seeding, RNG capture without pickle, atomic checkpoint directories, the NaN guard."""

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import aihf.runtime as runtime
from aihf.runtime import (
    NonFiniteLossError,
    available_cores,
    atomic_directory,
    atomic_file,
    check_finite,
    load_rng_state,
    optimizer_state,
    optimizer_tensors,
    provenance,
    save_rng_state,
    set_seed,
    set_torch_threads,
)


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_provenance_name_python_and_what_the_results_depend_on():
    import sys
    from importlib.metadata import version

    versions = provenance()
    assert versions["python"] == sys.version.split()[0]
    for name in ("aihf", "torch", "transformers", "tokenizers", "accelerate", "numpy", "scikit-learn"):
        assert versions[name] == version(name), name
    assert versions["cpu"] == runtime.cpu_name() and versions["cpu"]
    assert versions["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ("cuda_device" in versions) == torch.cuda.is_available()


def test_the_cpu_is_named_from_cpuinfo_or_else_by_platform(tmp_path, monkeypatch):
    import platform

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert runtime.cpu_name(cpuinfo) == "AMD EPYC 7B13 64-Core Processor"
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert runtime.cpu_name(tmp_path / "absent") == "arm"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert runtime.cpu_name(tmp_path / "absent") == platform.machine()


def test_available_cores_are_the_affinity_mask_capped_by_a_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cpu_max = tmp_path / "cpu.max"
    assert available_cores(cpu_max) == 4  # no cgroup file
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) == 4
    cpu_max.write_text("150000 100000\n")  # 1.5 cores of quota: 2 threads
    assert available_cores(cpu_max) == 2
    cpu_max.write_text("20000 100000\n")
    assert available_cores(cpu_max) == 1


def test_torch_threads_share_the_available_cores_unless_omp_num_threads_is_set(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.setattr("aihf.runtime.CGROUP_CPU_MAX", Path("/nonexistent/cpu.max"))
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_torch_threads() is None and torch.get_num_threads() == before
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        assert set_torch_threads() == 6 and torch.get_num_threads() == 6
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this machine: 1 thread each
        assert set_torch_threads() == 1 and torch.get_num_threads() == 1
        assert set_torch_threads(3) == 3 and torch.get_num_threads() == 3  # a preset's threads
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_torch_threads(3) is None and torch.get_num_threads() == 3  # the user's variable wins
    finally:
        torch.set_num_threads(before)


def test_a_busy_machine_is_named_with_what_to_do(monkeypatch, caplog):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr("aihf.runtime.CGROUP_CPU_MAX", Path("/nonexistent/cpu.max"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (0.4, 0.3, 0.2))
        with caplog.at_level("WARNING", logger="aihf.runtime"):
            assert set_torch_threads() == 2
        assert not caplog.records
        monkeypatch.setattr(os, "getloadavg", lambda: (5.7, 5.0, 4.0))
        with caplog.at_level("WARNING", logger="aihf.runtime"):
            assert set_torch_threads() == 2  # the count stays what the cores give: a result must not depend on the load
        assert "load average 5.7 on 2 cores" in caplog.text and "OMP_NUM_THREADS=1" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_every_command_sets_the_threads_first(monkeypatch, tmp_path, capsys):
    from aihf import cli

    calls = []
    monkeypatch.setattr("aihf.runtime.set_torch_threads", lambda: calls.append(True))
    assert cli.main(["experiment", "toy", "--output-dir", str(tmp_path), "iterationz=3"]) == 2
    assert calls == [True]


def test_set_seed_repeats():
    set_seed(11)
    first = _draw()
    set_seed(11)
    assert _draw() == first


def test_rng_state_round_trip(tmp_path):
    set_seed(3)
    _draw()
    save_rng_state(tmp_path)
    expected = _draw()
    _draw()
    load_rng_state(tmp_path)
    assert _draw() == expected
    assert {p.suffix for p in tmp_path.iterdir()} == {".safetensors", ".json"}


def test_an_optimizer_state_goes_through_safetensors_and_json_and_continues_the_same(tmp_path):
    """Tensors (two models' optimisers side by side under prefixes), plain slot values and
    param groups come back; the restored optimiser's next step equals the original's."""
    import json

    from safetensors.torch import load_file, save_file

    def model_and_optimizer():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.AdamW(model.parameters(), lr=0.1, amsgrad=True)

    model, optimizer = model_and_optimizer()
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
    state = optimizer.state_dict()
    state["state"][0]["plain"] = 7  # a slot that is not a tensor goes to the JSON side
    tensors, meta = optimizer_tensors(state, prefix="policy/")
    other = {name: value.clone() for name, value in optimizer_tensors(state, prefix="reward/")[0].items()}
    assert set(tensors) == {f"policy/{i}.{slot}" for i in (0, 1) for slot in ("step", "exp_avg", "exp_avg_sq",
                                                                             "max_exp_avg_sq")}
    save_file({**tensors, **other}, str(tmp_path / "opt.safetensors"))
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    back = optimizer_state(load_file(str(tmp_path / "opt.safetensors")), json.loads((tmp_path / "opt.json").read_text()),
                           prefix="policy/")
    assert back["state"][0]["plain"] == 7 and back["param_groups"] == json.loads(json.dumps(state["param_groups"]))
    del back["state"][0]["plain"], state["state"][0]["plain"]
    copy, restored = model_and_optimizer()
    copy.load_state_dict(model.state_dict())
    restored.load_state_dict(back)
    for net, opt in ((model, optimizer), (copy, restored)):
        opt.zero_grad()
        net(torch.ones(1, 3)).sum().backward()
        opt.step()
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("half-written")
            raise RuntimeError("crash while saving")
    assert (target / "a.txt").read_text() == "first"
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    with atomic_file(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("crash while saving")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temporary left


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_check_finite_stops_with_message(bad):
    with pytest.raises(NonFiniteLossError, match=r"dpo loss is (nan|inf) at step 12"):
        check_finite(bad, "dpo loss", 12)
    assert check_finite(torch.tensor(1.5), "loss", 0) == 1.5


def test_code_version_names_the_checkouts_commit_and_whether_it_is_dirty(tmp_path, monkeypatch):
    import subprocess

    version = runtime.code_version()  # the tests run from a checkout
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(runtime.__file__).parents[2]).stdout.strip()
    assert version is not None and version["commit"] == head and isinstance(version["dirty"], bool)
    assert runtime.provenance()["aihf_commit"] == head + ("+dirty" if version["dirty"] else "")
    fake = tmp_path / "site-packages" / "aihf" / "runtime.py"  # installed from a wheel: no checkout
    fake.parent.mkdir(parents=True)
    monkeypatch.setattr(runtime, "__file__", str(fake))
    assert runtime.code_version() is None and "aihf_commit" not in runtime.provenance()


def test_processes_wait_in_collectives_for_the_configured_timeout(monkeypatch):
    """The process group is made with a timeout long enough for an evaluation on the main
    process (NCCL's default, 10 minutes, would end a 7B run waiting for it); the environment
    sets it; a bad value is a one-line config error."""
    from datetime import timedelta

    import accelerate

    from aihf import runtime
    from aihf.config import ConfigError

    made = {}
    monkeypatch.setattr(accelerate, "PartialState", lambda **kwargs: made.update(kwargs))
    monkeypatch.delenv(runtime.COLLECTIVE_TIMEOUT_ENV, raising=False)
    runtime.process_state()
    assert made["timeout"] == timedelta(minutes=180)
    monkeypatch.setenv(runtime.COLLECTIVE_TIMEOUT_ENV, "45")
    runtime.process_state()
    assert made["timeout"] == timedelta(minutes=45)
    for bad in ("soon", "0", "-5"):
        monkeypatch.setenv(runtime.COLLECTIVE_TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match="AIHF_COLLECTIVE_TIMEOUT_MIN"):
            runtime.process_state()
