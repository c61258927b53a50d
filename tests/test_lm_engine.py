"""The language-model engine: batching, log-probs, and the one training loop (resume,
determinism, NaN guard, checkpoint format, two processes under accelerate).

Everything runs on tiny random GPT-NeoX models (``aihf.lm.tiny``), no hub. The synthetic
task defined here (prompts "review: the X was", right answer " great", wrong answer
" terrible") is shared with tests/test_lm_methods.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from aihf import objective
from aihf.data import Demonstration, Preference
from aihf.lm.batching import Encoder, collate
from aihf.lm.methods import ExplicitRewardMethod, ImplicitRewardMethod, MethodConfig
from aihf.lm.models import RewardModel, reference_model
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.trainer import LoopConfig, Trainer, latest_checkpoint
from aihf.runtime import NonFiniteLossError
from ranks import run_ranks

SUBJECTS = ["movie", "film", "acting", "story", "music", "plot", "script", "cast"]
HELD_OUT = ["ending", "scene"]
GOOD, BAD = " great", " terrible"


def task(subjects=SUBJECTS):
    """(demonstrations, preferences) of the synthetic task for ``subjects``."""
    demos = [Demonstration(f"review: the {s} was", GOOD) for s in subjects]
    prefs = [Preference(f"review: the {s} was", GOOD, BAD) for s in subjects]
    return demos, prefs


def data():
    (demos, prefs), (eval_demos, eval_prefs) = task(), task(HELD_OUT)
    return {"train": demos, "eval": eval_demos}, {"train": prefs, "eval": eval_prefs}


def train_config(tmp_path: Path, **model):
    """A ``TrainConfig`` over the synthetic task's training records (written to ``tmp_path``) with
    ``model`` settings, for ``aihf.lm.train.build_method``."""
    from aihf.data import write_jsonl
    from aihf.lm.train import DataConfig, ModelConfig, TrainConfig

    demos, prefs = data()
    write_jsonl(demos["train"], tmp_path / "demos.jsonl")
    write_jsonl(prefs["train"], tmp_path / "prefs.jsonl")
    return TrainConfig(model=ModelConfig(**model),
                       data=DataConfig(demonstrations=str(tmp_path / "demos.jsonl"),
                                       preferences=str(tmp_path / "prefs.jsonl"), max_length=24, max_prompt_length=12))


def loop(tmp_path: Path, **overrides) -> LoopConfig:
    fields = dict(output_dir=str(tmp_path), max_steps=4, micro_batch_size=4, learning_rate=3e-3,
                  log_with="none", progress=False, max_grad_norm=1.0)
    fields.update(overrides)
    return LoopConfig(**fields)


def make_method(name: str, tokenizer=None, policy=None, reward=None, config: MethodConfig | None = None, records=None):
    """A method of the synthetic task (or of ``records``: ({split: demonstrations},
    {split: preferences})) on fresh tiny models (or the given ones)."""
    tokenizer = tokenizer or tiny_tokenizer()
    policy = policy if policy is not None else tiny_causal_lm(tokenizer)
    config = config or MethodConfig(max_new_tokens=3, steps_per_round=2, rloo_k=4)
    encoder = Encoder(tokenizer, max_length=24, max_prompt_length=12)
    demos, prefs = records or data()
    if name in ("reward", "rlhf", "aihf"):
        reward = reward if reward is not None else RewardModel(tiny_causal_lm(tokenizer, seed=1).base_model)
        return ExplicitRewardMethod(
            name, config, tokenizer, encoder, demos, prefs, reward,
            policy=policy if name != "reward" else None,
            reference=reference_model(policy) if name != "reward" else None,
        )
    return ImplicitRewardMethod(name, config, tokenizer, encoder, policy, demos, prefs)


@torch.no_grad()
def answer_margin(policy, tokenizer, subjects=SUBJECTS + HELD_OUT) -> float:
    """Mean over prompts of log pi(" great"|x) - log pi(" terrible"|x): 0 at chance."""
    encoder = Encoder(tokenizer, max_length=24, max_prompt_length=12)
    _, prefs = task(subjects)
    pairs = [encoder.preference(p) for p in prefs]
    batch = collate([c for c, _ in pairs] + [r for _, r in pairs], tokenizer.pad_token_id)
    was_training = policy.training
    policy.eval()
    logits = policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    policy.train(was_training)
    logps = objective.sequence_logprobs(logits, batch.input_ids, batch.loss_mask)
    good, bad = logps.chunk(2)
    return float((good - bad).mean())


# -------------------------------------------------------------------------------- batching


def test_batch_masks_prompt_and_padding_and_appends_eos():
    tok = tiny_tokenizer()
    enc = Encoder(tok, max_length=24, max_prompt_length=12)
    prompt, response = enc.demonstration(Demonstration("review: the movie was", GOOD))
    assert response[-1] == tok.eos_token_id and tok.decode(response[:-1]) == GOOD  # finished: EOS appended
    _, cut = enc.demonstration(Demonstration("review: the movie was", GOOD, finished=False))
    assert cut == response[:-1]  # cut at a length cap: no EOS
    short = enc.demonstration(Demonstration("hi", " ok"))
    batch = collate([(prompt, response), short], tok.pad_token_id)
    row0 = len(prompt) + len(response)
    assert batch.loss_mask[0].tolist() == [0] * len(prompt) + [1] * len(response)
    assert batch.loss_mask[1, : len(short[0])].sum() == 0
    assert batch.loss_mask[1].sum() == len(short[1])
    assert batch.attention_mask[1].sum() == len(short[0]) + len(short[1]) < row0
    assert (batch.input_ids[1][batch.attention_mask[1] == 0] == tok.pad_token_id).all()


def test_chat_records_use_the_template_and_mask_the_prompt():
    tok = tiny_tokenizer()
    enc = Encoder(tok, max_length=64, max_prompt_length=32)
    record = Demonstration([{"role": "user", "content": "review: the movie was"}], GOOD)
    prompt, response = enc.demonstration(record)
    full = tok.apply_chat_template(record.conversation(GOOD), tokenize=True, return_dict=False)
    assert prompt + response == list(full)
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    assert tok.decode(response).startswith(GOOD) and "<|im_end|>" in tok.decode(response)


def test_unfinished_responses_get_no_eos_or_end_of_turn():
    """A response cut at a length cap (``finished=False``) is encoded as a sample cut there:
    the text's tokens and nothing after them; a finished one keeps EOS / end-of-turn."""
    tok = tiny_tokenizer()
    enc = Encoder(tok, max_length=64, max_prompt_length=32)
    text = " great and the acting was"
    plain = tok(text, add_special_tokens=False).input_ids
    prompt, cut = enc.demonstration(Demonstration("review: the movie was", text, finished=False))
    assert cut == plain and tok.eos_token_id not in cut
    assert enc.demonstration(Demonstration("review: the movie was", text))[1] == plain + [tok.eos_token_id]
    assert prompt == enc.demonstration(Demonstration("review: the movie was", text))[0]

    chat_prompt = [{"role": "user", "content": "review: the movie was"}]
    prompt, finished = enc.demonstration(Demonstration(chat_prompt, text))
    _, unfinished = enc.demonstration(Demonstration(chat_prompt, text, finished=False))
    # the template's continuation of the generation prompt, less its end-of-turn tokens
    assert unfinished == plain and finished[: len(unfinished)] == unfinished
    assert tok.convert_ids_to_tokens(finished[len(unfinished):]) == ["<|im_end|>", "Ċ"]
    assert "<|im_end|>" not in tok.decode(unfinished) and tok.eos_token_id not in unfinished
    full = tok.apply_chat_template(Demonstration(chat_prompt, text).conversation(text), tokenize=True, return_dict=False)
    assert prompt + finished == list(full)

    # preferences: each side follows its own flag
    for record in (Preference("review: the movie was", GOOD, BAD + " and", rejected_finished=False),
                   Preference(chat_prompt, GOOD, BAD + " and", rejected_finished=False)):
        (_, chosen), (_, rejected) = enc.preference(record)
        assert chosen[-1] == tok.eos_token_id or tok.convert_ids_to_tokens(chosen[-2:]) == ["<|im_end|>", "Ċ"]
        assert rejected == tok(BAD + " and", add_special_tokens=False).input_ids
    (_, chosen), (_, rejected) = enc.preference(Preference("x", GOOD, BAD, chosen_finished=False))
    assert chosen == tok(GOOD, add_special_tokens=False).input_ids and rejected[-1] == tok.eos_token_id


