"""Every language-model method as a named configuration (a :class:`Recipe`) of two losses.

docs/method.md's objective has two switches that matter for the code: whether the reward is
*implicit*, r = beta * log(pi / pi_ref) (section 4: SFT, DPO, IPO, AIHF-DPO, SPIN,
Self-Play-AIHF), or *explicit*, a reward model r_theta trained with the policy
(section 3: the reward model of RLHF, RLHF's policy step, AIHF's Algorithm 1); and which
data terms are on. So there are two method classes, both driven by the one loop of
``aihf.lm.trainer``:

* :class:`ImplicitRewardMethod` trains the policy on sequence log-probs. The reference
  quantities (log pi_ref of every record, and for self-play the samples y' ~ pi_t and
  log pi_t) are computed *once per round* with the policy itself, before the round's
  first update: at that moment the policy is pi_ref (round 0) or the iterate pi_t. No
  reference copy is kept in memory, and nothing is recomputed per epoch.
* :class:`ExplicitRewardMethod` samples k responses per prompt from the policy and, in
  one step, updates the policy with RLOO on the KL-penalised reward (``aihf.lm.rl``) and
  the reward model with ``objective.aihf_reward_loss`` on demonstrations versus samples
  y ~ pi_k on their prompts, plus preferences. The RL prompts are the demonstrations'
  (AIHF) or the preferences' (RLHF) unless a separate prompt set is given (``data.prompts``,
  docs/method.md section 6); then the policy step samples on it, and AIHF's reward step draws
  one y ~ pi_k per demonstration on the demonstration's own prompt.

``RECIPES`` maps each method name to its switches; ``MethodConfig`` holds the numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object

from aihf import objective
from aihf.config import ConfigError, setting
from aihf.data import Demonstration, Preference, PromptRecord
from aihf.lm.batching import Encoder, Sequence, TruncationStats, collate, pack, to_device
from aihf.lm.generation import CacheKind, HFSampler, VLLMSampler
from aihf.lm.models import hidden_states_as_logits
from aihf.lm.rl import rloo_step
from aihf.lm.static_loop import StaticLoopSampler
from aihf.objective import EnsembleRule, FDivergence, ObjectiveConfig, PreferenceForm, check_ensemble_settings
from aihf.reward_scale import RewardScaler

log = logging.getLogger(__name__)

Split = Literal["train", "eval"]


@dataclass
class MethodConfig(ObjectiveConfig):
    """The ``method`` section: the objective's numbers (``ObjectiveConfig``: beta, w_demo,
    w_pref, demo_form, label smoothing; docs/method.md section 2), the implicit reward's
    preference term (``preference_form``: sigmoid is DPO's, ipo IPO's, or one of trl's other
    pairwise losses; section 4), sampling, and the schedule of the explicit-reward methods
    (section 3).

    ``beta`` is the KL coefficient of the RL policy step (``rlhf``, ``aihf``) as much as the
    scale of the implicit reward (``dpo`` ... ``self-play-aihf``). A setting the chosen
    method does not read is reported when the run starts (``Recipe.ignored``).

    ``ipo_average`` (read with ``preference_form: ipo``: ``ipo``, and ``dpo`` / ``aihf-dpo`` /
    ``self-play-aihf`` in that form): IPO's squared loss on h built from per-token averages,
    each sequence's log-ratio divided by its number of response tokens, as trl's
    ``DPOTrainer(loss_type="ipo")`` computes it. The default sums over tokens, the IPO
    paper's formula. The two give the same loss at the first step from the reference
    (h = 0) and different gradients, so the runs part (docs/method.md section 4).
    ``discopop_tau`` is read with ``preference_form: discopop`` only, ``f_alpha`` with
    ``f_divergence: alpha_divergence`` only.

    Algorithm 1 (``aihf``): ``schedule: alternating`` is docs/method.md section 3's single loop,
    one policy step and one reward step per optimizer step (the form with the convergence
    guarantee). ``schedule: rounds`` is the authors' practice: ``rounds`` rounds, each of
    ``samples_per_demo`` fresh y ~ pi_k per demonstration prompt, ``reward_epochs`` passes
    of reward steps over those (y_E, y) pairs and the preferences, then
    ``policy_steps_per_round`` RLOO steps on the frozen reward. ``reward_init``: ``body``
    (a new head on ``model.reward_model`` or the policy's body) or ``preferences`` (a
    preference-only stage 0 that the run trains first, ``reward_stage_steps``).
    ``reward_frozen_layers`` freezes the embeddings and the lowest n blocks of the reward
    body. Policy steps scale rewards by their running mean / std (``reward_normalize``)
    and clip them to +-``reward_clip`` (``aihf.reward_scale.RewardScaler``).
    """

    preference_form: PreferenceForm = setting("sigmoid", help="implicit reward's preference term: sigmoid (DPO), "
                                              "sigmoid_norm, ipo, hinge (SLiC), exo_pair, discopop, nca_pair, "
                                              "bco_pair, sppo_hard, apo_zero, apo_down, aot or aot_unpaired "
                                              "(objective.preference_loss)")
    demo_average: bool = setting(True, help="the supervised demonstration term (sft, aihf-dpo) is a per-token mean of log pi (False: the sum)")
    ipo_average: bool = setting(False, help="IPO on token-mean log-ratios, as trl's loss_type='ipo' (False: summed, the IPO paper's formula)")
    discopop_tau: float = setting(0.05, gt=0, help="temperature of the discopop preference form (trl's discopop_tau)")
    f_divergence: FDivergence = setting("reverse_kl", help="the divergence to the reference whose implicit reward the "
                                        "margin forms compare (f-DPO; trl's f_divergence_type): reverse_kl (DPO), "
                                        "forward_kl, js_divergence or alpha_divergence")
    f_alpha: float = setting(1.0, help="alpha of f_divergence=alpha_divergence (trl's f_alpha_divergence_coef)")
    wpo_weighting: bool = setting(False, help="WPO: weight each preference pair's loss by the current policy's "
                                  "probability of its two responses (trl's use_weighting; objective.wpo_weights)")
    ld_alpha: float | None = setting(None, ge=0, le=1, help="LD-DPO: a preference pair's tokens past the shorter "
                                     "response's length count this much in both log-likelihoods (trl's ld_alpha; "
                                     "objective.length_desensitized_weights); None: all count fully (DPO)")
    reward_l2: float = setting(0.0, ge=0, help="L2 penalty on the explicit reward's outputs")
    rloo_k: int = setting(4, ge=2, help="RLOO samples per prompt (leave-one-out needs another sample)")
    steps_per_round: int | None = setting(None, ge=1, help="steps between recomputed reference quantities; None: one round")
    self_play_pref_reference: Literal["iterate", "start"] = setting(
        "iterate", help="self-play-aihf's preference term: the iterate pi_t as its reference (docs/method.md's derived "
        "form, which steepens the policy every round) or the starting policy (SPIN's fixed point)")
    reference_sync_steps: int | None = setting(None, ge=1, help="dpo, ipo, aihf-dpo: the policy becomes the reference "
                                               "every this many steps (TR-DPO's hard update; trl's ref_model_sync_steps "
                                               "with ref_model_mixup_alpha=1); None: the starting policy throughout")
    reference_mixup_alpha: float = setting(1.0, gt=0, le=1, help="with reference_sync_steps: the reference becomes "
                                           "alpha * policy + (1 - alpha) * reference at each renewal (TR-DPO's soft "
                                           "update; trl's ref_model_mixup_alpha); 1: the policy itself")
    max_new_tokens: int = setting(64, ge=1, help="tokens sampled per response")
    temperature: float = setting(1.0, gt=0, help="sampling temperature")
    top_p: float = setting(1.0, gt=0, le=1, help="nucleus sampling mass")
    sampling_cache: CacheKind = setting("auto", help="KV cache of the policy's sampling: auto (static + compiled on "
                                        "a GPU, dynamic on the CPU), static or dynamic (generation.HFSampler)")
    sampler: Literal["hf", "static-loop", "vllm"] = setting(
        "hf", help="the policy's sampling: transformers' generate; aihf's loop over a static KV cache, one compiled "
        "step per token on a GPU (static_loop.StaticLoopSampler); or a vLLM engine in the training process that "
        "gets the weights after each update")
    vllm_memory: float = setting(0.3, gt=0, le=1, help="sampler=vllm: share of the GPU's memory the engine takes")
    schedule: Literal["alternating", "rounds"] = setting("alternating", help="Algorithm 1's schedule (aihf)")
    rounds: int = setting(4, ge=1, help="rounds of the rounds schedule")
    samples_per_demo: int = setting(1, ge=1, help="fresh samples per demonstration prompt and round")
    reward_epochs: int = setting(1, ge=1, help="passes of reward steps per round")
    policy_steps_per_round: int = setting(50, ge=1, help="RLOO steps per round on the frozen reward")
    reward_init: Literal["body", "preferences"] = setting("body", help="a new head on the body, or a preference-only stage 0")
    reward_frozen_layers: int = setting(0, ge=0, help="embeddings and lowest n blocks of the reward body frozen")
    reward_normalize: bool = setting(True, help="scale rewards by their running mean / std in the policy step")
    reward_clip: float | None = setting(5.0, gt=0, help="clip scaled rewards to +-reward_clip; None: no clip")
    reward_ensemble: int = setting(1, ge=1, help="heads on the reward body, each from its own start and each fitted by "
                                   "the reward step; from 2 on, the policy step sees their combination "
                                   "(reward_ensemble_rule; docs/method.md section 7)")
    reward_ensemble_rule: EnsembleRule = setting("mean", help="how the heads' rewards combine: mean | uwo (mean - "
                                                 "penalty * variance) | wco (minimum)")
    reward_ensemble_penalty: float = setting(0.0, ge=0, help="uwo: the weight of the heads' variance")
    reward_ensemble_resample: Literal["none", "records"] = setting(
        "none", help="records: each head fits its own bootstrap resample of the training demonstrations and "
        "preference pairs (n of n with replacement, drawn from loop.seed); none: every head all the records")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ensemble_settings(self.reward_ensemble, self.reward_ensemble_rule, self.reward_ensemble_penalty,
                                self.reward_ensemble_resample)


SAMPLING = ("max_new_tokens", "temperature", "top_p", "sampling_cache", "sampler", "vllm_memory")
REWARD_FIT = ("w_pref", "label_smoothing", "label_noise", "reward_l2", "reward_frozen_layers", "reward_ensemble", "reward_ensemble_rule",
              "reward_ensemble_penalty", "reward_ensemble_resample")
POLICY_RL = ("beta", "rloo_k", "reward_normalize", "reward_clip", *SAMPLING)
PREFERENCE_TERM = ("preference_form", "label_smoothing", "label_noise", "ipo_average", "discopop_tau", "f_divergence",
                   "f_alpha", "ld_alpha", "wpo_weighting")  # the implicit reward's preference term
ROUNDS = ("rounds", "samples_per_demo", "reward_epochs", "policy_steps_per_round")
REFERENCE_SYNC = ("reference_sync_steps", "reference_mixup_alpha")  # TR-DPO


@dataclass(frozen=True)
class Recipe:
    """The structural switches of one method."""

    description: str
    reward: Literal["implicit", "explicit"]
    demo_term: Literal["none", "likelihood", "self-play", "irl"]
    pref_term: bool
    preference_form: PreferenceForm | None = None  # None: MethodConfig.preference_form
    train_policy: bool = True
    train_reward: bool = False
    rl_prompts: Literal["demo", "pref", "none"] = "none"  # where RL samples are drawn without a prompt set
    settings: tuple[str, ...] = ()  # the MethodConfig fields the method reads

    def ignored(self, config: MethodConfig) -> list[str]:
        """``key=value`` of the settings that differ from their defaults but that this method
        does not read (e.g. ``w_demo`` for DPO, ``rounds`` with the alternating schedule)."""
        default = MethodConfig()
        read = set(self.settings)
        if config.schedule != "rounds":
            read -= set(ROUNDS)
        if config.label_smoothing == 0:
            read.discard("label_noise")  # the form of a smoothing there is none of
        form = self.preference_form or config.preference_form
        if form != "ipo":
            read.discard("ipo_average")
        if form != "discopop":
            read.discard("discopop_tau")
        if form == "exo_pair":
            read.discard("label_noise")  # exo_pair reads label_smoothing as its target's epsilon
        if config.f_divergence != "alpha_divergence":
            read.discard("f_alpha")
        if config.reference_sync_steps is None:
            read.discard("reference_mixup_alpha")
        return [
            f"{f.name}={getattr(config, f.name)!r}"
            for f in dataclasses.fields(config)
            if f.name not in read and getattr(config, f.name) != getattr(default, f.name)
        ]

    @property
    def uses_prompts(self) -> bool:
        """Whether a prompt set (``data.prompts``) can replace ``rl_prompts`` (the RL methods)."""
        return self.rl_prompts != "none"

    def rl_source(self, prompt_set: bool = False) -> Literal["demo", "pref", "prompt", "none"]:
        """Which records' prompts the policy step samples on: the prompt set when given."""
        return "prompt" if prompt_set and self.uses_prompts else self.rl_prompts

    def kinds(self, prompt_set: bool = False) -> frozenset[str]:
        """The record kinds the method reads: ``demo``, ``pref``, ``prompt``."""
        source = self.rl_source(prompt_set)
        return frozenset(
            kind for kind, used in (
                ("demo", self.demo_term != "none" or source == "demo"),
                ("pref", self.pref_term or source == "pref"),
                ("prompt", source == "prompt"),
            ) if used
        )

    @property
    def uses_demos(self) -> bool:
        """Reads demonstrations when no prompt set is given."""
        return "demo" in self.kinds()

    @property
    def uses_prefs(self) -> bool:
        """Reads preferences when no prompt set is given."""
        return "pref" in self.kinds()


