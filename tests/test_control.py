"""Control world: relabelling, the reward step's gradient, Algorithm 1 on a task with a known
expert, determinism, and exact save/load. Tiny nets and budgets (about a minute in all)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from gymnasium import spaces

from aihf.control.algorithm import ControlLoopConfig, SACConfig, method_reward_config, train_method
from aihf.control.bc import BCConfig, bc_actor, train_bc
from aihf.control.policy_io import load_policy, save_policy
from aihf.control.preferences import SegmentPool, bradley_terry_pairs
from aihf.control.relabel import RelabelledReplayBuffer, control_reward_scaler
from aihf.control.reward_net import RewardNet
from aihf.control.reward_step import RewardLearner, RewardStepConfig
from aihf.control.rollout import run_episode
from aihf.control.toy import ContextTarget, toy_data
from aihf.reward_scale import RewardScaler


def _tiny_loop(total_steps: int) -> ControlLoopConfig:
    return ControlLoopConfig(
        total_steps=total_steps, reward_every=10, reward_updates=5, eval_every=total_steps, eval_episodes=10,
        reward_hidden=[32, 32],
        sac=SACConfig(net_arch=[32, 32], learning_starts=200, batch_size=64, buffer_size=5000),
        reward=RewardStepConfig(lr=1e-3, demo_batch=64, pref_batch=16),
    )


def _filled_buffer(reward_fn, shift=0.0, n=50):
    obs_space = spaces.Box(-1, 1, (3,), np.float32)
    act_space = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    buf = RelabelledReplayBuffer(100, obs_space, act_space, device="cpu", reward_fn=reward_fn, reward_shift=shift)
    rng = np.random.default_rng(0)
    for _ in range(n):
        buf.add(rng.uniform(-1, 1, (1, 3)), rng.uniform(-1, 1, (1, 3)), rng.uniform(-1, 1, (1, 2)),
                np.array([7.0]), np.array([False]), [{}])
    return buf


def test_relabelling_uses_the_current_reward_net():
    net = RewardNet(3, 2, (8, 8))
    buf = _filled_buffer(net, shift=0.5)
    np.random.seed(1)
    batch = buf.sample(16)
    env_act = buf.env_actions(batch.actions)
    # buffer actions in [-1, 1] are mapped back to the box [(-2, 0), (2, 1)]
    assert torch.all(env_act[:, 0].abs() <= 2) and torch.all((env_act[:, 1] >= 0) & (env_act[:, 1] <= 1))
    with torch.no_grad():
        expected = net(batch.observations, env_act) + 0.5
    torch.testing.assert_close(batch.rewards.squeeze(1), expected)
    assert not torch.allclose(batch.rewards, torch.full_like(batch.rewards, 7.0))  # stored reward unused
    with torch.no_grad():
        net.mlp[-1].bias += 3.0  # change the net: the same draw must now be 3 higher
    np.random.seed(1)
    again = buf.sample(16)
    torch.testing.assert_close(again.rewards, batch.rewards + 3.0)
    assert _filled_buffer(None).sample(4).rewards.eq(7.0).all()  # no reward_fn: true rewards


def test_normalised_relabelling_divides_by_the_running_std_of_every_reward_sampled_so_far():
    """r' = r_theta / s + shift, s the population std of every r_theta the buffer has relabelled
    (reward_scale.RewardScaler, center=False); a reward 30 times smaller gives the same r'."""
    net = RewardNet(3, 2, (8, 8))
    with torch.no_grad():
        net.mlp[-1].weight *= 100.0  # rewards of std ~1, so that the scaler's eps is negligible below
    buf = _filled_buffer(net, shift=0.5)
    buf.reward_scaler = control_reward_scaler()
    small = RewardNet(3, 2, (8, 8))
    small.load_state_dict(net.state_dict())
    with torch.no_grad():
        small.mlp[-1].weight /= 30.0
        small.mlp[-1].bias /= 30.0
    small_buf = _filled_buffer(small, shift=0.5)
    small_buf.reward_scaler = control_reward_scaler()
    seen = []
    for draw in range(3):
        np.random.seed(draw)
        batch = buf.sample(16)
        np.random.seed(draw)
        small_batch = small_buf.sample(16)
        with torch.no_grad():
            seen.append(net(batch.observations, buf.env_actions(batch.actions)))
        expected = seen[-1] / (torch.cat(seen).double().std(unbiased=False).float() + 1e-6) + 0.5  # RewardScaler's eps
        torch.testing.assert_close(batch.rewards.squeeze(1), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(small_batch.rewards, batch.rewards, rtol=1e-4, atol=1e-5)
    assert buf.reward_scaler.count == 48
    with pytest.raises(ValueError, match="center=False"):
        RelabelledReplayBuffer(10, spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (2,)), reward_fn=net,
                               reward_scaler=RewardScaler())


def test_normalised_rewards_let_sac_learn_whatever_scale_the_reward_has():
    """ContextTarget's true reward divided by 30 (the scale a Bradley-Terry reward fitted to
    labels of temperature 30 would have): at the fixed entropy temperature 0.2, SAC on it stays
    near the context-blind policy (about -4.3 per episode; -3.0 to -3.5 measured on seeds 0-2),
    and with ``reward_normalize`` it learns the expert's play (-0.02 to -0.03; -0.05 on the
    unscaled reward without it). A Bradley-Terry reward's scale is the labellers' choice, not the task's."""
    from aihf.control.rollout import evaluate_policy_return
    from aihf.control.sac_backend import make_sac
    from aihf.control.toy import SLOPE

    def scaled_true_reward(obs, act):
        return -((act[..., 0] - SLOPE * obs[..., 0]) ** 2) / 30.0

    def final_return(normalize: bool) -> float:
        model = make_sac("sb3", ContextTarget(), ent_coef=0.2, learning_rate=3e-3, buffer_size=5000,
                         learning_starts=200, batch_size=64, policy_kwargs={"net_arch": [32, 32]},
                         replay_buffer_class=RelabelledReplayBuffer,
                         replay_buffer_kwargs={"reward_fn": scaled_true_reward,
                                               "reward_scaler": control_reward_scaler() if normalize else None},
                         seed=0, verbose=0)
        model.learn(1000)
        return float(np.mean(evaluate_policy_return(model.policy, ContextTarget(), 20, seed=123)))

    assert final_return(normalize=False) < -2.0
    assert final_return(normalize=True) > -0.3


