"""The toy known-reward experiment: Algorithm 1 recovers the reward, and the combination
helps exactly where one data kind is degraded."""

import json
import math

import pytest

from aihf.experiments.bandit import (
    ToyConfig,
    ToySetting,
    make_problem,
    normalised_return,
    policy_step,
    regularised_value,
    run,
    soft_optimal_policy,
)

import torch


def test_policy_step_converges_to_the_soft_optimal_policy():
    rewards = torch.randn(4, 6, dtype=torch.float64)
    logits = policy_step(torch.zeros(4, 6, dtype=torch.float64), rewards, beta=0.5, steps=200, rate=0.2)
    torch.testing.assert_close(torch.softmax(logits, -1), soft_optimal_policy(rewards, 0.5), atol=1e-6, rtol=0)


def test_expert_scores_one_and_reference_zero():
    config = ToyConfig()
    problem = make_problem(config, ToySetting("s", 10, 10), seed=0)
    for metric in (normalised_return, regularised_value):
        assert metric(problem.true_theta, problem, config.beta) == pytest.approx(1.0)
        assert metric(torch.zeros_like(problem.true_theta), problem, config.beta) == pytest.approx(0.0)


def test_the_regularised_value_peaks_at_the_true_scale_where_the_return_does_not():
    """A reward steeper than the true one makes a greedier policy: more return than the expert's
    (normalised return above 1) but less of the objective the expert maximises (below 1)."""
    config = ToyConfig()
    problem = make_problem(config, ToySetting("s", 10, 10), seed=0)
    steeper = 2.0 * problem.true_theta
    assert normalised_return(steeper, problem, config.beta) > 1.0
    assert regularised_value(steeper, problem, config.beta) < 1.0
    assert regularised_value(0.5 * problem.true_theta, problem, config.beta) < 1.0


@pytest.mark.e2e
def test_aihf_wins_where_one_data_kind_is_degraded(tmp_path, figure_texts):
    config = ToyConfig(
        num_prompts=100,
        num_eval_prompts=100,
        iterations=150,
        seeds=[0, 1],
        settings=[
            ToySetting("balanced", 200, 200),
            ToySetting("few-preferences", 200, 10),
            ToySetting("low-quality-demos", 200, 200, demo_temperature=8.0),
        ],
    )
    results = run(config, tmp_path, progress=False)
    score = lambda s, m: results["settings"][s][m]["normalised_return"]["mean"]  # noqa: E731
    for method in ("aihf", "ml-irl", "rlhf-reward"):
        assert score("balanced", method) > 0.9
    assert score("few-preferences", "aihf") > score("few-preferences", "rlhf-reward") + 0.1
    assert score("low-quality-demos", "aihf") > score("low-quality-demos", "ml-irl") + 0.1
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["settings"]["balanced"]["aihf"]["normalised_return"]["n"] == 2
    assert (tmp_path / "normalised_return.png").stat().st_size > 10_000
    assert any(text.endswith("\nerror bars: 95% t-interval over 2 seeds") for text in figure_texts["normalised_return.png"])
    assert "| few-preferences | aihf |" in (tmp_path / "results.md").read_text()


def test_flipped_labels_swap_that_share_of_pairs_and_leave_the_rest_of_the_problem():
    config = ToyConfig()
    clean = make_problem(config, ToySetting("s", 50, 4000), seed=3)
    noisy = make_problem(config, ToySetting("s", 50, 4000, label_flip=0.3), seed=3)
    for name in ("features", "eval_features", "true_theta", "demo_prompts", "demo_responses", "pref_prompts"):
        assert torch.equal(getattr(clean, name), getattr(noisy, name)), name
    swapped = (clean.pref_chosen != noisy.pref_chosen).double().mean().item()
    assert swapped == pytest.approx(0.3, abs=0.03)
    assert torch.equal(clean.pref_chosen != noisy.pref_chosen, clean.pref_rejected == noisy.pref_chosen)
    with pytest.raises(ValueError, match="label_flip"):
        ToySetting("s", 1, 1, label_flip=0.5)
    with pytest.raises(ValueError, match="label_noise"):
        ToyConfig(label_noise="symmetric")


