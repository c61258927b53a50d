"""scripts/mujoco_reward_diag.py: the reward-fit figures against closed forms on a reward
whose relation to the true one is known, and the posture figures on hand-made observations."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "mujoco_reward_diag", Path(__file__).resolve().parent.parent / "scripts" / "mujoco_reward_diag.py")
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)


class ScaledTrueReward(torch.nn.Module):
    """r_hat(s, a) = s[0] / T: an exact preference-only fit of the true reward s[0]."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, obs, act):
        return obs[:, 0] / self.temperature + 0.0 * act.sum(dim=1)


def test_an_exact_fit_at_temperature_t_has_correlation_one_and_scale_one_over_t():
    rng = np.random.default_rng(0)
    n, horizon = 30, 7
    obs = rng.normal(1.0, 1.0, size=(n, horizon, 3)).astype(np.float32)
    lengths = rng.integers(2, horizon + 1, size=n)
    mask = np.arange(horizon)[None] < lengths[:, None]
    obs[~mask] = 1e6  # padding beyond a segment's length must not count
    returns = np.where(mask, obs[..., 0], 0.0).sum(axis=1)
    segments = {"obs": obs, "act": np.zeros((n, horizon, 2), np.float32), "lengths": lengths,
                "returns": returns.astype(np.float64), "source": np.repeat([0, 5, 9], n // 3)}
    demos = {"observations": np.full((4, 3), 2.0, np.float32), "actions": np.ones((4, 2), np.float32)}
    fit = diag.reward_fit(ScaledTrueReward(4.0), segments, demos)
    assert abs(fit["correlation"] - 1.0) < 1e-9 and abs(fit["scale"] - 0.25) < 1e-6
    steps = obs[..., 0][mask] / 4.0
    assert np.isclose(fit["step_mean"], steps.mean()) and np.isclose(fit["step_max"], steps.max())
    assert fit["demo_mean"] == fit["demo_zero_action_mean"] == 0.5
    assert [row["source"] for row in fit["by_source"]] == [0, 5, 9]
    first = fit["by_source"][0]
    assert np.isclose(first["learned"], returns[:10].mean() / 4.0) and np.isclose(first["true"], returns[:10].mean())


def test_posture_reads_the_root_angle_and_forward_velocity():
    obs = np.zeros((4, 17))
    obs[:, diag.ROOT_ANGLE] = [3.1, 3.2, 0.1, -2.5]
    obs[:, diag.FORWARD_VELOCITY] = [1.0, 2.0, 3.0, 6.0]
    found = diag.posture(obs, np.array([1.0, 2.0, 3.0, 4.0]))
    assert found == {"return": 10.0, "root_angle_mean": np.mean([3.1, 3.2, 0.1, -2.5]), "on_back_share": 0.75,
                     "forward_velocity_mean": 3.0}


def test_posture_summary_counts_the_episodes_mostly_on_the_back_and_averages_the_rest():
    found = [{"return": 10.0, "on_back_share": 0.9, "forward_velocity_mean": 0.2},
             {"return": 40.0, "on_back_share": 0.5, "forward_velocity_mean": 3.0},  # half: not "most"
             {"return": 70.0, "on_back_share": 0.1, "forward_velocity_mean": 5.8}]
    assert diag.posture_summary(found) == pytest.approx({"episodes": 3, "on_back_episodes": 1, "return": 40.0,
                                                         "on_back_share": 0.5, "forward_velocity_mean": 3.0})


def test_pool_reward_by_posture_splits_the_pools_real_steps_by_root_angle():
    obs = np.zeros((2, 3, 17))
    obs[0, :, diag.ROOT_ANGLE] = [3.0, 0.0, 3.0]  # the last step is padding (length 2)
    obs[1, :, diag.ROOT_ANGLE] = [-2.5, 0.1, 0.2]
    obs[..., diag.FORWARD_VELOCITY] = [[1.0, 5.0, 9.0], [2.0, 7.0, 9.0]]
    pool = np.array([[0.1, 0.9, 100.0], [0.3, 0.5, 0.7]])
    by = diag.pool_reward_by_posture(pool, {"obs": obs, "lengths": np.array([2, 3])})
    assert by["pool_back_share"] == 0.4
    assert np.isclose(by["pool_back"], 0.2) and np.isclose(by["pool_back_velocity"], 1.5)
    assert np.isclose(by["pool_upright"], np.mean([0.9, 0.5, 0.7])) and np.isclose(by["pool_upright_velocity"], 7.0)


def test_the_terms_gradients_equal_their_closed_forms_on_a_linear_reward():
    """r(s, a) = w . [s; a] + b: the demonstration term's gradient is -w_D H (mean x_E - mean x_pi)
    (none on b), the Bradley-Terry term's -mean (1 - sigma(R_w - R_l)) (X_w - X_l), X a segment's
    sum of features over its real steps (padding ignored)."""
    from aihf.control.reward_net import RewardNet
    from aihf.control.reward_step import RewardStepConfig
    from aihf.data import SegmentPreferenceSet, TransitionSet

    rng = np.random.default_rng(0)
    net = RewardNet(3, 2, hidden=())
    demos = TransitionSet(rng.normal(size=(20, 3)).astype(np.float32), rng.normal(size=(20, 2)).astype(np.float32))
    n, horizon = 12, 5
    prefs = SegmentPreferenceSet(*(rng.normal(size=(n, horizon, d)).astype(np.float32) for d in (3, 2, 3, 2)),
                                 len_w=rng.integers(1, horizon + 1, n), len_l=rng.integers(1, horizon + 1, n))
    policy_obs, policy_act = rng.normal(size=(30, 3)).astype(np.float32), rng.normal(size=(30, 2)).astype(np.float32)
    cfg = RewardStepConfig(w_demo=0.5, w_pref=2.0, demo_horizon=100, reward_l2=0.0, demo_batch=None, pref_batch=None)
    found = diag.term_gradients(net, cfg, demos, prefs, policy_obs, policy_act)

    w = net.mlp[0].weight.detach().numpy()[0].astype(np.float64)
    b = float(net.mlp[0].bias.detach())
    x_demo = np.concatenate([demos.observations, demos.actions], axis=1)
    x_pol = np.concatenate([policy_obs, policy_act], axis=1)
    g_demo = np.concatenate([-0.5 * 100 * (x_demo.mean(0) - x_pol.mean(0)), [0.0]])

    def segment_features(obs, act, lengths):
        mask = (np.arange(horizon)[None] < lengths[:, None]).astype(np.float64)
        return (np.concatenate([obs, act], axis=2) * mask[..., None]).sum(1), mask.sum(1)

    (f_w, n_w), (f_l, n_l) = (segment_features(prefs.obs_w, prefs.act_w, prefs.len_w),
                              segment_features(prefs.obs_l, prefs.act_l, prefs.len_l))
    delta = f_w @ w + n_w * b - (f_l @ w + n_l * b)
    weight = 1.0 - 1.0 / (1.0 + np.exp(-delta))
    g_pref = -2.0 * np.concatenate([(weight[:, None] * (f_w - f_l)).mean(0), [(weight * (n_w - n_l)).mean()]])

    assert np.isclose(found["demo_norm"], np.linalg.norm(g_demo), rtol=1e-4)
    assert np.isclose(found["pref_norm"], np.linalg.norm(g_pref), rtol=1e-4)
    assert np.isclose(found["ratio"], np.linalg.norm(g_demo) / np.linalg.norm(g_pref), rtol=1e-4)
    cosine = g_demo @ g_pref / (np.linalg.norm(g_demo) * np.linalg.norm(g_pref))
    assert np.isclose(found["cosine"], cosine, atol=1e-4)
    assert np.isclose(found["demo_sign_share"], np.mean(np.sign(g_demo + g_pref) == np.sign(g_demo)))
    assert np.isclose(found["pref_accuracy"], np.mean(delta > 0))


def test_fit_reads_both_runs_at_the_first_quarter_half_and_last_reward_step():
    def diagnostics(accuracy_offset):
        return [{"step": 5000 * (i + 1), "pref_train_accuracy": i / 10 + accuracy_offset, "margin": -i} for i in range(9)]

    rows = diag.fit_over_training(diagnostics(0.5), diagnostics(0.0))
    assert [row[0] for row in rows] == [5000, 15000, 25000, 45000]  # indices 0, 2, 4, 8
    assert rows[-1] == (45000, 1.3, 0.8, -8, -8)


def test_data_folder_accepts_an_environments_folder_and_names_a_wrong_one(tmp_path):
    (tmp_path / "segments.npz").write_bytes(b"")
    assert diag.data_folder(str(tmp_path)) == tmp_path
    with pytest.raises(diag.argparse.ArgumentTypeError, match="halfcheetah holds no segments.npz"):
        diag.data_folder(str(tmp_path / "halfcheetah"))


def test_run_folder_names_the_files_a_run_lacks(tmp_path):
    (tmp_path / "policy.safetensors").write_bytes(b"")
    assert diag.run_folder("policy.safetensors")(str(tmp_path)) == tmp_path
    with pytest.raises(diag.argparse.ArgumentTypeError, match=f"{tmp_path} holds no reward_net.safetensors: .*result.json"):
        diag.run_folder("reward_net.safetensors", "policy.safetensors")(str(tmp_path))


def test_per_step_spread_of_an_ensemble_is_its_members_sd_at_each_step():
    """``posture``'s disagreement figures: on [segments, steps, dim] arrays, the members'
    population standard deviation at each step, computed member by member here."""
    from aihf.control.reward_net import RewardEnsemble, RewardNet

    torch.manual_seed(0)
    members = [RewardNet(3, 2, (8,)) for _ in range(4)]
    ensemble = RewardEnsemble(members, "wco")
    rng = np.random.default_rng(1)
    obs, act = rng.normal(size=(5, 6, 3)).astype(np.float32), rng.normal(size=(5, 6, 2)).astype(np.float32)
    each = np.stack([diag.per_step_rewards(m, obs, act) for m in members]).astype(np.float64)
    spread = diag.per_step_rewards(ensemble, obs, act, spread=True)
    assert spread.shape == (5, 6)
    np.testing.assert_allclose(spread, each.std(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(diag.per_step_rewards(ensemble, obs, act), each.min(axis=0), rtol=1e-5, atol=1e-6)


def test_replay_finds_the_final_evaluations_seeds_and_the_saved_policy_gives_its_return(tmp_path, tiny_ml_irl_experiment,
                                                                                         monkeypatch, capsys):
    """A run of the experiment, replayed: ``final_evaluation`` reads its cell's split, episodes
    and seed, and the saved policy (the one the final evaluation scored) gives the recorded mean."""
    import gymnasium as gym
    import json

    from aihf.cli import main
    from aihf.control.policy_io import load_policy
    from aihf.control.rollout import evaluate_policy_return

    preset, data = tiny_ml_irl_experiment(methods=["aihf"], seeds=[1])
    cell = tmp_path / "cell"
    assert main(["experiment", "mujoco", "--env", "aihf/ContextTarget-v0", "--preset", str(preset), "--output-dir",
                 str(cell), data, "loop.eval_split=validation"]) == 0
    run = cell / "runs" / "aihf" / "seed1"
    recorded = json.loads((run / "result.json").read_text())["result"]
    assert len(recorded["steps"]) == 2  # evaluations at 100 and 200 steps: the final one is the second
    env_id, first, episodes = diag.final_evaluation(run)
    assert (env_id, first, episodes) == ("aihf/ContextTarget-v0", 3_000_000 + 1000 * 1 + 1, 2)  # validation, seed 1, index 1
    env = gym.make(env_id)
    returns = evaluate_policy_return(load_policy(run / "policy.safetensors", env), env, episodes, first)
    assert float(np.mean(returns)) == recorded["returns"][-1]
    monkeypatch.setattr("sys.argv", ["mujoco_reward_diag.py", "replay", str(run)])
    diag.main()
    assert "0.000 of the expert's return" in capsys.readouterr().out  # no change: the scored policy was saved
