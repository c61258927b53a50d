"""Correctness proof of ``aihf.objective`` (docs/method.md sections 2-5).

What is checked, and against what (never against the library's own expression):
  * float64 ``gradcheck`` on every loss and on ``sequence_logprobs`` (finite differences);
  * the reward-step gradient on a linear reward model against the analytic ascent
    direction g of docs/method.md section 3, computed in numpy;
  * the "exact gradient" claim of section 3 on a discrete problem where pi_theta is
    available in closed form (softmax of log pi_ref + r / beta);
  * the reductions of sections 2, 4 and 5 (bit-exact where they should be);
  * agreement with trl's own DPO (sigmoid) and IPO losses, by running trl's real
    ``DPOTrainer._compute_loss`` on a minimal trainer-like object;
  * ``sequence_logprobs`` against a token-by-token loop;
  * argument validation.
"""

from __future__ import annotations

import collections
import math
import types

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from aihf import objective as obj

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(*shape: int, seed: int, scale: float = 1.0, grad: bool = True) -> torch.Tensor:
    t = torch.randn(*shape, generator=_gen(seed), dtype=DT) * scale
    return t.requires_grad_(grad)


def _np_logsigmoid(z: np.ndarray) -> np.ndarray:
    # stable log sigma(z) = -log(1 + exp(-z))
    return -np.logaddexp(0.0, -z)


def _np_sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


# Unbalanced batches on purpose: demonstrations and preferences have different sizes.
ND, NP_ = 5, 3
SMOOTH_FORMS = tuple(form for form in obj.PREFERENCE_FORMS if form != "hinge")


# ====================================================================== 1. gradcheck


def _gc_cases():
    """(name, fn, inputs): every loss with float64 leaf inputs."""
    d, p = _rand(ND, seed=1), _rand(ND, seed=2)
    c, r = _rand(NP_, seed=3), _rand(NP_, seed=4)
    # log-prob-like inputs for the implicit-reward losses
    pc, pr, rc, rr = (_rand(NP_, seed=s, scale=3.0) for s in (5, 6, 7, 8))
    pd, pg, id_, ig = (_rand(ND, seed=s, scale=3.0) for s in (9, 10, 11, 12))
    m, m2 = _rand(NP_, seed=13, scale=2.0), _rand(NP_, seed=14, scale=2.0)
    m3 = _rand(NP_, seed=15, scale=2.0).detach()  # the reference's margin (aot): a constant
    cases = [
        ("bradley_terry", lambda a, b: obj.bradley_terry_loss(a, b), (c, r)),
        ("demo_linear", lambda a, b: obj.demonstration_reward_loss(a, b, "linear"), (d, p)),
        ("demo_logistic", lambda a, b: obj.demonstration_reward_loss(a, b, "logistic"), (d, p)),
    ]
    for form in ("linear", "logistic"):
        for l2 in (0.0, 0.3):
            cases.append(
                (
                    f"aihf_reward_{form}_l2={l2}",
                    lambda a, b, e, f, form=form, l2=l2: obj.aihf_reward_loss(
                        a, b, e, f, w_demo=0.7, w_pref=1.3, demo_form=form, reward_l2=l2
                    ),
                    (d, p, c, r),
                )
            )
    cases += [
        (
            "aihf_reward_demo_only_l2",
            lambda a, b: obj.aihf_reward_loss(a, b, None, None, w_demo=2.0, w_pref=0.0, reward_l2=0.1),
            (d, p),
        ),
        (
            "aihf_reward_pref_only_l2",
            lambda e, f: obj.aihf_reward_loss(None, None, e, f, w_demo=0.0, w_pref=0.5, reward_l2=0.1),
            (c, r),
        ),
        ("dpo_log_ratio_margin", lambda *a: obj.dpo_log_ratio_margin(*a), (pc, pr, rc, rr)),
        ("dpo", lambda *a: obj.dpo_loss(*a, beta=0.2), (pc, pr, rc, rr)),
        ("ipo", lambda *a: obj.ipo_loss(*a, beta=0.2), (pc, pr, rc, rr)),
        ("spin", lambda *a: obj.spin_loss(*a, beta=0.4), (pd, pg, id_, ig)),
    ]
    for form in SMOOTH_FORMS:  # hinge has a kink at beta h = 1
        epsilon = 0.1 if form == "exo_pair" else 0.0  # exo_pair's target (1 - epsilon, epsilon)
        cases.append(
            (f"preference_{form}", lambda x, y, form=form, eps=epsilon: obj.preference_loss(
                x, y, 0.3, obj.PreferenceTerm(form, eps), reference_margin=m3), (m, m2))
        )
    for form in ("sigmoid", "ipo", "nca_pair"):
        cases.append(
            (
                f"aihf_dpo_{form}",
                lambda a, b, e, f, g, form=form: obj.aihf_dpo_loss(
                    a, b, e, f, g, beta=0.2, w_demo=0.6, w_pref=1.4, preference=form
                ),
                (pd, pc, pr, rc, rr),
            )
        )
        cases.append(
            (
                f"self_play_aihf_{form}",
                lambda a, b, e, f, g, h, i, j, form=form: obj.self_play_aihf_loss(
                    a, b, e, f, g, h, i, j, beta=0.25, w_demo=0.8, w_pref=1.7, preference=form
                ),
                (pd, pg, id_, ig, pc, pr, rc, rr),
            )
        )
    return cases


_GC = _gc_cases()


@pytest.mark.parametrize("name,fn,inputs", _GC, ids=[c[0] for c in _GC])
def test_gradcheck_losses(name, fn, inputs):
    out = fn(*inputs)
    assert out.dtype == DT, f"{name} left float64: {out.dtype}"
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def _lm_batch(B=3, T=7, V=6, seed=0):
    """Random logits, ids and a response mask with a prompt and right padding per row."""
    logits = _rand(B, T, V, seed=seed, scale=2.0)
    ids = torch.randint(0, V, (B, T), generator=_gen(seed + 100))
    mask = torch.zeros(B, T, dtype=torch.long)
    # (prompt length, response length) per row; the rest is padding
    spans = [(2, 4), (3, 2), (1, T - 1)][:B]
    for b, (pl, rl) in enumerate(spans):
        mask[b, pl : pl + rl] = 1
    return logits, ids, mask


@pytest.mark.parametrize("average", [False, True])
def test_gradcheck_sequence_logprobs(average):
    logits, ids, mask = _lm_batch()
    out = obj.sequence_logprobs(logits, ids, mask, average=average)
    # float64 logits must give float64 log-probs (no silent downcast to float32)
    assert out.dtype == DT
    assert gradcheck(
        lambda x: obj.sequence_logprobs(x, ids, mask, average=average), (logits,), eps=1e-6, atol=1e-7
    )


def test_sequence_logprobs_low_precision_upcasts_to_float32():
    logits, ids, mask = _lm_batch()
    for dt in (torch.bfloat16, torch.float16, torch.float32):
        out = obj.sequence_logprobs(logits.detach().to(dt), ids, mask)
        assert out.dtype == torch.float32


# ============================================= 2. analytic gradient, linear reward model


def _linear_problem(seed: int, d: int = 4):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=d)
    phi = {k: rng.normal(size=(n, d)) for k, n in (("E", ND), ("pi", ND), ("w", NP_), ("l", NP_))}
    return theta, phi


def _linear_rewards(theta_np, phi):
    theta = torch.tensor(theta_np, dtype=DT, requires_grad=True)
    r = {k: torch.tensor(v, dtype=DT) @ theta for k, v in phi.items()}
    return theta, r


@pytest.mark.parametrize("w_demo,w_pref", [(1.0, 1.0), (0.3, 2.0), (2.5, 0.1), (1.0, 0.0), (0.0, 1.0)])
def test_aihf_reward_gradient_matches_method_section3(w_demo, w_pref):
    theta_np, phi = _linear_problem(seed=int(10 * w_demo + 100 * w_pref))
    theta, r = _linear_rewards(theta_np, phi)
    loss = obj.aihf_reward_loss(
        r["E"] if w_demo else None,
        r["pi"] if w_demo else None,
        r["w"] if w_pref else None,
        r["l"] if w_pref else None,
        w_demo=w_demo,
        w_pref=w_pref,
    )
    (grad,) = torch.autograd.grad(loss, theta)

    # g = w_D mean[phi_E - phi_pi] + w_P mean[(1 - sigma(r_w - r_l)) (phi_w - phi_l)]   (numpy)
    rw, rl = phi["w"] @ theta_np, phi["l"] @ theta_np
    g = w_demo * (phi["E"] - phi["pi"]).mean(0) + w_pref * (
        (1.0 - _np_sigmoid(rw - rl))[:, None] * (phi["w"] - phi["l"])
    ).mean(0)
    np.testing.assert_allclose(_np(grad), -g, rtol=1e-12, atol=1e-12)


