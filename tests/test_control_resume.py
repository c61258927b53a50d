"""Resume points of control runs on the ml_irl schedule (aihf.control.run_checkpoint): a run
stopped after a resume point and started again is the uninterrupted run, to the bit, for every
method and both SAC backends, without unpickling anything; a resume point of another run, or
of the older pickled format, is not used."""

import json
import pickle


import pytest
import torch
from safetensors.torch import load_file

from aihf import shipped
from aihf.control.algorithm import ControlLoopConfig, SACConfig, train_method
from aihf.control.expert_data import load_data
from aihf.control.reward_step import RewardStepConfig
from aihf.control.run_checkpoint import ResumePoint

ENV = "Hopper-v5"  # MuJoCo: RunState restores its physics (the toy task keeps state RunState does not know)


class Stop(Exception):
    """Stands for the session that ends mid-run."""


def _loop(backend: str, **settings) -> ControlLoopConfig:
    return ControlLoopConfig(
        total_steps=400, **settings, schedule="ml_irl", iteration_steps=100, trajectories_per_iteration=2, reward_updates=2,
        eval_every=200, eval_episodes=2, reward_hidden=[16], reward_clamp=10.0, resume_every=1,
        sac=SACConfig(backend=backend, net_arch=[16], learning_starts=50, batch_size=32, buffer_size=1000,
                      train_freq=10, gradient_steps=10),
        reward=RewardStepConfig(lr=1e-3, weight_decay=1e-6, pref_batch=8),
    )


@pytest.fixture(scope="module")
def hopper_data():
    return load_data(shipped.mujoco_data_dir(ENV), n_demos=200, n_prefs=20)


def _run(method, backend, data, folder, out, key=None, settings=None):
    resume = ResumePoint(folder, key or {"method": method, "backend": backend}, every=1)
    return train_method(method, _loop(backend, **(settings or {})), ENV, 0, *data, out_dir=out, resume=resume)


ENSEMBLE = {"reward_ensemble": 3, "reward_ensemble_rule": "uwo", "reward_ensemble_penalty": 0.5,
            "reward_ensemble_resample": "segments"}


@pytest.mark.e2e  # ten short MuJoCo runs, twice each: about a minute
@pytest.mark.parametrize("backend", ["sb3", "sbx"])
@pytest.mark.parametrize("method,settings", [("aihf", {}), ("rlhf", {}), ("sac_true", {}),
                                             ("rlhf", {"reward_normalize": True}), ("aihf", ENSEMBLE)])