def test_the_robust_reward_undoes_the_flattening_that_flipped_labels_cause():
    """The RLHF reward (w_D = 0) from preferences whose labels are flipped with chance 0.3: fitted
    plainly it is flatter than the true reward (smaller norm, policy nearer uniform); the robust
    form at the true flip rate recovers the true scale and most of the return."""
    from aihf.experiments.bandit import fit_reward

    setting = ToySetting("flipped", 20, 2000, label_flip=0.3)  # the demonstrations weigh 0 here
    plain_config = ToyConfig(iterations=600)
    robust_config = ToyConfig(iterations=600, label_smoothing=0.3, label_noise="robust")
    problem = make_problem(plain_config, setting, seed=0)
    plain, _ = fit_reward(problem, plain_config, 0.0, 1.0, seed=0)
    robust, _ = fit_reward(problem, robust_config, 0.0, 1.0, seed=0)
    truth = problem.true_theta.norm()
    assert plain.norm() < 0.6 * truth
    assert robust.norm() == pytest.approx(float(truth), rel=0.25)
    assert normalised_return(robust, problem, plain_config.beta) > normalised_return(plain, problem, plain_config.beta) + 0.1


def test_the_committed_flipped_label_table_is_what_its_results_give():
    """docs/results/toy-flipped.md is scripts/toy_label_noise.py's table of the three committed
    result folders (docs/results.md quotes it)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("toy_label_noise", root / "scripts" / "toy_label_noise.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    prefix = root / "docs" / "results" / "toy-flipped"
    assert script.page(prefix) == prefix.with_suffix(".md").read_text(encoding="utf-8")
    misstated = script.page(prefix, ("plain", "robust15", "robust", "robust45"))
    assert misstated == (prefix.parent / "toy-flipped-misstated.md").read_text(encoding="utf-8")
    clean = prefix.parent / "toy-clean"
    assert script.page(clean, ("plain", "robust")) == clean.with_suffix(".md").read_text(encoding="utf-8")
    assert "| flipped | rlhf-reward | 0.498 ± 0.116 | 0.216 ± 0.063 | 0.810 ± 0.133 | -0.282 ± 0.079 | +0.312 ± 0.068 |" in (
        root / "docs" / "results.md").read_text(encoding="utf-8").replace("RLHF reward", "rlhf-reward")


def test_tuning_picks_each_methods_best_candidate_on_the_validation_problems_only():
    """``tune``: five candidates per method, scored on the tune seeds' own problems; the test
    seeds train the best one (the same runs ``evaluate_run`` makes with it); a test seed among
    the tune seeds is refused."""
    from aihf.experiments.bandit import candidates, evaluate_run

    setting = ToySetting("low-quality-demos", 100, 100, demo_temperature=8.0)
    config = ToyConfig(num_prompts=60, num_eval_prompts=60, iterations=60, seeds=[0], tune=True,
                       tune_seeds=[100, 101], settings=[setting])
    results = run(config, progress=False)
    for method, entry in results["settings"]["low-quality-demos"].items():
        options = {c.label: c for c in candidates(method, config)}
        assert set(entry["validation"]) == set(options) and len(options) == 5
        assert entry["chosen"] == max(entry["validation"], key=entry["validation"].get)
        chosen = options[entry["chosen"]]
        assert entry["runs"] == [evaluate_run(config, make_problem(config, setting, 0), chosen, 0, method)]
        value = sum(evaluate_run(config, make_problem(config, setting, s), chosen, s, method)["regularised_value"]
                    for s in (100, 101)) / 2
        assert entry["validation"][entry["chosen"]] == pytest.approx(value)
    assert [c.w_pref for c in candidates("aihf", config)] == [0.1, 0.3, 1.0, 3.0, 10.0]
    assert [c.reward_lr for c in candidates("ml-irl", config)] == pytest.approx([0.01, 0.025, 0.05, 0.1, 0.25])
    assert candidates("aihf", ToyConfig())[0].label == "default"
    with pytest.raises(ValueError, match="share a seed"):
        ToyConfig(tune=True, seeds=[0, 100])


def test_every_committed_toy_table_is_its_results_json():
    """docs/results/toy-*/results.md is ``results_table`` of the results.json beside it."""
    from pathlib import Path

    from aihf.experiments.bandit import results_table

    results_dir = Path(__file__).resolve().parents[1] / "docs" / "results"
    folders = sorted([*results_dir.glob("toy-*/results.json"), *results_dir.glob("toy-*/*/results.json")])
    assert len(folders) >= 22
    for path in folders:
        results = json.loads(path.read_text(encoding="utf-8"))
        assert results_table(results) + "\n" == (path.parent / "results.md").read_text(encoding="utf-8"), path


def test_aihf_dpo_gradient_is_algorithm_ones_at_the_exact_policy():
    """On the policy family pi_theta ∝ pi_ref exp(theta . phi / beta) the implicit reward is
    theta . phi up to a per-prompt constant, so AIHF-DPO's gradient (w_D, w_P) is the gradient of
    Algorithm 1's reward loss (linear demonstration term, no L2) with weights (w_D / beta, w_P) when its
    samples are replaced by their exact expectation under pi_theta (docs/method.md section 4)."""
    from aihf.experiments.bandit import policy_logprobs
    from aihf.objective import aihf_dpo_loss, aihf_reward_loss

    config = ToyConfig()
    problem = make_problem(config, ToySetting("s", 60, 50), seed=4)
    theta = torch.randn(config.feature_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    beta, w_demo, w_pref = config.beta, 0.7, 1.3
    demo_features = problem.features[problem.demo_prompts]  # (N_D, K, d)
    pref_features = problem.features[problem.pref_prompts]

    def pick(values: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        return values.gather(-1, responses[:, None])[:, 0]

    implicit = theta.clone().requires_grad_(True)
    log_ref = torch.full((len(problem.pref_prompts),), -math.log(config.num_responses), dtype=torch.float64)
    aihf_dpo_loss(
        pick(policy_logprobs(implicit, demo_features, beta), problem.demo_responses),
        pick(policy_logprobs(implicit, pref_features, beta), problem.pref_chosen),
        pick(policy_logprobs(implicit, pref_features, beta), problem.pref_rejected),
        log_ref, log_ref, beta, w_demo, w_pref,
    ).backward()

    explicit = theta.clone().requires_grad_(True)
    policy = torch.softmax(demo_features @ theta / beta, dim=-1)  # pi_theta, held fixed (Algorithm 1's samples)
    aihf_reward_loss(
        pick(demo_features @ explicit, problem.demo_responses),
        (policy * (demo_features @ explicit)).sum(-1),  # E_{y ~ pi_theta} r(x, y): the linear term's exact mean
        pick(pref_features @ explicit, problem.pref_chosen),
        pick(pref_features @ explicit, problem.pref_rejected),
        w_demo=w_demo / beta, w_pref=w_pref, demo_form="linear",
    ).backward()
    torch.testing.assert_close(implicit.grad, explicit.grad, rtol=1e-12, atol=1e-12)
    assert implicit.grad.norm() > 0.1


@pytest.mark.parametrize("method, demos, prefs", [("sft", 4000, 10), ("dpo", 10, 4000), ("aihf-dpo", 4000, 4000)])
def test_the_implicit_methods_recover_the_expert_policy(method, demos, prefs):
    """pi* is in the policy family (theta = theta*): SFT on its demonstrations and DPO on
    Bradley-Terry labels are each a maximum likelihood, so with enough data each recovers theta*
    and the expert's regularised value; the untrained policy (theta = 0) scores 0."""
    from aihf.experiments.bandit import METHODS, fit_policy

    config = ToyConfig(iterations=600, batch_size=256)
    problem = make_problem(config, ToySetting("s", demos, prefs), seed=2)
    weights = METHODS[method]
    theta, losses = fit_policy(problem, config, weights.w_demo, weights.w_pref, seed=2)
    assert (theta - problem.true_theta).norm() < 0.1 * problem.true_theta.norm()
    assert regularised_value(theta, problem, config.beta) > 0.99
    assert losses[-1] < losses[0]