def test_aihf_reward_gradient_with_reward_l2():
    w_demo, w_pref, lam = 0.8, 1.5, 0.25
    theta_np, phi = _linear_problem(seed=7)
    theta, r = _linear_rewards(theta_np, phi)
    loss = obj.aihf_reward_loss(r["E"], r["pi"], r["w"], r["l"], w_demo, w_pref, reward_l2=lam)
    (grad,) = torch.autograd.grad(loss, theta)

    rw, rl = phi["w"] @ theta_np, phi["l"] @ theta_np
    g = w_demo * (phi["E"] - phi["pi"]).mean(0) + w_pref * (
        (1.0 - _np_sigmoid(rw - rl))[:, None] * (phi["w"] - phi["l"])
    ).mean(0)
    # + lam * mean over all 2 ND + 2 NP rewards of r^2: gradient lam * 2/N * sum r_i phi_i
    all_phi = np.concatenate([phi["E"], phi["pi"], phi["w"], phi["l"]])
    all_r = all_phi @ theta_np
    l2_grad = lam * 2.0 / len(all_r) * (all_r[:, None] * all_phi).sum(0)
    np.testing.assert_allclose(_np(grad), -g + l2_grad, rtol=1e-12, atol=1e-12)
    # and the value of the penalty itself
    value = (
        -w_demo * (phi["E"] @ theta_np - phi["pi"] @ theta_np).mean()
        - w_pref * _np_logsigmoid(rw - rl).mean()
        + lam * (all_r**2).mean()
    )
    assert loss.item() == pytest.approx(value, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("w_demo,w_pref", [(1.0, 1.0), (0.4, 0.0), (2.0, 0.7)])
def test_logistic_demo_gradient_closed_form(w_demo, w_pref):
    theta_np, phi = _linear_problem(seed=3 + int(10 * w_demo))
    theta_np = theta_np * 2.0  # larger rewards: sigma visibly away from 1/2
    theta, r = _linear_rewards(theta_np, phi)
    loss = obj.aihf_reward_loss(
        r["E"], r["pi"], r["w"] if w_pref else None, r["l"] if w_pref else None,
        w_demo=w_demo, w_pref=w_pref, demo_form="logistic",
    )
    (grad,) = torch.autograd.grad(loss, theta)
    dE = phi["E"] @ theta_np - phi["pi"] @ theta_np
    rw, rl = phi["w"] @ theta_np, phi["l"] @ theta_np
    g = w_demo * ((1.0 - _np_sigmoid(dE))[:, None] * (phi["E"] - phi["pi"])).mean(0)
    if w_pref:
        g = g + w_pref * ((1.0 - _np_sigmoid(rw - rl))[:, None] * (phi["w"] - phi["l"])).mean(0)
    np.testing.assert_allclose(_np(grad), -g, rtol=1e-12, atol=1e-12)
    value = -w_demo * _np_logsigmoid(dE).mean() - (w_pref * _np_logsigmoid(rw - rl).mean() if w_pref else 0.0)
    assert loss.item() == pytest.approx(value, rel=1e-12, abs=1e-12)


# ====================================== 3. the "exact gradient" claim on a discrete problem


@pytest.mark.parametrize("beta", [0.1, 0.7, 3.0])
def test_exact_demonstration_gradient_discrete(beta):
    """One prompt, K candidates, pi_theta = softmax(log pi_ref + r / beta), r = Phi theta.

    grad_theta log pi_theta(y_E) = (1/beta) [phi(y_E) - E_{pi_theta} phi]
    = -(1/beta) grad of the linear demonstration loss with the policy sample replaced by the
    exact expectation under pi_theta (held fixed, as a sampling distribution is).
    """
    K, d = 7, 5
    rng = np.random.default_rng(int(beta * 1000))
    Phi = rng.normal(size=(K, d))
    theta_np = rng.normal(size=d)
    log_ref = rng.normal(size=K)
    log_ref = log_ref - np.logaddexp.reduce(log_ref)  # normalised pi_ref
    demos = np.array([2, 5, 2, 0])  # several demonstrations on the same prompt

    # autograd: log pi_theta(y_E) through the closed-form optimal policy
    theta = torch.tensor(theta_np, dtype=DT, requires_grad=True)
    r = torch.tensor(Phi, dtype=DT) @ theta
    log_pi = torch.log_softmax(torch.tensor(log_ref, dtype=DT) + r / beta, dim=0)
    (grad_loglik,) = torch.autograd.grad(log_pi[torch.tensor(demos)].mean(), theta)

    # numpy: pi_theta and the analytic gradient
    z = log_ref + Phi @ theta_np / beta
    p = np.exp(z - np.logaddexp.reduce(z))
    expected = (Phi[demos].mean(0) - p @ Phi) / beta
    np.testing.assert_allclose(_np(grad_loglik), expected, rtol=1e-10, atol=1e-12)

    # the library's linear demonstration loss with the exact expectation E_pi r (pi fixed)
    theta2 = torch.tensor(theta_np, dtype=DT, requires_grad=True)
    r2 = torch.tensor(Phi, dtype=DT) @ theta2
    expected_r = (torch.tensor(p, dtype=DT) * r2).sum()
    loss = obj.demonstration_reward_loss(r2[torch.tensor(demos)], expected_r.expand(len(demos)), "linear")
    (grad_loss,) = torch.autograd.grad(loss, theta2)
    np.testing.assert_allclose(_np(grad_loglik), -_np(grad_loss) / beta, rtol=1e-10, atol=1e-12)

    # and the Algorithm 1 loss (w_P = 0) gives the same direction
    theta3 = torch.tensor(theta_np, dtype=DT, requires_grad=True)
    r3 = torch.tensor(Phi, dtype=DT) @ theta3
    loss3 = obj.aihf_reward_loss(
        r3[torch.tensor(demos)], (torch.tensor(p, dtype=DT) * r3).sum().expand(len(demos)), None, None,
        w_demo=1.0, w_pref=0.0,
    )
    (grad3,) = torch.autograd.grad(loss3, theta3)
    np.testing.assert_allclose(_np(grad_loglik), -_np(grad3) / beta, rtol=1e-10, atol=1e-12)


def test_exact_demonstration_gradient_is_sample_average_in_expectation():
    """With y ~ pi_theta, the mean over every candidate weighted by pi equals the exact
    expectation: sampling every candidate in proportion to pi (a quadrature) reproduces it."""
    K, d, beta = 4, 3, 0.5
    rng = np.random.default_rng(11)
    Phi = rng.normal(size=(K, d))
    theta_np = rng.normal(size=d)
    log_ref = np.log(np.full(K, 1.0 / K))
    z = log_ref + Phi @ theta_np / beta
    p = np.exp(z - np.logaddexp.reduce(z))
    # a "sample" of N responses with counts exactly proportional to p (rounded): as N grows the
    # linear-loss gradient converges to the exact one; with N = 10^5 the error is O(K/N)
    N = 100_000
    counts = np.floor(p * N).astype(int)
    counts[0] += N - counts.sum()
    samples = np.repeat(np.arange(K), counts)
    y_E = 1
    theta = torch.tensor(theta_np, dtype=DT, requires_grad=True)
    r = torch.tensor(Phi, dtype=DT) @ theta
    loss = obj.demonstration_reward_loss(r[y_E].expand(N), r[torch.tensor(samples)], "linear")
    (g,) = torch.autograd.grad(loss, theta)
    expected = -(Phi[y_E] - p @ Phi)
    np.testing.assert_allclose(_np(g), expected, atol=1e-4 * K)


# =============================================================== 4. reductions


def _pref_logps(seed=20):
    return tuple(_rand(NP_, seed=seed + i, scale=4.0, grad=False) for i in range(4))


def _demo_logps(seed=30):
    return tuple(_rand(ND, seed=seed + i, scale=4.0, grad=False) for i in range(4))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reduction_w_demo_zero_is_bradley_terry(dtype):
    c, r = (_rand(NP_, seed=s, grad=False).to(dtype) for s in (1, 2))
    d, p = (_rand(ND, seed=s, grad=False).to(dtype) for s in (3, 4))
    bt = obj.bradley_terry_loss(c, r)
    assert torch.equal(obj.aihf_reward_loss(None, None, c, r, w_demo=0.0, w_pref=1.0), bt)
    # demonstration tensors are ignored when their weight is 0
    assert torch.equal(obj.aihf_reward_loss(d, p, c, r, w_demo=0.0, w_pref=1.0), bt)
    assert torch.equal(obj.aihf_reward_loss(None, None, c, r, w_demo=0.0, w_pref=2.5), 2.5 * bt)
    # independent value: -mean log sigma(r_w - r_l)
    assert bt.item() == pytest.approx(-_np_logsigmoid(_np(c) - _np(r)).mean(), rel=1e-6)


@pytest.mark.parametrize("form", ["linear", "logistic"])
def test_reduction_w_pref_zero_is_ml_irl(form):
    d, p = (_rand(ND, seed=s, grad=False) for s in (3, 4))
    c, r = (_rand(NP_, seed=s, grad=False) for s in (1, 2))
    demo = obj.demonstration_reward_loss(d, p, form)
    assert torch.equal(obj.aihf_reward_loss(d, p, None, None, w_demo=1.0, w_pref=0.0, demo_form=form), demo)
    assert torch.equal(obj.aihf_reward_loss(d, p, c, r, w_demo=1.0, w_pref=0.0, demo_form=form), demo)
    diff = _np(d) - _np(p)
    expected = -diff.mean() if form == "linear" else -_np_logsigmoid(diff).mean()
    assert demo.item() == pytest.approx(expected, rel=1e-12)


def test_linear_demo_term_takes_batches_of_different_sizes_as_ml_irl_does():
    d, p = _rand(ND, seed=3, grad=True), _rand(ND + 5, seed=4, grad=True)
    loss = obj.demonstration_reward_loss(d, p, "linear")
    assert loss.item() == pytest.approx(-(_np(d).mean() - _np(p).mean()), rel=1e-12)
    loss.backward()  # every demonstration pulls up by 1/|D|, every sample down by 1/|samples|
    assert torch.allclose(d.grad, torch.full_like(d, -1.0 / ND)) and torch.allclose(p.grad, torch.full_like(p, 1.0 / (ND + 5)))
    with pytest.raises(ValueError, match="pairs each demonstration"):
        obj.demonstration_reward_loss(d, p, "logistic")


def test_aihf_reward_loss_is_weighted_sum():
    d, p = (_rand(ND, seed=s, grad=False) for s in (3, 4))
    c, r = (_rand(NP_, seed=s, grad=False) for s in (1, 2))
    expected = -0.3 * (_np(d) - _np(p)).mean() - 1.7 * _np_logsigmoid(_np(c) - _np(r)).mean()
    assert obj.aihf_reward_loss(d, p, c, r, 0.3, 1.7).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_reduction_self_play_w_pref_zero_is_spin(beta):
    pd, pg, id_, ig = _demo_logps()
    spin = obj.spin_loss(pd, pg, id_, ig, beta)
    assert torch.equal(
        obj.self_play_aihf_loss(pd, pg, id_, ig, None, None, None, None, beta, w_demo=1.0, w_pref=0.0), spin
    )
    # independent value of SPIN: y_E is the winner, y' ~ pi_t the loser, pi_t the reference
    h = (_np(pd) - _np(id_)) - (_np(pg) - _np(ig))
    assert spin.item() == pytest.approx(-_np_logsigmoid(beta * h).mean(), rel=1e-12)


@pytest.mark.parametrize("form", ["sigmoid", "ipo"])
def test_self_play_aihf_is_weighted_sum(form):
    beta, wd, wp = 0.3, 0.6, 1.9
    pd, pg, id_, ig = _demo_logps()
    pc, pr, ic, ir = _pref_logps()
    loss = obj.self_play_aihf_loss(pd, pg, id_, ig, pc, pr, ic, ir, beta, wd, wp, form)
    hd = (_np(pd) - _np(id_)) - (_np(pg) - _np(ig))
    hp = (_np(pc) - _np(ic)) - (_np(pr) - _np(ir))
    pref = -_np_logsigmoid(beta * hp).mean() if form == "sigmoid" else ((hp - 1 / (2 * beta)) ** 2).mean()
    assert loss.item() == pytest.approx(-wd * _np_logsigmoid(beta * hd).mean() + wp * pref, rel=1e-12)
    # the preference-only reduction is DPO/IPO with pi_t as the reference
    pref_only = obj.self_play_aihf_loss(None, None, None, None, pc, pr, ic, ir, beta, 0.0, 1.0, form)
    ref_fn = obj.dpo_loss if form == "sigmoid" else obj.ipo_loss
    assert torch.equal(pref_only, ref_fn(pc, pr, ic, ir, beta))


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_reduction_aihf_dpo_w_demo_zero_is_dpo_and_ipo(beta):
    pc, pr, rc, rr = _pref_logps()
    pd = _rand(ND, seed=40, grad=False)
    dpo = obj.dpo_loss(pc, pr, rc, rr, beta)
    ipo = obj.ipo_loss(pc, pr, rc, rr, beta)
    assert torch.equal(obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, w_demo=0.0, w_pref=1.0), dpo)
    assert torch.equal(obj.aihf_dpo_loss(pd, pc, pr, rc, rr, beta, w_demo=0.0, w_pref=1.0), dpo)
    assert torch.equal(
        obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, w_demo=0.0, w_pref=1.0, preference="ipo"), ipo
    )
    h = (_np(pc) - _np(rc)) - (_np(pr) - _np(rr))
    assert dpo.item() == pytest.approx(-_np_logsigmoid(beta * h).mean(), rel=1e-12)
    assert ipo.item() == pytest.approx(((h - 1.0 / (2.0 * beta)) ** 2).mean(), rel=1e-12)


