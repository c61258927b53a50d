"""Control data: trajectories, segment preferences, array sets and their .npz files."""

from __future__ import annotations

import json
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
    with pytest.raises(DataError, match=r"^field 'rejected': segment has \(obs_dim, act_dim\) = \(3, 1\)"):
        SegmentPreference(traj(4), traj(4, act=1))
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


# --- segments.npz / prefs.npz (control.preferences, control.expert_data): issue 12 item 4 ---

def pool_arrays(n: int = 6, length: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"obs": rng.normal(size=(n, length, 3)).astype(np.float32), "act": rng.normal(size=(n, length, 2)).astype(np.float32),
            "returns": rng.normal(size=n), "source": np.arange(n, dtype=np.int64) % 2}


def data_dir(tmp_path, pool: dict | None = None, pairs=None):
    """A make_data directory: demos.npz, segments.npz, prefs.npz, provenance.json."""

    TransitionSet(np.zeros((5, 3)), np.zeros((5, 2))).save(tmp_path / "demos.npz")
    np.savez_compressed(tmp_path / "segments.npz", **(pool if pool is not None else pool_arrays()))
    np.savez_compressed(tmp_path / "prefs.npz", pairs=np.array([[0, 1], [2, 3], [4, 5]]) if pairs is None else pairs)
    (tmp_path / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 10.0}))
    return tmp_path


def test_good_data_dir_loads(tmp_path):
    from aihf.control.expert_data import demonstrator_return, load_data

    demos, prefs = load_data(data_dir(tmp_path), n_prefs=2)
    assert len(demos) == 5 and len(prefs) == 2 and demonstrator_return(tmp_path) == 10.0
    np.testing.assert_array_equal(prefs.obs_l[1], pool_arrays()["obs"][3])


def _load(tmp_path):
    from aihf.control.expert_data import load_data

    return load_data(tmp_path)


@pytest.mark.parametrize(
    "pool, pairs, file, row, field, reason",
    [
        ({**pool_arrays(), "obs": np.array([{"x": 1}] * 6, dtype=object)}, None, "segments.npz", None, "obs",
         r"cannot be loaded without pickle: an object array"),
        (None, np.array([[0, 1], [{"x": 1}, 2]], dtype=object), "prefs.npz", None, "pairs",
         r"cannot be loaded without pickle"),
        (None, np.array([[0.0, 1.0], [2.0, 3.0]]), "prefs.npz", None, "pairs",
         r"pair indices must be integers, got dtype float64"),
        (None, np.array([[0, 1], [2, 3], [5, 6]]), "prefs.npz", 2, "pairs",
         r"pair \[5, 6\] refers to a segment outside the pool's 6 \(indices 0 to 5\)"),
        (None, np.array([[0, 1], [-1, 3]]), "prefs.npz", 1, "pairs", r"pair \[-1, 3\] refers to a segment outside"),
        (None, np.array([[0, 1], [3, 3]]), "prefs.npz", 1, "pairs", r"pair compares segment 3 with itself"),
        (None, np.array([0, 1, 2]), "prefs.npz", None, "pairs", r"expected shape \[N, 2\]"),
        (None, np.zeros((0, 2), dtype=np.int64), "prefs.npz", None, "pairs", r"no pairs"),
        ({**pool_arrays(), "obs": np.where(np.arange(6)[:, None, None] == 4, np.nan, pool_arrays()["obs"])}, None,
         "segments.npz", 4, "obs", r"contains NaN or inf"),
        ({**pool_arrays(), "returns": np.array([0.0, 1, 2, np.inf, 4, 5])}, None, "segments.npz", 3, "returns",
         r"contains NaN or inf"),
        ({**pool_arrays(), "act": pool_arrays()["act"][:5]}, None, "segments.npz", None, "act",
         r"has 5 along axis 0, but obs has 6"),
        ({**pool_arrays(), "act": pool_arrays()["act"][:, :3]}, None, "segments.npz", None, "act",
         r"has 3 along axis 1, but obs has 4"),
        ({**pool_arrays(), "source": np.zeros(6)}, None, "segments.npz", None, "source",
         r"expected integer policy indices, got dtype float64"),
        ({k: v for k, v in pool_arrays().items() if k != "returns"}, None, "segments.npz", None, "returns",
         r"array is missing; the file holds \['act', 'obs', 'source'\]"),
        ({**pool_arrays(), "obs": np.array([["a"] * 3] * 6)}, None, "segments.npz", None, "obs",
         r"expected a real numeric array, got dtype <U1"),
    ],
    ids=["object segments", "object pairs", "float pairs", "pair beyond pool", "negative pair", "self pair",
         "pairs rank", "no pairs", "nan segment", "inf return", "segment count", "segment length", "float source",
         "missing array", "string segments"],
)
def test_bad_segment_and_pair_files_name_file_row_field(tmp_path, pool, pairs, file, row, field, reason):
    data_dir(tmp_path, pool, pairs)
    path = tmp_path / file
    where = re.escape(str(path)) + ("" if row is None else rf", index {row} \(0-based\)") + f", field '{field}'"
    with pytest.raises(DataError, match=f"^{where}: {reason}") as info:
        _load(tmp_path)
    assert (info.value.source, info.value.row, info.value.field) == (str(path), row, field)


