"""The sbx (JAX) SAC backend of the control loop: it samples through the relabelling buffer,
its policies save and load exactly in the same safetensors file, it learns the toy task with
a known expert, and seeded runs repeat."""

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from aihf.config import ConfigError
from aihf.control.algorithm import ControlLoopConfig, SACConfig, train_method
from aihf.control.policy_io import load_policy, policy_metadata, save_policy
from aihf.control.relabel import RelabelledReplayBuffer
from aihf.control.reward_step import RewardStepConfig
from aihf.control.sac_backend import make_sac, policy_tensors
from aihf.control.toy import ContextTarget, toy_data


def _sbx_loop(total_steps: int, batched: int) -> ControlLoopConfig:
    return ControlLoopConfig(
        total_steps=total_steps, reward_every=10, reward_updates=5, eval_every=total_steps, eval_episodes=10,
        reward_hidden=[32, 32],
        sac=SACConfig(backend="sbx", net_arch=[32, 32], learning_starts=200, batch_size=64, buffer_size=5000,
                      train_freq=batched, gradient_steps=batched),
        reward=RewardStepConfig(lr=1e-3, demo_batch=64, pref_batch=16),
    )


@pytest.mark.e2e
def test_sbx_relabels_every_batch_it_trains_on_with_the_current_reward():
    """sbx draws train_freq x batch_size transitions per round through the buffer's
    ``sample``; each draw is relabelled by the reward net as it is when drawn."""
    calls = []

    def reward_fn(obs, act):
        calls.append(len(obs))
        return torch.full((len(obs),), float(len(calls)))

    model = make_sac("sbx", ContextTarget(), learning_starts=40, batch_size=16, train_freq=8, gradient_steps=8,
                     buffer_size=500, policy_kwargs={"net_arch": [16]}, seed=0, ent_coef=0.2,
                     replay_buffer_class=RelabelledReplayBuffer, replay_buffer_kwargs={"reward_fn": reward_fn})
    assert isinstance(model.replay_buffer, RelabelledReplayBuffer)
    drawn = []
    sample = model.replay_buffer.sample
    model.replay_buffer.sample = lambda n, env=None: drawn.append(sample(n, env)) or drawn[-1]
    model.learn(120)
    assert len(calls) == len(drawn) == (120 - 40) // 8 and set(calls) == {8 * 16}
    for k, batch in enumerate(drawn, start=1):  # the k-th draw carries the reward of the k-th call
        assert torch.equal(batch.rewards, torch.full((128, 1), float(k)))


def test_sbx_policies_save_and_load_exactly(tmp_path):
    env = ContextTarget()
    model = make_sac("sbx", env, policy_kwargs={"net_arch": [16, 8]}, buffer_size=1, seed=3)
    save_policy(model.policy, tmp_path / "p.safetensors", {"net_arch": [16, 8]})
    assert policy_metadata(tmp_path / "p.safetensors") == {"net_arch": [16, 8], "backend": "sbx"}
    loaded = load_policy(tmp_path / "p.safetensors", env)
    saved, back = policy_tensors(model.policy), policy_tensors(loaded)
    assert saved.keys() == back.keys() and any(k.startswith("qf_target/") for k in saved)
    for k, v in saved.items():
        assert torch.equal(v, back[k]), k
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    assert np.array_equal(model.policy.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_a_missing_sbx_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sbx", None)  # import sbx now raises ImportError
    with pytest.raises(ConfigError, match=r"sbx-rl.*aihf\[fast\]"):
        make_sac("sbx", ContextTarget())


@pytest.mark.e2e
def test_sbx_backend_learns_the_task_with_a_known_expert():
    """ContextTarget: playing 0 earns about -4.3 over the 20 steps, uniform random actions
    about -10.9, the expert 0. Algorithm 1 (alternating) with 8 SAC updates every 8 steps."""
    demos, prefs = toy_data(n_demos=200, demo_slope=0.8, n_prefs=50, seed=0)
    returns = train_method("aihf", _sbx_loop(1000, batched=8), "ContextTarget", 0, demos, prefs,
                           env=ContextTarget(), eval_env=ContextTarget()).returns
    assert returns[-1] > -1.0, returns


@pytest.mark.e2e
def test_sbx_runs_are_seeded(tmp_path):
    demos, prefs = toy_data(n_demos=50, demo_slope=0.5, n_prefs=20, seed=1)
    cfg = _sbx_loop(300, batched=4)
    runs = [train_method("aihf", cfg, "ContextTarget", 3, demos, prefs, out_dir=tmp_path / str(i),
                         env=ContextTarget(), eval_env=ContextTarget()) for i in range(2)]
    assert runs[0].returns == runs[1].returns and runs[0].reward_losses == runs[1].reward_losses
    first, second = (policy_tensors(load_policy(tmp_path / str(i) / "policy.safetensors", ContextTarget()))
                     for i in range(2))
    assert all(torch.equal(v, second[k]) for k, v in first.items())
    other = train_method("aihf", replace(cfg, total_steps=300), "ContextTarget", 4, demos, prefs,
                         env=ContextTarget(), eval_env=ContextTarget())
    assert other.reward_losses != runs[0].reward_losses  # the seed matters


@pytest.mark.parametrize("backend", ["sb3", "sbx"])
def test_a_model_without_a_tensorboard_folder_writes_no_log_folder(tmp_path, monkeypatch, backend):
    """SB3's default logger makes an empty ``SB3-<time>`` folder in the temp directory at every
    ``learn``; make_sac's model writes none there, and with a folder its logs go to that folder."""
    import gymnasium as gym
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()
    sb3_folders = lambda: sorted((tmp_path / "temp").glob("SB3-*"))  # noqa: E731
    kwargs = dict(buffer_size=50, learning_starts=10, batch_size=8, policy_kwargs={"net_arch": [8]}, seed=0)
    model = make_sac(backend, gym.make("Pendulum-v1"), **kwargs)
    model.learn(20)
    model.learn(20, reset_num_timesteps=False)
    assert sb3_folders() == []
    logged = make_sac(backend, gym.make("Pendulum-v1"), tensorboard_log=str(tmp_path / "tb"), **kwargs)
    logged.learn(20, tb_log_name="sac")
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["sac_1"]
    assert sb3_folders() == []
