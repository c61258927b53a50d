"""Reward ensembles for the control policy step (docs/method.md section 7): the three
combinations against a member-by-member computation, each member's training against the same
net trained alone, save/load, the settings' checks, and a run that learns a task with a known
expert while the members disagree away from the data."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from aihf.control.algorithm import ControlLoopConfig, SACConfig, make_reward, train_method
from aihf.control.reward_net import RewardEnsemble, RewardNet, load_reward
from aihf.control.reward_step import RewardLearner, RewardStepConfig
from aihf.control.toy import ContextTarget, toy_data


def _members(k: int, seed: int = 0) -> list[RewardNet]:
    torch.manual_seed(seed)
    return [RewardNet(3, 2, (8, 8)) for _ in range(k)]


def _members_and_copies(seed: int, k: int = 3) -> tuple[list[RewardNet], list[RewardNet]]:
    """k small nets and an identical copy of each, to be trained apart."""
    torch.manual_seed(seed)
    members = [RewardNet(2, 1, (16,)) for _ in range(k)]
    copies = [RewardNet(2, 1, (16,)) for _ in members]
    for copy, member in zip(copies, members):
        copy.load_state_dict(member.state_dict())
    return members, copies


def _assert_equal_nets(nets: list[RewardNet], others: list[RewardNet]) -> None:
    for net, other in zip(nets, others):
        for p, q in zip(net.parameters(), other.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule, penalty", [("mean", 0.0), ("uwo", 0.7), ("wco", 0.0)])
def test_each_rule_combines_the_members_rewards_as_its_formula_says(rule, penalty):
    members = _members(4)
    ensemble = RewardEnsemble(members, rule, penalty)
    obs, act = torch.randn(6, 5, 3), torch.randn(6, 5, 2)
    with torch.no_grad():
        each = np.stack([m(obs, act).numpy() for m in members]).astype(np.float64)  # [K, 6, 5]
        got = ensemble(obs, act).numpy()
        spread = ensemble.disagreement(obs, act).numpy()
    mean = each.mean(axis=0)
    variance = ((each - mean) ** 2).sum(axis=0) / len(members)
    expected = {"mean": mean, "uwo": mean - penalty * variance, "wco": each.min(axis=0)}[rule]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, np.sqrt(variance), rtol=1e-5, atol=1e-6)
    mask = torch.ones(6, 5)
    mask[:, 3:] = 0
    with torch.no_grad():  # a segment's reward sums the combination over its real steps
        np.testing.assert_allclose(ensemble.segment_reward(obs, act, mask).numpy(), expected[:, :3].sum(axis=1),
                                   rtol=1e-5, atol=1e-5)


def test_an_ensembles_step_moves_every_member_exactly_as_that_net_would_move_alone():
    """Full batches (no draw), so a lone learner sees what each member sees: after 5 steps of
    the ensemble each member equals its copy trained by itself (the summed loss and one Adam
    over all members are K separate Adams); the step's value is the members' losses summed."""
    demos, prefs = toy_data(n_demos=40, demo_slope=0.8, n_prefs=30, seed=2)
    cfg = RewardStepConfig(lr=1e-2, weight_decay=1e-3, demo_batch=None, pref_batch=None, demo_horizon=3)
    members, alone = _members_and_copies(seed=0)
    policy_obs, policy_act = torch.randn(25, 2), torch.randn(25, 1)
    ensemble = RewardLearner(RewardEnsemble(members, "uwo", 2.0), cfg, demos, prefs, np.random.default_rng(0))
    lone = [RewardLearner(net, cfg, demos, prefs, np.random.default_rng(0)) for net in alone]
    for _ in range(5):
        total = ensemble.step(policy_obs, policy_act)
        assert total == pytest.approx(sum(learner.step(policy_obs, policy_act) for learner in lone), rel=1e-5)
    _assert_equal_nets(members, alone)
    assert not torch.equal(members[0].mlp[0].weight, members[1].mlp[0].weight)  # different initialisations stay apart


def _resampled(data, rows):
    """The data set made of ``data``'s rows ``rows`` (repeats kept, in that order)."""
    return replace(data, **{name: array[rows] for name, array in data._arrays().items()})


