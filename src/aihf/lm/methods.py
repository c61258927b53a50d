"""Every language-model method as a named configuration (a :class:`Recipe`) of two losses.

METHOD.md's objective has two switches that matter for the code: whether the reward is
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
  METHOD.md section 6); then the policy step samples on it, and AIHF's reward step draws
  one y ~ pi_k per demonstration on the demonstration's own prompt.

``RECIPES`` maps each method name to its switches; ``MethodConfig`` holds the numbers.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object

from aihf import objective
from aihf.config import ConfigError
from aihf.data import Demonstration, Preference, PromptRecord
from aihf.lm.batching import Encoder, Sequence, TruncationStats, collate
from aihf.lm.generation import HFSampler
from aihf.lm.rl import rloo_step

Split = Literal["train", "eval"]


@dataclass
class MethodConfig:
    """The numbers of the objective (METHOD.md sections 2-4) and of sampling."""

    beta: float = 0.1
    w_demo: float = 1.0
    w_pref: float = 1.0
    preference_form: Literal["sigmoid", "ipo"] = "sigmoid"
    demo_average: bool = True
    demo_form: Literal["linear", "logistic"] = "logistic"
    reward_l2: float = 0.0
    rloo_k: int = 4
    kl_coef: float = 0.05
    steps_per_round: int | None = None
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.w_demo < 0 or self.w_pref < 0:
            raise ValueError("w_demo and w_pref must be >= 0")
        if self.rloo_k < 2:
            raise ValueError(f"rloo_k must be >= 2 (leave-one-out needs another sample), got {self.rloo_k}")
        if self.steps_per_round is not None and self.steps_per_round < 1:
            raise ValueError(f"steps_per_round must be >= 1 or null, got {self.steps_per_round}")


@dataclass(frozen=True)
class Recipe:
    """The structural switches of one method."""

    description: str
    reward: Literal["implicit", "explicit"]
    demo_term: Literal["none", "likelihood", "self-play", "irl"]
    pref_term: bool
    preference_form: Literal["sigmoid", "ipo"] | None = None  # None: MethodConfig.preference_form
    train_policy: bool = True
    train_reward: bool = False
    rl_prompts: Literal["demo", "pref", "none"] = "none"  # where RL samples are drawn without a prompt set

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
    "sft": Recipe("supervised likelihood on demonstrations (METHOD.md 5)", "implicit", "likelihood", False),
    "reward": Recipe(
        "Bradley-Terry reward model on preferences (METHOD.md 2, w_D = 0)",
        "explicit", "none", True, train_policy=False, train_reward=True,
    ),
    "rlhf": Recipe(
        "RLHF: reward model, then RLOO with a KL penalty to the reference (METHOD.md 5)",
        "explicit", "none", False, rl_prompts="pref",
    ),
    "dpo": Recipe("DPO on preferences (METHOD.md 4-5)", "implicit", "none", True, "sigmoid"),
    "ipo": Recipe("IPO on preferences (METHOD.md 4-5)", "implicit", "none", True, "ipo"),
    "spin": Recipe("SPIN: self-play on demonstrations, reference = previous iterate (METHOD.md 5)", "implicit", "self-play", False),
    "aihf": Recipe(
        "AIHF Algorithm 1: RLOO policy step + reward step on demonstrations vs samples and preferences (METHOD.md 3)",
        "explicit", "irl", True, train_reward=True, rl_prompts="demo",
    ),
    "aihf-dpo": Recipe("AIHF-DPO: supervised likelihood + DPO, one stage (METHOD.md 4)", "implicit", "likelihood", True),
    "self-play-aihf": Recipe(
        "Self-Play-AIHF: SPIN term on demonstrations + DPO on preferences, reference = iterate (METHOD.md 4)",
        "implicit", "self-play", True,
    ),
}


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
    ) -> None:
        self.name, self.config, self.tokenizer, self.encoder = name, config, tokenizer, encoder
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

    @property
    def truncation(self) -> TruncationStats:
        return self.encoder.stats

    def bind(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator

    def data_sizes(self, split: str) -> dict[str, int]:
        sizes = {}
        if split in self.demos:
            sizes["demo"] = len(self.demos[split])
        if split in self.pairs:
            sizes["pref"] = len(self.pairs[split])
        if split in self.prompts:
            sizes["prompt"] = len(self.prompts[split])
        return sizes

    def logps(self, model, sequences: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(y|x) summed over response tokens, number of response tokens), one forward pass."""
        acc = self.accelerator
        batch = collate(sequences, self.tokenizer.pad_token_id).to(acc.device)
        with acc.autocast():
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        total = objective.sequence_logprobs(logits, batch.input_ids, batch.loss_mask)
        return total, batch.loss_mask[:, 1:].sum(-1).clamp(min=1).to(total.dtype)

    @contextlib.contextmanager
    def _full_weights(self, model):
        """The unwrapped model with all its weights present, for ``generate``.

        DDP / one device: the model itself. DeepSpeed ZeRO-3: the shards are gathered for
        the duration (as trl does for generation). FSDP: refused, with the alternative.
        """
        acc = self.accelerator
        plugin = acc.state.deepspeed_plugin
        if acc.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3:
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
        """(prompt, y) with y ~ model(.|prompt), one per prompt, reproducible from ``seed``."""
        cfg = self.config
        with self._full_weights(model) as full:
            sampler = HFSampler(full, self.tokenizer)
            responses = sampler.generate(prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed=seed)
        return list(zip(prompts, responses))

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
    """Policy-only methods: SFT, DPO, IPO, AIHF-DPO, SPIN, Self-Play-AIHF (METHOD.md sections 4-5).

    Per micro-batch, one forward pass over [demonstrations, (samples y'), chosen, rejected]
    gives the sequence log-probs; the loss is ``objective.aihf_dpo_loss`` (SFT, DPO, IPO,
    AIHF-DPO: reference = the starting policy) or ``objective.self_play_aihf_loss`` (SPIN,
    Self-Play-AIHF: reference = the iterate pi_t, renewed every ``steps_per_round`` steps
    with fresh samples y' ~ pi_t).
    """

    def __init__(self, name: str, config: MethodConfig, tokenizer, encoder: Encoder, policy, demonstrations, preferences) -> None:
        super().__init__(name, config, tokenizer, encoder, demonstrations, preferences)
        if self.recipe.reward != "implicit":
            raise ValueError(f"{name!r} is not an implicit-reward method")
        self.models = {"policy": policy}
        self_play = self.recipe.demo_term == "self-play"
        self.steps_per_round = (config.steps_per_round or 1) if self_play else None
        if self_play and config.steps_per_round is None:
            raise ConfigError(f"{name!r} regenerates its samples every round: set method.steps_per_round")
        self.needs_reference = self.recipe.pref_term or self_play
        self.form = self.recipe.preference_form or config.preference_form
        self.reference: dict[str, torch.Tensor] = {}  # "split.kind" -> log pi_ref per record
        self.generated: dict[str, list[Sequence]] = {}  # split -> (prompt, y') per demonstration

    # ----------------------------------------------------------------------------- rounds

    @torch.no_grad()
    def start_round(self, round_index: int, seed: int) -> None:
        """Freeze the current policy as the reference of this round (METHOD.md section 4)."""
        if not self.needs_reference:
            return
        policy = self.models["policy"]
        was_training = policy.training
        policy.eval()
        chunk = 8
        for split in ("train", "eval"):
            if self.recipe.demo_term == "self-play" and split in self.demos:
                demos = self.demos[split]
                self.generated[split] = self.sharded(
                    len(demos),
                    chunk,
                    lambda idx: self.sample(policy, [demos[i][0] for i in idx], seed ^ (idx[0] + 1)),
                )
                self._reference_logps(policy, f"{split}.demo", demos, chunk)
                self._reference_logps(policy, f"{split}.generated", self.generated[split], chunk)
            if self.recipe.pref_term and split in self.pairs:
                pairs = self.pairs[split]
                self._reference_logps(policy, f"{split}.chosen", [p[0] for p in pairs], chunk)
                self._reference_logps(policy, f"{split}.rejected", [p[1] for p in pairs], chunk)
        policy.train(was_training)

    def _reference_logps(self, policy, key: str, sequences: list[Sequence], chunk: int) -> None:
        values = self.sharded(len(sequences), chunk, lambda idx: self.logps(policy, [sequences[i] for i in idx])[0].tolist())
        self.reference[key] = torch.tensor(values, dtype=torch.float32)

    def round_state(self) -> dict[str, torch.Tensor]:
        """Reference log-probs and self-play samples (flat token ids + lengths), for checkpoints."""
        state = {f"reference.{k}": v for k, v in self.reference.items()}
        for split, seqs in self.generated.items():
            state[f"generated.{split}.lengths"] = torch.tensor([len(r) for _, r in seqs], dtype=torch.long)
            state[f"generated.{split}.tokens"] = torch.cat([torch.tensor(r, dtype=torch.long) for _, r in seqs])
        return state

    def load_round_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.reference = {k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")}
        for split in self.demos:
            if f"generated.{split}.lengths" in tensors:
                responses = torch.split(tensors[f"generated.{split}.tokens"], tensors[f"generated.{split}.lengths"].tolist())
                self.generated[split] = [(d[0], r.tolist()) for d, r in zip(self.demos[split], responses)]

    # ------------------------------------------------------------------------------- loss

    def loss(self, indices: dict[str, list[int]], split: str, seed: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, recipe = self.config, self.recipe
        demo_idx, pref_idx = indices.get("demo", []), indices.get("pref", [])
        seqs = [self.demos[split][i] for i in demo_idx]
        if recipe.demo_term == "self-play":
            seqs += [self.generated[split][i] for i in demo_idx]
        seqs += [self.pairs[split][i][0] for i in pref_idx] + [self.pairs[split][i][1] for i in pref_idx]
        total, count = self.logps(self.models["policy"], seqs)
        n_demo, n_pref = len(demo_idx), len(pref_idx)
        demo, generated, chosen, rejected = (
            part if part.numel() else None
            for part in torch.split(total, [n_demo, n_demo if recipe.demo_term == "self-play" else 0, n_pref, n_pref])
        )
        device = total.device

        def reference(kind: str, idx: list[int]) -> torch.Tensor:
            return self.reference[f"{split}.{kind}"].to(device)[torch.tensor(idx, device=device)]

        w_demo = cfg.w_demo if recipe.demo_term != "none" else 0.0
        w_pref = cfg.w_pref if recipe.pref_term else 0.0
        metrics: dict[str, float] = {}
        if recipe.pref_term:
            ref_w, ref_l = reference("chosen", pref_idx), reference("rejected", pref_idx)
            margin = objective.dpo_log_ratio_margin(chosen, rejected, ref_w, ref_l).detach()
            metrics["pref_accuracy"] = float((margin > 0).float().mean())
            metrics["pref_margin"] = float(cfg.beta * margin.mean())
        else:
            ref_w = ref_l = None
        if recipe.demo_term == "self-play":
            ref_d, ref_g = reference("demo", demo_idx), reference("generated", demo_idx)
            spin_margin = objective.dpo_log_ratio_margin(demo, generated, ref_d, ref_g).detach()
            metrics["self_play_accuracy"] = float((spin_margin > 0).float().mean())
            loss = objective.self_play_aihf_loss(
                demo, generated, ref_d, ref_g, chosen, rejected, ref_w, ref_l,
                cfg.beta, w_demo, w_pref, self.form,
            )
        else:
            if demo is not None:
                demo = demo / count[:n_demo] if cfg.demo_average else demo
                metrics["demo_logp"] = float(demo.detach().mean())
            loss = objective.aihf_dpo_loss(demo, chosen, rejected, ref_w, ref_l, cfg.beta, w_demo, w_pref, self.form)
        return loss, metrics


class ExplicitRewardMethod(_Records):
    """Reward model and/or RL policy: ``reward``, ``rlhf``'s policy stage, ``aihf`` (METHOD.md section 3).

    One step of Algorithm 1 per micro-batch. Sample, in one ``generate`` call: k responses
    y ~ pi_k for each RL prompt x (the prompt set's when one is given, METHOD.md section 6;
    otherwise the demonstrations' for AIHF, the preferences' for RLHF), and, for AIHF with
    a prompt set, one y ~ pi_k(.|x) per demonstration (x, y_E) on its own prompt (step 2).
    Score [y_E, samples, y_w, y_l] with r_theta_k in one forward pass, then
      policy step: RLOO on R = r_theta_k(x, y) - kl_coef * log(pi/pi_ref)(y|x) over the k
        samples of each RL prompt (``aihf.lm.rl``);
      reward step: ``objective.aihf_reward_loss`` on r(x, y_E) vs r(x, y) and r(x, y_w) vs
        r(x, y_l), i.e. l_R = -w_D mean(r(x, y_E) - r(x, y)) - w_P mean(log sigma(r_w - r_l))
        (or the logistic demonstration term), where each y_E is paired with the k RL samples
        of its prompt (no prompt set: r(x, y_E) repeated k times) or with its one sample.
    Each loss only reaches its own model's parameters, so one backward pass and one
    optimizer step (two parameter groups) perform both updates.
    """

    def __init__(
        self, name: str, config: MethodConfig, tokenizer, encoder: Encoder, demonstrations, preferences,
        reward_model, policy=None, reference=None, prompts=None,
    ) -> None:
        super().__init__(name, config, tokenizer, encoder, demonstrations, preferences, prompts)
        recipe = self.recipe
        if recipe.reward != "explicit":
            raise ValueError(f"{name!r} is not an explicit-reward method")
        self.steps_per_round = None
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

    def bind(self, accelerator: Accelerator) -> None:
        """Move the frozen models (reference, a fixed reward model) to the training device."""
        super().bind(accelerator)
        for model in (self.reward_model, self.policy, self.reference_model):
            if isinstance(model, torch.nn.Module) and model not in self.models.values():
                model.to(accelerator.device)

    def start_round(self, round_index: int, seed: int) -> None:
        """Nothing is frozen per round: samples are drawn fresh at every step."""

    def round_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_round_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """No round state to restore."""

    def _rewards(self, sequences: list[Sequence], grad: bool) -> torch.Tensor:
        acc = self.accelerator
        batch = collate(sequences, self.tokenizer.pad_token_id).to(acc.device)
        model = self.models.get("reward", self.reward_model)
        with torch.set_grad_enabled(grad), acc.autocast():
            return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).float()

    def _rl_prompts(self, indices: dict[str, list[int]], split: str) -> list[list[int]]:
        """The prompt ids the policy step samples on: the micro-batch of ``rl_source`` records."""
        chosen = indices.get(self.rl_source, [])
        if self.rl_source == "prompt":
            return [self.prompts[split][i] for i in chosen]
        if self.rl_source == "demo":
            return [self.demos[split][i][0] for i in chosen]
        return [self.pairs[split][i][0][0] for i in chosen]  # "pref": the prompt of the chosen sequence

    def loss(self, indices: dict[str, list[int]], split: str, seed: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, recipe, k = self.config, self.recipe, self.config.rloo_k
        demo_idx, pref_idx = indices.get("demo", []), indices.get("pref", [])
        demos = [self.demos[split][i] for i in demo_idx] if recipe.demo_term == "irl" else []
        pairs = [self.pairs[split][i] for i in pref_idx] if recipe.pref_term else []
        rl_prompts: list[list[int]] = []  # k samples each, for RLOO (and the demonstration term without a prompt set)
        demo_prompts: list[list[int]] = []  # with a prompt set: one sample per demonstration, on its prompt
        if self.sampling:
            rl_prompts = [prompt for prompt in self._rl_prompts(indices, split) for _ in range(k)]
            if self.rl_source == "prompt":
                demo_prompts = [prompt for prompt, _ in demos]
        queries = rl_prompts + demo_prompts
        samples = self.sample(self.models.get("policy", self.policy), queries, seed) if queries else []
        seqs = demos + samples + [p[0] for p in pairs] + [p[1] for p in pairs]
        rewards = self._rewards(seqs, grad=recipe.train_reward and torch.is_grad_enabled())
        r_demo, r_samples, r_chosen, r_rejected = torch.split(rewards, [len(demos), len(samples), len(pairs), len(pairs)])
        r_rl, r_own = torch.split(r_samples, [len(rl_prompts), len(demo_prompts)])
        # the samples each demonstration is compared with: its own one, or the k of its prompt
        r_demo_paired, r_demo_samples = (r_demo, r_own) if demo_prompts else (r_demo.repeat_interleave(k), r_rl)
        metrics: dict[str, float] = {}
        loss = rewards.new_zeros(())
        if pairs:
            metrics["reward_accuracy"] = float((r_chosen > r_rejected).float().mean())
        if rl_prompts:
            metrics["reward_samples"] = float(r_rl.detach().mean())
        if demos:
            metrics["reward_demo_minus_samples"] = float((r_demo.detach().mean() - r_demo_samples.detach().mean()))
        if recipe.train_reward:
            w_demo = cfg.w_demo if demos else 0.0
            w_pref = cfg.w_pref if pairs else 0.0
            loss = loss + objective.aihf_reward_loss(
                r_demo_paired if demos else None, r_demo_samples if demos else None,
                r_chosen if pairs else None, r_rejected if pairs else None,
                w_demo, w_pref, cfg.demo_form, cfg.reward_l2,
            )
        if recipe.train_policy and rl_prompts:
            rl_samples = samples[: len(rl_prompts)]
            policy_loss, rl_metrics = rloo_step(
                lambda model: self.logps(model, rl_samples)[0],
                self.models["policy"], self.reference_model, r_rl.detach(), k, cfg.kl_coef,
            )
            loss = loss + policy_loss
            metrics.update(rl_metrics)
        return loss, metrics