@pytest.mark.parametrize("horizon", [1, 7])
def test_reward_step_gradient_is_method_g(horizon):
    """-grad l_R == g of docs/method.md section 3 (linear demonstration form, no L2), the
    demonstration term on the scale of ``horizon``-step trajectories (``demo_horizon``)."""
    torch.manual_seed(0)
    net = RewardNet(3, 2, (8, 8))
    rng = np.random.default_rng(0)
    demos_obs, demos_act = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    from aihf.data import SegmentPreferenceSet, TransitionSet

    demos = TransitionSet(demos_obs, demos_act)
    prefs = SegmentPreferenceSet(*(rng.normal(size=(5, 4, d)) for d in (3, 2, 3, 2)))
    w_d, w_p = 0.7, 1.3
    cfg = RewardStepConfig(w_demo=w_d, w_pref=w_p, reward_l2=0.0, demo_batch=4, pref_batch=3, demo_horizon=horizon)
    learner = RewardLearner(net, cfg, demos, prefs, np.random.default_rng(5))
    pol_obs, pol_act = torch.randn(4, 3), torch.randn(4, 2)
    learner.loss(pol_obs, pol_act).backward()
    got = torch.cat([p.grad.flatten() for p in net.parameters()])

    draw = np.random.default_rng(5)  # the learner's draws: demonstrations first, then pairs
    d_idx, p_idx = draw.integers(0, 6, 4), draw.integers(0, 5, 3)
    t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731

    def grad(scalar):
        net.zero_grad()
        scalar.backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    # per trajectory of `horizon` steps: horizon x the per-step means' difference
    g = w_d * horizon * (grad(net(t(demos_obs[d_idx]), t(demos_act[d_idx])).mean()) - grad(net(pol_obs, pol_act).mean()))
    for i in p_idx:
        r_w = net.segment_reward(t(prefs.obs_w[i : i + 1]), t(prefs.act_w[i : i + 1]))
        r_l = net.segment_reward(t(prefs.obs_l[i : i + 1]), t(prefs.act_l[i : i + 1]))
        coeff = 1 - torch.sigmoid(r_w - r_l).item()
        g += w_p * coeff * (grad(r_w.sum()) - grad(r_l.sum())) / len(p_idx)
    torch.testing.assert_close(-got, g)