def test_aihf_dpo_demo_only_is_sft_and_weighted_sum():
    beta, wd, wp = 0.2, 0.7, 1.3
    pc, pr, rc, rr = _pref_logps()
    pd = _rand(ND, seed=40, grad=False)
    assert obj.aihf_dpo_loss(pd, None, None, None, None, beta, 1.0, 0.0).item() == pytest.approx(
        -_np(pd).mean(), rel=1e-12
    )
    h = (_np(pc) - _np(rc)) - (_np(pr) - _np(rr))
    expected = -wd * _np(pd).mean() - wp * _np_logsigmoid(beta * h).mean()
    assert obj.aihf_dpo_loss(pd, pc, pr, rc, rr, beta, wd, wp).item() == pytest.approx(expected, rel=1e-12)


def test_dpo_log_ratio_margin_and_preference_loss_values():
    pc, pr, rc, rr = _pref_logps()
    h = obj.dpo_log_ratio_margin(pc, pr, rc, rr)
    np.testing.assert_allclose(_np(h), (_np(pc) - _np(rc)) - (_np(pr) - _np(rr)), rtol=1e-12)
    # swapping chosen and rejected negates the margin
    assert torch.allclose(obj.dpo_log_ratio_margin(pr, pc, rr, rc), -h, rtol=0, atol=1e-12)


def test_losses_are_stable_for_extreme_margins():
    big = torch.tensor([1000.0, -1000.0], dtype=DT)
    zero = torch.zeros(2, dtype=DT)
    # -log sigma(-1000) = 1000, -log sigma(1000) = 0 (no inf/nan)
    assert obj.bradley_terry_loss(big, zero).item() == pytest.approx(500.0)
    assert obj.demonstration_reward_loss(big, zero, "logistic").item() == pytest.approx(500.0)
    assert obj.dpo_loss(big, zero, zero, zero, beta=1.0).item() == pytest.approx(500.0)
    assert torch.isfinite(obj.bradley_terry_loss(big.float(), zero.float()))


def test_preference_direction():
    """Raising the chosen reward lowers every preference loss (sign conventions)."""
    lo, hi = torch.tensor([0.0], dtype=DT), torch.tensor([1.0], dtype=DT)
    z = torch.zeros(1, dtype=DT)
    assert obj.bradley_terry_loss(hi, z) < obj.bradley_terry_loss(lo, z)
    assert obj.dpo_loss(hi, z, z, z, 0.5) < obj.dpo_loss(lo, z, z, z, 0.5)
    assert obj.demonstration_reward_loss(hi, z) < obj.demonstration_reward_loss(lo, z)
    # IPO pulls h toward 1/(2 beta) = 1, where it is 0
    assert obj.ipo_loss(hi, z, z, z, 0.5).item() == 0.0


# =============================================================== 5. agreement with trl


def fused_lm_output(logits: torch.Tensor, labels: torch.Tensor) -> types.SimpleNamespace:
    """What a trl fused-LM-head model returns (``FusedCausalLMOutput``): per-token log-probs of
    the next-token labels from ``logits``, zero where the label is -100."""
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    valid = target != -100
    tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(~valid, 0.0)
    zeros = torch.zeros_like(tok)
    return types.SimpleNamespace(
        log_probs=tok, entropy=zeros, mean_logits=zeros, is_top1=torch.zeros_like(valid), aux_loss=None,
        log_sum_sq_probs=torch.logsumexp(2.0 * logp, dim=-1),  # log sum_v p_v^2, as trl's chunked kernel
    )


class _FakeFusedLM(torch.nn.Module):
    """The smallest stand-in for a trl fused-LM-head model.

    ``model(input_ids=..., labels=..., fused_lm_head=True)`` returns per-token log-probs of the
    next-token labels, zero where the label is -100 (trl's ``FusedCausalLMOutput`` contract),
    computed here from a fixed logits tensor with log_softmax + gather.
    """

    is_gradient_checkpointing = False

    def __init__(self, logits: torch.Tensor, dtype: torch.dtype = DT):
        super().__init__()
        self.logits, self.dtype = logits, dtype

    def forward(self, input_ids, labels=None, fused_lm_head=False, **kwargs):
        assert fused_lm_head and labels is not None
        assert torch.equal(input_ids, self._ids), "trl passed other input_ids"
        return fused_lm_output(self.logits.to(self.dtype), labels)