RECIPES: dict[str, Recipe] = {
    "sft": Recipe(
        "supervised likelihood on demonstrations (docs/method.md 5)", "implicit", "likelihood", False,
        settings=("w_demo", "demo_average"),
    ),
    "reward": Recipe(
        "Bradley-Terry reward model on preferences (docs/method.md 2, w_D = 0)",
        "explicit", "none", True, train_policy=False, train_reward=True, settings=REWARD_FIT,
    ),
    "rlhf": Recipe(
        "RLHF: reward model, then RLOO with a KL penalty to the reference (docs/method.md 5)",
        "explicit", "none", False, rl_prompts="pref", settings=REWARD_FIT + POLICY_RL,
    ),
    "dpo": Recipe("DPO on preferences, or another pairwise loss by preference_form: IPO, SLiC, ... (docs/method.md 4-5)",
                  "implicit", "none", True,
                  settings=("beta", "w_pref", *PREFERENCE_TERM, *REFERENCE_SYNC)),
    "ipo": Recipe("IPO on preferences (docs/method.md 4-5)", "implicit", "none", True, "ipo",
                  settings=("beta", "w_pref", "ipo_average", "f_divergence", "f_alpha", "ld_alpha", "wpo_weighting",
                            *REFERENCE_SYNC)),
    "spin": Recipe(
        "SPIN: self-play on demonstrations, reference = previous iterate (docs/method.md 5)", "implicit", "self-play", False,
        settings=("beta", "w_demo", "steps_per_round", *SAMPLING),
    ),
    "aihf": Recipe(
        "AIHF Algorithm 1: RLOO policy step + reward step on demonstrations vs samples and preferences (docs/method.md 3)",
        "explicit", "irl", True, train_reward=True, rl_prompts="demo",
        settings=(*REWARD_FIT, *POLICY_RL, "w_demo", "demo_form", "schedule", *ROUNDS, "reward_init"),
    ),
    "aihf-dpo": Recipe(
        "AIHF-DPO: supervised likelihood + DPO, one stage (docs/method.md 4)", "implicit", "likelihood", True,
        settings=("beta", "w_demo", "w_pref", *PREFERENCE_TERM, "demo_average", *REFERENCE_SYNC),
    ),
    "self-play-aihf": Recipe(
        "Self-Play-AIHF: SPIN term on demonstrations + DPO on preferences, reference = iterate (docs/method.md 4)",
        "implicit", "self-play", True,
        settings=("beta", "w_demo", "w_pref", *PREFERENCE_TERM, "steps_per_round", "self_play_pref_reference", *SAMPLING),
    ),
}