@pytest.mark.parametrize("pref_batch", [None, 7])
def test_reward_step_on_distinct_segments_equals_both_sides_of_every_pair(pref_batch):
    """The learner evaluates each distinct segment once (a pool's pairs repeat segments);
    its loss and gradient equal those of evaluating both sides of every drawn pair."""
    from aihf.objective import aihf_reward_loss

    demos, prefs = toy_data(n_demos=20, demo_slope=0.5, n_prefs=40, seed=3)  # 40 pairs over a pool of segments
    assert len(prefs.distinct_segments().obs) < 2 * len(prefs.obs_w)
    torch.manual_seed(0)
    net = RewardNet(prefs.obs_w.shape[2], prefs.act_w.shape[2], (8, 8))
    cfg = RewardStepConfig(w_demo=0.0, w_pref=1.0, reward_l2=0.1, pref_batch=pref_batch)
    learner = RewardLearner(net, cfg, None, prefs, np.random.default_rng(4))
    loss = learner.loss(None, None)
    loss.backward()
    got = [p.grad.clone() for p in net.parameters()]

    rows = np.arange(40) if pref_batch is None else np.random.default_rng(4).integers(0, 40, pref_batch)
    t = lambda x: torch.tensor(np.asarray(x)[rows])  # noqa: E731
    net.zero_grad()
    r_w = net.segment_reward(t(prefs.obs_w), t(prefs.act_w), t(prefs.mask_w()))
    r_l = net.segment_reward(t(prefs.obs_l), t(prefs.act_l), t(prefs.mask_l()))
    expected = aihf_reward_loss(None, None, r_w, r_l, 0.0, 1.0, cfg.demo_form, cfg.reward_l2)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for g, p in zip(got, net.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_method_weights_are_the_special_cases():
    base = RewardStepConfig(w_demo=1.0, w_pref=2.0)
    assert method_reward_config("aihf", base) == base
    assert method_reward_config("ml_irl", base).w_pref == 0.0
    assert method_reward_config("rlhf", base).w_demo == 0.0
    with pytest.raises(ValueError):
        method_reward_config("sac_true", base)


def test_bradley_terry_pairs_follow_returns():
    rng = np.random.default_rng(0)
    returns = np.arange(100, dtype=np.float64)
    sharp = bradley_terry_pairs(returns, 500, temperature=1e-3, rng=rng)
    assert (returns[sharp[:, 0]] > returns[sharp[:, 1]]).all()
    noisy = bradley_terry_pairs(returns, 4000, temperature=1e4, rng=rng)
    assert 0.45 < (returns[noisy[:, 0]] > returns[noisy[:, 1]]).mean() < 0.55
    pool = SegmentPool(rng.normal(size=(100, 4, 3)), rng.normal(size=(100, 4, 2)), returns, np.zeros(100, np.int64))
    prefs = pool.preferences(sharp[:7])
    assert prefs.obs_w.shape == (7, 4, 3) and np.array_equal(prefs.act_l[2], pool.act[sharp[2, 1]].astype(np.float32))


@pytest.mark.e2e
def test_aihf_beats_single_source_learners_with_degraded_data():
    """ContextTarget (expert a = 0.8 c_0): a poor demonstrator (a = 0.2 c_0) and only 10
    preference pairs. Demonstrations alone imitate the poor demonstrator; 10 pairs alone say
    'more action along c_0 is better' without saying where to stop; together they do better."""
    demos, prefs = toy_data(n_demos=200, demo_slope=0.2, n_prefs=10, seed=0)
    cfg = _tiny_loop(1000)
    final = {
        m: train_method(m, cfg, "ContextTarget", 0, demos, prefs, env=ContextTarget(), eval_env=ContextTarget()).returns[-1]
        for m in ("aihf", "ml_irl", "rlhf")
    }
    assert final["aihf"] > final["ml_irl"] + 0.2, final
    assert final["aihf"] > final["rlhf"] + 0.2, final


def test_seeded_runs_are_identical(tmp_path):
    demos, prefs = toy_data(n_demos=50, demo_slope=0.5, n_prefs=20, seed=1)
    cfg = _tiny_loop(300)
    runs = [train_method("aihf", cfg, "ContextTarget", 3, demos, prefs, out_dir=tmp_path / str(i),
                         env=ContextTarget(), eval_env=ContextTarget()) for i in range(2)]
    assert runs[0].returns == runs[1].returns and runs[0].reward_losses == runs[1].reward_losses
    assert runs[0].reward_diagnostics == runs[1].reward_diagnostics
    a, b = RewardNet.load(tmp_path / "0" / "reward_net.safetensors"), RewardNet.load(tmp_path / "1" / "reward_net.safetensors")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("backend", ["sb3", "sbx"])
def test_the_saved_policy_is_the_one_the_final_evaluation_scored(tmp_path, backend):
    """SB3 trains a round (gradient_steps updates) after the callback's last step,
    which holds the final evaluation: the policy saved is the one scored, so re-evaluating
    policy.safetensors on that evaluation's reset seeds gives the recorded final return."""
    from aihf.control.reset_seeds import evaluation_seed
    from aihf.control.rollout import evaluate_policy_return

    pytest.importorskip({"sb3": "stable_baselines3", "sbx": "sbx"}[backend])
    demos, prefs = toy_data(n_demos=50, demo_slope=0.5, n_prefs=20, seed=1)
    cfg = _tiny_loop(300)
    cfg = replace(cfg, sac=replace(cfg.sac, backend=backend, train_freq=5, gradient_steps=5))
    run = train_method("aihf", cfg, "ContextTarget", 3, demos, prefs, out_dir=tmp_path, env=ContextTarget(),
                       eval_env=ContextTarget())
    again = evaluate_policy_return(load_policy(tmp_path / "policy.safetensors", ContextTarget()), ContextTarget(),
                                   cfg.eval_episodes, evaluation_seed(cfg.eval_split, 3, len(run.steps) - 1))
    assert float(np.mean(again)) == run.returns[-1]


def test_reward_net_and_policy_save_and_load_exactly(tmp_path):
    from stable_baselines3 import SAC

    net = RewardNet(2, 1, (16, 16))
    net.save(tmp_path / "r.safetensors")
    back = RewardNet.load(tmp_path / "r.safetensors")
    x, a = torch.randn(9, 2), torch.randn(9, 1)
    assert torch.equal(net(x, a), back(x, a)) and back.hidden == (16, 16)

    env = ContextTarget()
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, buffer_size=1, seed=0, device="cpu")
    save_policy(model.policy, tmp_path / "p.safetensors", {"net_arch": [16]})
    loaded = load_policy(tmp_path / "p.safetensors", env)
    for k, v in model.policy.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    assert np.array_equal(model.policy.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_behaviour_cloning_recovers_a_linear_demonstrator():
    demos, _ = toy_data(n_demos=500, demo_slope=0.8, n_prefs=1, seed=0)
    fit = train_bc(demos, BCConfig(hidden=[32], updates=800), seed=0)
    episode = run_episode(bc_actor(fit.policy, np.array([-1.0]), np.array([1.0])), ContextTarget(), seed=0)
    assert episode.ret > -0.2  # the zero policy earns about -4.3, the expert 0
    assert fit.update > 400  # noise-free demonstrations: the held-out likelihood keeps rising


def test_behaviour_cloning_keeps_the_policy_of_lowest_held_out_nll():
    """50 noisy transitions, a wide network: it overfits, the held-out NLL turns up, and the
    policy returned is the one checked with the lowest, which the same run trained to the end
    (the same updates: checking draws no random numbers) does not beat."""
    from aihf.data import TransitionSet

    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (50, 3)).astype(np.float32)
    demos = TransitionSet(obs, (0.5 * obs[:, :1] + rng.normal(0, 0.3, (50, 1))).astype(np.float32))
    cfg = BCConfig(hidden=[64, 64], lr=3e-3, updates=600, batch_size=16, holdout=0.2, check_every=50)
    fit, last = train_bc(demos, cfg, seed=0), train_bc(demos, replace(cfg, check_every=600), seed=0)
    assert last.update == 600 and 0 < fit.update < 600 and fit.holdout_nll < last.holdout_nll - 0.5
    with torch.no_grad():  # the recorded NLL is the returned policy's, on the last 10 transitions
        assert float(-fit.policy.log_prob(torch.tensor(obs[40:]), torch.tensor(demos.actions[40:])).mean()) == \
            pytest.approx(fit.holdout_nll)
    assert train_bc(demos, replace(cfg, holdout=0.0), seed=0).holdout_nll is None
    with pytest.raises(ValueError, match="bc.holdout=0.001 of 50 demonstration transitions leaves 0 held out"):
        train_bc(demos, replace(cfg, holdout=0.001), seed=0)