def _trl_loss(loss_type: str | list[str], beta: float, policy_logits, ref_logits, ids, completion_mask,
              label_smoothing: float = 0.0, loss_weights: list[float] | None = None, discopop_tau: float = 0.05):
    """Run trl's real ``DPOTrainer._compute_loss`` on fixed logits."""
    policy, ref = _FakeFusedLM(policy_logits), _FakeFusedLM(ref_logits)
    policy._ids = ref._ids = ids
    return trl_dpo_loss(loss_type, beta, policy, ref, ids, completion_mask, label_smoothing=label_smoothing,
                        loss_weights=loss_weights, discopop_tau=discopop_tau)


def trl_dpo_loss(loss_type: str | list[str], beta: float, policy, ref, ids, completion_mask, attention_mask=None,
                 label_smoothing: float = 0.0, loss_weights: list[float] | None = None, discopop_tau: float = 0.05,
                 f_divergence: str = "reverse_kl", f_alpha: float = 1.0, ld_alpha: float | None = None,
                 use_weighting: bool = False):
    """Run trl's real ``DPOTrainer._compute_loss`` on a minimal trainer-like ``self``.

    ``policy`` and ``ref`` follow trl's fused-LM-head contract (``_FakeFusedLM``'s
    docstring); the batch is trl's layout, [chosen rows; rejected rows]. ``loss_type`` may be a
    list, trl's weighted sum of losses (``loss_weights``, 1 each by default). Also used by
    tests/test_lm_methods.py on real tiny models.
    """
    loss_types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer

    policy.train()
    fake_self = types.SimpleNamespace(
        model=policy,
        ref_model=ref,
        accelerator=types.SimpleNamespace(
            device=torch.device("cpu"), gather_for_metrics=lambda t: t, gather=lambda t: t
        ),
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=discopop_tau),
        aux_loss_enabled=False,
        ld_alpha=ld_alpha,
        precompute_ref_logps=False,
        f_divergence_type=f_divergence,
        f_alpha_divergence_coef=f_alpha,
        loss_types=loss_types,
        loss_weights=loss_weights or [1.0] * len(loss_types),
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=use_weighting,
        _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids) if attention_mask is None else attention_mask,
        "completion_mask": completion_mask,
    }
    return DPOTrainer._compute_loss(fake_self, policy, inputs, return_outputs=False)