@pytest.mark.parametrize("resample", ["pairs", "segments"])
def test_a_resampled_member_moves_exactly_as_a_net_trained_alone_on_its_resample(resample):
    """Full batches: each member's 4 steps equal a lone net's on the data set rebuilt from
    that member's rows (its demonstration rows and its pairs, repeats kept). The resamples
    differ between members, repeat rows and leave some out: about 63% of the n rows distinct
    for n draws with replacement (demonstrations; pairs with ``pairs``)."""
    demos, prefs = toy_data(n_demos=60, demo_slope=0.8, n_prefs=50, seed=3)
    cfg = RewardStepConfig(lr=1e-2, weight_decay=1e-3, demo_batch=None, pref_batch=None, demo_horizon=2)
    members, alone = _members_and_copies(seed=1)
    ensemble = RewardLearner(RewardEnsemble(members, "wco"), cfg, demos, prefs, np.random.default_rng(4), resample)
    policy_obs, policy_act = torch.randn(25, 2), torch.randn(25, 1)
    lone = []
    for net, rows in zip(alone, ensemble.member_rows):
        demo_rows, pair_rows = rows["demos"].numpy(), rows["prefs"].numpy()
        assert len(demo_rows) == len(demos) and 0.45 < len(set(demo_rows)) / len(demos) < 0.8
        if resample == "pairs":
            assert len(pair_rows) == len(prefs) and 0.45 < len(set(pair_rows)) / len(prefs) < 0.8
        lone.append(RewardLearner(net, cfg, _resampled(demos, demo_rows), _resampled(prefs, pair_rows),
                                  np.random.default_rng(0)))
    assert len({tuple(rows["prefs"].tolist()) for rows in ensemble.member_rows}) == 3
    for _ in range(4):
        total = ensemble.step(policy_obs, policy_act)
        assert total == pytest.approx(sum(learner.step(policy_obs, policy_act) for learner in lone), rel=1e-5)
    _assert_equal_nets(members, alone)


def test_a_segment_resample_keeps_the_pairs_between_drawn_segments_each_counted_c_w_times_c_l():
    """Every pair of a pool of 12 segments (66 pairs), so the multiplicity m of pair (i, k)
    must be c_i * c_k for the draw counts c: c_i^2 = m_ik * m_il / m_kl for any other two
    drawn segments k, l; the counts of the drawn segments add up to the 12 draws, and a pair
    is kept exactly when both of its segments were drawn."""
    from itertools import combinations

    from aihf.control.preferences import SegmentPool

    rng = np.random.default_rng(0)
    pool = SegmentPool(rng.normal(size=(12, 4, 2)).astype(np.float32), rng.normal(size=(12, 4, 1)).astype(np.float32),
                       np.zeros(12), np.zeros(12, np.int64))
    pairs = np.array(list(combinations(range(12), 2)))
    ensemble = RewardEnsemble([RewardNet(2, 1, (4,)) for _ in range(4)])
    learner = RewardLearner(ensemble, RewardStepConfig(w_demo=0.0), None, pool.preferences(pairs),
                            np.random.default_rng(7), "segments")
    for rows in learner.member_rows:
        assert "demos" not in rows
        times = np.bincount(rows["prefs"].numpy(), minlength=len(pairs))
        m = {tuple(pair): int(t) for pair, t in zip(pairs, times)}
        mult = lambda i, k: m[(min(i, k), max(i, k))]  # noqa: E731
        drawn = sorted({i for (i, k), t in m.items() if t for i in (i, k)})
        assert 2 <= len(drawn) < 12
        for i, k in combinations(range(12), 2):
            assert (mult(i, k) > 0) == (i in drawn and k in drawn)
        counts = {}
        for i in drawn:
            k, l = [j for j in drawn if j != i][:2]
            counts[i] = round(np.sqrt(mult(i, k) * mult(i, l) / mult(k, l)))
        assert sum(counts.values()) == 12
        for i, k in combinations(drawn, 2):
            assert mult(i, k) == counts[i] * counts[k]