def test_a_run_stopped_after_a_resume_point_continues_as_the_uninterrupted_run(tmp_path, monkeypatch, hopper_data,
                                                                                forbid_unpickling, method, settings,
                                                                                backend):
    """With ``reward_normalize`` the running moments of SAC's rewards are part of the resume
    point; with a reward ensemble every member and its optimiser state (the members' resamples
    of the data are drawn again, alike, when the learner is made)."""
    normalize = settings.get("reward_normalize", False)
    if backend == "sbx":
        pytest.importorskip("sbx")
    whole = _run(method, backend, hopper_data, tmp_path / "whole.resume", tmp_path / "whole", settings=settings)
    saved_at = []
    real_save = ResumePoint.save

    def save_then_stop(self, iteration, *args):
        real_save(self, iteration, *args)
        saved_at.append(iteration)
        if iteration == 2:
            raise Stop

    monkeypatch.setattr(ResumePoint, "save", save_then_stop)
    with pytest.raises(Stop):
        _run(method, backend, hopper_data, tmp_path / "parts.resume", tmp_path / "first-attempt", settings=settings)
    assert json.loads((tmp_path / "parts.resume" / "state.json").read_text())["iteration"] == 2
    assert {p.suffix for p in (tmp_path / "parts.resume").iterdir()} <= {".json", ".safetensors"}
    monkeypatch.setattr(ResumePoint, "save", real_save)
    forbid_unpickling()
    parts = _run(method, backend, hopper_data, tmp_path / "parts.resume", tmp_path / "parts", settings=settings)
    assert saved_at == [1, 2]
    assert parts.steps == whole.steps == [200, 400]
    assert parts.returns == whole.returns and parts.stds == whole.stds
    assert parts.reward_losses == whole.reward_losses
    assert parts.reward_scales == whole.reward_scales and len(whole.reward_scales) == (2 if normalize else 0)
    assert parts.eval_reward == whole.eval_reward and len(whole.eval_reward) == (0 if method == "sac_true" else 2)
    for name in ["policy.safetensors"] + ([] if method == "sac_true" else ["reward_net.safetensors"]):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "parts" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_run_resumed_from_a_point_without_eval_reward_records_none_rather_than_misaligned(tmp_path, monkeypatch,
                                                                                               hopper_data):
    """A resume point written before ``eval_reward`` existed: the run continues as before and
    its ``eval_reward`` stays empty (entries for the later evaluations only would not line up
    with ``steps``)."""
    whole = _run("aihf", "sb3", hopper_data, tmp_path / "whole.resume", tmp_path / "whole")
    real_save = ResumePoint.save

    def save_then_stop(self, iteration, *args):
        real_save(self, iteration, *args)
        if iteration == 2:
            raise Stop

    monkeypatch.setattr(ResumePoint, "save", save_then_stop)
    with pytest.raises(Stop):
        _run("aihf", "sb3", hopper_data, tmp_path / "old.resume", tmp_path / "first-attempt")
    state = json.loads((tmp_path / "old.resume" / "state.json").read_text())
    assert len(state["result"].pop("eval_reward")) == len(state["result"]["steps"]) == 1
    (tmp_path / "old.resume" / "state.json").write_text(json.dumps(state))
    monkeypatch.setattr(ResumePoint, "save", real_save)
    resumed = _run("aihf", "sb3", hopper_data, tmp_path / "old.resume", tmp_path / "resumed")
    assert resumed.steps == whole.steps and resumed.returns == whole.returns and len(whole.eval_reward) == 2
    assert resumed.eval_reward == []


def test_a_resume_point_of_another_run_is_removed_and_the_run_starts_over(tmp_path, monkeypatch, hopper_data, caplog):
    real_save = ResumePoint.save

    def save_then_stop(self, iteration, *args):
        real_save(self, iteration, *args)
        raise Stop

    monkeypatch.setattr(ResumePoint, "save", save_then_stop)
    with pytest.raises(Stop):
        _run("ml_irl", "sb3", hopper_data, tmp_path / "r", tmp_path / "first", key={"lr": 1})
    monkeypatch.setattr(ResumePoint, "save", real_save)
    fresh = _run("ml_irl", "sb3", hopper_data, tmp_path / "fresh.resume", tmp_path / "fresh", key={"lr": 2})
    other = _run("ml_irl", "sb3", hopper_data, tmp_path / "r", tmp_path / "other", key={"lr": 2})
    assert "other settings" in caplog.text
    assert other.returns == fresh.returns and other.reward_losses == fresh.reward_losses


def test_a_resume_point_of_the_pickled_format_is_removed_and_the_run_starts_over(tmp_path, hopper_data, caplog):
    """Format 1 (SB3's model.zip and replay_buffer.pkl) is never read: its pickles could run code."""
    old = tmp_path / "old.resume"
    old.mkdir()
    (old / "state.json").write_text(json.dumps({"key": {"method": "ml_irl", "backend": "sb3"}, "iteration": 2}))
    (old / "model.zip").write_bytes(b"PK")
    (old / "replay_buffer.pkl").write_bytes(pickle.dumps([1]))
    fresh = _run("ml_irl", "sb3", hopper_data, tmp_path / "fresh.resume", tmp_path / "fresh")
    again = _run("ml_irl", "sb3", hopper_data, old, tmp_path / "again")
    assert "older format" in caplog.text and not (old / "model.zip").exists()
    assert again.returns == fresh.returns and again.reward_losses == fresh.reward_losses


