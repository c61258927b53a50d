"""Every method learns the synthetic task of tests/test_lm_engine.py and trains exactly the
weights it should: every trainable tensor moves, every frozen one (reference, a fixed
reward model, an unused policy) stays bit-identical.

The right answer is known: after "review: the X was", " great" (demonstrated, preferred)
and not " terrible" (rejected). ``answer_margin`` = mean log pi(great|x) - log pi(terrible|x)
is about 0 at the start; each test asks for a margin of several nats (a probability ratio
in the tens or hundreds) within a few dozen steps. The RL methods start from a policy that
says " great" and " terrible" about equally often (SFT on both), as RLHF starts from SFT.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_lm_engine import SUBJECTS, answer_margin, data, loop, make_method
from test_objective import fused_lm_output

from aihf import objective
from aihf.data import Demonstration, Preference
from aihf.lm.batching import Encoder, collate
from aihf.lm.methods import RECIPES, ImplicitRewardMethod, MethodConfig
from aihf.lm.models import RewardModel
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.trainer import Trainer


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# Every reward loss depends on reward differences only (Bradley-Terry, and r(x, y_E) - r(x, y)):
# adding a constant to all rewards changes nothing, so the weights that only add a constant,
# the head's bias and the bias of the last layer norm (which feeds the linear head), get no
# gradient. Any change to them would be round-off amplified by Adam.
REWARD_OFFSETS = {"head.bias", "backbone.final_layer_norm.bias"}


def assert_all_changed(before: dict, module, what: str, exempt: set[str] = frozenset()) -> None:
    after = module.state_dict()
    same = [k for k, v in before.items() if k not in exempt and torch.equal(v, after[k])]
    assert not same, f"{what}: these weights did not change: {same}"


def assert_unchanged(before: dict, module, what: str) -> None:
    after = module.state_dict()
    moved = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not moved, f"{what}: these frozen weights changed: {moved}"


@torch.no_grad()
def reward_gap(reward, tokenizer) -> float:
    """Mean r(x, great) - r(x, terrible) over the training and held-out prompts."""
    _, prefs = data()
    encoder = Encoder(tokenizer, max_length=24, max_prompt_length=12)
    pairs = [encoder.preference(p) for split in prefs.values() for p in split]
    batch = collate([c for c, _ in pairs] + [r for _, r in pairs], tokenizer.pad_token_id)
    good, bad = reward(batch.input_ids, batch.attention_mask).chunk(2)
    return float((good - bad).mean())


def test_every_method_has_a_recipe_and_a_test():
    assert set(RECIPES) == {"sft", "reward", "rlhf", "dpo", "ipo", "spin", "aihf", "aihf-dpo", "self-play-aihf"}


# ------------------------------------------------------------------- implicit-reward methods


@pytest.mark.parametrize(
    ("name", "steps", "min_margin", "form"),
    [
        ("sft", 15, 4.0, {}),
        ("dpo", 15, 4.0, {}),
        ("dpo", 15, 4.0, {"preference_form": "hinge"}),  # SLiC: pushes beta h to 1, h to 10 nats
        ("dpo", 15, 4.0, {"label_smoothing": 0.2, "label_noise": "robust"}),
        *(("dpo", 15, 4.0, {"preference_form": form}) for form in ("nca_pair", "bco_pair", "sppo_hard", "apo_zero",
                                                                   "apo_down")),
        ("dpo", 15, 4.0, {"preference_form": "exo_pair", "label_smoothing": 1e-3}),
        ("dpo", 15, 4.0, {"preference_form": "discopop", "discopop_tau": 0.3}),  # tau 0.05: test_discopop_...
        ("dpo", 15, 4.0, {"preference_form": "sigmoid_norm"}),
        *(("dpo", 15, 4.0, {"preference_form": form}) for form in ("aot", "aot_unpaired")),
        *(("dpo", 15, 4.0, {"f_divergence": f}) for f in ("forward_kl", "js_divergence", "alpha_divergence")),
        ("dpo", 15, 4.0, {"f_divergence": "alpha_divergence", "f_alpha": 0.5}),
        ("dpo", 15, 4.0, {"reference_sync_steps": 5}),  # TR-DPO's hard reference update every 5 steps
        ("dpo", 15, 4.0, {"ld_alpha": 0.5}),  # LD-DPO
        ("dpo", 15, 4.0, {"wpo_weighting": True}),  # WPO
        ("aihf-dpo", 15, 4.0, {"ld_alpha": 0.5}),
        ("aihf-dpo", 15, 4.0, {"reference_sync_steps": 5}),
        ("dpo", 15, 4.0, {"reference_sync_steps": 5, "reference_mixup_alpha": 0.6}),  # TR-DPO's soft update
        ("ipo", 15, 3.0, {}),  # IPO's target margin is 1 / (2 beta) = 5 nats: it stops there
        ("aihf-dpo", 15, 4.0, {}),
        ("spin", 15, 4.0, {}),
        ("self-play-aihf", 15, 4.0, {}),
    ],
)
def test_implicit_reward_method_learns_the_right_answer(tmp_path, name, steps, min_margin, form):
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    start, before = answer_margin(policy, tok), snapshot(policy)
    assert abs(start) < 1.0
    config = MethodConfig(beta=0.1, max_new_tokens=3, steps_per_round=5, **form)
    result = Trainer(make_method(name, tok, policy, config=config), loop(tmp_path, max_steps=steps, eval_every=steps)).fit()
    assert_all_changed(before, policy, name)
    margin = answer_margin(policy, tok)
    assert margin > min_margin, f"{name}: margin {start:.2f} -> {margin:.2f}"
    assert result.evaluations and all(torch.isfinite(torch.tensor(v)) for v in result.evaluations[-1].values())
    if RECIPES[name].pref_term:
        assert result.evaluations[-1]["eval/pref_accuracy"] == 1.0


@pytest.mark.parametrize("name", ["dpo", "ipo", "aihf-dpo"])
def test_dpo_type_methods_renew_their_reference_every_round(tmp_path, name):
    """With ``reference_sync_steps`` the policy at every round's first step is the reference (TR-DPO's
    hard update): the preference term is at its value for h = 0 there (DPO: log 2; IPO: 1/(4 beta^2)),
    and not in between; without it the reference stays the starting policy."""
    beta = 0.5
    at_reference = 1.0 / (4 * beta**2) if name == "ipo" else math.log(2.0)
    config = MethodConfig(beta=beta, reference_sync_steps=3, w_demo=1e-9)  # aihf-dpo's demonstration term negligible
    result = Trainer(make_method(name, config=config), loop(tmp_path, max_steps=7)).fit()
    losses = [h["loss"] for h in result.history]
    for step in (0, 3, 6):
        assert losses[step] == pytest.approx(at_reference, abs=1e-5), (step, losses)
    assert all(abs(losses[s] - at_reference) > 1e-3 for s in (1, 2, 4, 5))
    once = Trainer(make_method(name, config=dataclasses.replace(config, reference_sync_steps=None)),
                   loop(tmp_path / "once", max_steps=7)).fit()
    assert abs(once.history[3]["loss"] - at_reference) > 1e-3


def test_soft_reference_update_mixes_the_weights(tmp_path):
    """``reference_mixup_alpha`` alpha (TR-DPO's soft update): the reference log-probs of the second round are
    those of the weights alpha theta_3 + (1 - alpha) theta_0, theta_3 the policy after 3 steps (a run stopped
    there, the same seed) and theta_0 the start, computed here on a separate model; the policy keeps its own
    weights; alpha 1 is the hard update (the policy itself); the soft update is refused under FSDP and ZeRO-3."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from aihf.config import ConfigError

    alpha, tok = 0.3, tiny_tokenizer()
    config = MethodConfig(beta=0.5, reference_sync_steps=3, reference_mixup_alpha=alpha)
    start = tiny_causal_lm(tok)
    stopped = tiny_causal_lm(tok)
    Trainer(make_method("dpo", tok, stopped, config=config), loop(tmp_path / "three", max_steps=3)).fit()
    policy = tiny_causal_lm(tok)
    method = make_method("dpo", tok, policy, config=config)
    Trainer(method, loop(tmp_path / "four", max_steps=4)).fit()  # round 1 starts at step 3
    mixed = tiny_causal_lm(tok)
    with torch.no_grad():
        for p, q, s in zip(mixed.parameters(), stopped.parameters(), start.parameters()):
            p.copy_(alpha * q + (1 - alpha) * s)
    mixed.eval()
    chosen = [pair[0] for pair in method.pairs["train"]]
    with torch.no_grad():
        expected = method.logps(mixed, chosen).total
    torch.testing.assert_close(method.reference["train.chosen"], expected.float(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        own = method.logps(policy.eval(), chosen).total
    assert not torch.allclose(own.float(), expected.float(), atol=1e-3)  # the policy got its weights back
    assert set(method.reference_weights) == {n for n, p in policy.named_parameters() if p.requires_grad}
    hard = make_method("dpo", tok, tiny_causal_lm(tok), config=dataclasses.replace(config, reference_mixup_alpha=1.0))
    assert not hard.soft_reference
    kind = SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(deepspeed_plugin=None))
    with pytest.raises(ConfigError, match="reference_mixup_alpha < 1 mixes"):
        method.bind(kind)


@pytest.mark.parametrize("reference", ["iterate", "start"])
def test_self_play_aihfs_preference_reference(tmp_path, reference):
    """Self-Play-AIHF renews the SPIN term's reference every round; its preference term's too with
    ``self_play_pref_reference: iterate`` (the derived form: log 2 again at every round start,
    w_D negligible here) and not with ``start`` (the starting policy stays its reference)."""
    config = MethodConfig(beta=0.5, max_new_tokens=3, steps_per_round=3, w_demo=1e-9,
                          self_play_pref_reference=reference)
    losses = [h["loss"] for h in Trainer(make_method("self-play-aihf", config=config), loop(tmp_path, max_steps=7)).fit().history]
    assert losses[0] == pytest.approx(math.log(2.0), abs=1e-5)
    at_round_starts = [abs(losses[s] - math.log(2.0)) < 1e-5 for s in (3, 6)]
    assert at_round_starts == ([True, True] if reference == "iterate" else [False, False])
    assert "self_play_pref_reference='start'" in RECIPES["dpo"].ignored(MethodConfig(self_play_pref_reference="start"))


def test_discopop_at_trls_default_tau_lowers_the_right_answer(tmp_path, caplog):
    """At tau = 0.05 (trl's default) discopop's slope at h = 0 points down (objective's
    ``test_discopop_slope_at_the_reference``): DPO with it, started at the reference, ends with the
    right answer less likely than it began, where tau = 0.3 learns it (the parametrised test above);
    the method says so when it is built."""
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    start = answer_margin(policy, tok)
    config = MethodConfig(beta=0.1, preference_form="discopop")
    with caplog.at_level("WARNING"):
        method = make_method("dpo", tok, policy, config=config)
    assert "discopop_tau=0.05 is below (1 - log 2) / 3" in caplog.text
    Trainer(method, loop(tmp_path, max_steps=15)).fit()
    assert answer_margin(policy, tok) < start - 0.5


def test_self_play_reference_is_the_previous_iterate(tmp_path):
    """At the first step of every round the policy equals pi_t, so the SPIN loss is log 2."""
    result = Trainer(
        make_method("spin", config=MethodConfig(max_new_tokens=3, steps_per_round=3)),
        loop(tmp_path, max_steps=7),
    ).fit()
    losses = [h["loss"] for h in result.history]
    for step in (0, 3, 6):
        assert losses[step] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    assert all(abs(losses[s] - 0.6931) > 1e-3 for s in (1, 2, 4, 5))


# ------------------------------------------------------------------- explicit-reward methods


@pytest.fixture(scope="module")
def undecided_policy(tmp_path_factory):
    """Weights of a policy that answers " great" or " terrible" about equally often."""
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    both = [Demonstration(f"review: the {s} was", a) for s in SUBJECTS for a in (" great", " terrible")]
    method = make_method("sft", tok, policy)
    method.demos["train"] = [method.encoder.demonstration(d) for d in both]
    Trainer(method, loop(tmp_path_factory.mktemp("warm"), max_steps=30, micro_batch_size=8)).fit()
    assert abs(answer_margin(policy, tok)) < 1.0
    return snapshot(policy)


def test_reward_model_learns_the_preferences(tmp_path):
    tok = tiny_tokenizer()
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    before = snapshot(reward)
    result = Trainer(make_method("reward", tok, reward=reward), loop(tmp_path, max_steps=12, eval_every=12)).fit()
    assert_all_changed(before, reward, "reward", exempt=REWARD_OFFSETS)
    assert reward_gap(reward, tok) > 3.0
    assert result.evaluations[-1]["eval/reward_accuracy"] == 1.0


def test_rlhf_raises_the_right_answer_with_a_frozen_reward(tmp_path, undecided_policy):
    tok = tiny_tokenizer()
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    Trainer(make_method("reward", tok, reward=reward), loop(tmp_path / "reward", max_steps=8)).fit()
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(undecided_policy)
    method = make_method("rlhf", tok, policy, reward, MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05))
    frozen_reward, frozen_reference, before = snapshot(reward), snapshot(method.reference_model), snapshot(policy)
    Trainer(method, loop(tmp_path / "policy", max_steps=15)).fit()
    assert_all_changed(before, policy, "rlhf policy")
    assert_unchanged(frozen_reward, reward, "rlhf reward model")
    assert_unchanged(frozen_reference, method.reference_model, "rlhf reference")
    assert answer_margin(policy, tok) > 2.0


def test_aihf_learns_reward_and_policy_jointly(tmp_path, undecided_policy):
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(undecided_policy)
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    method = make_method("aihf", tok, policy, reward, MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05))
    frozen_reference, policy_before, reward_before = snapshot(method.reference_model), snapshot(policy), snapshot(reward)
    # two time scales: the reward moves faster than the policy (reward_learning_rate)
    result = Trainer(method, loop(tmp_path, max_steps=15, eval_every=15, reward_learning_rate=1e-2)).fit()
    assert_all_changed(policy_before, policy, "aihf policy")
    assert_all_changed(reward_before, reward, "aihf reward model", exempt=REWARD_OFFSETS)
    assert_unchanged(frozen_reference, method.reference_model, "aihf reference")
    assert reward_gap(reward, tok) > 1.0
    assert answer_margin(policy, tok) > 2.0
    assert result.evaluations[-1]["eval/reward_accuracy"] == 1.0