def test_truncation_is_counted_not_silent():
    tok = tiny_tokenizer()
    enc = Encoder(tok, max_length=10, max_prompt_length=4)
    long_prompt = "review: " + "the movie was great and " * 4
    prompt, response = enc.demonstration(Demonstration(long_prompt, " the film was terrible and the plot was bad"))
    assert len(prompt) == 4 and len(prompt) + len(response) == 10
    assert prompt == list(tok(long_prompt).input_ids)[-4:]  # the end of the prompt is kept
    enc.demonstration(Demonstration("hi", " ok"))
    assert (enc.stats.sequences, enc.stats.prompts_truncated, enc.stats.responses_truncated) == (2, 1, 1)
    assert "1 of 2 prompts" in enc.stats.summary()


def test_batched_logprobs_match_a_token_by_token_loop():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok)
    enc = Encoder(tok, max_length=24, max_prompt_length=12)
    _, prefs = task(SUBJECTS[:3])
    seqs = [s for p in prefs for s in enc.preference(p)]
    batch = collate(seqs, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        batched = objective.sequence_logprobs(logits, batch.input_ids, batch.loss_mask)
        for row, (prompt, response) in enumerate(seqs):
            expected = 0.0
            for t, token in enumerate(response):
                prefix = torch.tensor([prompt + response[:t]])
                expected += torch.log_softmax(model(input_ids=prefix).logits[0, -1], -1)[token].item()
            assert batched[row].item() == pytest.approx(expected, rel=1e-5, abs=1e-4)


# ------------------------------------------------------------------------------------ loop


def _losses(result) -> list[float]:
    return [h["loss"] for h in result.history]


def test_same_seed_same_result(tmp_path):
    runs = []
    for name in ("a", "b"):
        method = make_method("aihf-dpo")
        result = Trainer(method, loop(tmp_path / name, max_steps=3)).fit()
        runs.append((_losses(result), method.models["policy"].state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())
    other = Trainer(make_method("aihf-dpo"), loop(tmp_path / "c", max_steps=3, seed=1)).fit()
    assert _losses(other) != runs[0][0]  # the seed matters (data order)


def test_the_fused_optimizer_takes_the_same_steps(tmp_path):
    """``loop.fused_optimizer``: AdamW's fused kernel makes the default AdamW's updates (the
    losses agree exactly; weights to 1e-5 after 3 steps of lr 3e-3, 2.4e-6 measured, where
    coordinates with near-zero gradients turn rounding into Adam-normalised steps)."""
    runs = []
    for fused in (False, True):
        method = make_method("aihf-dpo")
        result = Trainer(method, loop(tmp_path / str(fused), max_steps=3, fused_optimizer=fused)).fit()
        runs.append((_losses(result), method.models["policy"].state_dict()))
    assert runs[1][0] == pytest.approx(runs[0][0], rel=1e-6)
    for key, value in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][key], value, rtol=1e-5, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", ["self-play-aihf", "aihf"])
def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path, name):
    """Round state (reference log-probs, self-play samples), optimizer, scheduler, RNG and
    data position all come back: steps 3-4 after resuming from step 2 equal the original."""
    config = dict(max_steps=4, save_every=2, keep_checkpoints=0, lr_scheduler="linear", warmup_steps=1,
                  log_with="tensorboard")
    full = Trainer(make_method(name), loop(tmp_path / "full", **config)).fit()
    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000002"
    files = sorted(p.name for p in checkpoint.iterdir())
    assert all(f.endswith((".safetensors", ".json")) for f in files), files
    assert list((tmp_path / "full").rglob("events.out.tfevents*"))
    resumed = Trainer(make_method(name), loop(tmp_path / "full", resume_from=str(checkpoint), **config)).fit()
    assert len(resumed.history) == 4
    torch.testing.assert_close(_losses(resumed)[2:], _losses(full)[2:], rtol=1e-5, atol=1e-7)
    saved = json.loads((tmp_path / "full" / "metrics.json").read_text())  # the resumed run's, all 4 steps
    assert [h["step"] for h in saved["history"]] == [1, 2, 3, 4] and saved["history"] == resumed.history
    assert latest_checkpoint(tmp_path / "full").name == "step-0000004"