def _pair_batch(B=4, T=9, V=11, seed=0):
    """trl's batch layout: [chosen rows; rejected rows], prompt then completion then padding."""
    g = _gen(seed)
    ids = torch.randint(0, V, (2 * B, T), generator=g)
    cm = torch.zeros(2 * B, T, dtype=torch.long)
    for row in range(2 * B):
        pl = int(torch.randint(1, 4, (1,), generator=g))  # prompt length >= 1
        cl = int(torch.randint(1, T - pl + 1, (1,), generator=g))  # completion length >= 1
        cm[row, pl : pl + cl] = 1
    pol = torch.randn(2 * B, T, V, generator=g, dtype=DT) * 2.0
    ref = torch.randn(2 * B, T, V, generator=g, dtype=DT) * 2.0
    return pol, ref, ids, cm


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_matches_trl_sigmoid(beta):
    pytest.importorskip("trl")
    pol, ref, ids, cm = _pair_batch(seed=int(beta * 10))
    expected = _trl_loss("sigmoid", beta, pol, ref, ids, cm)
    lp = obj.sequence_logprobs(pol, ids, cm)  # trl's DPO uses token-summed log-probs
    lr = obj.sequence_logprobs(ref, ids, cm)
    (pc, pr), (rc, rr) = lp.chunk(2), lr.chunk(2)
    ours = obj.dpo_loss(pc, pr, rc, rr, beta)
    assert ours.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    # AIHF-DPO with w_D = 0 agrees with trl too
    assert obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0).item() == pytest.approx(
        float(expected), rel=1e-10, abs=1e-12
    )


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_matches_trl_ipo(beta):
    """trl's IPO divides each completion's log-ratio by its number of completion tokens
    (token-averaged log-probs, see trl/trainer/dpo_trainer.py, loss_type == "ipo"), so our
    ipo_loss is fed token-mean log-probs (``sequence_logprobs(average=True)``) for policy and
    reference alike."""
    pytest.importorskip("trl")
    pol, ref, ids, cm = _pair_batch(seed=50 + int(beta * 10))
    expected = _trl_loss("ipo", beta, pol, ref, ids, cm)
    lp = obj.sequence_logprobs(pol, ids, cm, average=True)
    lr = obj.sequence_logprobs(ref, ids, cm, average=True)
    (pc, pr), (rc, rr) = lp.chunk(2), lr.chunk(2)
    ours = obj.ipo_loss(pc, pr, rc, rr, beta)
    assert ours.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    # summed log-probs would NOT match (the lengths differ across rows): the test can fail
    ps, rs = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    assert obj.ipo_loss(ps[0], ps[1], rs[0], rs[1], beta).item() != pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_gradient_matches_trl_ipo(beta):
    """The gradient with respect to the policy's logits, too: trl's loss.backward() against
    ours on token-mean log-probs (``MethodConfig.ipo_average``), float64, every logit."""
    pytest.importorskip("trl")
    pol, ref, ids, cm = _pair_batch(seed=70 + int(beta * 10))
    theirs_in = pol.clone().requires_grad_(True)
    _trl_loss("ipo", beta, theirs_in, ref, ids, cm).backward()
    ours_in = pol.clone().requires_grad_(True)
    (pc, pr), (rc, rr) = (
        obj.sequence_logprobs(ours_in, ids, cm, average=True).chunk(2),
        obj.sequence_logprobs(ref, ids, cm, average=True).chunk(2),
    )
    obj.ipo_loss(pc, pr, rc, rr, beta).backward()
    assert theirs_in.grad is not None and theirs_in.grad.abs().max() > 1e-3
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=1e-10, atol=1e-13)
    # the summed form's gradient is another one (lengths differ across rows)
    summed_in = pol.clone().requires_grad_(True)
    (sc, sr), (tc, tr) = obj.sequence_logprobs(summed_in, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    obj.ipo_loss(sc, sr, tc, tr, beta).backward()
    assert not torch.allclose(summed_in.grad, theirs_in.grad, rtol=1e-3, atol=1e-6)


# ====================================================== 6. sequence_logprobs vs a loop


def _loop_logprobs(logits, ids, mask, average):
    out = []
    for b in range(ids.shape[0]):
        total, n = 0.0, 0
        for t in range(1, ids.shape[1]):
            if mask[b, t]:
                lsm = torch.log_softmax(logits[b, t - 1].double(), dim=-1)
                total += float(lsm[ids[b, t]])
                n += 1
        out.append(total / n if (average and n) else total)
    return np.array(out)


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sequence_logprobs_matches_loop(average, dtype):
    B, T, V = 4, 8, 13
    g = _gen(5)
    logits = (torch.randn(B, T, V, generator=g, dtype=DT) * 3.0).to(dtype)
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.tensor(
        [
            [0, 0, 1, 1, 1, 0, 0, 0],  # prompt 2, response 3, padding
            [0, 1, 1, 1, 1, 1, 1, 1],  # prompt 1, response to the end
            [0, 0, 0, 0, 0, 0, 1, 0],  # one response token
            [0, 0, 0, 1, 1, 0, 0, 0],
        ]
    )
    got = obj.sequence_logprobs(logits, ids, mask, average=average)
    expected = _loop_logprobs(logits, ids, mask, average)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(_np(got), expected, rtol=tol, atol=tol)

    # prompt and padding really are masked: changing their ids / the logits that predict them
    # changes nothing
    ids2, logits2 = ids.clone(), logits.clone()
    shifted_mask = torch.zeros_like(mask)
    shifted_mask[:, :-1] = mask[:, 1:]  # logits at t predict token t+1
    ids2[mask == 0] = (ids2[mask == 0] + 1) % V
    logits2[(shifted_mask == 0)] += 5.0 * torch.randn(int((shifted_mask == 0).sum()), V, generator=g).to(dtype)
    assert torch.equal(obj.sequence_logprobs(logits2, ids2, mask, average=average), got)


def test_token_logprobs_matches_loop():
    logits, ids, _ = _lm_batch(B=2, T=5, V=4, seed=9)
    got = obj.token_logprobs(logits, ids)
    assert got.shape == (2, 4)
    for b in range(2):
        for t in range(4):
            lsm = torch.log_softmax(logits[b, t].detach(), -1)
            assert got[b, t].item() == pytest.approx(float(lsm[ids[b, t + 1]]), rel=1e-12, abs=1e-12)


def test_sequence_logprobs_empty_response_mean_is_zero():
    logits, ids, _ = _lm_batch(B=2, T=5, V=4)
    mask = torch.tensor([[0, 0, 0, 0, 0], [0, 1, 1, 0, 0]])
    out = obj.sequence_logprobs(logits, ids, mask, average=True).detach()
    assert torch.isfinite(out).all() and float(out[0]) == 0.0


@pytest.mark.parametrize(
    "logits_shape,ids_shape,mask_shape",
    [((2, 5, 4), (2, 6), (2, 6)), ((2, 5, 4), (3, 5), (3, 5)), ((2, 5, 4), (2, 5), (2, 4))],
)
def test_sequence_logprobs_shape_mismatch(logits_shape, ids_shape, mask_shape):
    with pytest.raises(ValueError, match="shape mismatch"):
        obj.sequence_logprobs(
            torch.zeros(logits_shape), torch.zeros(ids_shape, dtype=torch.long), torch.ones(mask_shape)
        )


# ============================================================= 7. validation errors


def _pref():
    return tuple(torch.zeros(NP_) for _ in range(4))


def _demo4():
    return tuple(torch.zeros(ND) for _ in range(4))


@pytest.mark.parametrize("w_demo,w_pref", [(-0.1, 1.0), (1.0, -1.0), (0.0, 0.0), (-1.0, -1.0)])
def test_bad_weights_raise(w_demo, w_pref):
    d = torch.zeros(ND)
    c = torch.zeros(NP_)
    with pytest.raises(ValueError, match="weights must be >= 0|both 0"):
        obj.aihf_reward_loss(d, d, c, c, w_demo=w_demo, w_pref=w_pref)
    with pytest.raises(ValueError, match="weights must be >= 0|both 0"):
        obj.aihf_dpo_loss(d, *_pref(), beta=0.1, w_demo=w_demo, w_pref=w_pref)
    with pytest.raises(ValueError, match="weights must be >= 0|both 0"):
        obj.self_play_aihf_loss(*_demo4(), *_pref(), beta=0.1, w_demo=w_demo, w_pref=w_pref)


@pytest.mark.parametrize("beta", [0.0, -0.5, float("nan")])
def test_bad_beta_raises(beta):
    m = torch.zeros(NP_)
    for form in obj.PREFERENCE_FORMS:
        with pytest.raises(ValueError, match="beta"):
            obj.preference_loss(m, m, beta, obj.PreferenceTerm(form, 0.1 if form == "exo_pair" else 0.0))
    with pytest.raises(ValueError, match="beta"):
        obj.dpo_loss(*_pref(), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        obj.ipo_loss(*_pref(), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        obj.spin_loss(*_demo4(), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        obj.aihf_dpo_loss(torch.zeros(ND), *_pref(), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        obj.self_play_aihf_loss(*_demo4(), *_pref(), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        obj.self_play_aihf_loss(*_demo4(), *_pref(), beta=beta, w_pref=0.0)


def test_unknown_forms_raise():
    z = torch.zeros(ND)
    with pytest.raises(ValueError, match="unknown demonstration form"):
        obj.demonstration_reward_loss(z, z, "hinge")
    with pytest.raises(ValueError, match="unknown demonstration form"):
        obj.aihf_reward_loss(z, z, None, None, w_demo=1.0, w_pref=0.0, demo_form="quadratic")
    with pytest.raises(ValueError, match="unknown preference form"):
        obj.preference_loss(z, z, 0.1, "squared_hinge")
    with pytest.raises(ValueError, match="unknown preference form"):
        obj.aihf_dpo_loss(None, *_pref(), beta=0.1, w_demo=0.0, preference="kto")
    with pytest.raises(ValueError, match="unknown preference form"):
        obj.self_play_aihf_loss(*_demo4(), *_pref(), beta=0.1, preference="ipo2")


def test_none_for_active_term_raises():
    d, c = torch.zeros(ND), torch.zeros(NP_)
    with pytest.raises(ValueError, match="reward_demo and reward_policy"):
        obj.aihf_reward_loss(d, None, c, c)
    with pytest.raises(ValueError, match="reward_demo and reward_policy"):
        obj.aihf_reward_loss(None, d, None, None, w_pref=0.0)
    with pytest.raises(ValueError, match="reward_chosen and reward_rejected"):
        obj.aihf_reward_loss(d, d, None, c)
    with pytest.raises(ValueError, match="reward_chosen and reward_rejected"):
        obj.aihf_reward_loss(None, None, c, None, w_demo=0.0)
    with pytest.raises(ValueError, match="policy_demo"):
        obj.aihf_dpo_loss(None, *_pref(), beta=0.1)
    pref = list(_pref())
    for i in range(4):
        args = pref.copy()
        args[i] = None
        with pytest.raises(ValueError, match="chosen and rejected"):
            obj.aihf_dpo_loss(d, *args, beta=0.1)
        with pytest.raises(ValueError, match="chosen and rejected"):
            obj.self_play_aihf_loss(*_demo4(), *args, beta=0.1)
        demo = list(_demo4())
        demo[i] = None
        with pytest.raises(ValueError, match="demonstrations and samples"):
            obj.self_play_aihf_loss(*demo, *_pref(), beta=0.1)


# ------------------------------------------------------------------ label smoothing (noisy labels)


@pytest.mark.parametrize("beta, epsilon", [(0.1, 0.1), (0.5, 0.25), (2.0, 0.4)])
def test_conservative_dpo_matches_trl_on_each_pair(beta, epsilon):
    """trl 1.16's sigmoid loss ignores ``label_smoothing``; its ``aot`` loss is the conservative
    form -(1 - eps) log sigma(beta d) - eps log sigma(-beta d) with d the sorted log-ratio
    differences, which for a batch of one pair is d = h. So trl's aot loss, pair by pair, is our
    DPO with label smoothing; AIHF-DPO and Self-Play-AIHF with w_D = 0 carry the same epsilon."""
    pytest.importorskip("trl")
    B = 4
    pol, ref, ids, cm = _pair_batch(B=B, seed=90 + int(beta * 10))
    per_pair = []
    for i in range(B):
        rows = [i, B + i]  # trl's layout for one pair: [chosen; rejected]
        per_pair.append(float(_trl_loss("aot", beta, pol[rows], ref[rows], ids[rows], cm[rows], epsilon)))
    expected = sum(per_pair) / B
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    assert obj.dpo_loss(pc, pr, rc, rr, beta, epsilon).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    smoothed = obj.PreferenceTerm("sigmoid", epsilon)
    assert obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, smoothed).item() == pytest.approx(
        expected, rel=1e-10, abs=1e-12)
    assert obj.self_play_aihf_loss(None, None, None, None, pc, pr, rc, rr, beta, 0.0, 1.0, smoothed).item() == (
        pytest.approx(expected, rel=1e-10, abs=1e-12))
    assert obj.dpo_loss(pc, pr, rc, rr, beta).item() != pytest.approx(expected, rel=1e-6)  # epsilon matters


def test_smoothed_bradley_terry_is_the_expected_log_likelihood_under_flipped_labels():
    """-(1 - eps) log sigma(d) - eps log sigma(-d) by hand; eps = 0 is the plain loss exactly; and
    its gradient in the reward difference is sigma(d) - (1 - eps), by hand and by gradcheck."""
    g = _gen(5)
    rw, rl = torch.randn(6, generator=g, dtype=DT), torch.randn(6, generator=g, dtype=DT)
    d, eps = rw - rl, 0.2
    by_hand = -((1 - eps) * torch.log(torch.sigmoid(d)) + eps * torch.log(torch.sigmoid(-d))).mean()
    assert obj.bradley_terry_loss(rw, rl, label_smoothing=eps).item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert obj.bradley_terry_loss(rw, rl, label_smoothing=0.0).item() == obj.bradley_terry_loss(rw, rl).item()
    assert obj.aihf_reward_loss(None, None, rw, rl, 0.0, 1.0, label_smoothing=eps).item() == pytest.approx(
        by_hand.item(), rel=1e-12)
    z = d.clone().requires_grad_(True)
    obj.smoothed_logsigmoid(z, eps).sum().neg().backward()
    torch.testing.assert_close(z.grad, torch.sigmoid(d) - (1 - eps))
    assert gradcheck(lambda t: obj.smoothed_logsigmoid(t, eps), (d.clone().requires_grad_(True),))


@pytest.mark.parametrize("epsilon", [0.05, 0.2, 0.35])
def test_a_free_margin_learns_the_log_odds_of_a_correct_label(epsilon):
    """With labels right with chance 1 - eps, the smoothed loss of a free reward margin z is least at
    z* = log((1 - eps) / eps), where plain Bradley-Terry would push z without bound: gradient
    descent from 0 finds it."""
    z = torch.zeros((), dtype=DT, requires_grad=True)
    optimizer = torch.optim.SGD([z], lr=1.0)
    for _ in range(500):
        optimizer.zero_grad()
        obj.bradley_terry_loss(z.reshape(1), torch.zeros(1, dtype=DT), label_smoothing=epsilon).backward()
        optimizer.step()
    assert z.item() == pytest.approx(np.log((1 - epsilon) / epsilon), abs=1e-6)


def test_label_smoothing_is_refused_outside_its_range_and_for_ipo():
    a, b = torch.ones(3, dtype=DT), torch.zeros(3, dtype=DT)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        obj.PreferenceTerm("sigmoid", 0.5)
    for form in set(obj.PREFERENCE_FORMS) - {*obj.LIKELIHOOD_FORMS, "exo_pair"}:
        with pytest.raises(ValueError, match="sigmoid form"):
            obj.PreferenceTerm(form, 0.1)
    with pytest.raises(ValueError, match="unknown label_noise"):
        obj.PreferenceTerm("sigmoid", 0.1, "symmetric")
    with pytest.raises(ValueError, match="exo_pair form needs label_smoothing"):
        obj.PreferenceTerm("exo_pair", 0.0)
    with pytest.raises(ValueError, match="label_smoothing must be in"):  # exo_pair's target needs epsilon < 1/2 too
        obj.PreferenceTerm("exo_pair", 0.5)
    with pytest.raises(ValueError, match="discopop_tau must be > 0"):
        obj.PreferenceTerm("discopop", discopop_tau=0.0)
    with pytest.raises(ValueError, match="unknown f_divergence"):
        obj.PreferenceTerm(f_divergence="hellinger")
    assert obj.preference_loss(a, b, 0.1, "ipo") == obj.preference_loss(a, b, 0.1, obj.PreferenceTerm("ipo"))


@pytest.mark.parametrize("beta, epsilon", [(0.1, 0.1), (0.5, 0.25), (2.0, 0.4)])
def test_robust_dpo_matches_trl_robust(beta, epsilon):
    """``label_noise='robust'`` is trl 1.16's ``robust`` loss (Chowdhury et al. 2024) on a whole
    batch, in DPO and in AIHF-DPO / Self-Play-AIHF with w_D = 0; and it differs from the
    conservative form at the same epsilon."""
    pytest.importorskip("trl")
    pol, ref, ids, cm = _pair_batch(B=4, seed=60 + int(beta * 10))
    expected = float(_trl_loss("robust", beta, pol, ref, ids, cm, epsilon))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    assert obj.dpo_loss(pc, pr, rc, rr, beta, epsilon, "robust").item() == pytest.approx(expected, rel=1e-10)
    robust = obj.PreferenceTerm("sigmoid", epsilon, "robust")
    assert obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, robust).item() == pytest.approx(
        expected, rel=1e-10)
    assert obj.self_play_aihf_loss(None, None, None, None, pc, pr, rc, rr, beta, 0.0, 1.0, robust).item() == (
        pytest.approx(expected, rel=1e-10))
    assert obj.dpo_loss(pc, pr, rc, rr, beta, epsilon).item() != pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("w_demo", [0.2, 1.0])
def test_aihf_dpo_on_the_chosen_responses_is_trls_rpo(w_demo):
    """trl's RPO, ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, w]``, is DPO plus w times
    the chosen responses' negative log-likelihood: AIHF-DPO with the chosen responses as its
    demonstrations and w_D = w. trl averages the sft term over all chosen tokens pooled, AIHF-DPO
    (``demo_average``) over each response's tokens and then over responses: equal when the
    chosen responses have one length, apart otherwise."""
    pytest.importorskip("trl")
    B, T, beta = 4, 9, 0.3
    pol, ref, ids, cm = _pair_batch(B=B, T=T, seed=81)
    expected = float(_trl_loss(["sigmoid", "sft"], beta, pol, ref, ids, cm, loss_weights=[1.0, w_demo]))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    demo = obj.sequence_logprobs(pol, ids, cm, average=True)[:B]
    assert obj.aihf_dpo_loss(demo, pc, pr, rc, rr, beta, w_demo, 1.0).item() != pytest.approx(expected, rel=1e-6)
    cm[:B] = 0
    cm[:B, 3:7] = 1  # every chosen response 4 tokens long
    expected = float(_trl_loss(["sigmoid", "sft"], beta, pol, ref, ids, cm, loss_weights=[1.0, w_demo]))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    demo = obj.sequence_logprobs(pol, ids, cm, average=True)[:B]
    assert obj.aihf_dpo_loss(demo, pc, pr, rc, rr, beta, w_demo, 1.0).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_hinge_form_matches_trl_hinge(beta):
    """``preference_form='hinge'`` is SLiC's max(0, 1 - beta h), trl 1.16's ``hinge`` loss, with
    the margin both inside and outside the hinge (beta 5 puts pairs past it)."""
    pytest.importorskip("trl")
    pol, ref, ids, cm = _pair_batch(B=4, seed=70 + int(beta * 10))
    expected = float(_trl_loss("hinge", beta, pol, ref, ids, cm))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    assert obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, "hinge").item() == pytest.approx(expected, rel=1e-10)
    assert obj.self_play_aihf_loss(None, None, None, None, pc, pr, rc, rr, beta, 0.0, 1.0, "hinge").item() == (
        pytest.approx(expected, rel=1e-10))
    margin = obj.dpo_log_ratio_margin(pc, pr, rc, rr)
    by_hand = torch.clamp(1 - beta * margin, min=0).mean()
    assert obj.preference_loss(pc - rc, pr - rr, beta, "hinge").item() == pytest.approx(by_hand.item(), rel=1e-12)


def test_robust_bradley_terry_is_unbiased_for_the_clean_label():
    """The robust form's expectation over a label flipped with chance eps is the clean log sigma(z),
    (1 - eps) f(z) + eps f(-z) = log sigma(z); it is concave in z, so its loss is convex (second
    derivative -sigma(z) sigma(-z), the clean log sigma's); eps = 0 is log sigma(z)."""
    z = torch.linspace(-8, 8, 41, dtype=DT, requires_grad=True)
    for eps in (0.05, 0.25, 0.45):
        f = lambda t: obj.smoothed_logsigmoid(t, eps, "robust")  # noqa: E731
        expected_over_flip = (1 - eps) * f(z) + eps * f(-z)
        torch.testing.assert_close(expected_over_flip, torch.nn.functional.logsigmoid(z), rtol=1e-12, atol=1e-12)
        (second,) = torch.autograd.grad(torch.autograd.grad(f(z).sum(), z, create_graph=True)[0].sum(), z)
        torch.testing.assert_close(second, -torch.sigmoid(z) * torch.sigmoid(-z), rtol=1e-10, atol=1e-12)
        assert gradcheck(f, (z.detach()[:7].clone().requires_grad_(True),))
    assert torch.equal(obj.smoothed_logsigmoid(z, 0.0, "robust"), torch.nn.functional.logsigmoid(z))


def test_robust_bradley_terry_recovers_the_true_reward_from_flipped_labels():
    """A linear reward r(x) = w.x, labels drawn from Bradley-Terry on the true w and then flipped
    with chance eps = 0.3 (the known answer: w_true). Fitted by full-batch L-BFGS (every loss here is
    convex in w), the robust loss recovers w_true, while the plain and the conservative losses
    recover a shrunken w (the noise is read as a flatter reward): plain BT's population optimum
    on these labels is w_true scaled well below 1."""
    g = _gen(11)
    n, eps, w_true = 40_000, 0.3, torch.tensor([1.5, -1.0], dtype=DT)
    features = torch.randn(n, 2, generator=g, dtype=DT) * 1.5  # x_w - x_l of each pair
    clean = torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(features @ w_true)
    flipped = torch.rand(n, generator=g, dtype=DT) < eps
    label = torch.where(clean ^ flipped, 1.0, -1.0).to(DT)  # +1: the first response won
    diffs = label[:, None] * features  # chosen minus rejected

    def fit(**noise) -> torch.Tensor:
        w = torch.zeros(2, dtype=DT, requires_grad=True)
        optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = obj.bradley_terry_loss(diffs @ w, torch.zeros(n, dtype=DT), **noise)
            loss.backward()
            return loss

        optimizer.step(closure)
        return w.detach()

    robust = fit(label_smoothing=eps, label_noise="robust")
    plain, conservative = fit(), fit(label_smoothing=eps)
    assert torch.linalg.norm(robust - w_true) / torch.linalg.norm(w_true) < 0.02  # docs/method.md: 0.7% off
    for shrunk, scale in ((plain, 0.21), (conservative, 0.08)):  # the scales docs/method.md gives
        assert float(torch.linalg.norm(shrunk) / torch.linalg.norm(w_true)) == pytest.approx(scale, abs=0.01)
        cosine = float(shrunk @ w_true / (torch.linalg.norm(shrunk) * torch.linalg.norm(w_true)))
        assert cosine > 0.99  # the direction is right; the scale is what the noise takes


TRL_PAIRWISE = ("exo_pair", "discopop", "nca_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down")


@pytest.mark.parametrize("beta", [0.1, 1.0, 4.0])
@pytest.mark.parametrize("form", TRL_PAIRWISE)
def test_pairwise_forms_match_trl(form, beta):
    """Each of trl 1.16's other pairwise losses, run by its real ``DPOTrainer._compute_loss`` on
    the same logits, equals ``preference_form=<the same name>`` in DPO, AIHF-DPO and Self-Play-AIHF
    with w_D = 0 (exo_pair at epsilon 0.05, discopop at tau 0.3, not the default 0.05). trl holds
    exo_pair's epsilon as a float32 tensor, so its log(1 - epsilon) and log(epsilon) carry float32
    rounding (1e-8 relative here); the float64 formula is checked in ``test_pairwise_forms_by_their_formulas``."""
    pytest.importorskip("trl")
    epsilon = 0.05 if form == "exo_pair" else 0.0
    rel = 1e-7 if form == "exo_pair" else 1e-10
    tau = 0.3
    term = obj.PreferenceTerm(form, epsilon, discopop_tau=tau)
    pol, ref, ids, cm = _pair_batch(B=4, seed=90 + int(beta * 10))
    expected = float(_trl_loss(form, beta, pol, ref, ids, cm, epsilon, discopop_tau=tau))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    assert obj.preference_loss(pc - rc, pr - rr, beta, term).item() == pytest.approx(expected, rel=rel)
    assert obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, term).item() == (
        pytest.approx(expected, rel=rel))
    assert obj.self_play_aihf_loss(None, None, None, None, pc, pr, rc, rr, beta, 0.0, 1.0, term).item() == (
        pytest.approx(expected, rel=rel))


def test_pairwise_forms_by_their_formulas():
    """Each form against its paper's formula written in numpy on a grid of log-ratios (a, b):
    the first six depend on the margin a - b only, the next five also on a itself, the AOT forms on the
    batch's sorted margins (aot: the policy's m + a - b against the reference's m) or sorted log-ratios."""
    a = np.linspace(-3.0, 3.0, 7)
    a, b = (x.ravel() for x in np.meshgrid(a, a[::-1] * 0.7))
    m = np.cos(np.arange(len(a)) * 1.7) * 2.0  # the reference's margin, log pi_ref(y_w|x) - log pi_ref(y_l|x)
    beta, eps, tau = 0.8, 0.1, 0.2
    z = beta * (a - b)
    sig, lsig = _np_sigmoid, _np_logsigmoid
    by_hand = {
        "sigmoid": -lsig(z),
        "sigmoid_norm": -lsig(z),  # on the token means the caller passes
        "ipo": (a - b - 1 / (2 * beta)) ** 2,
        "hinge": np.maximum(0.0, 1 - z),
        "exo_pair": sig(z) * np.log(sig(z) / (1 - eps)) + sig(-z) * np.log(sig(-z) / eps),
        "discopop": (1 - sig(z / tau)) * -lsig(z) + sig(z / tau) * np.exp(-z),
        "nca_pair": -lsig(beta * a) - 0.5 * lsig(-beta * a) - 0.5 * lsig(-beta * b),
        "bco_pair": -lsig(beta * a) - lsig(-beta * b),
        "sppo_hard": (a - 1 / (2 * beta)) ** 2 + (b + 1 / (2 * beta)) ** 2,
        "apo_zero": 1 - sig(beta * a) + sig(beta * b),
        "apo_down": sig(beta * a) + 1 - sig(z),
        "aot": -lsig(beta * (np.sort(m + a - b) - np.sort(m))),
        "aot_unpaired": -lsig(beta * (np.sort(a) - np.sort(b))),
    }
    assert set(by_hand) == set(obj.PREFERENCE_FORMS)
    ta, tb, tm = (torch.tensor(x, dtype=DT) for x in (a, b, m))
    shift = torch.linspace(0.5, 2.5, len(a), dtype=DT)  # one change of both log-ratios of a pair keeps its margin
    for form, expected in by_hand.items():
        term = obj.PreferenceTerm(form, eps if form == "exo_pair" else 0.0, discopop_tau=tau)
        assert obj.preference_loss(ta, tb, beta, term, reference_margin=tm).item() == pytest.approx(
            expected.mean(), rel=1e-12), form
        shifted = obj.preference_loss(ta + shift, tb + shift, beta, term, reference_margin=tm).item()
        margin_only = form in ("sigmoid", "sigmoid_norm", "ipo", "hinge", "exo_pair", "discopop", "aot")
        assert (shifted == pytest.approx(expected.mean(), rel=1e-12)) == margin_only, form


@pytest.mark.parametrize("beta", [0.1, 0.3, 1.0])
@pytest.mark.parametrize("epsilon", [0.0, 0.2])
@pytest.mark.parametrize("form", obj.BATCH_FORMS)
def test_aot_forms_match_trl(form, beta, epsilon):
    """trl 1.16's ``aot`` and ``aot_unpaired`` (its real ``DPOTrainer._compute_loss`` on the same logits, five
    pairs, ``label_smoothing`` in its conservative form) equal ``preference_form=<the same name>`` in DPO,
    AIHF-DPO and Self-Play-AIHF with w_D = 0. The loss is the batch's: the pairs' order does not move it, and it
    is not the mean of each pair's own loss (on one pair both forms are DPO's)."""
    pytest.importorskip("trl")
    term = obj.PreferenceTerm(form, epsilon)
    pol, ref, ids, cm = _pair_batch(B=5, seed=170)  # margins where softplus bends (at |beta h| >> 1 sorting
    # pairs moves the mean little: -log sigma is nearly linear there)
    expected = float(_trl_loss(form, beta, pol, ref, ids, cm, epsilon))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    sorted_apart = {"aot": (rc - rr + (pc - rc) - (pr - rr), rc - rr), "aot_unpaired": (pc - rc, pr - rr)}[form]
    assert not torch.equal(*(torch.argsort(x) for x in sorted_apart)), "the sorts should pair the rows otherwise"
    ours = obj.preference_loss(pc - rc, pr - rr, beta, term, reference_margin=rc - rr).item()
    assert ours == pytest.approx(expected, rel=1e-10)
    assert obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, term).item() == pytest.approx(expected, rel=1e-10)
    assert obj.self_play_aihf_loss(None, None, None, None, pc, pr, rc, rr, beta, 0.0, 1.0, term).item() == (
        pytest.approx(expected, rel=1e-10))
    order = torch.tensor([3, 0, 4, 1, 2])
    reordered = obj.aihf_dpo_loss(None, pc[order], pr[order], rc[order], rr[order], beta, 0.0, 1.0, term).item()
    assert reordered == pytest.approx(ours, rel=1e-12)
    each = [obj.aihf_dpo_loss(None, pc[i:i + 1], pr[i:i + 1], rc[i:i + 1], rr[i:i + 1], beta, 0.0, 1.0, term).item()
            for i in range(5)]
    dpo = obj.preference_loss(pc - rc, pr - rr, beta, obj.PreferenceTerm("sigmoid", epsilon)).item()
    assert np.mean(each) == pytest.approx(dpo, rel=1e-12) and ours != pytest.approx(dpo, rel=1e-2)


def test_aot_forms_refuse_what_they_cannot_read():
    """aot needs the reference's margin; neither AOT form takes WPO's pair weights (its i-th loss is no
    pair's), nor an f-divergence (trl refuses both too)."""
    x = torch.zeros(3, dtype=DT)
    with pytest.raises(ValueError, match="aot form needs reference_margin"):
        obj.preference_loss(x, x, 0.1, "aot")
    for form in obj.BATCH_FORMS:
        with pytest.raises(ValueError, match="no pair weights"):
            obj.preference_loss(x, x, 0.1, form, pair_weights=torch.ones(3, dtype=DT), reference_margin=x)
        with pytest.raises(ValueError, match="margin forms"):
            obj.PreferenceTerm(form, f_divergence="forward_kl")


def test_sppo_hard_is_least_at_its_two_targets():
    """SPPO (hard) regresses the chosen log-ratio to +1/(2 beta) and the rejected one to -1/(2 beta):
    gradient descent on the two log-ratios ends there, loss 0."""
    beta = 0.25
    ratios = torch.zeros(2, dtype=DT, requires_grad=True)
    optimizer = torch.optim.SGD([ratios], lr=0.2)
    for _ in range(200):
        optimizer.zero_grad()
        obj.preference_loss(ratios[:1], ratios[1:], beta, "sppo_hard").backward()
        optimizer.step()
    assert ratios.detach().tolist() == pytest.approx([2.0, -2.0], abs=1e-9)


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.3])
def test_discopop_slope_at_the_reference(tau):
    """discopop's derivative in z = beta h at z = 0 is (1 - log 2) / (4 tau) - 3/4 (by hand: the
    mixing weight sigma(z / tau) has slope 1 / (4 tau) there, the two components differ by
    log 2 - 1, and each has slope -1/2 and -1 at weight 1/2): positive below
    DISCOPOP_TAU_TURN = (1 - log 2) / 3, so descent lowers the margin of a pair at the reference;
    at trl's default tau = 0.05 the loss then has a local minimum at z = -0.12."""
    z = torch.zeros(1, dtype=DT, requires_grad=True)
    obj.preference_loss(z, torch.zeros(1, dtype=DT), 1.0, obj.PreferenceTerm("discopop", discopop_tau=tau)).backward()
    slope = (1 - np.log(2)) / (4 * tau) - 0.75
    assert z.grad.item() == pytest.approx(slope, rel=1e-12)
    assert (slope > 0) == (tau < obj.DISCOPOP_TAU_TURN)
    if tau == 0.05:
        grid = torch.linspace(-1.0, 1.0, 20001, dtype=DT)
        values = torch.stack([obj.preference_loss(g[None], torch.zeros(1, dtype=DT), 1.0, "discopop") for g in grid])
        inner = (values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])
        assert grid[1:-1][inner].tolist() == pytest.approx([-0.1186], abs=1e-4)