# ------------------------------------------------------------------ the RLOO policy step


def test_rloo_advantage_is_reward_minus_the_mean_of_the_others():
    rewards = torch.tensor([1.0, 2.0, 6.0, -1.0, 0.0, 4.0])
    advantages = objective.rloo_advantages(rewards, k=3)
    for group in range(2):
        r = rewards[group * 3 : group * 3 + 3]
        for j in range(3):
            others = torch.cat([r[:j], r[j + 1 :]])
            assert advantages[group * 3 + j].item() == pytest.approx((r[j] - others.mean()).item())
    with pytest.raises(ValueError, match="k >= 2"):
        objective.rloo_advantages(rewards, k=1)
    with pytest.raises(ValueError, match="whole number"):
        objective.rloo_advantages(rewards, k=4)


def test_kl_penalised_reinforce_gradient():
    logp = torch.tensor([-1.0, -2.0, -3.0, -4.0], requires_grad=True)
    reference = torch.tensor([-1.5, -2.0, -2.0, -4.0])
    reward = torch.tensor([1.0, 0.0, 0.0, 1.0])
    penalised = objective.kl_penalized_reward(reward, logp, reference, beta=0.5)
    torch.testing.assert_close(penalised, torch.tensor([0.75, 0.0, 0.5, 1.0]))
    assert not penalised.requires_grad
    advantages = objective.rloo_advantages(penalised, k=2)
    objective.policy_gradient_loss(logp, advantages).backward()
    torch.testing.assert_close(logp.grad, -advantages / 4)