ALL_MODELS = frozenset({"policy", "reward"})


def bootstrap_counts(n: int, members: int, generator: torch.Generator) -> torch.Tensor:
    """(members, n): row k counts how often each of n records is in member k's bootstrap
    resample, n draws with replacement (each row sums to n; about 63% of the records drawn)."""
    draws = torch.randint(0, n, (members, n), generator=generator)
    return torch.stack([torch.bincount(row, minlength=n) for row in draws])


def _pack(responses: list[list[int]], key: str) -> dict[str, torch.Tensor]:
    """Response token ids as two tensors (lengths, flat tokens), for a safetensors checkpoint."""
    return {
        f"{key}.lengths": torch.tensor([len(r) for r in responses], dtype=torch.long),
        f"{key}.tokens": torch.tensor([t for r in responses for t in r], dtype=torch.long),
    }


def _unpack(tensors: dict[str, torch.Tensor], key: str) -> list[list[int]] | None:
    if f"{key}.lengths" not in tensors:
        return None
    return [r.tolist() for r in torch.split(tensors[f"{key}.tokens"], tensors[f"{key}.lengths"].tolist())]


def _zero3(accelerator: Accelerator) -> bool:
    """Whether DeepSpeed ZeRO-3 shards the weights (each process holds a slice of each)."""
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3


class SequenceLogProbs(NamedTuple):
    """What :meth:`_Records.logps` gives per sequence."""

    total: torch.Tensor  # log pi(y|x), summed over the response tokens (LD-DPO's weighted sum with ld_alpha)
    count: torch.Tensor  # the number of response tokens (at least 1)
    wpo_weight: torch.Tensor | None  # objective.wpo_weights of the last wpo_rows sequences, when asked for


