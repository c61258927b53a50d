"""The reset-seed ranges of aihf.control.reset_seeds: evaluations apart from the episodes data
and training are made of, and the one known overlap with the shipped data (its module
docstring) pinned, so a new data set or seed range that adds another one fails here."""

import json

import pytest

from aihf import shipped
from aihf.control import reset_seeds as rs

RUN_SEEDS = range(100)  # run seeds worth checking (the reported runs use 0-2, the pilots 10-12)
EVALUATIONS = 100  # per run (the paper preset makes 31)
EPISODES = 10  # per evaluation and per reward step (the presets' eval_episodes, trajectories_per_iteration)
ITERATIONS = 100  # outer iterations (the paper preset makes 60)
DATA_EPISODES = 1000  # an upper bound on the episodes behind one demonstration file or one checkpoint's pool share
ENVS = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"]


def evaluation_ranges(split: str) -> dict[int, set[int]]:
    """Every reset seed of each run seed's evaluations on ``split``."""
    return {s: {rs.evaluation_seed(split, s, j) + e for j in range(EVALUATIONS) for e in range(EPISODES)}
            for s in RUN_SEEDS}


def training_ranges() -> set[int]:
    """Every reset seed of the runs' reward-step trajectories."""
    return {rs.policy_trajectory_seed(s, k, EPISODES) + e for s in RUN_SEEDS for k in range(ITERATIONS)
            for e in range(EPISODES)}


def data_ranges(env: str) -> dict[str, set[int]]:
    """The reset seeds behind the shipped data of ``env`` (provenance.json: its seed and the
    pool's checkpoints), each range as long as ``DATA_EPISODES``."""
    provenance = json.loads((shipped.mujoco_data_dir(env) / "provenance.json").read_text(encoding="utf-8"))
    seed, checkpoints = provenance["config"]["seed"], provenance["checkpoints"]
    ranges = {"demos": rs.demo_seed(seed), "demos_low": rs.demo_seed(seed, low_quality=True),
              **{f"pool checkpoint {checkpoints.index(c)}": rs.pool_seed(seed, checkpoints.index(c))
                 for c in provenance["pool_checkpoints"]}}
    return {name: set(range(first, first + DATA_EPISODES)) for name, first in ranges.items()}


def test_evaluation_splits_meet_neither_each_other_nor_the_training_trajectories():
    test, validation = evaluation_ranges("test"), evaluation_ranges("validation")
    training = training_ranges()
    every_test, every_validation = set().union(*test.values()), set().union(*validation.values())
    assert not every_test & every_validation
    assert not (every_test | every_validation) & training
    checkpoints = {rs.checkpoint_evaluation_seed(s) + e for s in RUN_SEEDS for e in range(EPISODES)}
    assert not checkpoints & (every_test | every_validation | training)


def test_the_shipped_data_set_meets_the_evaluations_only_where_the_module_says():
    """Checkpoint 9's pool episodes (data seed 0 + 1,000,000) start where run seed 0's test
    evaluations do, in every shipped environment; nothing else meets: no validation seed, no
    other run seed, no demonstration, and no training trajectory meets the data."""
    overlaps = set()
    for env in ENVS:
        data = data_ranges(env)
        for split in ("test", "validation"):
            for run_seed, seeds in evaluation_ranges(split).items():
                overlaps |= {(env, split, run_seed, name) for name, used in data.items() if used & seeds}
        assert not set().union(*data.values()) & training_ranges()
    assert overlaps == {(env, "test", 0, "pool checkpoint 9") for env in ENVS}


@pytest.mark.parametrize("env", ENVS)
def test_the_ranges_reproduce_the_seeds_the_shipped_data_was_made_with(env):
    """The make_data arithmetic the functions replaced (seed, seed + 5,000, seed + 100,000 (c + 1),
    seed + 10**8), so the shipped files stay reproducible from their provenance command."""
    seed = json.loads((shipped.mujoco_data_dir(env) / "provenance.json").read_text(encoding="utf-8"))["config"]["seed"]
    assert (rs.demo_seed(seed), rs.demo_seed(seed, low_quality=True)) == (seed, seed + 5000)
    assert [rs.pool_seed(seed, c) for c in (0, 9)] == [seed + 100_000, seed + 1_000_000]
    assert rs.checkpoint_evaluation_seed(seed) == seed + 10**8
    assert rs.evaluation_seed("test", 2, 30) == 1_002_030 and rs.policy_trajectory_seed(2, 59, 10) == 10_200_590


@pytest.mark.parametrize("split", ["test", "validation"])
def test_bc_is_evaluated_on_the_split_asked_for(tmp_path, monkeypatch, tiny_ml_irl_experiment, split):
    """BC's one evaluation takes the reset seeds of ``loop.eval_split``, as SAC's evaluations do
    (it once took the test seeds whatever the split)."""
    from aihf.experiments import mujoco

    seen, episode = [], mujoco.run_episode
    monkeypatch.setattr(mujoco, "run_episode", lambda act, env, seed: seen.append(seed) or episode(act, env, seed))
    preset, data = tiny_ml_irl_experiment(methods=["bc"], seeds=[3])
    assert mujoco.run_from_cli("aihf/ContextTarget-v0", str(preset), str(tmp_path / "out"),
                               [data, f"loop.eval_split={split}"]) == 0
    assert seen == [rs.evaluation_seed(split, 3, 0) + e for e in range(2)]  # the preset's eval_episodes: 2