def test_lora_policy_trains_only_its_adapters(tmp_path):
    """With LoRA the base weights are frozen: DPO moves the adapters and nothing else."""
    from aihf.lm.models import LoraSettings, apply_lora

    tok = tiny_tokenizer()
    policy = apply_lora(tiny_causal_lm(tok), LoraSettings(r=4, alpha=8, dropout=0.0))
    before = snapshot(policy)
    Trainer(make_method("dpo", tok, policy), loop(tmp_path, max_steps=3)).fit()
    adapters = {k for k in before if "lora_" in k}
    assert adapters
    assert_all_changed({k: before[k] for k in adapters}, policy, "LoRA adapters")
    assert_unchanged({k: v for k, v in before.items() if k not in adapters}, policy, "LoRA base")


# ------------------------------------------------------------- IPO against trl (issue 13)


class _FusedHead(torch.nn.Module):
    """A causal LM behind trl's fused-LM-head contract (see tests/test_objective.py
    ``_FakeFusedLM``): per-token log-probs of the next-token labels, 0 where the label is -100."""

    is_gradient_checkpointing = False

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
        assert fused_lm_head and labels is not None
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return fused_lm_output(logits.float(), labels)


# responses of different lengths on purpose: the summed and the token-mean forms differ only then
IPO_PAIRS = [
    Preference("review: the movie was", " great", " terrible and the plot was dull"),
    Preference("review: the film was", " great fun from start to end", " terrible"),
    Preference("review: the cast was", " great", " bad"),
    Preference("review: the story was", " great and moving", " terrible, slow and long"),
]