def test_self_play_aihfs_start_reference_survives_a_resume(tmp_path):
    """Self-Play-AIHF with ``self_play_pref_reference: start``, resumed at step 2 (a round's start):
    the new round renews the SPIN term's reference but keeps the pairs' from round 0, which the
    checkpoint carried, so steps 3-4 equal the uninterrupted run's."""
    config = dict(max_steps=4, save_every=2, keep_checkpoints=0)
    settings = MethodConfig(max_new_tokens=3, steps_per_round=2, self_play_pref_reference="start")
    full = Trainer(make_method("self-play-aihf", config=settings), loop(tmp_path / "full", **config)).fit()
    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000002"
    resumed = Trainer(make_method("self-play-aihf", config=settings),
                      loop(tmp_path / "full", resume_from=str(checkpoint), **config)).fit()
    torch.testing.assert_close(_losses(resumed)[2:], _losses(full)[2:], rtol=1e-5, atol=1e-7)


def test_a_renewed_reference_survives_a_resume(tmp_path):
    """DPO with ``reference_sync_steps=3``, resumed at step 4 (inside its second round): the
    reference of step 3, not the starting policy's, comes back, so steps 5-6 equal the original."""
    config = dict(max_steps=6, save_every=4, keep_checkpoints=0)
    method = lambda: make_method("dpo", config=MethodConfig(reference_sync_steps=3))  # noqa: E731
    full = Trainer(method(), loop(tmp_path / "full", **config)).fit()
    assert _losses(full)[3] == pytest.approx(math.log(2.0), abs=1e-5)  # step 4 ran on the renewed reference (h = 0)
    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000004"
    resumed = Trainer(method(), loop(tmp_path / "full", resume_from=str(checkpoint), **config)).fit()
    torch.testing.assert_close(_losses(resumed)[4:], _losses(full)[4:], rtol=1e-5, atol=1e-7)