@pytest.mark.e2e
def test_experiment_runner_writes_table_plot_and_runs(tmp_path, figure_texts, capsys):
    import json

    import yaml

    from aihf.control.toy import write_toy_data_dir
    from aihf.experiments.mujoco import run_from_cli
    from aihf.runtime import provenance

    write_toy_data_dir(tmp_path / "data", demo_slope=0.5, n_prefs=50)
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({
        "seeds": [0], "n_prefs": 20, "demos": "demos_low",
        "loop": {"total_steps": 300, "eval_every": 150, "eval_episodes": 2, "reward_hidden": [8],
                 "sac": {"net_arch": [8], "learning_starts": 100, "batch_size": 16, "buffer_size": 300}},
        "bc": {"hidden": [8], "updates": 10},
    }))
    out = tmp_path / "out"
    code = run_from_cli("aihf/ContextTarget-v0", str(preset), str(out), [f"data_dir={tmp_path / 'data'}"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"aihf", "ml_irl", "rlhf", "bc", "sac_true"}
    assert results["n_prefs"] == 20 and results["demos"] == "demos_low"
    assert results["versions"] == provenance()
    assert "mean over 1 seed; shaded: ± 1 standard deviation over seeds" in "\n".join(figure_texts["curves.png"])
    assert "5 methods x 1 seed in" in capsys.readouterr().out
    assert results["runs"]["aihf"][0]["steps"] == [150, 300]
    for method in ("aihf", "ml_irl", "rlhf"):  # the learned reward at each evaluation, saved with the run
        assert len(results["runs"][method][0]["eval_reward"]) == 2
    assert "eval_reward" not in results["runs"]["sac_true"][0]
    assert (out / "curves.png").stat().st_size > 0 and "| aihf |" in (out / "results.md").read_text()
    assert (out / "runs" / "aihf" / "seed0" / "reward_net.safetensors").exists()
    assert any((out / "runs" / "aihf" / "seed0" / "tb").rglob("events.out.tfevents*"))
    assert run_from_cli("aihf/ContextTarget-v0", "no-such-preset", str(out), []) == 2


def test_curves_of_a_partly_finished_cell_say_how_many_seeds_each_method_holds(tmp_path, figure_texts):
    from aihf.experiments.mujoco import plot_curves

    run = {"steps": [10, 20], "returns": [1.0, 2.0], "stds": [0.1, 0.1]}
    results = {"env": "Hopper-v5", "demos": "demos", "n_prefs": 200, "seeds": [0, 1, 2], "demonstrator_return": 4.0}
    plot_curves({**results, "runs": {"aihf": [run], "bc": [run, run]}}, tmp_path / "partial.png")
    plot_curves({**results, "runs": {"aihf": [run] * 3, "bc": [run] * 3}}, tmp_path / "full.png")
    partial, full = "\n".join(figure_texts["partial.png"]), figure_texts["full.png"]
    assert "aihf (1 seed)" in partial and "bc (2 seeds)" in partial and "mean over the finished seeds" in partial
    assert "aihf" in full and "bc" in full and "mean over 3 seeds" in "\n".join(full)


def test_every_shipped_mujoco_preset_loads_and_the_paper_scale_one_runs_sac_on_sbx():
    from aihf import shipped
    from aihf.config import load_config
    from aihf.experiments.mujoco import PRESET_GROUP, MujocoConfig

    names = shipped.config_names(PRESET_GROUP)
    configs = {name: load_config(MujocoConfig, shipped.config_file(PRESET_GROUP, name), [], defaults={"env": "Hopper-v5"})
               for name in names}
    paper = configs["paper"].loop
    assert (paper.sac.backend, paper.sac.train_freq, paper.sac.gradient_steps) == ("sbx", 25, 25)
    assert paper.iteration_steps % paper.sac.train_freq == 0 and paper.total_steps % paper.sac.train_freq == 0


def _ml_irl_loop(total_steps: int, iteration_steps: int, trajectories: int = 3) -> ControlLoopConfig:
    return ControlLoopConfig(
        total_steps=total_steps, schedule="ml_irl", iteration_steps=iteration_steps,
        trajectories_per_iteration=trajectories, reward_updates=2, eval_every=total_steps, eval_episodes=5,
        reward_hidden=[32, 32], reward_clamp=10.0,
        sac=SACConfig(net_arch=[32, 32], learning_starts=100, batch_size=64, buffer_size=5000),
        reward=RewardStepConfig(lr=1e-3, weight_decay=1e-6, demo_batch=64, pref_batch=None),
    )


def test_ml_irl_reward_steps_use_the_current_policys_fresh_trajectories_and_every_demonstration(monkeypatch):
    import aihf.control.algorithm as algorithm
    import aihf.control.reward_step as reward_step

    demos, prefs = toy_data(n_demos=70, demo_slope=0.8, n_prefs=12, seed=0)
    collected, losses_seen = [], []
    real_trajectories, real_loss = algorithm.policy_trajectories, reward_step.aihf_reward_loss

    def spy_trajectories(policy, env, n, seed):
        episodes = real_trajectories(policy, env, n, seed)
        collected.append({"episodes": episodes, "seed": seed, "actor": {k: v.clone() for k, v in policy.state_dict().items()}})
        return episodes

    def spy_loss(r_demo, r_pol, r_w, r_l, *args, **kwargs):
        losses_seen.append((r_demo.shape[0], r_pol.shape[0], r_w.shape[0]))
        return real_loss(r_demo, r_pol, r_w, r_l, *args, **kwargs)

    steps_seen = []
    real_step = RewardLearner.step

    def spy_step(self, obs=None, act=None):
        steps_seen.append((obs.clone(), act.clone()))
        return real_step(self, obs, act)

    monkeypatch.setattr(algorithm, "policy_trajectories", spy_trajectories)
    monkeypatch.setattr(reward_step, "aihf_reward_loss", spy_loss)
    monkeypatch.setattr(RewardLearner, "step", spy_step)
    cfg = _ml_irl_loop(total_steps=500, iteration_steps=200)  # iterations of 200, 200 and 100 steps
    result = train_method("aihf", cfg, "ContextTarget", 0, demos, prefs, env=ContextTarget(), eval_env=ContextTarget())
    assert cfg.iterations() == 3 and len(collected) == 3 and len(steps_seen) == 3 * cfg.reward_updates
    assert result.steps == [500] and len(result.reward_losses) == 6
    for k, batch in enumerate(collected):
        obs = torch.as_tensor(np.concatenate([e.observations for e in batch["episodes"]]))
        act = torch.as_tensor(np.concatenate([e.actions for e in batch["episodes"]]))
        assert obs.shape[0] == 3 * ContextTarget().horizon  # whole episodes, three of them
        for step_obs, step_act in steps_seen[2 * k: 2 * k + 2]:  # exactly this iteration's fresh samples
            assert torch.equal(step_obs, obs) and torch.equal(step_act, act)
        if k:  # the policy that rolled them out is the one SAC trained since the last iteration
            assert any(not torch.equal(v, collected[k - 1]["actor"][n]) for n, v in batch["actor"].items())
    assert len({c["seed"] for c in collected}) == 3  # fresh episodes every iteration
    assert [d["step"] for d in result.reward_diagnostics] == [200, 400, 500]  # one per reward step's iteration
    assert all({"demo_mean", "policy_mean", "margin", "pref_train_accuracy"} <= set(d) for d in result.reward_diagnostics)
    # every demonstration (70, not demo_batch = 64), every policy transition, every pair (pref_batch null)
    assert set(losses_seen) == {(70, 60, 12)}


def test_the_reward_clamp_bounds_every_reward_and_stops_its_gradient(tmp_path):
    net = RewardNet(3, 2, (8,), clamp=1.5)
    with torch.no_grad():
        net.mlp[-1].weight.mul_(1e4)
        net.mlp[-1].bias.fill_(-3.0)
    obs, act = torch.randn(200, 3) * 10, torch.randn(200, 2) * 10
    r = net(obs, act)
    assert r.abs().max() <= 1.5 and (r.abs() == 1.5).any()
    outside = net.mlp(torch.cat([obs, act], -1)).squeeze(-1).abs() > 1.5
    r[outside].sum().backward()  # a clamped output gives no gradient
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in net.parameters())
    buf = _filled_buffer(net, shift=0.25)
    assert (buf.sample(32).rewards - 0.25).abs().max() <= 1.5 + 1e-6
    net.save(tmp_path / "r.safetensors")
    back = RewardNet.load(tmp_path / "r.safetensors")
    assert back.clamp == 1.5 and torch.equal(back(obs, act), net(obs, act))
    with pytest.raises(ValueError, match="clamp"):
        RewardNet(3, 2, clamp=0.0)