def test_unreadable_npz_files_name_the_file(tmp_path):
    from aihf.control.preferences import SegmentPool, load_pairs

    missing = tmp_path / "segments.npz"
    with pytest.raises(DataError, match=f"^{re.escape(str(missing))}: no such file$"):
        SegmentPool.load(missing)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(DataError, match=r"dir\.npz: is a directory, not an \.npz file$"):
        TransitionSet.load(tmp_path / "dir.npz")
    npy = tmp_path / "prefs.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(DataError, match=r"prefs\.npz: is a single \.npy array \(shape \(3, 2\)\), not an \.npz archive"):
        load_pairs(npy)
    import pickle

    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"pairs": [[0, 1]]}))
    with pytest.raises(DataError, match=r"pickled\.npz: not a readable \.npz file: neither a zip archive .* which is "
                                        r"refused\)$"):
        load_pairs(pickled)
    truncated = tmp_path / "cut.npz"
    np.savez_compressed(truncated, **pool_arrays(200))
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"cut\.npz(: not a readable \.npz file|, field '\w+': cannot be read)"):
        SegmentPool.load(truncated)


def test_in_memory_pool_and_pairs_are_checked():
    from aihf.control.preferences import SegmentPool

    pool = SegmentPool(**pool_arrays())
    assert len(pool) == 6 and pool.returns.dtype == np.float64  # values kept as given
    with pytest.raises(DataError, match=r"^index 1 \(0-based\), field 'pairs': pair \[0, 9\] refers to a segment"):
        pool.preferences(np.array([[0, 1], [0, 9]]))
    with pytest.raises(DataError, match=r"^field 'pairs': pair indices must be integers"):
        pool.preferences(np.array([[0.0, 1.0]]))


def test_provenance_errors_name_the_file(tmp_path):
    from aihf.control.expert_data import demonstrator_return

    with pytest.raises(DataError, match=r"provenance\.json: no such file"):
        demonstrator_return(tmp_path)
    (tmp_path / "provenance.json").write_text('{"demonstrator_return_mean": "high"}')
    with pytest.raises(DataError, match=r"provenance\.json, field 'demonstrator_return_mean': expected a finite number"):
        demonstrator_return(tmp_path)
    (tmp_path / "provenance.json").write_text("{oops")
    with pytest.raises(DataError, match=r"provenance\.json: not a readable JSON object"):
        demonstrator_return(tmp_path)


def test_demonstrator_return_of_each_demonstration_file(tmp_path):
    """demos: the expert's return (the normaliser); demos_low: the early checkpoint's; a
    data directory without the latter names the field."""
    from aihf.control.expert_data import demonstrator_return

    (tmp_path / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 3475.0, "low_return_mean": 898.0}))
    assert demonstrator_return(tmp_path) == 3475.0 and demonstrator_return(tmp_path, "demos_low") == 898.0
    with pytest.raises(ValueError, match="demos must be one of"):
        demonstrator_return(tmp_path, "demos_mid")
    (tmp_path / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 3475.0}))
    with pytest.raises(DataError, match=r"field 'low_return_mean': expected a finite number, got None"):
        demonstrator_return(tmp_path, "demos_low")


def test_asking_for_more_pairs_than_the_file_holds_warns(tmp_path, caplog):
    from aihf.control.expert_data import load_data

    with caplog.at_level("WARNING", logger="aihf.control.expert_data"):
        demos, prefs = load_data(data_dir(tmp_path), n_demos=50, n_prefs=10)
    assert (len(demos), len(prefs)) == (5, 3)
    assert "n_prefs=10 asked, but the file holds 3 pairs" in caplog.text and "n_demos=50 asked" in caplog.text


