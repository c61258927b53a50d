"""Test-wide settings: no hub access, one torch thread; the two test tiers.

Tiers (markers registered in pyproject.toml): ``e2e`` marks a test that runs a whole
experiment, a CLI training run or a wheel install (seconds each); ``slow`` the long runs
left out by default; every other test is marked ``unit`` here, so ``python -m pytest -m unit``
runs the fast tier and the default ``python -m pytest`` runs unit + e2e.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one torch thread (2-core machines: a second thread mostly adds contention), also for the
# commands the tests run through aihf.cli.main, which sets torch's threads unless this is set
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

NOT_UNIT = ("e2e", "slow")


@pytest.fixture(autouse=True)
def _commands_leave_no_console_handler():
    """A command run in a test (aihf.cli.main) installs aihf.logs' stderr handler on the root
    logger; take it off afterwards, so that later tests' stderr holds only their own output."""
    import logging

    from aihf.logs import Console

    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, Console)]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(name) for name in NOT_UNIT):
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def figure_texts(monkeypatch):
    """Every text drawn on each figure saved during the test (titles, labels, legends): the
    dict maps the file name to its texts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    texts: dict[str, list[str]] = {}
    save = Figure.savefig

    def recording(fig, path, *args, **kwargs):
        texts[os.path.basename(str(path))] = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return texts


@pytest.fixture
def forbid_unpickling(monkeypatch):
    """Call it to make every way SB3, cloudpickle and torch read a pickle raise from then on
    (a resume point must be read without running what a tampered file could name)."""
    import pickle

    import cloudpickle

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    def forbid() -> None:
        for module, name in [(pickle, "load"), (pickle, "loads"), (cloudpickle, "load"), (cloudpickle, "loads"),
                             (torch, "load")]:
            monkeypatch.setattr(module, name, refuse)

    return forbid


@pytest.fixture
def tiny_ml_irl_experiment(tmp_path):
    """Toy data in ``tmp_path/data`` and a preset file for ``aihf/ContextTarget-v0`` on the
    ml_irl schedule (200 env steps, 2 iterations, tiny networks) with ``fields`` on top;
    returns (preset path, the ``data_dir=`` override)."""
    import yaml

    from aihf.control.toy import write_toy_data_dir

    def make(**fields):
        write_toy_data_dir(tmp_path / "data", demo_slope=0.5, n_prefs=50)
        preset = tmp_path / "tiny.yaml"
        preset.write_text(yaml.safe_dump({
            "seeds": [0], "n_prefs": 20, **fields,
            "loop": {"total_steps": 200, "schedule": "ml_irl", "iteration_steps": 100, "trajectories_per_iteration": 2,
                     "eval_every": 100, "eval_episodes": 2, "reward_hidden": [8], "reward_clamp": 10.0,
                     "sac": {"net_arch": [8], "learning_starts": 50, "batch_size": 16, "buffer_size": 300}},
            "bc": {"hidden": [8], "updates": 10},
        }))
        return preset, f"data_dir={tmp_path / 'data'}"

    return make