def test_control_settings_are_checked_when_made():
    from aihf.config import ConfigError, from_dict

    with pytest.raises(ValueError, match="iteration_steps must be > 0"):
        ControlLoopConfig(iteration_steps=0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        RewardStepConfig(weight_decay=-1.0)
    with pytest.raises(ValueError, match="learning_rate must be finite"):
        SACConfig(learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="loop.schedule"):
        from_dict(ControlLoopConfig, {"schedule": "rounds"}, where="test", prefix="loop.")
    assert SACConfig(ent_coef="auto").ent_coef == "auto"
    with pytest.raises(ValueError, match=r"multiples of sac.train_freq \(32\)"):
        ControlLoopConfig(schedule="ml_irl", iteration_steps=5000, total_steps=300_000,
                          sac=SACConfig(train_freq=32, gradient_steps=32))
    assert ControlLoopConfig(schedule="ml_irl", iteration_steps=5000, total_steps=300_000,
                             sac=SACConfig(train_freq=25, gradient_steps=25)).iterations() == 60
    with pytest.raises(ConfigError, match="loop.sac.backend"):
        from_dict(SACConfig, {"backend": "jax"}, where="test", prefix="loop.sac.")


@pytest.mark.e2e
def test_reward_diagnostics_are_the_rewards_means_and_the_pairs_ranked_right():
    demos, prefs = toy_data(n_demos=40, demo_slope=0.8, n_prefs=30, seed=2)
    torch.manual_seed(0)
    net = RewardNet(demos.observations.shape[1], demos.actions.shape[1], (16,))
    learner = RewardLearner(net, RewardStepConfig(), demos, prefs, np.random.default_rng(0))
    obs, act = torch.randn(25, demos.observations.shape[1]), torch.randn(25, demos.actions.shape[1])
    d = learner.diagnostics(obs, act, max_pairs=20)
    with torch.no_grad():
        r_demo = torch.stack([net(torch.tensor(o), torch.tensor(a)) for o, a in zip(demos.observations, demos.actions)])
        r_pol = net(obs, act)
        right = 0
        for k in range(20):  # pair by pair, each step's reward summed over the segment's real steps
            sums = [sum(float(net(torch.tensor(o[t]), torch.tensor(a[t]))) for t in range(len(o)) if m[t])
                    for o, a, m in ((prefs.obs_w[k], prefs.act_w[k], prefs.mask_w()[k]),
                                    (prefs.obs_l[k], prefs.act_l[k], prefs.mask_l()[k]))]
            right += sums[0] > sums[1]
    assert d["demo_mean"] == pytest.approx(float(r_demo.mean()), rel=1e-5)
    assert d["demo_std"] == pytest.approx(float(r_demo.std()), rel=1e-4)
    assert d["policy_mean"] == pytest.approx(float(r_pol.mean()), rel=1e-5)
    assert d["margin"] == pytest.approx(d["demo_mean"] - d["policy_mean"])
    assert d["pref_train_accuracy"] == pytest.approx(right / 20)
    assert learner.updates == 0 and all(p.grad is None for p in net.parameters())  # no step taken


@pytest.mark.parametrize("method", ["aihf", "rlhf", "sac_true"])
def test_each_evaluation_records_the_learned_reward_on_its_own_episodes(monkeypatch, method):
    """Every ``eval_reward`` entry, recomputed from copies of the policy and the reward net as
    they stood at that evaluation (both change after it), on that evaluation's reset seeds:
    rollout and reward evaluated step by step here."""
    import copy

    from aihf.control import algorithm
    from aihf.control.reset_seeds import evaluation_seed

    snapshots = []
    real_record = algorithm._AlgorithmOneCallback.record_learned_reward

    def record(self, episodes):
        snapshots.append((copy.deepcopy(self.model.policy), copy.deepcopy(self.learner.net)))
        real_record(self, episodes)

    monkeypatch.setattr(algorithm._AlgorithmOneCallback, "record_learned_reward", record)
    demos, prefs = toy_data(n_demos=50, demo_slope=0.5, n_prefs=20, seed=1)
    cfg = replace(_ml_irl_loop(total_steps=300, iteration_steps=100), eval_every=100)
    run = train_method(method, cfg, "ContextTarget", 3, demos, prefs, env=ContextTarget(), eval_env=ContextTarget())
    if method == "sac_true":
        assert run.eval_reward == [] and snapshots == []
        return
    assert len(run.eval_reward) == len(run.steps) == len(snapshots) == 3
    for index, ((policy, net), recorded) in enumerate(zip(snapshots, run.eval_reward)):
        act = lambda obs: policy.predict(obs, deterministic=True)[0]  # noqa: E731
        first_seed = evaluation_seed(cfg.eval_split, 3, index)
        episodes = [run_episode(act, ContextTarget(), first_seed + i) for i in range(cfg.eval_episodes)]
        with torch.no_grad():
            steps = [float(net(torch.tensor(o), torch.tensor(a))) for e in episodes for o, a in zip(e.observations, e.actions)]
            on_demos = [float(net(torch.tensor(o), torch.tensor(a))) for o, a in zip(demos.observations, demos.actions)]
        assert np.mean([e.ret for e in episodes]) == pytest.approx(run.returns[index])
        assert recorded["policy_mean"] == pytest.approx(np.mean(steps), rel=1e-5, abs=1e-6)
        assert recorded["demo_mean"] == pytest.approx(np.mean(on_demos), rel=1e-5, abs=1e-6)
        assert recorded["margin"] == pytest.approx(recorded["demo_mean"] - recorded["policy_mean"])
    if method == "aihf":  # the reward moved between evaluations, and the entries followed it
        assert run.eval_reward[0]["demo_mean"] != run.eval_reward[-1]["demo_mean"]


def test_recording_the_learned_reward_at_evaluations_leaves_the_run_unchanged(monkeypatch):
    from aihf.control import algorithm

    demos, prefs = toy_data(n_demos=50, demo_slope=0.5, n_prefs=20, seed=1)
    cfg = replace(_ml_irl_loop(total_steps=300, iteration_steps=100), eval_every=100)

    def run():
        return train_method("aihf", cfg, "ContextTarget", 3, demos, prefs, env=ContextTarget(), eval_env=ContextTarget())

    recorded = run()
    monkeypatch.setattr(algorithm._AlgorithmOneCallback, "record_learned_reward", lambda self, episodes: None)
    bare = run()
    assert len(recorded.eval_reward) == 3 and bare.eval_reward == []
    assert recorded.returns == bare.returns and recorded.reward_losses == bare.reward_losses
    assert recorded.reward_diagnostics == bare.reward_diagnostics


def test_ml_irl_schedule_learns_the_task_with_a_known_expert():
    """ContextTarget: playing 0 earns about -4.3 over the 20 steps, uniform random actions
    about -10.9, the expert 0. Twelve iterations of 100 SAC steps, 10 reward steps each."""
    demos, prefs = toy_data(n_demos=300, demo_slope=0.8, n_prefs=50, seed=0)
    cfg = replace(_ml_irl_loop(total_steps=1200, iteration_steps=100, trajectories=5), reward_updates=10)
    cfg = replace(cfg, reward=replace(cfg.reward, lr=1e-2))
    for method in ("aihf", "ml_irl"):
        returns = train_method(method, cfg, "ContextTarget", 1, demos, prefs, env=ContextTarget(), eval_env=ContextTarget()).returns
        assert returns[-1] > -1.0, (method, returns)


def test_ml_irl_schedule_runs_are_seeded():
    demos, prefs = toy_data(n_demos=50, demo_slope=0.5, n_prefs=20, seed=1)
    cfg = _ml_irl_loop(total_steps=300, iteration_steps=100)
    runs = [train_method("aihf", cfg, "ContextTarget", 3, demos, prefs, env=ContextTarget(), eval_env=ContextTarget())
            for _ in range(2)]
    assert runs[0].returns == runs[1].returns and runs[0].reward_losses == runs[1].reward_losses
    assert len(runs[0].reward_losses) == 3 * cfg.reward_updates


def test_runs_do_not_depend_on_the_data_their_method_does_not_read():
    """What lets the experiment copy a run across data settings (experiments.mujoco.READS):
    ML-IRL is the same run with another preference set, RLHF with other demonstrations,
    true-reward SAC with no data at all; AIHF reads both and differs."""
    from aihf.experiments.mujoco import DATA_FIELDS, READS

    demos, prefs = toy_data(n_demos=60, demo_slope=0.8, n_prefs=30, seed=0)
    other_demos, other_prefs = toy_data(n_demos=40, demo_slope=0.2, n_prefs=9, seed=5)
    cfg = _ml_irl_loop(total_steps=200, iteration_steps=100)

    def run(method, d, p):
        r = train_method(method, cfg, "ContextTarget", 2, d, p, env=ContextTarget(), eval_env=ContextTarget())
        return r.returns, r.reward_losses

    assert READS["ml_irl"] == ("demos", "n_demos") and run("ml_irl", demos, prefs) == run("ml_irl", demos, other_prefs)
    assert READS["rlhf"] == ("n_prefs",) and run("rlhf", demos, prefs) == run("rlhf", other_demos, prefs)
    assert READS["sac_true"] == () and run("sac_true", demos, prefs) == run("sac_true", None, None)
    assert READS["aihf"] == DATA_FIELDS and run("aihf", demos, prefs) != run("aihf", demos, other_prefs)


def test_a_saved_run_is_the_same_run_up_to_the_data_its_method_does_not_read():
    from aihf.experiments.mujoco import same_run

    key = {"method": "ml_irl", "seed": 0, "env": "Hopper-v5", "demos": "demos", "n_demos": 10, "n_prefs": 200}
    assert same_run({**key, "n_prefs": 20_000}, key)
    assert not same_run({**key, "demos": "demos_low"}, key) and not same_run({**key, "seed": 1}, key)
    assert not same_run({**key, "method": "aihf", "n_prefs": 20_000}, {**key, "method": "aihf"})
    assert same_run({**key, "method": "sac_true", "demos": "demos_low", "n_prefs": 1}, {**key, "method": "sac_true"})


def test_a_run_key_names_the_shipped_data_alike_on_every_checkout(tmp_path):
    """Committed runs are reused wherever the repository lies: the shipped data is named
    ``shipped`` in a key, not by the checkout's path."""
    from aihf import shipped
    from aihf.experiments.mujoco import SHIPPED_DATA, MujocoConfig, same_run, unit_key

    cfg = MujocoConfig(env="Hopper-v5")
    key = unit_key(cfg, "ml_irl", 0, shipped.mujoco_data_dir("Hopper-v5"))
    assert key["data_dir"] == SHIPPED_DATA
    assert not same_run({**key, "data_dir": "/another/checkout/data/mujoco/Hopper-v5"}, key)  # a path is a path
    mine = unit_key(cfg, "ml_irl", 0, tmp_path / "my-data")
    assert mine["data_dir"] == str(tmp_path / "my-data") and not same_run(mine, key) and not same_run(key, mine)


def test_a_bc_run_key_holds_the_evaluation_settings_it_reads_away_from_those_its_runs_were_made_with():
    """BC's result depends on the loop's evaluation split and episode count: a BC run made on
    validation is not the test run, while the committed BC runs (test, 10 episodes) keep their keys."""
    import json
    from dataclasses import asdict, replace

    from aihf import shipped
    from aihf.experiments.mujoco import MujocoConfig, same_run, unit_key

    cfg, data_dir = MujocoConfig(env="Hopper-v5"), shipped.mujoco_data_dir("Hopper-v5")
    test = unit_key(cfg, "bc", 0, data_dir)
    assert test["settings"] == json.loads(json.dumps(asdict(cfg.bc)))  # the committed runs' key
    validation = unit_key(replace(cfg, loop=replace(cfg.loop, eval_split="validation")), "bc", 0, data_dir)
    assert validation["settings"]["eval_split"] == "validation" and not same_run(validation, test)
    fewer = unit_key(replace(cfg, loop=replace(cfg.loop, eval_episodes=3)), "bc", 0, data_dir)
    assert fewer["settings"]["eval_episodes"] == 3 and not same_run(fewer, test)
    longer = unit_key(replace(cfg, loop=replace(cfg.loop, total_steps=7)), "bc", 0, data_dir)
    assert same_run(longer, test)  # BC reads no other loop setting


@pytest.mark.e2e
def test_finished_runs_are_copied_from_another_setting_when_the_method_reads_none_of_the_difference(
        tmp_path, tiny_ml_irl_experiment):
    import json

    from aihf.experiments.mujoco import run_from_cli

    preset, data = tiny_ml_irl_experiment(methods=["ml_irl", "rlhf"])
    balanced, few = tmp_path / "balanced", tmp_path / "few"
    assert run_from_cli("aihf/ContextTarget-v0", str(preset), str(balanced), [data]) == 0
    assert run_from_cli("aihf/ContextTarget-v0", str(preset), str(few), [data, "n_prefs=10", f"reuse_from=[{balanced}]"]) == 0
    source = balanced / "runs" / "ml_irl" / "seed0"
    copied = json.loads((few / "runs" / "ml_irl" / "seed0" / "result.json").read_text())
    assert copied["copied_from"] == str(source)
    assert copied["result"] == json.loads((source / "result.json").read_text())["result"]
    assert (few / "runs" / "ml_irl" / "seed0" / "reward_net.safetensors").read_bytes() == (
        source / "reward_net.safetensors").read_bytes()
    trained = json.loads((few / "runs" / "rlhf" / "seed0" / "result.json").read_text())  # RLHF reads the preferences
    assert "copied_from" not in trained and trained["key"]["n_prefs"] == 10
    assert json.loads((few / "results.json").read_text())["runs"]["ml_irl"][0] == copied["result"]


@pytest.mark.e2e
def test_experiment_runs_are_a_resumable_grid(tmp_path, tiny_ml_irl_experiment):
    import json

    from aihf.experiments.mujoco import run_from_cli

    preset, data = tiny_ml_irl_experiment(methods=["aihf", "bc"])
    out = tmp_path / "out"
    assert run_from_cli("aihf/ContextTarget-v0", str(preset), str(out), [data]) == 0
    first = out / "runs" / "aihf" / "seed0" / "result.json"
    stamp, before = first.stat().st_mtime_ns, json.loads((out / "results.json").read_text())
    assert before["schedule"] == "ml_irl" and before["reward_shift"] == 0.0
    from aihf.runtime import provenance

    assert json.loads(first.read_text())["versions"] == provenance()  # each run names the machine that made it
    # another seed: seed 0 is reused as it was, seed 1 trained; the table holds both
    assert run_from_cli("aihf/ContextTarget-v0", str(preset), str(out), [data, "seeds=[0,1]"]) == 0
    after = json.loads((out / "results.json").read_text())
    assert first.stat().st_mtime_ns == stamp and after["runs"]["aihf"][0] == before["runs"]["aihf"][0]
    assert len(after["runs"]["aihf"]) == 2 and (out / "runs" / "bc" / "seed1" / "result.json").exists()
    # other settings: the run is trained again, not reused
    assert run_from_cli("aihf/ContextTarget-v0", str(preset), str(out), [data, "loop.reward_updates=2"]) == 0
    assert first.stat().st_mtime_ns != stamp and "reward_scales" not in json.loads(first.read_text())["result"]
    # normalised rewards: another run, whose result holds SAC's reward scale at each evaluation
    stamp = first.stat().st_mtime_ns
    assert run_from_cli("aihf/ContextTarget-v0", str(preset), str(out), [data, "loop.reward_normalize=true"]) == 0
    result = json.loads(first.read_text())["result"]
    assert first.stat().st_mtime_ns != stamp and len(result["reward_scales"]) == len(result["steps"]) == 2
    assert json.loads((out / "results.json").read_text())["reward_normalize"] is True
    assert "divided by their running std" in (out / "results.md").read_text()
    assert not list((out / "runs" / "aihf").glob(".*"))  # nothing half-written left


class _ConstantPolicy:
    """An SB3-like policy that plays ``value`` (whatever ``deterministic``)."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, obs, deterministic=True):
        return np.array([self.value], np.float32), None


def test_segments_can_end_where_their_episode_ends():
    from aihf.control.expert_data import _segments

    env, rng = ContextTarget(horizon=7), np.random.default_rng(0)
    obs, act, ret, lengths = _segments(_ConstantPolicy(0.3), env, 40, 5, seed=0, rng=rng, min_length=2)
    assert len(obs) == 40 and set(lengths) <= {2, 3, 4, 5} and min(lengths) < 5
    for o, a, r, n in zip(obs, act, ret, lengths):
        assert o.shape == (5, 2) and not o[n:].any() and not a[n:].any()  # zero padding after the real steps
        assert r == pytest.approx(float(-((a[:n, 0] - 0.8 * o[:n, 0]) ** 2).sum()), rel=1e-5)  # true return of those steps
    fixed = _segments(_ConstantPolicy(0.3), env, 10, 5, seed=0, rng=np.random.default_rng(0))
    assert set(fixed[3]) == {5}


def test_between_checkpoint_share_is_the_law_of_total_variance():
    from aihf.control.expert_data import between_checkpoint_share

    rng = np.random.default_rng(0)
    source = np.repeat(np.arange(4), [10, 20, 30, 40])
    returns = rng.normal(size=100) + 3.0 * source
    means = np.array([returns[source == i].mean() for i in range(4)])
    counts = np.bincount(source)
    expected = (counts * (means - returns.mean()) ** 2).sum() / (returns.size * returns.var())
    assert between_checkpoint_share(returns, source) == pytest.approx(expected, rel=1e-12)
    assert between_checkpoint_share(np.full(6, 2.0), np.arange(6) % 2) == 0.0


def test_padding_never_counts_in_a_segments_reward():
    from aihf.data import SegmentPreferenceSet

    rng = np.random.default_rng(0)
    obs_w, obs_l = rng.normal(size=(6, 4, 2)), rng.normal(size=(6, 4, 2))
    act_w, act_l = rng.normal(size=(6, 4, 1)), rng.normal(size=(6, 4, 1))
    len_w, len_l = np.array([4, 3, 2, 4, 1, 4]), np.array([2, 4, 4, 3, 4, 1])
    noisy_w, noisy_l = obs_w.copy(), obs_l.copy()
    for i in range(6):  # other values in the padding
        noisy_w[i, len_w[i]:], noisy_l[i, len_l[i]:] = 99.0, -99.0
    cfg = RewardStepConfig(w_demo=0.0, pref_batch=None, reward_l2=0.0)
    losses = []
    for ow, ol in ((obs_w, obs_l), (noisy_w, noisy_l)):
        torch.manual_seed(0)
        prefs = SegmentPreferenceSet(ow, act_w, ol, act_l, len_w=len_w, len_l=len_l)
        losses.append(RewardLearner(RewardNet(2, 1, (8,)), cfg, None, prefs, np.random.default_rng(0)).loss(None, None))
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    net = RewardNet(2, 1, (8,))
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        by_step = net(t(obs_w), t(act_w))
        expected = torch.stack([by_step[i, : len_w[i]].sum() for i in range(6)])
        got = net.segment_reward(t(obs_w), t(act_w), t(SegmentPreferenceSet(obs_w, act_w, obs_l, act_l, len_w=len_w, len_l=len_l).mask_w()))
    torch.testing.assert_close(got, expected)


def test_an_episode_is_a_trajectory_that_says_how_it_ended():
    import gymnasium as gym

    from aihf.data import Trajectory

    timed_out = run_episode(lambda obs: np.array([0.0], np.float32), ContextTarget(horizon=6), seed=0)
    assert isinstance(timed_out, Trajectory) and len(timed_out) == 6 and not timed_out.terminals.any()
    fell = run_episode(lambda obs: np.ones(3, np.float32), gym.make("Hopper-v5"), seed=0)  # full torque: it falls
    assert len(fell) < 1000 and fell.terminals[-1] and not fell.terminals[:-1].any()
    assert fell.ret == pytest.approx(float(fell.rewards.sum()))


def test_the_control_reward_has_no_implicit_preference_form_and_configs_that_named_it_still_load(tmp_path):
    """``preference_form`` (the implicit reward's preference term) left the shared ObjectiveConfig
    for the language models' MethodConfig: the control reward is explicit, its preference term
    Bradley-Terry's. Configs saved before name ``loop.reward.preference_form: sigmoid``: they load
    (every committed MuJoCo config.yaml does) and their runs stay the same runs, while any other
    form is refused with the key's full name."""
    import json
    from pathlib import Path

    from aihf.config import ConfigError, from_dict, load_config
    from aihf.experiments.mujoco import MujocoConfig, resume_point, same_run, unit_key
    from aihf.lm.methods import MethodConfig

    assert "preference_form" not in RewardStepConfig.__dataclass_fields__
    assert MethodConfig().preference_form == "sigmoid" and MethodConfig(preference_form="ipo").preference_form == "ipo"
    assert from_dict(RewardStepConfig, {"preference_form": "sigmoid", "lr": 1e-3}) == RewardStepConfig(lr=1e-3)
    with pytest.raises(ConfigError, match=r"loop\.reward\.preference_form was retired from RewardStepConfig.*'ipo'"):
        from_dict(RewardStepConfig, {"preference_form": "ipo"}, prefix="loop.reward.")
    committed = sorted((Path(__file__).resolve().parents[1] / "docs" / "results").glob("mujoco*/**/config.yaml"))
    named = [path for path in committed if "preference_form" in path.read_text(encoding="utf-8")]
    assert len(committed) >= 70 and len(named) >= 70
    for path in named:
        load_config(MujocoConfig, path)
    cfg = MujocoConfig(env="Hopper-v5")
    key = unit_key(cfg, "aihf", 0, tmp_path)
    saved = json.loads(json.dumps(key))
    saved["settings"]["reward"]["preference_form"] = "sigmoid"  # a key made before the setting was retired
    assert same_run(saved, key) and "preference_form" in saved["settings"]["reward"]  # the saved key is left as is
    saved["settings"]["reward"]["preference_form"] = "ipo"
    assert not same_run(saved, key)
    cfg.loop.schedule, cfg.loop.resume_every = "ml_irl", 5
    assert resume_point(cfg, "aihf", tmp_path / "runs" / "aihf" / "seed0", key).same is same_run  # resume points too