def test_a_resampled_members_minibatches_come_from_its_resample_only():
    """Minibatches of 32 demonstration rows: every row a member is shown is in its resample,
    and over 20 steps nearly all of the resample is shown."""
    demos, prefs = toy_data(n_demos=80, demo_slope=0.8, n_prefs=10, seed=0)
    cfg = RewardStepConfig(w_pref=0.0, demo_batch=32)
    ensemble = RewardEnsemble([RewardNet(2, 1, (8, 8)) for _ in range(2)], "mean")
    learner = RewardLearner(ensemble, cfg, demos, prefs, np.random.default_rng(0), "pairs")
    seen = [[] for _ in ensemble.members]
    for k, member in enumerate(ensemble.members):
        member.register_forward_hook(lambda _m, inputs, _out, k=k: seen[k].append(inputs[0]))
    policy_obs = torch.full((16, 2), 100.0)  # far from every demonstration
    for _ in range(20):
        learner.step(policy_obs, torch.zeros(16, 1))
    for k, rows in enumerate(learner.member_rows):
        allowed = {tuple(row) for row in demos.observations[rows["demos"].numpy()].tolist()}
        drawn = {tuple(row) for obs in seen[k] if obs[0, 0] != 100.0 for row in obs.tolist()}
        assert drawn and drawn <= allowed
        assert len(drawn) > 0.9 * len(allowed)  # 640 draws cover the member's resample


def test_one_member_is_the_plain_net_and_member_zero_starts_where_a_one_net_run_starts():
    one = ControlLoopConfig(reward_hidden=[8])
    three = replace(one, reward_ensemble=3, reward_ensemble_rule="wco")
    torch.manual_seed(5)
    net = make_reward(one, 3, 2)
    torch.manual_seed(5)
    ensemble = make_reward(three, 3, 2)
    assert type(net) is RewardNet and isinstance(ensemble, RewardEnsemble) and len(ensemble.members) == 3
    for p, q in zip(net.parameters(), ensemble.members[0].parameters()):
        assert torch.equal(p, q)
    assert ensemble.rule == "wco"


def test_an_ensemble_saves_and_loads_exactly_and_a_plain_loader_refuses_it(tmp_path):
    ensemble = RewardEnsemble(_members(3), "uwo", 0.25)
    ensemble.save(tmp_path / "e.safetensors")
    back = load_reward(tmp_path / "e.safetensors")
    obs, act = torch.randn(9, 3), torch.randn(9, 2)
    assert isinstance(back, RewardEnsemble) and (back.rule, back.penalty, len(back.members)) == ("uwo", 0.25, 3)
    assert torch.equal(back(obs, act), ensemble(obs, act))
    with pytest.raises(ValueError, match="holds a reward ensemble"):
        RewardNet.load(tmp_path / "e.safetensors")
    net = _members(1)[0]
    net.save(tmp_path / "n.safetensors")
    assert torch.equal(load_reward(tmp_path / "n.safetensors")(obs, act), net(obs, act))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="holds no reward net"):
        load_reward(tmp_path / "other.safetensors")


def test_ensemble_settings_are_checked_when_made():
    with pytest.raises(ValueError, match="set reward_ensemble >= 2"):
        ControlLoopConfig(reward_ensemble_rule="wco")
    with pytest.raises(ValueError, match="set reward_ensemble >= 2"):
        ControlLoopConfig(reward_ensemble_penalty=1.0, reward_ensemble_rule="uwo")
    with pytest.raises(ValueError, match="set reward_ensemble >= 2"):
        ControlLoopConfig(reward_ensemble_resample="pairs")
    demos, prefs = toy_data(n_demos=10, demo_slope=0.8, n_prefs=10, seed=0)
    with pytest.raises(ValueError, match="unknown resample 'episodes'"):
        RewardLearner(RewardEnsemble(_members(2)), RewardStepConfig(), demos, prefs, np.random.default_rng(0), "episodes")
    with pytest.raises(ValueError, match="needs a reward ensemble"):
        RewardLearner(RewardNet(2, 1), RewardStepConfig(), demos, prefs, np.random.default_rng(0), "pairs")
    single = toy_data(n_demos=5, demo_slope=0.8, n_prefs=1, seed=0)[1]  # one pair of two segments
    with pytest.raises(ValueError, match="too few pairs to resample by segment"):
        for seed in range(20):  # 2 draws from 2 segments miss one of them half the time
            RewardLearner(RewardEnsemble([RewardNet(2, 1, (4,)) for _ in range(2)]), RewardStepConfig(w_demo=0.0),
                          None, single, np.random.default_rng(seed), "segments")
    with pytest.raises(ValueError, match="uwo rule needs a penalty > 0"):
        ControlLoopConfig(reward_ensemble=3, reward_ensemble_rule="uwo")
    with pytest.raises(ValueError, match="uwo rule needs a penalty > 0"):
        ControlLoopConfig(reward_ensemble=3, reward_ensemble_rule="mean", reward_ensemble_penalty=1.0)
    with pytest.raises(ValueError, match="reward_ensemble must be >= 1"):
        ControlLoopConfig(reward_ensemble=0)
    with pytest.raises(ValueError, match="at least 2 members"):
        RewardEnsemble(_members(1))
    with pytest.raises(ValueError, match="same sizes"):
        RewardEnsemble([RewardNet(3, 2, (8,)), RewardNet(3, 2, (4,))])
    with pytest.raises(ValueError, match="unknown ensemble rule"):
        RewardEnsemble(_members(2), "median")