class _Records:
    """Encoded records of both splits, their prompts, and the shared helpers of the methods.

    ``prompts`` (optional, RL methods only) is the prompt set: given, it is where the policy
    step samples (``rl_source == "prompt"``), and RLHF then needs no preferences.
    """

    def __init__(
        self,
        name: str,
        config: MethodConfig,
        tokenizer,
        encoder: Encoder,
        demonstrations: dict[str, list[Demonstration]],
        preferences: dict[str, list[Preference]],
        prompts: dict[str, list[PromptRecord]] | None = None,
        padding_free: bool = False,
        logprob_chunk: int | None = None,
    ) -> None:
        self.name, self.config, self.tokenizer, self.encoder = name, config, tokenizer, encoder
        self.padding_free = padding_free  # log-probs from packed rows (batching.pack), not padded ones
        self.logprob_chunk = logprob_chunk  # log-probs from hidden states, this many positions at a time
        self.recipe = RECIPES[name]
        prompts = prompts or {}
        if any(prompts.values()) and not self.recipe.uses_prompts:
            raise ValueError(f"method {name!r} samples on no prompts: it takes no prompt set")
        if prompts.get("eval") and not prompts.get("train"):
            raise ValueError("eval prompts need training prompts")
        self.rl_source = self.recipe.rl_source(prompt_set=bool(prompts.get("train")))
        kinds = self.recipe.kinds(prompt_set=self.rl_source == "prompt")
        if "demo" in kinds and not demonstrations.get("train"):
            raise ValueError(f"method {name!r} needs demonstrations")
        if "pref" in kinds and not preferences.get("train"):
            raise ValueError(f"method {name!r} needs preferences")
        self.demos: dict[str, list[Sequence]] = {}
        self.pairs: dict[str, list[tuple[Sequence, Sequence]]] = {}
        self.prompts: dict[str, list[list[int]]] = {}  # prompt ids of the prompt set
        for split in ("train", "eval"):
            if "demo" in kinds and demonstrations.get(split):
                self.demos[split] = [encoder.demonstration(r) for r in demonstrations[split]]
            if "pref" in kinds and preferences.get(split):
                self.pairs[split] = [encoder.preference(r) for r in preferences[split]]
            if "prompt" in kinds and prompts.get(split):
                self.prompts[split] = [encoder.prompt_record(r) for r in prompts[split]]
        self.accelerator: Accelerator | None = None
        self._vllm: VLLMSampler | None = None  # sampler=vllm: built at the first sample
        self._static_loop: StaticLoopSampler | None = None  # sampler=static-loop: kept, with its compiled steps
        # the schedule, as the trainer reads it (``plan`` may set them from the batch size)
        self.steps_per_round: int | None = None  # None: one round for the whole run
        self.total_steps: int | None = None  # None: loop.max_steps
        self.evaluate_each_round = False

    @property
    def truncation(self) -> TruncationStats:
        return self.encoder.stats

    def bind(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        if self.logprob_chunk and (accelerator.distributed_type == DistributedType.FSDP or _zero3(accelerator)):
            raise ConfigError("model.logprob_chunk reads the output layer's weight outside the model's forward pass, "
                              "which FSDP and ZeRO-3 shard: set model.logprob_chunk=null, or use DDP")
        if self.config.sampler == "vllm" and "sampler" in self.recipe.settings:
            if importlib.util.find_spec("vllm") is None:
                raise ConfigError(f"{self.name}: method.sampler=vllm needs vLLM: pip install 'aihf[vllm]' "
                                  "(or method.sampler=hf)")

    def plan(self, records_per_step: int, seed: int = 0) -> None:
        """Fix the schedule once the trainer knows how many records of each kind one optimizer
        step reads (micro-batch x accumulation x processes), and draw what a run draws once from
        its ``seed`` (``loop.seed``). Only the explicit-reward methods need it."""

    def phase(self, step: int) -> frozenset[str]:
        """The models that optimizer step ``step`` updates (all of them, but for ``rounds``)."""
        return ALL_MODELS

    def scored_form(self, sequence: Sequence) -> Sequence:
        """A sequence as it is scored when it is compared with a policy sample: the response
        cut to ``max_new_tokens`` (the policy's cap) and to ``data.max_length``.

        A policy sample carries EOS only when the policy emitted it before the cap; a record
        carries one only when it ``finished`` (``Encoder.response``). Cut here at the same
        cap, a demonstration and a sample with the same tokens are the same sequence, so no
        reward can tell them apart by their length or their end (docs/method.md section 3).
        """
        prompt, response = sequence
        room = min(self.config.max_new_tokens, self.encoder.max_length - len(prompt))
        return prompt, response[:room]

    def canonical_form(self, sequence: Sequence) -> Sequence:
        """A policy sample re-encoded as a record with its text would be, then in
        :meth:`scored_form`: the response decoded and tokenised again (``Encoder.response``'s
        plain-text form), EOS kept only when the sample ended with it.

        A policy may sample a non-canonical tokenisation of its text (" D er ic" for
        " De ric"): 40% of the IMDb build answers of the from-scratch model do not give back
        their ids when decoded and re-encoded, while a demonstration made from such an
        answer is stored as text and encoded canonically. Scored as sampled, "the tokens
        split oddly" would tell samples from demonstrations; re-encoded, a sample and a
        demonstration with the same text are the same sequence. (Log-probabilities of a
        sample, which the policy gradient needs, stay those of the tokens drawn.)
        """
        prompt, response = sequence
        eos = self.tokenizer.eos_token_id
        finished = bool(response) and response[-1] == eos
        body = response[:-1] if finished else response
        ids = list(self.tokenizer(self.tokenizer.decode(body), add_special_tokens=False).input_ids) if body else []
        return self.scored_form((prompt, ids + [eos] * finished))

    def compared_demonstrations(self) -> None:
        """Put the demonstrations into :meth:`scored_form` (the methods that compare them with
        samples: SPIN, Self-Play-AIHF, AIHF), saying how many the policy's cap shortened."""
        cut = 0
        for split, seqs in self.demos.items():
            formed = [self.scored_form(seq) for seq in seqs]
            cut += sum(len(a[1]) != len(b[1]) for a, b in zip(seqs, formed))
            self.demos[split] = formed
        if cut:
            total = sum(len(seqs) for seqs in self.demos.values())
            log.warning(
                "%s: %d of %d demonstrations are longer than method.max_new_tokens=%d and are compared "
                "with the policy's samples cut there, as a sample would be (raise max_new_tokens to keep them)",
                self.name, cut, total, self.config.max_new_tokens,
            )

    def data_sizes(self, split: str) -> dict[str, int]:
        sizes = {}
        if split in self.demos:
            sizes["demo"] = len(self.demos[split])
        if split in self.pairs:
            sizes["pref"] = len(self.pairs[split])
        if split in self.prompts:
            sizes["prompt"] = len(self.prompts[split])
        return sizes

    def logps(self, model, sequences: list[Sequence], shared: list[float] | None = None,
              wpo_rows: int = 0) -> SequenceLogProbs:
        """(log pi(y|x) summed over response tokens, number of response tokens, WPO's weight), one forward
        pass over right-padded rows, or over packed ones with ``padding_free``; with
        ``logprob_chunk``, scored from the last hidden states at the response positions only,
        that many at a time, without the full-vocabulary logits (``objective.selected_token_logprobs``).
        With ``method.ld_alpha``, ``shared`` gives each sequence's pair's shared length (:meth:`shared_lengths`;
        inf: no pair) and the sums are LD-DPO's (``objective.length_desensitized_weights``). With ``wpo_rows``
        > 0, the ``objective.wpo_weights`` under ``model`` of the last ``wpo_rows`` sequences (a batch's preference
        pairs), their normaliser computed at those sequences' response positions only (else None)."""
        acc = self.accelerator
        if self.padding_free:
            host = pack(sequences, self.tokenizer.pad_token_id, scored=bool(self.logprob_chunk))
        else:
            host = collate(sequences, self.tokenizer.pad_token_id, scored=bool(self.logprob_chunk))
        weighted = to_device((host.response_positions(wpo_rows),), acc.device)[0] if wpo_rows else None
        batch = host.to(acc.device)
        if self.padding_free:
            inputs = dict(input_ids=batch.input_ids, position_ids=batch.position_ids)
        else:
            inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        with acc.autocast(), hidden_states_as_logits(model, enabled=bool(self.logprob_chunk)) as head:
            out = model(**inputs, use_cache=False).logits
            if head is not None:
                token_lp = objective.selected_token_logprobs(out, head.weight, head.bias, batch.input_ids,
                                                             batch.scored_index, self.logprob_chunk)
                log_sum_sq = None if weighted is None else objective.selected_token_log_sum_sq_probs(
                    out.detach(), head.weight, head.bias, batch.input_ids, weighted, self.logprob_chunk)
        if head is None:
            token_lp = objective.token_logprobs(out, batch.input_ids)
            log_sum_sq = None if weighted is None else objective.positions_log_sum_sq_probs(out, batch.input_ids, weighted)
        if self.padding_free:  # (B, L - 1): each sequence's next-token log-probs and response mask
            token_lp, mask = token_lp.reshape(-1)[batch.token_index], batch.token_mask
            log_sum_sq = None if log_sum_sq is None else log_sum_sq.reshape(-1)[batch.token_index]
        else:
            mask = batch.loss_mask[:, 1:]
        wpo_weight = None if log_sum_sq is None else objective.wpo_weights(
            token_lp[-wpo_rows:], log_sum_sq[-wpo_rows:], mask[-wpo_rows:])
        weights = mask.to(token_lp.dtype)
        if shared is not None and self.config.ld_alpha is not None:
            weights = objective.length_desensitized_weights(weights, torch.tensor(shared, device=weights.device),
                                                            self.config.ld_alpha)
        total = (token_lp * weights).sum(-1)
        return SequenceLogProbs(total, mask.sum(-1).clamp(min=1).to(total.dtype), wpo_weight)

    @contextlib.contextmanager
    def _full_weights(self, model):
        """The unwrapped model with all its weights present, for ``generate``.

        DDP / one device: the model itself. DeepSpeed ZeRO-3: the shards are gathered for
        the duration (as trl does for generation). FSDP: refused, with the alternative.
        """
        acc = self.accelerator
        if _zero3(acc):
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(model.parameters())):
                yield acc.unwrap_model(model)
        elif acc.distributed_type == DistributedType.FSDP:
            raise NotImplementedError(
                f"{self.name!r} samples from the policy, which aihf does not do under FSDP yet: "
                "use configs/accelerate/ddp.yaml or deepspeed-zero3.yaml for the sampling methods"
            )
        else:
            yield acc.unwrap_model(model)

    def sample(self, model, prompts: list[list[int]], seed: int) -> list[Sequence]:
        """(prompt, y) with y ~ model(.|prompt), one per prompt, reproducible from ``seed``, in
        :meth:`scored_form` (EOS kept only when the model emitted it). ``sampler=vllm``: the
        colocated engine, given the policy's current weights first."""
        cfg = self.config
        with self._full_weights(model) as full:
            if cfg.sampler == "vllm":
                sampler = self._vllm_sampler(full)
                sampler.load_weights(full)
            elif cfg.sampler == "static-loop":
                if self._static_loop is None or self._static_loop.model is not full:
                    self._static_loop = StaticLoopSampler(full, self.tokenizer)
                sampler = self._static_loop
            else:
                sampler = HFSampler(full, self.tokenizer, cache=cfg.sampling_cache)
            responses = sampler.generate(prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed=seed)
        return [self.scored_form(pair) for pair in zip(prompts, responses)]

    def _vllm_sampler(self, policy) -> VLLMSampler:
        """The colocated vLLM engine, built once from the checkpoint the policy was loaded from
        (its weights are pushed before every sample, so they need not be current)."""
        if self._vllm is None:
            path = getattr(policy, "name_or_path", "") or ""
            if not (Path(path) / "config.json").is_file():
                raise ConfigError(f"{self.name}: method.sampler=vllm builds its engine from the policy's checkpoint "
                                  f"folder, and this policy was not loaded from one ({path!r}): save it with "
                                  "save_pretrained and load it from there, or use method.sampler=hf")
            acc = self.accelerator
            self._vllm = VLLMSampler.colocated(path, acc.process_index, acc.local_process_index, acc.num_processes,
                                               self.config.vllm_memory)
        return self._vllm

    def sample_all(self, model, prompts: list[list[int]], seed: int, chunk: int = 8) -> list[Sequence]:
        """One sample per prompt for a whole list (a round's samples), chunked over processes;
        chunk c draws with seed ``seed ^ (c * chunk + 1)`` whatever the number of processes."""
        return self.sharded(len(prompts), chunk, lambda idx: self.sample(model, [prompts[i] for i in idx], seed ^ (idx[0] + 1)))

    def sharded(self, count: int, chunk: int, compute) -> list:
        """``compute(indices)`` over the chunks [c * chunk, (c + 1) * chunk) of 0..count-1, chunk c
        on process c mod processes, results gathered in order.

        The chunks (their padding and sampling seeds) are the same whatever the number of
        processes. Every process makes the same number of ``compute`` calls (one with no
        chunk left repeats the last chunk and drops the result), because a forward pass
        through a DDP / FSDP / ZeRO-3 model is a collective operation.
        """
        acc = self.accelerator
        chunks = math.ceil(count / chunk)
        pairs = []
        for turn in range(math.ceil(chunks / acc.num_processes)):
            c = turn * acc.num_processes + acc.process_index
            indices = list(range(min(c, chunks - 1) * chunk, min((min(c, chunks - 1) + 1) * chunk, count)))
            values = compute(indices)
            if c < chunks:
                pairs += list(zip(indices, values))
        ordered = [None] * count
        for index, value in gather_object(pairs):
            ordered[index] = value
        return ordered