def test_segments_of_different_lengths_are_padded_and_masked(tmp_path):
    """Segments may end where their episode ends (a fall): the set pads them with zeros to
    the longest, keeps each real length, and gives it back whole, padding dropped."""
    pairs = [SegmentPreference(traj(4), traj(2, seed=1)), SegmentPreference(traj(3, seed=2), traj(4, seed=3))]
    prefs = SegmentPreferenceSet.from_pairs(pairs)
    assert prefs.obs_w.shape == (2, 4, 3) and prefs.len_w.tolist() == [4, 3] and prefs.len_l.tolist() == [2, 4]
    assert prefs.mask_l().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and not prefs.obs_l[0, 2:].any()
    np.testing.assert_array_equal(prefs[0].rejected.actions, pairs[0].rejected.actions)
    prefs.save(tmp_path / "p.npz")
    back = SegmentPreferenceSet.load(tmp_path / "p.npz")
    assert back.len_l.tolist() == [2, 4] and len(back[1].preferred) == 3
    same = SegmentPreferenceSet.from_pairs([pair(4), pair(4, seed=1)])  # equal lengths: no length arrays
    assert same.len_w is None and same.mask_w().all()
    same.save(tmp_path / "s.npz")
    assert SegmentPreferenceSet.load(tmp_path / "s.npz").len_l is None
    z = np.zeros((2, 4, 3))
    with pytest.raises(DataError, match=r"^index 1 \(0-based\), field 'len_l': length 5 is outside \[1, 4\]"):
        SegmentPreferenceSet(z, z[..., :2], z, z[..., :2], len_w=np.array([4, 4]), len_l=np.array([4, 5]))
    with pytest.raises(DataError, match=r"field 'len_w': expected integer segment lengths"):
        SegmentPreferenceSet(z, z[..., :2], z, z[..., :2], len_w=np.array([4.0, 4.0]), len_l=np.array([4, 4]))
    with pytest.raises(DataError, match=r"field 'len_l': len_w and len_l come together"):
        SegmentPreferenceSet(z, z[..., :2], z, z[..., :2], len_w=np.array([4, 4]))


def test_a_pools_segment_lengths_are_checked_as_the_sets_are():
    from aihf.control.preferences import SegmentPool

    z = np.zeros((3, 4, 2))
    with pytest.raises(DataError, match=r"^index 2 \(0-based\), field 'lengths': length 0 is outside \[1, 4\]"):
        SegmentPool(z, z[..., :1], np.zeros(3), np.zeros(3, np.int64), lengths=np.array([4, 2, 0]))
    pool = SegmentPool(z, z[..., :1], np.zeros(3), np.zeros(3, np.int64), lengths=np.array([4, 2, 1]))
    assert pool.preferences(np.array([[0, 2]])).len_l.tolist() == [1]


def test_distinct_segments_store_each_compared_segment_once():
    """Pairs drawn from a pool repeat its segments; the distinct form keeps each once and
    indexes the pairs into it. Equal real steps are one segment whatever the padding holds;
    the same steps with another length are two."""
    a, b, c = traj(4, seed=1), traj(4, seed=2), traj(3, seed=3)
    b_short = Trajectory(b.observations[:2], b.actions[:2])
    pairs = [SegmentPreference(a, b), SegmentPreference(c, a), SegmentPreference(b, c), SegmentPreference(a, b_short)]
    prefs = SegmentPreferenceSet.from_pairs(pairs)
    obs_w = prefs.obs_w.copy()
    obs_w[1, 3] = 7.0  # pair 1's preferred side is c, 3 steps long: this is padding
    padded = SegmentPreferenceSet(obs_w, prefs.act_w, prefs.obs_l, prefs.act_l, prefs.len_w, prefs.len_l)
    for p in (prefs, padded):
        distinct = p.distinct_segments()
        # first appearance, preferred sides first: a, c, b (pair 2), then b_short (pair 3's rejected)
        assert distinct.preferred.tolist() == [0, 1, 2, 0] and distinct.rejected.tolist() == [2, 0, 1, 3]
        assert distinct.obs.shape == (4, 4, 3) and distinct.mask.sum(axis=1).tolist() == [4, 3, 4, 2]
        for k, pair in enumerate(pairs):
            for side, segment in (("preferred", pair.preferred), ("rejected", pair.rejected)):
                row, steps = getattr(distinct, side)[k], len(segment)
                np.testing.assert_array_equal(distinct.obs[row, :steps], segment.observations)
                np.testing.assert_array_equal(distinct.act[row, :steps], segment.actions)