def _trl_f_loss(divergence: str, alpha: float, beta: float, loss_type: str, pol, ref, ids, cm):
    """trl's ``_compute_loss`` with its ``f_divergence_type`` (and alpha) set, in float32."""
    policy, reference = _FakeFusedLM(pol, torch.float32), _FakeFusedLM(ref, torch.float32)
    policy._ids = reference._ids = ids
    return trl_dpo_loss(loss_type, beta, policy, reference, ids, cm, f_divergence=divergence, f_alpha=alpha)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge"])
@pytest.mark.parametrize("divergence, alpha", [("forward_kl", 1.0), ("js_divergence", 1.0), ("alpha_divergence", 0.5),
                                                ("alpha_divergence", 1.5), ("alpha_divergence", 1.0)])
def test_f_divergences_match_trl(divergence, alpha, loss_type):
    """f-DPO: ``f_divergence`` (and ``f_alpha``) equal trl 1.16's ``f_divergence_type`` (and
    ``f_alpha_divergence_coef``) with the sigmoid and hinge losses, on identical float32 logits (trl's
    alpha divergence has no float64 path); alpha 1 is reverse KL, DPO."""
    pytest.importorskip("trl")
    beta = 0.5
    pol, ref, ids, cm = (t.float() if t.is_floating_point() else t for t in _pair_batch(B=4, seed=120))
    expected = float(_trl_f_loss(divergence, alpha, beta, loss_type, pol, ref, ids, cm))
    (pc, pr), (rc, rr) = obj.sequence_logprobs(pol, ids, cm).chunk(2), obj.sequence_logprobs(ref, ids, cm).chunk(2)
    ours = obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0,
                            obj.PreferenceTerm(loss_type, f_divergence=divergence, f_alpha=alpha))
    assert ours.item() == pytest.approx(expected, rel=1e-5)
    plain = obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, loss_type).item()
    assert (ours.item() == pytest.approx(plain, rel=1e-6)) == (divergence == "alpha_divergence" and alpha == 1.0)