class ImplicitRewardMethod(_Records):
    """Policy-only methods: SFT, DPO, IPO, AIHF-DPO, SPIN, Self-Play-AIHF (docs/method.md sections 4-5).

    Per micro-batch, one forward pass over [demonstrations, (samples y'), chosen, rejected]
    gives the sequence log-probs; the loss is ``objective.aihf_dpo_loss`` (SFT, DPO, IPO,
    AIHF-DPO: reference = the starting policy) or ``objective.self_play_aihf_loss`` (SPIN,
    Self-Play-AIHF: reference = the iterate pi_t, renewed every ``steps_per_round`` steps
    with fresh samples y' ~ pi_t). DPO, IPO and AIHF-DPO given ``reference_sync_steps`` renew their
    reference the same way: the policy of every ``reference_sync_steps``-th step becomes pi_ref
    (TR-DPO's hard update, Gorbatovski et al. 2024; trl's ``sync_ref_model`` with
    ``ref_model_mixup_alpha=1``).
    """

    def __init__(self, name: str, config: MethodConfig, tokenizer, encoder: Encoder, policy, demonstrations, preferences,
                 padding_free: bool = False, logprob_chunk: int | None = None) -> None:
        super().__init__(name, config, tokenizer, encoder, demonstrations, preferences, padding_free=padding_free,
                         logprob_chunk=logprob_chunk)
        if self.recipe.reward != "implicit":
            raise ValueError(f"{name!r} is not an implicit-reward method")
        self.models = {"policy": policy}
        self_play = self.recipe.demo_term == "self-play"
        # self-play renews pi_t every round; DPO-type methods may too (TR-DPO's hard reference update)
        self.steps_per_round = (config.steps_per_round or 1) if self_play else (
            config.reference_sync_steps if self.recipe.pref_term else None)
        if self_play and config.steps_per_round is None:
            raise ConfigError(f"{name!r} regenerates its samples every round: set method.steps_per_round")
        if self_play:
            self.compared_demonstrations()
        self.needs_reference = self.recipe.pref_term or self_play
        form = self.recipe.preference_form or config.preference_form
        self.preference = objective.PreferenceTerm()  # read when the method has a preference term
        if self.recipe.pref_term:
            try:
                self.preference = objective.PreferenceTerm(form, config.label_smoothing, config.label_noise,
                                                           config.discopop_tau, config.f_divergence, config.f_alpha)
            except ValueError as error:
                raise ConfigError(f"{name!r} (preference form {form}): {error}") from None
        if self.recipe.pref_term and config.wpo_weighting and form in objective.BATCH_FORMS:
            raise ConfigError(f"{name!r}: method.wpo_weighting weights each pair's loss, and the {form} form sorts "
                              "the micro-batch, so its i-th loss is no pair's (trl refuses the pair too): set one")
        if self.recipe.pref_term and form == "discopop" and config.discopop_tau < objective.DISCOPOP_TAU_TURN:
            log.warning("%s: discopop_tau=%g is below (1 - log 2) / 3 = %.4f, where the discopop loss falls as a "
                        "margin falls at h = 0: from the reference the first steps lower every margin (docs/method.md "
                        "section 4)", name, config.discopop_tau, objective.DISCOPOP_TAU_TURN)
        # trl's ipo (with ipo_average) and sigmoid_norm: each log-ratio a per-token mean
        self.token_mean_ratios = (config.ipo_average and form == "ipo") or form == "sigmoid_norm"
        if self.recipe.pref_term and config.f_divergence != "reverse_kl" and self.token_mean_ratios:
            raise ConfigError(f"{name!r}: token-mean log-ratios (ipo_average, sigmoid_norm) with "
                              f"method.f_divergence={config.f_divergence}: trl averages the f-scores over tokens, "
                              "aihf would average the log-ratios; set one")
        self.reference: dict[str, torch.Tensor] = {}  # "split.kind" -> log pi_ref per record
        self.generated: dict[str, list[Sequence]] = {}  # split -> (prompt, y') per demonstration
        self.soft_reference = not self_play and self.steps_per_round is not None and config.reference_mixup_alpha < 1
        self.reference_weights: dict[str, torch.Tensor] = {}  # soft update: the reference's trainable weights

    def bind(self, accelerator: Accelerator) -> None:
        super().bind(accelerator)
        if self.soft_reference and (accelerator.distributed_type == DistributedType.FSDP or _zero3(accelerator)):
            raise ConfigError(f"{self.name}: method.reference_mixup_alpha < 1 mixes the reference's weights into the "
                              "policy's, which FSDP and ZeRO-3 shard: use DDP, or the hard update (alpha 1)")

    # ----------------------------------------------------------------------------- rounds

    @torch.no_grad()
    def start_round(self, round_index: int, seed: int) -> None:
        """Freeze the current policy as the reference of this round (docs/method.md section 4); the
        preference pairs' reference stays the starting policy's with ``self_play_pref_reference: start``."""
        if not self.needs_reference:
            return
        policy = self.models["policy"]
        was_training = policy.training
        policy.eval()
        if self.soft_reference:
            self._renew_reference_weights(policy, round_index)
        chunk = 8
        keep_start = self.recipe.demo_term == "self-play" and self.config.self_play_pref_reference == "start"
        with self._lent_reference(policy):  # the soft update's weights (never self-play) for the whole round start
            for split in ("train", "eval"):
                if self.recipe.demo_term == "self-play" and split in self.demos:
                    demos = self.demos[split]
                    self.generated[split] = self.sample_all(policy, [prompt for prompt, _ in demos], seed, chunk)
                    self._reference_logps(policy, f"{split}.demo", demos, chunk)
                    self._reference_logps(policy, f"{split}.generated", self.generated[split], chunk)
                if self.recipe.pref_term and split in self.pairs and (round_index == 0 or not keep_start):
                    pairs = self.pairs[split]
                    shared = self.shared_lengths(pairs) if self.config.ld_alpha is not None else None
                    self._reference_logps(policy, f"{split}.chosen", [p[0] for p in pairs], chunk, shared)
                    self._reference_logps(policy, f"{split}.rejected", [p[1] for p in pairs], chunk, shared)
        policy.train(was_training)

    def _trainable(self, policy) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.accelerator.unwrap_model(policy).named_parameters() if p.requires_grad}

    def _renew_reference_weights(self, policy, round_index: int) -> None:
        """TR-DPO's soft update (Gorbatovski et al. 2024, eq. 5; trl's ``SyncRefModelCallback``): the kept
        reference weights start as the policy's and at each later round become
        theta_ref <- alpha theta + (1 - alpha) theta_ref, alpha = ``reference_mixup_alpha``. Only the
        trainable weights are kept (frozen ones, a LoRA base, are the reference's by definition)."""
        trainable = self._trainable(policy)
        if round_index == 0:
            self.reference_weights = {n: p.detach().clone() for n, p in trainable.items()}
            return
        if not self.reference_weights:
            raise RuntimeError(f"{self.name}: round {round_index} needs the soft update's reference weights, which "
                               "the checkpoint this run resumed from does not hold (made without "
                               "method.reference_mixup_alpha < 1?)")
        alpha = self.config.reference_mixup_alpha
        for n, p in trainable.items():
            self.reference_weights[n].mul_(1.0 - alpha).add_(p.detach(), alpha=alpha)

    @contextlib.contextmanager
    def _lent_reference(self, policy):
        """The policy with the soft update's reference weights while the reference log-probs are computed,
        its own weights put back after (no second model); the policy itself for the hard update."""
        if not self.soft_reference:
            yield
            return
        trainable = self._trainable(policy)
        own = {n: p.detach().clone() for n, p in trainable.items()}
        for n, p in trainable.items():
            p.data.copy_(self.reference_weights[n])
        try:
            yield
        finally:
            for n, p in trainable.items():
                p.data.copy_(own[n])

    def _reference_logps(self, policy, key: str, sequences: list[Sequence], chunk: int,
                         shared: list[float] | None = None) -> None:
        values = self.sharded(len(sequences), chunk, lambda idx: self.logps(
            policy, [sequences[i] for i in idx], None if shared is None else [shared[i] for i in idx])[0].tolist())
        self.reference[key] = torch.tensor(values, dtype=torch.float32)

    @staticmethod
    def shared_lengths(pairs: list[tuple[Sequence, Sequence]]) -> list[float]:
        """LD-DPO's l_p = min(|y_w|, |y_l|) per pair, in scored tokens (a response's first token is not
        scored after an empty prompt: nothing predicts it)."""
        return [float(min(len(chosen[1]), len(rejected[1])) - (not chosen[0])) for chosen, rejected in pairs]

    def round_state(self) -> dict[str, torch.Tensor]:
        """Reference log-probs, self-play samples (flat token ids + lengths) and the soft update's reference
        weights, for checkpoints."""
        state = {f"reference.{k}": v for k, v in self.reference.items()}
        state.update({f"soft_reference.{k}": v.detach().cpu() for k, v in self.reference_weights.items()})
        for split, seqs in self.generated.items():
            state.update(_pack([r for _, r in seqs], f"generated.{split}"))
        return state

    def load_round_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.reference = {k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")}
        self.reference_weights = {k.removeprefix("soft_reference."): v.to(self.accelerator.device)
                                  for k, v in tensors.items() if k.startswith("soft_reference.")}
        for split in self.demos:
            responses = _unpack(tensors, f"generated.{split}")
            if responses is not None:
                self.generated[split] = [(d[0], r) for d, r in zip(self.demos[split], responses)]

    # ------------------------------------------------------------------------------- loss

    def loss(
        self, indices: dict[str, list[int]], split: str, seed: int, phase: frozenset[str] = ALL_MODELS
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, recipe = self.config, self.recipe
        demo_idx, pref_idx = indices.get("demo", []), indices.get("pref", [])
        seqs = [self.demos[split][i] for i in demo_idx]
        if recipe.demo_term == "self-play":
            seqs += [self.generated[split][i] for i in demo_idx]
        seqs += [self.pairs[split][i][0] for i in pref_idx] + [self.pairs[split][i][1] for i in pref_idx]
        n_demo, n_pref = len(demo_idx), len(pref_idx)
        shared = None  # LD-DPO: the pairs' shared lengths, every other sequence whole
        if cfg.ld_alpha is not None:
            shared = [math.inf] * (len(seqs) - 2 * n_pref) + self.shared_lengths([self.pairs[split][i] for i in pref_idx]) * 2
        weighted = cfg.wpo_weighting and recipe.pref_term and n_pref > 0  # WPO: the pairs' weights, the last 2 n_pref rows
        total, count, wpo = self.logps(self.models["policy"], seqs, shared, wpo_rows=2 * n_pref if weighted else 0)
        demo, generated, chosen, rejected = (
            part if part.numel() else None
            for part in torch.split(total, [n_demo, n_demo if recipe.demo_term == "self-play" else 0, n_pref, n_pref])
        )
        device = total.device

        def reference(kind: str, idx: list[int]) -> torch.Tensor:  # picked on the host, then one copy
            return to_device((self.reference[f"{split}.{kind}"][idx],), device)[0]

        w_demo = cfg.w_demo if recipe.demo_term != "none" else 0.0
        w_pref = cfg.w_pref if recipe.pref_term else 0.0
        metrics: dict[str, torch.Tensor] = {}
        pair_weights = None if wpo is None else wpo[:n_pref] * wpo[n_pref:]  # WPO: w(y_w) w(y_l)
        if pair_weights is not None:
            metrics["wpo_weight"] = pair_weights.mean()
        if recipe.pref_term:
            ref_w, ref_l = reference("chosen", pref_idx), reference("rejected", pref_idx)
            if self.token_mean_ratios and n_pref:  # trl's IPO and sigmoid_norm: each log-ratio per response token
                n_w, n_l = count[-2 * n_pref : -n_pref], count[-n_pref:]
                chosen, rejected, ref_w, ref_l = chosen / n_w, rejected / n_l, ref_w / n_w, ref_l / n_l
            margin = objective.dpo_log_ratio_margin(chosen, rejected, ref_w, ref_l).detach()
            metrics["pref_accuracy"] = (margin > 0).float().mean()
            metrics["pref_margin"] = cfg.beta * margin.mean()
        else:
            ref_w = ref_l = None
        if recipe.demo_term == "self-play":
            ref_d, ref_g = reference("demo", demo_idx), reference("generated", demo_idx)
            spin_margin = objective.dpo_log_ratio_margin(demo, generated, ref_d, ref_g).detach()
            metrics["self_play_accuracy"] = (spin_margin > 0).float().mean()
            loss = objective.self_play_aihf_loss(
                demo, generated, ref_d, ref_g, chosen, rejected, ref_w, ref_l,
                cfg.beta, w_demo, w_pref, self.preference, pair_weights,
            )
        else:
            if demo is not None:
                demo = demo / count[:n_demo] if cfg.demo_average else demo
                metrics["demo_logp"] = demo.detach().mean()
            loss = objective.aihf_dpo_loss(demo, chosen, rejected, ref_w, ref_l, cfg.beta, w_demo, w_pref, self.preference,
                                           pair_weights)
        return loss, metrics


class ExplicitRewardMethod(_Records):
    """Reward model and/or RL policy: ``reward``, ``rlhf``'s policy stage, ``aihf`` (docs/method.md section 3).

    Algorithm 1 on one page (:meth:`loss`): for each optimizer step,
      sample (step 2): y ~ pi_k, k per RL prompt (the prompt set's when one is given,
        docs/method.md section 6; otherwise the demonstrations' for AIHF, the preferences' for
        RLHF), and the samples each demonstration (x, y_E) is compared with: the k RL
        samples of its prompt (no prompt set), one fresh y ~ pi_k(.|x) (prompt set), or,
        with ``schedule: rounds``, the ``samples_per_demo`` drawn for it when the round began;
      score every sequence with r_theta_k in one forward pass (demonstrations in
        :meth:`scored_form`, the samples' form);
      policy step (step 1, :meth:`policy_step`): RLOO on the scaled reward minus
        beta * log(pi/pi_ref) over the k samples of each RL prompt (``aihf.lm.rl``);
      reward step (step 3, :meth:`reward_step`): ``objective.aihf_reward_loss``,
        l_R = w_D l_D(r(x, y_E), r(x, y)) + w_P l_BT(r(x, y_w), r(x, y_l)).
    ``schedule: alternating`` takes both steps at every optimizer step; ``rounds`` splits
    each round into reward steps then policy steps (:meth:`phase`). Each loss reaches only
    its own model's parameters, and the trainer clips and steps each model's parameter
    group with its own learning rate and gradient clip.
    """

    def __init__(
        self, name: str, config: MethodConfig, tokenizer, encoder: Encoder, demonstrations, preferences,
        reward_model, policy=None, reference=None, prompts=None, padding_free: bool = False,
        logprob_chunk: int | None = None,
    ) -> None:
        super().__init__(name, config, tokenizer, encoder, demonstrations, preferences, prompts, padding_free,
                         logprob_chunk)
        recipe = self.recipe
        if recipe.reward != "explicit":
            raise ValueError(f"{name!r} is not an explicit-reward method")
        if reward_model.heads != config.reward_ensemble:
            raise ConfigError(f"the reward model has {reward_model.heads} head(s) but method.reward_ensemble is "
                              f"{config.reward_ensemble}: a saved reward model (model.reward_model) keeps its heads")
        reward_model.rule, reward_model.penalty = config.reward_ensemble_rule, config.reward_ensemble_penalty
        self.models = {}
        if recipe.train_policy:
            if policy is None or reference is None:
                raise ValueError(f"{name!r} trains a policy: pass policy and reference")
            self.models["policy"] = policy
        if recipe.train_reward:
            self.models["reward"] = reward_model
        else:
            reward_model.eval().requires_grad_(False)
        self.reward_model, self.policy, self.reference_model = reward_model, policy, reference
        self.sampling = recipe.train_policy or (recipe.train_reward and recipe.demo_term == "irl")
        if self.sampling and policy is None:
            raise ValueError(f"{name!r} samples from a policy: pass one")
        if recipe.demo_term == "irl":
            self.compared_demonstrations()
        self.schedule = config.schedule if recipe.demo_term == "irl" else "alternating"
        self.reward_steps = 0  # rounds: the reward steps that open each round
        self.round_samples: list[Sequence] = []  # rounds: samples_per_demo y ~ pi_k per training demonstration
        self.scaler = RewardScaler(config.reward_normalize, config.reward_clip)
        self.resample_counts: dict[str, torch.Tensor] = {}  # kind -> (K, n) counts (``plan``)

    def bind(self, accelerator: Accelerator) -> None:
        """Move the frozen models (reference, a fixed reward model) to the training device."""
        super().bind(accelerator)
        for model in (self.reward_model, self.policy, self.reference_model):
            if isinstance(model, torch.nn.Module) and model not in self.models.values():
                model.to(accelerator.device)

    # ---------------------------------------------------------------------------- schedule

    def plan(self, records_per_step: int, seed: int = 0) -> None:
        """``reward_ensemble_resample: records``: each head's bootstrap counts of the training
        records (``bootstrap_counts``). ``rounds``: each round is R = ceil(reward_epochs *
        max(|D|, |P|) / records_per_step) reward steps, then ``policy_steps_per_round`` policy
        steps; the run is ``rounds`` rounds."""
        if self.config.reward_ensemble_resample == "records":
            generator = torch.Generator().manual_seed(seed)
            self.resample_counts = {kind: bootstrap_counts(n, self.config.reward_ensemble, generator).to(
                                        self.accelerator.device, torch.float32)  # indexed there at every step
                                    for kind, n in sorted(self.data_sizes("train").items()) if kind in ("demo", "pref") and n}
        if self.schedule != "rounds":
            return
        cfg, sizes = self.config, self.data_sizes("train")
        largest = max(sizes.get("demo", 0), sizes.get("pref", 0))
        self.reward_steps = math.ceil(cfg.reward_epochs * largest / records_per_step)
        self.steps_per_round = self.reward_steps + cfg.policy_steps_per_round
        self.total_steps = cfg.rounds * self.steps_per_round
        self.evaluate_each_round = True
        log.info(
            "%s: %d rounds of %d reward steps + %d policy steps = %d optimizer steps (loop.max_steps is not used)",
            self.name, cfg.rounds, self.reward_steps, cfg.policy_steps_per_round, self.total_steps,
        )

    def phase(self, step: int) -> frozenset[str]:
        if self.schedule != "rounds":
            return ALL_MODELS
        return frozenset({"reward"}) if step % self.steps_per_round < self.reward_steps else frozenset({"policy"})

    @torch.no_grad()
    def start_round(self, round_index: int, seed: int) -> None:
        """``rounds``: draw the round's samples, ``samples_per_demo`` per training demonstration
        prompt from pi_k (step 2), and restart the reward scaler (the reward is new)."""
        if self.schedule != "rounds":
            return
        prompts = self._round_prompts()
        policy = self.models["policy"]
        was_training = policy.training
        policy.eval()
        self.round_samples = self.sample_all(policy, prompts, seed)
        policy.train(was_training)
        self.scaler.reset()

    def _round_prompts(self) -> list[list[int]]:
        """Each training demonstration's prompt, ``samples_per_demo`` times (a round's queries)."""
        return [prompt for prompt, _ in self.demos["train"] for _ in range(self.config.samples_per_demo)]

    def round_state(self) -> dict[str, torch.Tensor]:
        state = {"scaler": self.scaler.state()}
        if self.round_samples:
            state.update(_pack([r for _, r in self.round_samples], "round_samples"))
        return state

    def load_round_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "scaler" in tensors:
            self.scaler.load_state(tensors["scaler"])
        responses = _unpack(tensors, "round_samples")
        if responses is not None:
            self.round_samples = list(zip(self._round_prompts(), responses))

    # ------------------------------------------------------------------------ the two steps

    def _rewards(self, sequences: list[Sequence], grad: bool) -> torch.Tensor:
        """r_theta_k of ``sequences`` (records as encoded, samples in ``canonical_form``) for each
        of the reward model's K heads, shape (K, N); K = 1 without an ensemble."""
        acc = self.accelerator
        batch = collate(sequences, self.tokenizer.pad_token_id).to(acc.device)
        model = self.models.get("reward", self.reward_model)
        with torch.set_grad_enabled(grad), acc.autocast():
            return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, members=True).float()

    def _combined(self, rewards: torch.Tensor) -> torch.Tensor:
        """The reward the policy sees from the heads' (K, N) rewards (``objective.ensemble_reward``)."""
        cfg = self.config
        return objective.ensemble_reward(rewards, cfg.reward_ensemble_rule, cfg.reward_ensemble_penalty)

    def _rl_prompts(self, indices: dict[str, list[int]], split: str) -> list[list[int]]:
        """The prompt ids the policy step samples on: the micro-batch of ``rl_source`` records."""
        chosen = indices.get(self.rl_source, [])
        if self.rl_source == "prompt":
            return [self.prompts[split][i] for i in chosen]
        if self.rl_source == "demo":
            return [self.demos[split][i][0] for i in chosen]
        return [self.pairs[split][i][0][0] for i in chosen]  # "pref": the prompt of the chosen sequence

    def policy_step(self, samples: list[Sequence], rewards: torch.Tensor, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Step 1: RLOO on the scaled rewards r'(x, y) (``RewardScaler``, updated with the
        training rewards of all processes) minus beta * log(pi/pi_ref)(y|x)."""
        rewards = rewards.detach()
        scaled = self._scaled_in_rank_order(rewards) if split == "train" else self.scaler(rewards)
        loss, metrics = rloo_step(
            lambda model: self.logps(model, samples)[0],
            self.models["policy"], self.reference_model, scaled, self.config.rloo_k, self.config.beta,
        )
        metrics.update(reward_raw_mean=rewards.mean(), reward_raw_std=rewards.std(unbiased=False))
        return loss, metrics

    def _scaled_in_rank_order(self, rewards: torch.Tensor) -> torch.Tensor:
        """This process's training rewards, scaled after every process's rewards are folded into
        the scaler in rank order, this one's with the statistics up to its own rank: the numbers
        of one process taking the ranks' micro-batches one after another (gradient accumulation),
        and the same statistics on every process afterwards."""
        acc = self.accelerator
        scaled = rewards
        for rank, chunk in enumerate(acc.gather(rewards).reshape(acc.num_processes, -1)):
            self.scaler.update(chunk)
            if rank == acc.process_index:
                scaled = self.scaler(rewards)
        return scaled

    def reward_step(self, r_demo, r_compared, r_chosen, r_rejected, demo_weights=None,
                    pref_weights=None) -> torch.Tensor:
        """Step 3: l_R on r(x, y_E) vs the samples it is compared with, and r(x, y_w) vs r(x, y_l),
        each record weighted by its count in its head's resample when there is one."""
        cfg = self.config
        return objective.aihf_reward_loss(
            r_demo, r_compared, r_chosen, r_rejected,
            cfg.w_demo if r_demo is not None else 0.0, cfg.w_pref if r_chosen is not None else 0.0,
            cfg.demo_form, cfg.reward_l2, demo_weights, pref_weights, cfg.label_smoothing, cfg.label_noise,
        )

    def _resample_weights(self, kind: str, idx: list[int], split: str, repeat: int = 1) -> torch.Tensor | None:
        """(K, len(idx) * repeat) counts of training records ``idx`` in each head's resample, each
        repeated as its rewards are; None without resampling or off the training split."""
        if split != "train" or kind not in self.resample_counts or not idx:
            return None
        return self.resample_counts[kind][:, idx].repeat_interleave(repeat, dim=-1)

    def loss(
        self, indices: dict[str, list[int]], split: str, seed: int, phase: frozenset[str] = ALL_MODELS
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, recipe, k = self.config, self.recipe, self.config.rloo_k
        reward_phase, policy_phase = "reward" in phase, "policy" in phase and recipe.train_policy
        demo_idx = indices.get("demo", []) if recipe.demo_term == "irl" and reward_phase else []
        pref_idx = indices.get("pref", []) if recipe.pref_term and reward_phase else []
        demos = [self.demos[split][i] for i in demo_idx]
        pairs = [self.pairs[split][i] for i in pref_idx]
        # step 2: what each demonstration is compared with
        from_round = bool(demos) and self.schedule == "rounds" and split == "train"
        from_rl = bool(demos) and not from_round and self.rl_source == "demo"
        s = cfg.samples_per_demo
        round_cmp = [self.round_samples[i * s + j] for i in demo_idx for j in range(s)] if from_round else []
        rl_prompts = [p for p in self._rl_prompts(indices, split) for _ in range(k)] if policy_phase or from_rl else []
        own_prompts = [prompt for prompt, _ in demos] if demos and not (from_round or from_rl) else []
        queries = rl_prompts + own_prompts
        samples = self.sample(self.models.get("policy", self.policy), queries, seed) if queries else []
        # one forward pass of r_theta_k over everything this step scores, samples re-encoded as records are
        scored = [self.canonical_form(seq) for seq in samples + round_cmp]
        seqs = demos + scored + [p[0] for p in pairs] + [p[1] for p in pairs]
        rewards = self._rewards(seqs, grad=recipe.train_reward and reward_phase and torch.is_grad_enabled())
        r_demo, r_rl, r_own, r_round, r_chosen, r_rejected = torch.split(  # each (K, n): a row per head
            rewards, [len(demos), len(rl_prompts), len(own_prompts), len(round_cmp), len(pairs), len(pairs)], dim=-1
        )
        repeat = s if from_round else k if from_rl else 1
        r_compared = r_round if from_round else r_rl if from_rl else r_own
        metrics: dict[str, torch.Tensor] = {}
        loss = rewards.new_zeros(())
        if pairs:
            metrics["reward_accuracy"] = (self._combined(r_chosen) > self._combined(r_rejected)).float().mean().detach()
        if demos:
            metrics["reward_demo_minus_samples"] = r_demo.detach().mean() - r_compared.detach().mean()
        if rewards.shape[0] > 1:
            metrics["reward_heads_sd"] = rewards.detach().std(dim=0, correction=0).mean()
        if recipe.train_reward and reward_phase:  # every head's own l_R, averaged (objective: [K, N] rewards)
            loss = loss + self.reward_step(
                r_demo.repeat_interleave(repeat, dim=-1) if demos else None, r_compared if demos else None,
                r_chosen if pairs else None, r_rejected if pairs else None,
                self._resample_weights("demo", demo_idx, split, repeat), self._resample_weights("pref", pref_idx, split),
            )
        if policy_phase and rl_prompts:
            policy_loss, rl_metrics = self.policy_step(samples[: len(rl_prompts)], self._combined(r_rl), split)
            loss = loss + policy_loss
            metrics.update(rl_metrics)
        return loss, metrics