def test_the_members_agree_on_the_data_and_disagree_away_from_it():
    """Fitted to ContextTarget's preferences (states and actions in [-1, 1]), the members'
    spread is small on the data and grows where no segment went (inputs 4x outside), which is
    what lets uwo and wco mark the states a policy could exploit."""
    demos, prefs = toy_data(n_demos=100, demo_slope=0.8, n_prefs=200, seed=0)
    torch.manual_seed(0)
    ensemble = RewardEnsemble([RewardNet(2, 1, (32, 32)) for _ in range(5)], "uwo", 1.0)
    learner = RewardLearner(ensemble, RewardStepConfig(w_demo=0.0, lr=3e-3, pref_batch=64), None, prefs,
                            np.random.default_rng(0))
    for _ in range(300):
        learner.step()
    rng = np.random.default_rng(1)
    obs = torch.tensor(rng.uniform(-1, 1, (500, 2)), dtype=torch.float32)
    act = torch.tensor(rng.uniform(-1, 1, (500, 1)), dtype=torch.float32)
    with torch.no_grad():
        on_data = float(ensemble.disagreement(obs, act).mean())
        away = float(ensemble.disagreement(4 * obs, 4 * act).mean())
        ranked = learner.diagnostics(obs, act)["pref_train_accuracy"]
    assert ranked > 0.8  # the combination ranks the training pairs as the true reward does
    assert away > 3 * on_data, (on_data, away)


@pytest.mark.e2e
@pytest.mark.parametrize("method, rule, penalty, resample",
                         [("aihf", "uwo", 1.0, "none"), ("rlhf", "wco", 0.0, "none"), ("rlhf", "wco", 0.0, "segments")])
def test_an_ensemble_run_learns_the_task_with_a_known_expert(method, rule, penalty, resample):
    """ContextTarget (expert 0, playing 0 about -4.3, random actions about -10.9) on the ml_irl
    schedule, SAC seeing a 3-member ensemble's combination; its reward diagnostics carry the
    members' disagreement. (RLHF with wco ended at -0.81, -0.21, -0.36 on seeds 1-3, and with
    one net at -0.68, -0.20, -0.26; with 3 wco members on segment resamples -1.76, -0.45, -0.22.)
    With a ``resample`` each member fits its own resample of the data."""
    demos, prefs = toy_data(n_demos=300, demo_slope=0.8, n_prefs=200, seed=0)
    cfg = ControlLoopConfig(
        total_steps=1200, schedule="ml_irl", iteration_steps=100, trajectories_per_iteration=5, reward_updates=10,
        eval_every=1200, eval_episodes=5, reward_hidden=[32, 32], reward_clamp=10.0,
        reward_ensemble=3, reward_ensemble_rule=rule, reward_ensemble_penalty=penalty,
        reward_ensemble_resample=resample,
        sac=SACConfig(net_arch=[32, 32], learning_starts=100, batch_size=64, buffer_size=5000),
        reward=RewardStepConfig(lr=1e-2, weight_decay=1e-6, demo_batch=64, pref_batch=None),
    )
    result = train_method(method, cfg, "ContextTarget", 2, demos, prefs, env=ContextTarget(), eval_env=ContextTarget())
    assert result.returns[-1] > -1.0, result.returns
    assert all("policy_disagreement" in d for d in result.eval_reward)