def test_sac_state_of_an_older_format_is_refused_with_a_message(tmp_path):
    """Format 1 (no "format" in sac.json; optimiser tensors named "<index>/<slot>") is not
    half-read: the loader names the file and what to do."""
    import gymnasium as gym

    from aihf.control.sac_backend import make_sac
    from aihf.control.sac_state import load_sac_state, save_sac_state

    model = make_sac("sb3", gym.make("Pendulum-v1"), buffer_size=50, learning_starts=10, batch_size=8,
                     policy_kwargs={"net_arch": [8]}, seed=0)
    model.learn(20)
    save_sac_state(model, tmp_path)
    meta = json.loads((tmp_path / "sac.json").read_text())
    del meta["format"]
    (tmp_path / "sac.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"sac\.json is of format 1, written by an older aihf"):
        load_sac_state(model, tmp_path)


def test_resume_points_need_the_ml_irl_schedule(tmp_path, hopper_data):
    cfg = ControlLoopConfig(total_steps=100, sac=SACConfig(net_arch=[8], learning_starts=50))
    with pytest.raises(ValueError, match="ml_irl"):
        train_method("aihf", cfg, ENV, 0, *hopper_data, resume=ResumePoint(tmp_path / "r", {}, 1))


@pytest.mark.parametrize("backend", ["sb3", "sbx"])
def test_sac_state_round_trips_a_wrapped_replay_buffer_and_every_network(tmp_path, backend):
    """A buffer that has wrapped around (full, pos inside it) comes back row for row; the
    networks, optimiser states and counters exactly (``sac_state``)."""
    if backend == "sbx":
        pytest.importorskip("sbx")
    import gymnasium as gym
    import numpy as np

    from aihf.control.sac_backend import make_sac, policy_tensors
    from aihf.control.sac_state import load_sac_state, save_sac_state

    def build():
        return make_sac(backend, gym.make("Pendulum-v1"), buffer_size=50, learning_starts=10, batch_size=8,
                        policy_kwargs={"net_arch": [8]}, seed=0)

    model = build()
    model.learn(430)  # two Pendulum episodes (200 steps each) end; the buffer wraps to row 30
    assert model.replay_buffer.full and 0 < model.replay_buffer.pos < 50
    save_sac_state(model, tmp_path)
    fresh = build()
    load_sac_state(fresh, tmp_path)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        a, b = getattr(model.replay_buffer, name), getattr(fresh.replay_buffer, name)
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.full) == (model.replay_buffer.pos, True)
    assert (fresh.num_timesteps, fresh._n_updates, fresh._episode_num) == (430, model._n_updates, 2)
    np.testing.assert_array_equal(fresh._last_obs, model._last_obs)
    assert [e["r"] for e in fresh.ep_info_buffer] == [e["r"] for e in model.ep_info_buffer]
    assert len(fresh.ep_info_buffer) == 2
    a, b = policy_tensors(model.policy), policy_tensors(fresh.policy)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if backend == "sb3":
        for opt in ("actor", "critic"):
            sa, sb = (getattr(m, opt).optimizer.state_dict()["state"] for m in (model, fresh))
            assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    else:
        import jax

        same = jax.tree_util.tree_map(lambda x, y: bool(np.array_equal(x, y)), model.policy.qf_state.opt_state,
                                      fresh.policy.qf_state.opt_state)
        assert all(jax.tree_util.tree_leaves(same))
        assert np.array_equal(model.policy.noise_key, fresh.policy.noise_key)


def test_validation_evaluations_use_other_reset_seeds_and_leave_training_unchanged(tmp_path, hopper_data):
    """``loop.eval_split=validation`` evaluates on other reset seeds (their ranges are checked in
    tests/test_reset_seeds.py); the training (reward losses, SAC) is the same run: only what is
    measured changes."""
    from dataclasses import replace

    runs = {split: train_method("aihf", replace(_loop("sb3"), eval_split=split, resume_every=0), ENV, 0, *hopper_data,
                                out_dir=tmp_path / split)
            for split in ("test", "validation")}
    assert runs["test"].reward_losses == runs["validation"].reward_losses
    assert runs["test"].returns != runs["validation"].returns
