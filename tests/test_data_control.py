"""Control data: trajectories, segment preferences, array sets and their .npz files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from aihf.data import DataError, SegmentPreference, SegmentPreferenceSet, Trajectory, TransitionSet


def traj(length: int = 4, obs: int = 3, act: int = 2, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    return Trajectory(rng.normal(size=(length, obs)), rng.normal(size=(length, act)))


def pair(length: int = 4, seed: int = 0) -> SegmentPreference:
    return SegmentPreference(traj(length, seed=seed), traj(length, seed=seed + 100))


def test_trajectory_is_read_only_float32():
    t = Trajectory(np.arange(6).reshape(3, 2), np.ones((3, 1), dtype=np.float64), rewards=[1, 2, 3], terminals=[0, 0, 1])
    assert t.observations.dtype == np.float32 and t.actions.dtype == np.float32 and t.terminals.dtype == np.bool_
    assert (len(t), t.obs_dim, t.act_dim) == (3, 2, 1)
    with pytest.raises(ValueError):
        t.observations[0, 0] = 1.0


@pytest.mark.parametrize(
    "kwargs, row, field, reason",
    [
        ({"observations": np.zeros(4), "actions": np.zeros((4, 1))}, None, "observations", r"expected 2 dims, got shape \(4,\)"),
        ({"observations": np.zeros((4, 2)), "actions": np.zeros((3, 1))}, None, "actions",
         r"has 3 along axis 0, but observations has 4"),
        ({"observations": np.zeros((4, 2)), "actions": np.zeros((4, 1)), "rewards": np.zeros(5)}, None, "rewards",
         r"has 5 along axis 0"),
        ({"observations": np.array([[0.0, 1], [2, np.nan]]), "actions": np.zeros((2, 1))}, 1, "observations",
         r"contains NaN or inf"),
        ({"observations": np.zeros((2, 2)), "actions": np.array([[0.0], [np.inf]])}, 1, "actions", r"contains NaN or inf"),
        ({"observations": np.array([["a", "b"]]), "actions": np.zeros((1, 1))}, None, "observations",
         r"expected a real numeric array, got dtype <U1"),
        ({"observations": np.zeros((0, 2)), "actions": np.zeros((0, 1))}, None, "observations", r"is empty"),
    ],
    ids=["rank", "length mismatch", "rewards length", "nan obs", "inf action", "strings", "empty"],
)
def test_bad_trajectory(kwargs, row, field, reason):
    where = "" if row is None else rf"index {row} \(0-based\), "
    with pytest.raises(DataError, match=f"^{where}field '{field}': {reason}") as info:
        Trajectory(**kwargs)
    assert (info.value.row, info.value.field) == (row, field)


def test_segment_pairs_must_match():
    with pytest.raises(DataError, match=r"^field 'rejected': segment has length 5, but the preferred one has 4"):
        SegmentPreference(traj(4), traj(5))
    with pytest.raises(DataError, match=r"^field 'rejected': segment has \(obs_dim, act_dim\) = \(3, 1\)"):
        SegmentPreference(traj(4), traj(4, act=1))
    with pytest.raises(DataError, match=r"^index 2 \(0-based\), field 'pairs': segment length 6 differs from pair 0's 4"):
        SegmentPreferenceSet.from_pairs([pair(4), pair(4, seed=1), pair(6)])
    with pytest.raises(DataError, match=r"^index 1 \(0-based\), field 'trajectories': \(obs_dim, act_dim\) = \(5, 2\)"):
        TransitionSet.from_trajectories([traj(), traj(obs=5)])
    with pytest.raises(DataError, match=r"^field 'act_l': has 3 along axis 2, but act_w has 2"):
        SegmentPreferenceSet(np.zeros((2, 4, 3)), np.zeros((2, 4, 2)), np.zeros((2, 4, 3)), np.zeros((2, 4, 3)))


def test_sets_save_and_load_without_pickle(tmp_path):
    pairs = [pair(4, seed=s) for s in range(3)]
    prefs = SegmentPreferenceSet.from_pairs(pairs)
    assert prefs.obs_w.shape == (3, 4, 3) and prefs.act_l.shape == (3, 4, 2) and len(prefs) == 3
    prefs.save(tmp_path / "prefs.npz")
    loaded = SegmentPreferenceSet.load(tmp_path / "prefs.npz")
    for name in ("obs_w", "act_w", "obs_l", "act_l"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(prefs, name))
    np.testing.assert_array_equal(loaded[1].rejected.actions, pairs[1].rejected.actions)

    demos = TransitionSet.from_trajectories([traj(4), traj(6, seed=1)])
    assert demos.observations.shape == (10, 3)
    demos.save(tmp_path / "demos.npz")
    np.testing.assert_array_equal(TransitionSet.load(tmp_path / "demos.npz").actions, demos.actions)


def test_bad_npz_files_name_file_and_array(tmp_path):
    path = tmp_path / "demos.npz"
    where = re.escape(str(path))
    np.savez(path, observations=np.array([{"x": 1}], dtype=object), actions=np.zeros((1, 1)))
    with pytest.raises(DataError, match=f"^{where}, field 'observations': cannot be loaded without pickle"):
        TransitionSet.load(path)
    np.savez(path, observations=np.zeros((2, 3)))
    with pytest.raises(DataError, match=f"^{where}, field 'actions': array is missing"):
        TransitionSet.load(path)
    np.savez(path, observations=np.zeros((2, 3)), actions=np.zeros((2, 1)), extra=np.zeros(2))
    with pytest.raises(DataError, match=f"^{where}, field 'extra': unknown array"):
        TransitionSet.load(path)
    obs = np.zeros((3, 2))
    obs[2, 1] = np.nan
    np.savez(path, observations=obs, actions=np.zeros((3, 1)))
    with pytest.raises(DataError, match=rf"^{where}, index 2 \(0-based\), field 'observations': contains NaN") as info:
        TransitionSet.load(path)
    assert (info.value.source, info.value.row, info.value.field) == (str(path), 2, "observations")
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"^{where}: not a readable .npz file"):
        TransitionSet.load(path)


@pytest.mark.parametrize("terminals, row", [([0, 2, 1], 1), ([0.0, 1.0, float("nan")], 2)])
def test_terminals_must_be_zero_one_or_bool(terminals, row):
    with pytest.raises(DataError, match="expected 0/1 or booleans") as err:
        Trajectory(np.zeros((3, 2)), np.zeros((3, 1)), terminals=terminals)
    assert err.value.field == "terminals" and err.value.row == row
    assert Trajectory(np.zeros((3, 2)), np.zeros((3, 1)), terminals=[True, False, True]).terminals.tolist() == [True, False, True]