def test_a_soft_reference_survives_a_resume(tmp_path):
    """TR-DPO's soft update (``reference_mixup_alpha`` 0.5, renewed every 3 steps), resumed at step 4: the
    mixed reference weights come back from the checkpoint, so the mix of step 6 and the steps after equal
    the uninterrupted run's."""
    config = dict(max_steps=8, save_every=4, keep_checkpoints=0)
    method = lambda: make_method("dpo", config=MethodConfig(reference_sync_steps=3, reference_mixup_alpha=0.5))  # noqa: E731
    full = Trainer(method(), loop(tmp_path / "full", **config)).fit()
    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000004"
    resumed = Trainer(method(), loop(tmp_path / "full", resume_from=str(checkpoint), **config)).fit()
    torch.testing.assert_close(_losses(resumed)[4:], _losses(full)[4:], rtol=1e-5, atol=1e-7)


def test_nan_loss_stops_before_the_update_with_a_message(tmp_path):
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    with torch.no_grad():
        policy.gpt_neox.final_layer_norm.weight[0] = float("nan")
    trainer = Trainer(make_method("sft", tok, policy), loop(tmp_path, save_every=1))
    with pytest.raises(NonFiniteLossError, match="sft loss is nan at step 1"):
        trainer.fit()
    assert latest_checkpoint(tmp_path) is None