def _ld_logprobs(logits, ids, completion_mask, alpha):
    """Each row's LD-DPO log-likelihood from ``objective.length_desensitized_weights``, the pair's shared
    length taken from the mask (rows [chosen; rejected])."""
    mask = completion_mask[:, 1:].to(logits.dtype)
    shared = torch.minimum(*mask.sum(-1).chunk(2)).repeat(2)
    return (obj.token_logprobs(logits, ids) * obj.length_desensitized_weights(mask, shared, alpha)).sum(-1)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_length_desensitized_logprobs_match_trl(alpha, loss_type):
    """LD-DPO: trl 1.16's ``ld_alpha`` (its ``_compute_loss`` on the same float64 logits, responses of
    different lengths) equals the preference loss on log-likelihoods weighted by
    ``length_desensitized_weights`` (for trl's ipo, divided by the response lengths, as ``ipo_average``);
    alpha 1 is the plain sum."""
    pytest.importorskip("trl")
    beta = 0.5
    pol, ref, ids, cm = _pair_batch(B=4, seed=130)
    assert len(set(cm.sum(-1).tolist())) > 2, "the responses should differ in length"
    policy, reference = _FakeFusedLM(pol), _FakeFusedLM(ref)
    policy._ids = reference._ids = ids
    expected = float(trl_dpo_loss(loss_type, beta, policy, reference, ids, cm, ld_alpha=alpha))
    per_token = cm[:, 1:].sum(-1).to(DT) if loss_type == "ipo" else torch.ones(len(cm), dtype=DT)  # trl's ipo: token means
    (pc, pr), (rc, rr) = ((_ld_logprobs(logits, ids, cm, alpha) / per_token).chunk(2) for logits in (pol, ref))
    assert obj.preference_loss(pc - rc, pr - rr, beta, loss_type).item() == pytest.approx(expected, rel=1e-10)
    (sc, sr), (qc, qr) = ((obj.sequence_logprobs(logits, ids, cm) / per_token).chunk(2) for logits in (pol, ref))
    summed = obj.preference_loss(sc - qc, sr - qr, beta, loss_type).item()
    assert (expected == pytest.approx(summed, rel=1e-10)) == (alpha == 1.0)