def test_the_toy_runs_the_methods_it_is_given():
    """``methods`` chooses the rows (the three explicit ones by default, so committed runs stay
    what they were); an unknown method or preference form is refused."""
    config = ToyConfig(num_prompts=30, num_eval_prompts=30, iterations=5, seeds=[0], methods=["dpo", "aihf"],
                       settings=[ToySetting("s", 20, 20)])
    assert list(run(config, progress=False)["settings"]["s"]) == ["dpo", "aihf"]
    assert ToyConfig().methods == ["aihf", "ml-irl", "rlhf-reward"]
    with pytest.raises(ValueError, match="choose among"):
        ToyConfig(methods=["ppo"])
    with pytest.raises(ValueError, match="unknown preference form"):
        ToyConfig(preference_form="kto")
    with pytest.raises(ValueError, match="label_smoothing is for the sigmoid form"):
        ToyConfig(methods=["dpo"], preference_form="ipo", label_smoothing=0.1)
    assert ToyConfig(preference_form="ipo", label_smoothing=0.1).methods  # the explicit methods smooth their own


def test_the_committed_single_stage_pages_are_what_their_results_give():
    """docs/results/toy-{implicit-tuned,implicit-tuned-wide,self-play-tuned}/pairs.md and docs/results/toy-forms{,-beta}.md are
    scripts/toy_compare.py's pages of the committed runs (docs/results.md quotes them)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("toy_compare", root / "scripts" / "toy_compare.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = root / "docs" / "results"
    twins = [("aihf-dpo", "aihf"), ("dpo", "rlhf-reward"), ("sft", "ml-irl")]
    for folder in ("toy-implicit-tuned", "toy-implicit-tuned-wide"):
        page = script.pairs_page(results / folder, twins)
        assert page == (results / folder / "pairs.md").read_text(encoding="utf-8"), folder
    self_play = [("spin", "sft"), ("self-play-aihf", "aihf-dpo"), ("self-play-aihf", "spin")]
    page = script.pairs_page(results / "toy-self-play-tuned", self_play)
    assert page == (results / "toy-self-play-tuned" / "pairs.md").read_text(encoding="utf-8")
    page = script.pairs_page(results / "toy-self-play-start", [("self-play-aihf", "aihf-dpo")])
    assert page == (results / "toy-self-play-start" / "pairs.md").read_text(encoding="utf-8")
    forms = script.forms_page(results / "toy-forms", "sigmoid")
    assert forms == (results / "toy-forms.md").read_text(encoding="utf-8")
    assert "| ipo | 0.367 ± 0.021 | lr=0.05 | -0.594 ± 0.038 |" in forms
    own_beta = script.forms_page(results / "toy-forms-beta", "sigmoid")  # IPO and SPPO with their own beta
    assert own_beta == (results / "toy-forms-beta.md").read_text(encoding="utf-8")
    assert "| ipo | 0.969 ± 0.016 | lr=0.01,beta=0.06 | +0.007 ± 0.018 |" in own_beta
    assert "| nca_pair | 0.948 ± 0.030 | lr=0.01,beta=0.06 | -0.014 ± 0.021 |" in own_beta
    with pytest.raises(ValueError, match="no .*kto"):
        script.forms_page(results / "toy-forms", "kto")


def test_spin_on_the_toy_renews_its_iterate_and_reaches_the_expert():
    """SPIN (self-play, w_P = 0): at every round's first step the policy is the iterate, so the
    loss is log 2 (Self-Play-AIHF with w_P = 1: 2 log 2); its fixed point matches the
    demonstrations' feature means, which on pi*'s demonstrations is theta*: with a small step and
    60 rounds it ends within 5% of theta*."""
    from aihf.experiments.bandit import fit_policy

    config = ToyConfig(iterations=3000, batch_size=256, reward_lr=0.002)
    problem = make_problem(config, ToySetting("s", 4000, 4000), seed=2)
    theta, losses = fit_policy(problem, config, 1.0, 0.0, seed=2, self_play=True)
    assert [losses[step] for step in (0, 50, 100, 2950)] == pytest.approx([math.log(2)] * 4, abs=1e-7)  # float32 curve
    assert losses[1] != pytest.approx(math.log(2), abs=1e-6)
    assert (theta - problem.true_theta).norm() < 0.05 * problem.true_theta.norm()
    assert regularised_value(theta, problem, config.beta) > 0.99
    _, joint = fit_policy(problem, ToyConfig(iterations=101, batch_size=256), 1.0, 1.0, seed=2, self_play=True)
    assert [joint[step] for step in (0, 50, 100)] == pytest.approx([2 * math.log(2)] * 3, abs=1e-7)


def test_self_play_aihfs_preference_term_compounds_over_rounds():
    """Self-Play-AIHF's preference term has the iterate pi_t as its reference (docs/method.md
    section 4), so each round fits the Bradley-Terry log-odds again on top of pi_t: alone (w_D
    negligible), R rounds leave theta near R theta* in norm, pointing at theta*, not at theta*
    itself, which AIHF-DPO's fixed reference reaches, and so does Self-Play-AIHF with
    ``self_play_pref_reference: start``."""
    from aihf.experiments.bandit import fit_policy

    problem = make_problem(ToyConfig(), ToySetting("s", 10, 4000), seed=2)
    for rounds in (2, 6):
        config = ToyConfig(iterations=600, batch_size=256, steps_per_round=600 // rounds)
        theta, _ = fit_policy(problem, config, 1e-6, 1.0, seed=2, self_play=True)
        truth = problem.true_theta
        assert float(theta.norm() / truth.norm()) == pytest.approx(rounds, rel=0.15)
        assert float(theta @ truth / (theta.norm() * truth.norm())) > 0.999
    fixed, _ = fit_policy(problem, ToyConfig(iterations=600, batch_size=256), 1e-6, 1.0, seed=2)
    assert float(fixed.norm() / problem.true_theta.norm()) == pytest.approx(1.0, rel=0.1)
    start = ToyConfig(iterations=600, batch_size=256, steps_per_round=100, self_play_pref_reference="start")
    kept, _ = fit_policy(problem, start, 1e-6, 1.0, seed=2, self_play=True)  # the starting policy as reference
    assert float((kept - problem.true_theta).norm() / problem.true_theta.norm()) < 0.1
    with pytest.raises(ValueError, match="self_play_pref_reference must be"):
        ToyConfig(self_play_pref_reference="first")


def test_the_preference_beta_axis_sets_ipos_target_margin():
    """``preference_betas`` gives ``dpo`` a second tuning axis, the preference term's own beta (the policy
    family keeps ``beta``): IPO regresses every pair's margin onto 1 / (2 beta_IPO), a least-squares fit
    linear in that target, so halving beta_IPO about doubles the fitted theta (its direction the same);
    the other methods keep their one axis; a beta <= 0 and self-play are refused."""
    from aihf.experiments.bandit import candidates, fit_policy

    config = ToyConfig(methods=["dpo"], preference_form="ipo", iterations=2000, tune=True, preference_betas=[0.1, 1.0])
    labels = [c.label for c in candidates("dpo", config)]
    assert len(labels) == 10 and "lr=0.05,beta=0.1" in labels
    assert [c.pref_beta for c in candidates("sft", config)] == [None] * 5
    problem = make_problem(config, ToySetting("many-pairs", 200, 2000), 0)
    (wide, _), (narrow, _) = (fit_policy(problem, config, 0.0, 1.0, 0, 0.05, pref_beta=b) for b in (0.125, 0.25))
    assert float(wide.norm() / narrow.norm()) == pytest.approx(2.0, rel=0.15)
    assert float(wide @ narrow / (wide.norm() * narrow.norm())) > 0.95
    with pytest.raises(ValueError, match="preference_betas must be > 0"):
        ToyConfig(preference_betas=[0.0])
    with pytest.raises(ValueError, match="pref_beta is for the single-stage"):
        fit_policy(problem, config, 1.0, 0.0, 0, 0.05, self_play=True, pref_beta=0.1)