def _at_a_moved_policy(tmp_path, ipo_average: bool, beta: float, form: str = "ipo", ld_alpha: float | None = None,
                       padding_free: bool = False, wpo: bool = False, logprob_chunk: int | None = None,
                       pairs: list[Preference] = IPO_PAIRS):
    """(our ``dpo`` loss in ``form`` and its policy gradient, trl's loss of that name and its
    gradient, the summed-form IPO loss by hand) at a policy moved away from its reference, on
    ``pairs``; with ``ld_alpha``, LD-DPO's, ours and trl's; with ``wpo``, WPO's."""
    from test_objective import trl_dpo_loss

    tok = tiny_tokenizer()
    policy, reference, twin = tiny_causal_lm(tok), tiny_causal_lm(tok), tiny_causal_lm(tok)
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    config = MethodConfig(beta=beta, ipo_average=ipo_average, preference_form=form, ld_alpha=ld_alpha, wpo_weighting=wpo)
    method = ImplicitRewardMethod("dpo", config, tok, encoder, policy, {}, {"train": pairs}, padding_free=padding_free,
                                  logprob_chunk=logprob_chunk)
    Trainer(method, loop(tmp_path))  # binds the method to an accelerator
    method.start_round(0, seed=0)  # log pi_ref of every record, with the policy as it starts
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # move the policy: h != 0
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    twin.load_state_dict(policy.state_dict())
    policy.train(), twin.train()

    ours, _ = method.loss({"pref": list(range(len(pairs)))}, "train", seed=0)
    ours.backward()
    encoded = [encoder.preference(p) for p in pairs]
    batch = collate([c for c, _ in encoded] + [r for _, r in encoded], tok.pad_token_id)
    lengths = batch.loss_mask[:, 1:].sum(-1)
    assert len(set(lengths.tolist())) > 2, "the responses should differ in length"
    theirs = trl_dpo_loss(
        form, beta, _FusedHead(twin), _FusedHead(reference.eval()), batch.input_ids, batch.loss_mask,
        attention_mask=batch.attention_mask, ld_alpha=ld_alpha, use_weighting=wpo,
    )
    theirs.backward()
    with torch.no_grad():  # the IPO paper's formula on summed log-probs
        logps = [
            objective.sequence_logprobs(m(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                                        batch.input_ids, batch.loss_mask).double()
            for m in (twin, reference)
        ]
        (pc, pr), (rc, rr) = logps[0].chunk(2), logps[1].chunk(2)
        h = (pc - rc) - (pr - rr)
        paper = float(((h - 1.0 / (2.0 * beta)) ** 2).mean())
    grads = {n: p.grad for n, p in policy.named_parameters()}
    trl_grads = {n: p.grad for n, p in twin.named_parameters()}
    return float(ours.detach()), grads, float(theirs.detach()), trl_grads, paper


def _assert_same_loss_and_gradient(ours: float, grads: dict, theirs: float, trl_grads: dict) -> None:
    """Our loss and policy gradient equal trl's, each weight's gradient to 1e-5 of its largest entry."""
    assert ours == pytest.approx(theirs, rel=1e-5)
    for name, grad in grads.items():
        scale = float(trl_grads[name].abs().max())
        torch.testing.assert_close(grad, trl_grads[name], rtol=1e-4, atol=1e-5 * max(scale, 1e-3), msg=name)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_sigmoid_norm_reproduces_trls_loss_and_gradient(tmp_path, beta):
    """``preference_form: sigmoid_norm`` is trl's DPOTrainer(loss_type="sigmoid_norm"), DPO on
    token-mean log-ratios: same loss and gradient on every policy weight, responses of different
    lengths; and not DPO's own loss there."""
    pytest.importorskip("trl")
    ours, grads, theirs, trl_grads, _ = _at_a_moved_policy(tmp_path / "norm", False, beta, "sigmoid_norm")
    _assert_same_loss_and_gradient(ours, grads, theirs, trl_grads)
    dpo, *_ = _at_a_moved_policy(tmp_path / "dpo", False, beta, "sigmoid")
    assert dpo != pytest.approx(ours, rel=1e-3)


@pytest.mark.parametrize(("alpha", "form", "padding_free"), [(0.0, "sigmoid", False), (0.5, "sigmoid", False),
                                                             (0.5, "sigmoid", True), (0.5, "ipo", False)])
def test_ld_alpha_reproduces_trls_loss_and_gradient(tmp_path, alpha, form, padding_free):
    """``method.ld_alpha`` is trl's DPOTrainer(ld_alpha=...), LD-DPO: the tokens of the longer response past
    the shorter one's length count alpha times, in the policy's and the reference's log-likelihoods; same
    loss and gradient on every policy weight as trl on real tiny models with responses of different
    lengths (padded and packed batches; trl's ipo with ``ipo_average``), and not DPO's loss there."""
    pytest.importorskip("trl")
    ipo_average = form == "ipo"
    ours, grads, theirs, trl_grads, _ = _at_a_moved_policy(tmp_path / "ld", ipo_average, 0.5, form, alpha, padding_free)
    _assert_same_loss_and_gradient(ours, grads, theirs, trl_grads)
    plain, *_ = _at_a_moved_policy(tmp_path / "plain", ipo_average, 0.5, form)
    assert plain != pytest.approx(ours, rel=1e-3)


@pytest.mark.parametrize(("form", "padding_free", "chunk"), [("sigmoid", False, None), ("sigmoid", True, None),
                                                           ("sigmoid", False, 5), ("ipo", True, 5)])
def test_wpo_weighting_reproduces_trls_loss_and_gradient(tmp_path, form, padding_free, chunk):
    """``method.wpo_weighting`` is trl's DPOTrainer(use_weighting=True), WPO: each pair's loss times the
    current policy's w(y_w|x) w(y_l|x) (``objective.wpo_weights``, no gradient through them); same loss and
    gradient on every policy weight as trl on real tiny models, padded, packed and with chunked log-probs
    (the weights' normaliser then from the same chunks); not DPO's loss there."""
    pytest.importorskip("trl")
    ipo_average = form == "ipo"
    ours, grads, theirs, trl_grads, _ = _at_a_moved_policy(tmp_path / "wpo", ipo_average, 0.5, form, None, padding_free,
                                                           True, chunk)
    _assert_same_loss_and_gradient(ours, grads, theirs, trl_grads)
    plain, *_ = _at_a_moved_policy(tmp_path / "plain", ipo_average, 0.5, form)
    assert plain != pytest.approx(ours, rel=1e-3)


@pytest.mark.parametrize(("padding_free", "chunk"), [(False, None), (True, None), (False, 5), (True, 5)])
def test_wpo_weights_are_the_pairs_own_beside_demonstrations(tmp_path, monkeypatch, padding_free, chunk):
    """In AIHF-DPO's batch, demonstrations first and the pairs last, WPO's weights are computed for the pairs'
    responses only (``logps(wpo_rows=...)``): the normaliser's log-sum-exps over the vocabulary are taken at the
    pairs' response tokens and nowhere else (counted), and each pair's w(y_w|x) w(y_l|x) equals
    ``objective.wpo_weights`` of the pairs' sequences scored alone, full logits and right padding, whatever the
    batch layout (padded, packed) or log-prob path (chunked)."""
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    demos = {"train": [Demonstration(p.prompt, p.chosen + " indeed") for p in IPO_PAIRS[:3]]}
    method = ImplicitRewardMethod("aihf-dpo", MethodConfig(beta=0.5, wpo_weighting=True), tok, encoder, policy, demos,
                                  {"train": IPO_PAIRS}, padding_free=padding_free, logprob_chunk=chunk)
    Trainer(method, loop(tmp_path))
    method.start_round(0, seed=0)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a policy away from uniform: weights that differ between responses
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    policy.eval()
    normalised = []  # positions at which the normaliser's log-sum-exp over the vocabulary is taken
    full = objective.token_log_sum_sq_probs
    monkeypatch.setattr(objective, "token_log_sum_sq_probs",
                        lambda logits: normalised.append(logits.numel() // logits.shape[-1]) or full(logits))
    with torch.no_grad():
        _, metrics = method.loss({"demo": [0, 1, 2], "pref": [0, 1, 2, 3]}, "train", seed=0)
        monkeypatch.setattr(objective, "token_log_sum_sq_probs", full)
        encoded = [encoder.preference(p) for p in IPO_PAIRS]
        batch = collate([c for c, _ in encoded] + [r for _, r in encoded], tok.pad_token_id)
        logits = policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.double()
        alone = objective.wpo_weights(objective.token_logprobs(logits, batch.input_ids),
                                      objective.token_log_sum_sq_probs(logits[:, :-1]), batch.loss_mask[:, 1:])
        pair_weights = alone[:4] * alone[4:]
    assert float(pair_weights.std()) > 1e-3 * float(pair_weights.mean())  # the pairs' weights differ
    assert sum(normalised) == int(batch.loss_mask[:, 1:].sum())  # the pairs' response tokens, not the demonstrations'
    assert float(metrics["wpo_weight"]) == pytest.approx(float(pair_weights.mean()), rel=1e-5)


# pairs of equal-length responses: the reference's margins are not ordered by the length difference alone
AOT_PAIRS = [
    Preference("review: the movie was", " great", " bad"),
    Preference("review: the film was", " great fun", " dull plot"),
    Preference("review: the cast was", " great and moving", " slow and long"),
    Preference("review: the story was", " great fun from start", " slow and the plot was"),
]


@pytest.mark.parametrize(("form", "padding_free"), [("aot", False), ("aot", True), ("aot_unpaired", False)])
def test_aot_forms_reproduce_trls_loss_and_gradient(tmp_path, form, padding_free):
    """``preference_form: aot`` / ``aot_unpaired`` are trl's DPOTrainer losses of those names, which sort the
    micro-batch's margins (or log-ratios): same loss and gradient on every policy weight as trl on real tiny
    models, four pairs in one micro-batch (each pair's responses of one length, the pairs' lengths
    different), padded and packed; and not DPO's loss there (the sorts pair the rows otherwise)."""
    pytest.importorskip("trl")
    ours, grads, theirs, trl_grads, _ = _at_a_moved_policy(tmp_path / form, False, 0.5, form, padding_free=padding_free,
                                                           pairs=AOT_PAIRS)
    _assert_same_loss_and_gradient(ours, grads, theirs, trl_grads)
    dpo, *_ = _at_a_moved_policy(tmp_path / "dpo", False, 0.5, "sigmoid", pairs=AOT_PAIRS)
    assert dpo != pytest.approx(ours, rel=1e-3)


def test_wpo_weighting_is_refused_with_the_aot_forms():
    """WPO weights each pair's loss; the AOT forms' i-th loss belongs to no pair (they sort the micro-batch), so
    the two together are refused when the method is made, naming both (trl refuses them too)."""
    from aihf.config import ConfigError

    for form in ("aot", "aot_unpaired"):
        with pytest.raises(ConfigError, match=f"wpo_weighting.*{form}"):
            make_method("dpo", config=MethodConfig(preference_form=form, wpo_weighting=True))


def test_ld_weights_count_scored_tokens_after_an_empty_prompt(tmp_path):
    """LD-DPO's shared length is counted in scored response tokens: after an empty prompt nothing predicts
    a response's first token, so both responses lose it and l_p is one less; the method's log-likelihoods
    (padded and packed) equal the shared-then-alpha sums taken by hand from the token log-probs."""
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    pairs = [((), (5, 6, 7, 8)), ((), (9, 10))], [((3, 4), (5, 6, 7)), ((3, 4), (9,))]
    alpha = 0.25
    for padding_free in (False, True):
        config = MethodConfig(ld_alpha=alpha)
        method = ImplicitRewardMethod("dpo", config, tok, encoder, policy, {}, {"train": IPO_PAIRS},
                                      padding_free=padding_free)
        Trainer(method, loop(tmp_path / str(padding_free)))
        for chosen, rejected in pairs:
            chosen, rejected = (list(chosen[0]), list(chosen[1])), (list(rejected[0]), list(rejected[1]))
            with torch.no_grad():
                scored = []  # each response's scored next-token log-probs, by hand: from the one predicting its first
                for prompt, response in (chosen, rejected):  # token (none after an empty prompt) to its last
                    ids = torch.tensor([prompt + response])
                    scored.append(objective.token_logprobs(policy(input_ids=ids).logits, ids)[0, max(len(prompt), 1) - 1:])
                head = min(len(t) for t in scored)  # l_p from the counts themselves, not from shared_lengths
                total = method.logps(policy, [chosen, rejected], method.shared_lengths([(chosen, rejected)]) * 2).total
                for value, token_lp in zip(total, scored):
                    by_hand = token_lp[:head].sum() + alpha * token_lp[head:].sum()
                    assert float(value) == pytest.approx(float(by_hand), rel=1e-5, abs=1e-5)
            assert head == min(len(chosen[1]), len(rejected[1])) - (not chosen[0])  # the empty prompt's pair lost one


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_ipo_average_reproduces_trl_ipo_loss_and_gradient(tmp_path, beta):
    """``aihf train ipo method.ipo_average=true`` is trl's DPOTrainer(loss_type="ipo"): same
    loss and same gradient on every policy weight, on real (tiny) models with responses of
    different lengths; the default (summed) form is the IPO paper's formula and not trl's."""
    pytest.importorskip("trl")
    ours, grads, theirs, trl_grads, paper = _at_a_moved_policy(tmp_path / "avg", True, beta)
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert ours != pytest.approx(paper, rel=1e-2)
    for name, grad in grads.items():
        scale = float(trl_grads[name].abs().max())
        torch.testing.assert_close(grad, trl_grads[name], rtol=1e-4, atol=1e-5 * max(scale, 1e-3), msg=name)
    assert max(float(g.abs().max()) for g in grads.values()) > 1e-3  # a gradient that can disagree

    summed, summed_grads, theirs_again, _, paper_again = _at_a_moved_policy(tmp_path / "sum", False, beta)
    assert theirs_again == pytest.approx(theirs, rel=1e-6)  # the same point
    assert summed == pytest.approx(paper_again, rel=1e-5)  # the default is the IPO paper's formula
    assert summed != pytest.approx(theirs, rel=1e-2)
    assert any(not torch.allclose(summed_grads[n], trl_grads[n], rtol=1e-2, atol=1e-6) for n in grads)


def test_ipo_average_is_read_by_the_ipo_forms_only():
    """``ipo_average`` acts with the ipo form only (``ipo``, and ``dpo``, ``aihf-dpo``,
    ``self-play-aihf`` given ``preference_form: ipo``); elsewhere it is reported as ignored."""
    for name in ("dpo", "aihf-dpo", "self-play-aihf"):
        assert "ipo_average=True" in RECIPES[name].ignored(MethodConfig(ipo_average=True))
    for name in ("ipo", "dpo", "aihf-dpo", "self-play-aihf"):
        assert "ipo_average=True" not in RECIPES[name].ignored(MethodConfig(ipo_average=True, preference_form="ipo"))
    tok = tiny_tokenizer()
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    make = lambda name, **kw: ImplicitRewardMethod(  # noqa: E731
        name, MethodConfig(ipo_average=True, **kw), tok, encoder, tiny_causal_lm(tok), *data()
    )
    assert make("ipo").token_mean_ratios and make("aihf-dpo", preference_form="ipo").token_mean_ratios
    assert make("dpo", preference_form="ipo").token_mean_ratios
    assert not make("dpo").token_mean_ratios and not make("aihf-dpo").token_mean_ratios


def test_the_form_settings_are_read_with_their_form_only():
    """``discopop_tau`` is read with the discopop form, ``label_noise`` not with exo_pair (which
    reads ``label_smoothing`` as its target's epsilon and refuses to run without it), ``f_alpha``
    with the alpha divergence only; each is reported as ignored elsewhere. An f-divergence is
    refused with a form that reads more than the margin, and with ``ipo_average``."""
    from aihf.config import ConfigError

    for name in ("dpo", "aihf-dpo", "self-play-aihf"):
        assert "discopop_tau=0.3" in RECIPES[name].ignored(MethodConfig(discopop_tau=0.3))
        assert "discopop_tau=0.3" not in RECIPES[name].ignored(MethodConfig(discopop_tau=0.3, preference_form="discopop"))
        exo = MethodConfig(preference_form="exo_pair", label_smoothing=0.01, label_noise="robust")
        assert RECIPES[name].ignored(exo) == ["label_noise='robust'"]
    assert "discopop_tau=0.3" in RECIPES["ipo"].ignored(MethodConfig(discopop_tau=0.3, preference_form="discopop"))
    tok = tiny_tokenizer()
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    with pytest.raises(ConfigError, match=r"'dpo' \(preference form exo_pair\): the exo_pair form needs label_smoothing"):
        ImplicitRewardMethod("dpo", MethodConfig(preference_form="exo_pair"), tok, encoder, tiny_causal_lm(tok), *data())
    assert "f_alpha=0.5" in RECIPES["dpo"].ignored(MethodConfig(f_divergence="js_divergence", f_alpha=0.5))
    assert RECIPES["dpo"].ignored(MethodConfig(f_divergence="alpha_divergence", f_alpha=0.5)) == []
    assert "f_divergence='js_divergence'" in RECIPES["sft"].ignored(MethodConfig(f_divergence="js_divergence"))
    assert RECIPES["ipo"].ignored(MethodConfig(f_divergence="alpha_divergence", f_alpha=0.5)) == []  # read: ipo is a margin form
    with pytest.raises(ConfigError, match="f_divergence 'forward_kl' is for the margin forms .*, not apo_zero"):
        ImplicitRewardMethod("dpo", MethodConfig(preference_form="apo_zero", f_divergence="forward_kl"), tok, encoder,
                             tiny_causal_lm(tok), *data())
    with pytest.raises(ConfigError, match=r"token-mean log-ratios \(ipo_average, sigmoid_norm\) with method.f_divergence"):
        ImplicitRewardMethod("ipo", MethodConfig(ipo_average=True, f_divergence="forward_kl"), tok, encoder,
                             tiny_causal_lm(tok), *data())


def test_the_trl_pair_options_are_read_where_they_act():
    """``ld_alpha`` and ``wpo_weighting`` act on the preference pairs of every method that has them (``ipo``
    included) and are reported as ignored by the others; ``reference_mixup_alpha`` is read with
    ``reference_sync_steps`` only, by the methods that renew a reference that way (not SPIN or Self-Play-AIHF,
    whose iterate is the policy)."""
    options = MethodConfig(ld_alpha=0.5, wpo_weighting=True)
    for name in ("dpo", "ipo", "aihf-dpo", "self-play-aihf"):
        assert RECIPES[name].ignored(options) == []
    for name in ("sft", "spin", "rlhf", "aihf", "reward"):
        assert {"ld_alpha=0.5", "wpo_weighting=True"} <= set(RECIPES[name].ignored(options))
    soft = MethodConfig(reference_sync_steps=3, reference_mixup_alpha=0.5)
    for name in ("dpo", "ipo", "aihf-dpo"):
        assert RECIPES[name].ignored(soft) == []
        assert RECIPES[name].ignored(MethodConfig(reference_mixup_alpha=0.5)) == ["reference_mixup_alpha=0.5"]
    assert "reference_mixup_alpha=0.5" in RECIPES["self-play-aihf"].ignored(soft)


@pytest.mark.parametrize("label_noise", ["conservative", "robust"])
@pytest.mark.parametrize("name", ["dpo", "aihf-dpo"])
def test_label_smoothing_reaches_the_preference_term(tmp_path, name, label_noise):
    """``method.label_smoothing`` and ``method.label_noise`` are the epsilon and form of the loss the
    method computes: at a policy moved away from its reference, the method's loss (w_D = 0 for
    aihf-dpo) equals ``objective.dpo_loss(..., epsilon, form)`` on the log-probs computed here by hand."""
    from aihf.config import ConfigError

    tok = tiny_tokenizer()
    policy, reference = tiny_causal_lm(tok), tiny_causal_lm(tok)
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    config = MethodConfig(beta=0.5, label_smoothing=0.2, label_noise=label_noise, w_demo=0.0)
    demos = {"train": [Demonstration(p.prompt, p.chosen) for p in IPO_PAIRS]}  # aihf-dpo's, weighted 0 here
    method = ImplicitRewardMethod(name, config, tok, encoder, policy, demos if name == "aihf-dpo" else {},
                                  {"train": IPO_PAIRS})
    Trainer(method, loop(tmp_path))
    method.start_round(0, seed=0)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    policy.eval()
    with torch.no_grad():
        ours, _ = method.loss({"pref": list(range(len(IPO_PAIRS)))}, "train", seed=0)
        pairs = [encoder.preference(p) for p in IPO_PAIRS]
        batch = collate([c for c, _ in pairs] + [r for _, r in pairs], tok.pad_token_id)
        (pc, pr), (rc, rr) = (
            objective.sequence_logprobs(m(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                                        batch.input_ids, batch.loss_mask).chunk(2)
            for m in (policy, reference))
    assert float(ours) == pytest.approx(float(objective.dpo_loss(pc, pr, rc, rr, 0.5, 0.2, label_noise)), rel=1e-5)
    assert float(ours) != pytest.approx(float(objective.dpo_loss(pc, pr, rc, rr, 0.5)), rel=1e-3)
    other = "robust" if label_noise == "conservative" else "conservative"
    assert float(ours) != pytest.approx(float(objective.dpo_loss(pc, pr, rc, rr, 0.5, 0.2, other)), rel=1e-3)
    with pytest.raises(ConfigError, match="label_smoothing is for the sigmoid form"):
        ImplicitRewardMethod("aihf-dpo", MethodConfig(label_smoothing=0.2, preference_form="ipo"), tok, encoder,
                             tiny_causal_lm(tok), demos, {"train": IPO_PAIRS})
    with pytest.raises(ValueError, match="label_smoothing must be < 0.5"):
        MethodConfig(label_smoothing=0.5)