def test_token_log_sum_sq_probs_by_its_formula():
    """log sum_v softmax(l)_v^2, computed directly, at every position; float32 logits give float32."""
    logits = torch.randn(3, 5, 7, generator=_gen(140), dtype=DT) * 3.0
    direct = torch.log((torch.softmax(logits, -1) ** 2).sum(-1))
    torch.testing.assert_close(obj.token_log_sum_sq_probs(logits), direct, rtol=1e-12, atol=1e-12)
    assert obj.token_log_sum_sq_probs(logits.float()).dtype == torch.float32


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "nca_pair"])
def test_wpo_weights_match_trl(loss_type):
    """WPO: trl 1.16's ``use_weighting`` (its ``_compute_loss`` on the same float64 logits) equals the
    preference loss with ``pair_weights`` = w(y_w) w(y_l) from ``wpo_weights`` (for trl's ipo on token-mean
    log-ratios); the weights are constants (no gradient) and differ from 1, so the loss is not the plain one."""
    pytest.importorskip("trl")
    beta = 0.5
    pol, ref, ids, cm = _pair_batch(B=4, seed=150)
    policy, reference = _FakeFusedLM(pol), _FakeFusedLM(ref)
    policy._ids = reference._ids = ids
    expected = float(trl_dpo_loss(loss_type, beta, policy, reference, ids, cm, use_weighting=True))
    mask = cm[:, 1:]
    weights = obj.wpo_weights(obj.token_logprobs(pol, ids), obj.token_log_sum_sq_probs(pol[:, :-1]), mask)
    assert not weights.requires_grad and not torch.allclose(weights, torch.ones_like(weights))
    per_token = mask.sum(-1).to(DT) if loss_type == "ipo" else torch.ones(len(cm), dtype=DT)
    (pc, pr), (rc, rr) = ((obj.sequence_logprobs(x, ids, cm) / per_token).chunk(2) for x in (pol, ref))
    pair_weights = weights[:4] * weights[4:]
    ours = obj.aihf_dpo_loss(None, pc, pr, rc, rr, beta, 0.0, 1.0, loss_type, pair_weights)
    assert ours.item() == pytest.approx(expected, rel=1e-10)
    assert obj.preference_loss(pc - rc, pr - rr, beta, loss_type).item() != pytest.approx(expected, rel=1e-3)


def test_length_desensitized_weights_by_their_formula():
    """sum_t w_t log p_t = sum_{t <= l_p} log p_t + alpha sum_{t > l_p} log p_t over each response (l_p the
    pair's shared length; counted from the first response token, wherever the prompt ends); rows of no
    pair (l_p = inf) keep every token at 1; alpha outside [0, 1] and mismatched shapes are refused."""
    mask = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
    shared = torch.tensor([2.0, 2.0, math.inf])
    weights = obj.length_desensitized_weights(mask, shared, 0.25)
    expected = torch.tensor([[0, 1, 1, 0.25, 0.25, 0], [0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
    torch.testing.assert_close(weights, expected)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        obj.length_desensitized_weights(mask, shared, 1.5)
    with pytest.raises(ValueError, match="shape mismatch"):
        obj.length_desensitized_weights(mask, shared[:2], 0.5)


def test_f_divergence_scores_are_their_derivatives():
    """``f_divergence_score`` is f'(u) at u = exp(log_ratio), f'(u) taken by autograd of each
    divergence's generator f (Wang et al. 2023, table 1, in trl's alpha convention):
    reverse KL u log u, forward KL -log u, JS u log(2u / (1 + u)) + log(2 / (1 + u)) (which
    differ from f' by constants only where stated), alpha (u^alpha - alpha u + alpha - 1) /
    (alpha (alpha - 1))."""
    log_u = torch.linspace(-3.0, 3.0, 13, dtype=DT)
    generators = {
        "reverse_kl": lambda u: u * torch.log(u),
        "forward_kl": lambda u: -torch.log(u),
        "js_divergence": lambda u: u * torch.log(2 * u / (1 + u)) + torch.log(2 / (1 + u)),
        "alpha_divergence": lambda u: (u**0.4 - 0.4 * u + 0.4 - 1) / (0.4 * (0.4 - 1)),
    }
    offsets = {"reverse_kl": 1.0, "forward_kl": -1.0, "js_divergence": 0.0, "alpha_divergence": 0.0}
    for divergence, generator in generators.items():
        u = log_u.exp().requires_grad_(True)
        (derivative,) = torch.autograd.grad(generator(u).sum(), u)
        score = obj.f_divergence_score(log_u, divergence, 0.4)
        # a constant per divergence cancels in every margin a - b
        np.testing.assert_allclose(_np(derivative), _np(score) + offsets[divergence], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown f_divergence"):
        obj.f_divergence_score(log_u, "hellinger")
    with pytest.raises(ValueError, match="is for the margin forms"):
        obj.PreferenceTerm("nca_pair", f_divergence="forward_kl")