class _InfiniteGradient(torch.autograd.Function):
    """0 in the forward pass, an infinite gradient in the backward pass."""

    @staticmethod
    def forward(ctx, weight):
        ctx.shape = weight.shape
        return weight.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float("inf"))


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_in_any_accumulated_micro_batch_leaves_the_weights_untouched(tmp_path, where):
    """The guard reads the step's loss and gradient norm once, after the backward passes and
    clipping: a NaN in the second of two accumulated micro-batches (its loss, or only its
    gradient) stops the step before the optimizer, with the weights and optimizer state as they
    were before it."""
    method = make_method("dpo")
    trainer = Trainer(method, loop(tmp_path, gradient_accumulation_steps=2, micro_batch_size=2))
    method.start_round(0, seed=0)
    trainer.train_step()  # a clean step first, so the optimizer has state to keep
    trainer.step += 1
    before = {k: v.clone() for k, v in method.models["policy"].state_dict().items()}
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    loss_of, calls = method.loss, []

    def poisoned(*args, **kwargs):
        loss, metrics = loss_of(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2 and where == "loss":
            return loss * float("nan"), metrics
        if len(calls) == 2:  # finite loss, non-finite gradient
            return loss + _InfiniteGradient.apply(method.models["policy"].gpt_neox.embed_in.weight), metrics
        return loss, metrics

    method.loss = poisoned
    message = "dpo loss is nan at step 2" if where == "loss" else "policy gradient norm is (nan|inf) at step 2"
    with pytest.raises(NonFiniteLossError, match=message):
        trainer.train_step()
    assert len(calls) == 2
    for key, value in method.models["policy"].state_dict().items():
        assert torch.equal(value, before[key]), key
    for state, moment in zip(trainer.optimizer.state.values(), moments):
        assert torch.equal(state["exp_avg"], moment)


def test_evaluation_runs_on_held_out_records(tmp_path):
    result = Trainer(make_method("dpo"), loop(tmp_path, max_steps=2, eval_every=1)).fit()
    assert [e["step"] for e in result.evaluations] == [1, 2]
    assert {"eval/loss", "eval/pref_accuracy", "eval/pref_margin"} <= set(result.evaluations[0])


TWO_PROCESS_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_lm_engine import make_method, loop
from aihf.lm.trainer import Trainer
from pathlib import Path
result = Trainer(make_method("self-play-aihf"), loop(Path({out!r}), max_steps=3, micro_batch_size=2,
                 gradient_accumulation_steps={accum}, save_every=3, eval_every=3)).fit()
state = __import__("accelerate").PartialState()
assert state.num_processes == 2 and state.backend == "gloo", (state.num_processes, state.backend)
if state.is_main_process:
    Path({out!r}).mkdir(parents=True, exist_ok=True)
    Path({out!r}, "losses.json").write_text(json.dumps([h["loss"] for h in result.history] + [result.evaluations[-1]["eval/loss"]]))
"""


@pytest.mark.e2e
def test_two_processes_match_one_process_with_twice_the_accumulation(tmp_path):
    """DDP over gloo on the CPU: 2 processes x 1 micro-batch == 1 process x 2 micro-batches,
    for Self-Play-AIHF (sharded sampling and reference log-probs at each round, a round change
    at step 2) and its held-out evaluation (one batch for two processes); both processes
    write their RNG states into the one atomic checkpoint."""
    tests = str(Path(__file__).parent)
    one = Trainer(make_method("self-play-aihf"), loop(tmp_path / "one", max_steps=3, micro_batch_size=2,
                                                      gradient_accumulation_steps=2, eval_every=3)).fit()
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT.format(tests=tests, out=str(tmp_path / "two"), accum=1))
    run_ranks([sys.executable, str(script)], tmp_path, timeout=240)
    two = json.loads((tmp_path / "two" / "losses.json").read_text())
    saved = {p.name for p in (tmp_path / "two" / "checkpoints" / "step-0000003").iterdir()}
    assert {"rng-0.safetensors", "rng-1.safetensors", "policy.safetensors", "optimizer.safetensors"} <= saved
    torch.testing.assert_close(two, _losses(one) + [one.evaluations[-1]["eval/loss"]], rtol=1e-4, atol=1e-6)
