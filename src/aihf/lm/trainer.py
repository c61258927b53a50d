"""The one training loop every language-model method runs (docs/lm_engine.md).

A method (``aihf.lm.methods``) says which modules it trains and how one micro-batch of
record indices becomes a loss; this loop does everything else, the same way for all:

* data order: each data kind (demonstrations, preferences, the RL prompt set) is an
  endless stream of seeded permutations; optimizer step s, accumulation slot a, process p
  reads global micro-batch g = (s * accumulation + a) * processes + p. The order is a pure
  function of (seed, step), so resuming needs only the step, and 2 processes x 1
  accumulation read the same micro-batches as 1 process x 2 accumulations;
* rounds: a method with ``steps_per_round`` recomputes its frozen quantities (reference
  log-probs, self-play samples, Algorithm 1's round samples) when a round starts; methods
  without rounds compute them once. A method may fix its schedule from the batch size
  (``plan``: Algorithm 1's ``rounds`` sets the steps per round and the run's length) and
  update only some of its models at a step (``phase``: reward steps, then policy steps);
* one AdamW, one parameter group per trained model (``policy``, ``reward``), each with its
  own learning rate and gradient clip (``reward_learning_rate``, ``reward_max_grad_norm``);
* accelerate: devices, mixed precision, DDP / FSDP / DeepSpeed (configs/accelerate/),
  gradient accumulation (``accelerator.accumulate``), gradient clipping;
* a NaN guard (``runtime.check_finite`` on the loss, all processes agreeing, and on the
  gradient norms, before the optimizer step; under DeepSpeed, whose engine steps inside the
  backward call, on the loss before its backward pass). The step reads the device once: the
  loss, the method's metrics and the norms together;
* checkpoints written atomically (``runtime.atomic_directory``), safetensors + JSON only
  (no pickle): weights, optimizer, scheduler, every process's RNG states, the method's
  round state and the step;
* TensorBoard logs, a tqdm bar (rate, ETA), periodic evaluation on held-out records, and
  ``metrics.json`` (every step's metrics and every evaluation) at the end of a run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from aihf import run_folder, runtime
from aihf.config import ConfigError, Settings, setting
from aihf.lm.batching import TruncationStats

log = logging.getLogger(__name__)


@dataclass
class LoopConfig(Settings):
    """Settings of the training loop, shared by every method."""

    output_dir: str | None = setting(None, help="run folder; None: runs/METHOD-HASH (run_folder.default_output_dir)")
    seed: int = setting(0, ge=0, help="seed of data order, sampling and initialisation")
    max_steps: int = setting(100, ge=1, help="optimizer steps of the run")
    micro_batch_size: int = setting(4, ge=1, help="records of each data kind per micro-batch and process")
    gradient_accumulation_steps: int = setting(1, ge=1, help="micro-batches per optimizer step")
    learning_rate: float = setting(1e-5, gt=0, help="AdamW learning rate (the policy's)")
    reward_learning_rate: float | None = setting(None, gt=0, help="the reward model's learning rate; None: learning_rate")
    weight_decay: float = setting(0.0, ge=0, help="AdamW weight decay")
    fused_optimizer: bool = setting(False, help="AdamW's fused kernel (one kernel for all parameters' updates; GPU, "
                                    "and CPU since torch 2.4): the same update, faster")
    lr_scheduler: Literal["constant", "linear", "cosine"] = setting("constant", help="learning-rate schedule after warm-up")
    warmup_steps: int = setting(0, ge=0, help="linear warm-up steps")
    max_grad_norm: float | None = setting(1.0, gt=0, help="gradient clip (global norm per model); None: no clipping")
    reward_max_grad_norm: float | None = setting(None, gt=0, help="the reward model's clip; None: max_grad_norm")
    mixed_precision: Literal["no", "fp16", "bf16"] | None = setting(None, help="None: accelerate launch's setting")
    eval_every: int = setting(0, ge=0, help="evaluate on held-out records every n steps; 0: only at the end")
    save_every: int = setting(0, ge=0, help="write a checkpoint every n steps (and at the end); 0: never")
    keep_checkpoints: int = setting(2, ge=0, help="checkpoints kept (oldest removed); 0: all")
    log_every: int = setting(1, ge=1, help="log training metrics every n steps")
    log_with: Literal["tensorboard", "none"] = setting("tensorboard", help="tracker")
    resume_from: str | None = setting(
        "auto", help="auto: resume when the run folder holds a checkpoint of this run, start otherwise; "
        "latest: the newest checkpoint (error if none); a checkpoint folder; None: always start afresh"
    )
    progress: bool = setting(True, help="show a progress bar")


class Method(Protocol):
    """What the loop needs from a method (``aihf.lm.methods`` implements it)."""

    name: str
    models: dict[str, torch.nn.Module]  # trainable modules by name; the loop replaces them with prepared ones
    steps_per_round: int | None  # None: one round for the whole run
    total_steps: int | None  # None: loop.max_steps
    evaluate_each_round: bool  # evaluate on the held-out records after every round
    truncation: TruncationStats  # what encoding the records cut (reported, never silent)

    def bind(self, accelerator: Accelerator) -> None: ...
    def plan(self, records_per_step: int, seed: int) -> None: ...
    def phase(self, step: int) -> frozenset[str]: ...
    def data_sizes(self, split: str) -> dict[str, int]: ...
    def start_round(self, round_index: int, seed: int) -> None: ...
    def loss(
        self, indices: dict[str, list[int]], split: str, seed: int, phase: frozenset[str] = ...
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...  # metrics: 0-dim tensors, read once per step
    def round_state(self) -> dict[str, torch.Tensor]: ...
    def load_round_state(self, tensors: dict[str, torch.Tensor]) -> None: ...


# ----------------------------------------------------------------------------- data order


class IndexStream:
    """Record indices 0..n-1 as an endless sequence of seeded permutations (one per epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("an index stream needs at least one record")
        self.n, self.seed = n, seed

    @functools.lru_cache(maxsize=4)
    def _epoch(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def take(self, micro_batch: int, size: int) -> list[int]:
        """Indices of global micro-batch ``micro_batch`` (positions [g*size, (g+1)*size))."""
        start = micro_batch * size
        return [self._epoch(pos // self.n)[pos % self.n] for pos in range(start, start + size)]


# ----------------------------------------------------------------------- safetensors I/O


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state dict as safetensors; tensors sharing storage (tied weights) are stored once.

    Aliases go into the file's metadata (``{"aliases": {name: stored name}}``).
    """
    stored: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            stored[name] = tensor.detach().cpu().contiguous()
    save_file(stored, str(path), metadata={"aliases": json.dumps(aliases)})


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read what ``save_state_dict`` wrote, aliases restored."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    state = load_file(str(path))
    for name, target in aliases.items():
        state[name] = state[target]
    return state


def _optimizer_save(optimizer: torch.optim.Optimizer, directory: Path, name: str) -> None:
    """Optimizer state as ``name.safetensors`` + ``name.json`` (``runtime.optimizer_tensors``)."""
    tensors, meta = runtime.optimizer_tensors(optimizer.state_dict())
    save_file(tensors, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(meta), encoding="utf-8")


def _optimizer_load(optimizer: torch.optim.Optimizer, directory: Path, name: str) -> None:
    meta = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    optimizer.load_state_dict(runtime.optimizer_state(load_file(str(directory / f"{name}.safetensors")), meta))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step under ``output_dir/checkpoints``, if any."""
    found = sorted(Path(output_dir, "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


# --------------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """Per-step training logs, evaluation logs, and where the final weights are."""

    history: list[dict[str, float]]
    evaluations: list[dict[str, float]]
    output_dir: Path


def _schedule(kind: str, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def check_attention_device(models: dict[str, torch.nn.Module], device: torch.device) -> None:
    """Refuse ``model.attn_implementation: flex_attention`` on a CPU before any step: torch has
    no flex-attention backward pass there (NotImplementedError at the first backward), and
    its CPU decoding kernel (a sampler's one-token steps) fails to compile (torch 2.13, an
    inductor C++ error), so neither training nor sampling would run."""
    if device.type != "cpu":
        return
    for name, model in models.items():
        if any(getattr(getattr(m, "config", None), "_attn_implementation", None) == "flex_attention"
               for m in model.modules()):
            raise ConfigError(f"model.attn_implementation='flex_attention' needs a GPU: the {name} model would run on "
                              "the CPU, where torch has no flex-attention backward pass and its decoding kernel does "
                              "not compile; use sdpa (the default) or eager there")


class Trainer:
    """Runs a :class:`Method` for ``config.max_steps`` optimizer steps."""

    def __init__(self, method: Method, config: LoopConfig, accelerator: Accelerator | None = None) -> None:
        if config.output_dir is None:
            raise ValueError("loop.output_dir is None: give the Trainer a folder (aihf.lm.train.train chooses one)")
        self.method, self.config = method, config
        self.output_dir = Path(config.output_dir)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with=None if config.log_with == "none" else config.log_with,
            project_dir=str(self.output_dir),
            step_scheduler_with_optimizer=False,
        )
        acc = self.accelerator
        acc.gradient_accumulation_steps = config.gradient_accumulation_steps
        check_attention_device(method.models, acc.device)
        runtime.set_seed(config.seed)
        names = list(method.models)
        prepared = acc.prepare(*(method.models[n] for n in names))
        prepared = prepared if isinstance(prepared, tuple) else (prepared,)
        groups = []
        for name, module in zip(names, prepared):
            method.models[name] = module
            reward = name == "reward"
            lr = config.reward_learning_rate if reward and config.reward_learning_rate else config.learning_rate
            clip = config.reward_max_grad_norm if reward and config.reward_max_grad_norm is not None else config.max_grad_norm
            params = [p for p in module.parameters() if p.requires_grad]
            groups.append({"params": params, "lr": lr, "name": name, "max_grad_norm": clip})
        self.optimizer = acc.prepare(
            torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=config.fused_optimizer or None))
        method.bind(acc)
        method.plan(config.micro_batch_size * config.gradient_accumulation_steps * acc.num_processes, config.seed)
        self.max_steps = method.total_steps or config.max_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(config.lr_scheduler, config.warmup_steps, self.max_steps)
        )
        cut = method.truncation
        if cut.prompts_truncated or cut.responses_truncated:
            log.warning("%s: %s (raise data.max_length / data.max_prompt_length to keep them)", method.name, cut.summary())
        self.streams = {
            kind: IndexStream(n, config.seed + offset)
            for offset, (kind, n) in enumerate(sorted(method.data_sizes("train").items()))
        }
        self.step, self.round = 0, -1
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []

    # ------------------------------------------------------------------ one optimizer step

    def _micro_batch(self, slot: int) -> tuple[dict[str, list[int]], int]:
        acc, cfg = self.accelerator, self.config
        g = (self.step * cfg.gradient_accumulation_steps + slot) * acc.num_processes + acc.process_index
        indices = {kind: stream.take(g, cfg.micro_batch_size) for kind, stream in self.streams.items()}
        return indices, runtime.mix_seeds(cfg.seed, g)

    def train_step(self) -> dict[str, float]:
        """One optimizer step at the current ``self.step``: its micro-batches (accumulated), the
        NaN guard, clipping, the optimizer and scheduler steps; returns the step's metrics.

        The body of :meth:`fit`'s loop, without the step counter, rounds, logging or
        checkpoints (the benchmarks time it alone). The loss, the method's metrics and the
        gradient norms stay on the device until one read after clipping, which is also where
        the NaN guard looks: a non-finite loss or gradient norm stops training there, before
        the optimizer step, so the weights are never updated with it. One read per step lets
        the host queue the backward pass while the device still runs the forward (each read
        of a device value makes the host wait for the device). Under DeepSpeed, whose engine
        steps its optimizer inside ``accelerator.backward``, the loss is checked before it.
        """
        acc, cfg = self.accelerator, self.config
        modules = list(self.method.models.values())
        phase = self.method.phase(self.step)
        check_before_backward = acc.distributed_type == DistributedType.DEEPSPEED
        losses: list[torch.Tensor] = []
        sums: dict[str, torch.Tensor] = {}
        for slot in range(cfg.gradient_accumulation_steps):
            indices, seed = self._micro_batch(slot)
            with acc.accumulate(*modules):
                loss, metrics = self.method.loss(indices, "train", seed, phase)
                if check_before_backward:
                    shared = acc.reduce(loss.detach().float().reshape(1), "mean")
                    runtime.check_finite(shared, f"the {self.method.name} loss", self.step + 1)
                acc.backward(loss)
            losses.append(loss.detach().float())
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float() / cfg.gradient_accumulation_steps
        norms: dict[str, torch.Tensor] = {}
        for group in self.optimizer.param_groups:  # each model its own clip; a model outside the phase has no gradient
            name = group.get("name", "all")
            if group["max_grad_norm"] is None or name not in phase:
                continue
            norm = acc.clip_grad_norm_(group["params"], group["max_grad_norm"])
            if norm is not None:
                norms[f"grad_norm/{name}"] = torch.as_tensor(norm, device=acc.device).float()
        # the loss and the method metrics are per-process means: average them over processes too
        keys = sorted(sums)
        means = acc.reduce(torch.stack([torch.stack(losses).mean(), *(sums[k] for k in keys)]), "mean")
        values = torch.cat([means, torch.stack(list(norms.values()))]) if norms else means
        read = values.tolist()  # the step's one wait for the device
        loss_value = runtime.check_finite(read[0], f"the {self.method.name} loss", self.step + 1)
        metrics = {"loss": loss_value}
        for key, value in zip(norms, read[1 + len(keys):]):
            # fp16: the loss scaler skips steps with inf gradients by design
            metrics[key] = value if acc.scaler is not None else runtime.check_finite(
                value, f"the {key.removeprefix('grad_norm/')} gradient norm", self.step + 1)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        metrics.update(zip(keys, read[1:1 + len(keys)]))
        for group in self.optimizer.param_groups:
            metrics[f"lr/{group.get('name', 'all')}"] = group["lr"]
        return metrics

    # ------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss and method metrics over the held-out records (each process a share)."""
        acc, size = self.accelerator, self.config.micro_batch_size
        sizes = self.method.data_sizes("eval")
        if not sizes:
            return {}
        batches = max(math.ceil(n / size) for n in sizes.values())
        totals: dict[str, torch.Tensor] = {}
        count = 0
        modules = list(self.method.models.values())
        for module in modules:  # no dropout while evaluating
            module.eval()
        # every process runs the same number of batches (a forward pass through a DDP, FSDP
        # or ZeRO-3 model is a collective); a process with none left repeats the last, unweighted
        for turn in range(math.ceil(batches / acc.num_processes)):
            b = turn * acc.num_processes + acc.process_index
            real = b < batches
            b = min(b, batches - 1)
            indices = {kind: [(b * size + i) % n for i in range(size)] for kind, n in sizes.items()}
            loss, metrics = self.method.loss(indices, "eval", runtime.mix_seeds(self.config.seed, -1 - b))
            for key, value in {"loss": loss, **metrics}.items():
                totals[key] = totals.get(key, 0.0) + value.detach().double() * real
            count += real
        for module in modules:
            module.train()
        keys = sorted(totals)
        packed = torch.stack([*(torch.as_tensor(totals[k], device=acc.device) for k in keys),
                              torch.tensor(float(count), device=acc.device, dtype=torch.float64)])
        packed = acc.reduce(packed, "sum")
        result = {f"eval/{k}": v / max(1.0, float(packed[-1])) for k, v in zip(keys, packed[:-1].tolist())}
        result["step"] = self.step
        result["round"] = self.round
        return result

    # ----------------------------------------------------------------------- checkpoints

    def _optimizer_layout(self) -> str:
        """How optimizer states are saved: one file, one per process (FSDP shards), or not
        at all (DeepSpeed, whose own format is pickle: resuming restarts Adam's moments)."""
        kind = self.accelerator.distributed_type
        return {DistributedType.FSDP: "per-process", DistributedType.DEEPSPEED: "none"}.get(kind, "single")

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-N`` atomically: the main process owns the temporary
        directory, every process writes its own RNG states (and FSDP optimizer shard) into
        it, and the directory is swapped into place once all have finished."""
        acc = self.accelerator
        weights = {name: acc.get_state_dict(module) for name, module in self.method.models.items()}
        for name, state in weights.items():  # a checkpoint never holds NaN or inf weights
            bad = next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
            if bad is not None:
                raise runtime.NonFiniteLossError(f"the {name} weight {bad} is not finite after step {self.step}: "
                                                 "no checkpoint was written")
        round_state = self.method.round_state()
        layout = self._optimizer_layout()
        path = self.output_dir / "checkpoints" / f"step-{self.step:07d}"
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(runtime.atomic_directory(path)) if acc.is_main_process else None
            tmp = Path(broadcast_object_list([tmp])[0])
            runtime.save_rng_state(tmp, f"rng-{acc.process_index}")
            if layout == "per-process":
                _optimizer_save(self.optimizer, tmp, f"optimizer-{acc.process_index}")
            acc.wait_for_everyone()
            if acc.is_main_process:
                for name, state in weights.items():
                    save_state_dict(state, tmp / f"{name}.safetensors")
                if layout == "single":
                    _optimizer_save(self.optimizer, tmp, "optimizer")
                (tmp / "scheduler.json").write_text(json.dumps(self.scheduler.state_dict()), encoding="utf-8")
                save_file({k: v.contiguous() for k, v in round_state.items()}, str(tmp / "round.safetensors"))
                state = {
                    "step": self.step,
                    "round": self.round,
                    "method": self.method.name,
                    "processes": acc.num_processes,
                    "optimizer": layout,
                    "truncation": asdict(self.method.truncation),
                    "history": self.history,
                    "evaluations": self.evaluations,
                    "config": asdict(self.config),
                }
                (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        if acc.is_main_process and self.config.keep_checkpoints > 0:
            for stale in sorted(path.parent.glob("step-*"))[: -self.config.keep_checkpoints]:
                shutil.rmtree(stale)
        acc.wait_for_everyone()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything ``save_checkpoint`` wrote; the next step is the one after it."""
        path, acc = Path(path), self.accelerator
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if state["method"] != self.method.name:
            raise ConfigError(f"{path} is a {state['method']!r} checkpoint, not {self.method.name!r}")
        changed = run_folder.differences({"loop": state["config"]}, {"loop": asdict(self.config)})
        if changed:
            raise ConfigError(f"{path} was written by a run with other loop settings ({'; '.join(changed)}): "
                              "resume it with its own settings or start a new run")
        same_world = state["processes"] == acc.num_processes
        for name, module in self.method.models.items():
            acc.unwrap_model(module).load_state_dict(load_state_dict(path / f"{name}.safetensors"))
        layout = state["optimizer"]
        if layout == "single":
            _optimizer_load(self.optimizer, path, "optimizer")
        elif layout == "per-process" and same_world:
            _optimizer_load(self.optimizer, path, f"optimizer-{acc.process_index}")
        else:
            log.warning("%s holds no optimizer state for this run (%s, %d processes): Adam restarts from zero",
                        path, layout, state["processes"])
        self.scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text(encoding="utf-8")))
        runtime.load_rng_state(path, f"rng-{acc.process_index if same_world else 0}")
        self.method.load_round_state(load_file(str(path / "round.safetensors")))
        self.step, self.round = state["step"], state["round"]
        self.history, self.evaluations = state["history"], state["evaluations"]

    # ------------------------------------------------------------------------------- fit

    def fit(self) -> TrainResult:
        """Train to ``max_steps`` and return the logs; resume first as ``resume_from`` says
        (``auto``: the newest checkpoint in ``output_dir`` if any; ``latest``: it, or an error;
        a path; ``None``: start). A NaN stop or Ctrl-C ends in one message saying where the
        last checkpoint is (:class:`runtime.NonFiniteLossError`, :class:`runtime.TrainingInterrupted`)."""
        cfg = self.config
        if cfg.resume_from:
            path = latest_checkpoint(cfg.output_dir) if cfg.resume_from in ("auto", "latest") else Path(cfg.resume_from)
            if path is None and cfg.resume_from == "latest":
                raise ConfigError(f"loop.resume_from=latest but {cfg.output_dir}/checkpoints holds no checkpoint")
            if path is not None:
                self.load_checkpoint(path)
                log.info("resumed from %s at step %d", path, self.step)
        try:
            return self._fit()
        except runtime.NonFiniteLossError as err:
            raise runtime.NonFiniteLossError(f"{err}. {self._last_checkpoint_note()}") from None
        except KeyboardInterrupt:
            raise runtime.TrainingInterrupted(
                f"interrupted at step {self.step} of {self.max_steps}. {self._last_checkpoint_note()}"
            ) from None

    def _last_checkpoint_note(self) -> str:
        path = latest_checkpoint(self.output_dir)
        if path is None:
            return ("No checkpoint was written (loop.save_every=0 or none reached): the same command "
                    "starts the run again")
        step = int(path.name.split("-")[1])
        return (f"The last checkpoint is {path} (step {step}, weights checked finite when written); "
                "the same command continues from it (loop.resume_from=auto)")

    def _fit(self) -> TrainResult:
        acc, cfg, method = self.accelerator, self.config, self.method
        if cfg.log_with != "none":
            acc.init_trackers(method.name)
        bar = tqdm(
            total=self.max_steps,
            initial=self.step,
            desc=method.name,
            disable=not (cfg.progress and acc.is_local_main_process),
            dynamic_ncols=True,
        )
        for module in method.models.values():
            module.train()
        while self.step < self.max_steps:
            round_index = self.step // method.steps_per_round if method.steps_per_round else 0
            if round_index != self.round:
                method.start_round(round_index, runtime.mix_seeds(cfg.seed, 7, round_index))
                self.round = round_index
            metrics = self.train_step()
            self.step += 1
            metrics["step"] = self.step
            self.history.append(metrics)
            if self.step % cfg.log_every == 0:
                acc.log({k: v for k, v in metrics.items() if k != "step"}, step=self.step)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
            bar.update(1)
            round_end = bool(method.steps_per_round) and self.step % method.steps_per_round == 0
            if (cfg.eval_every and self.step % cfg.eval_every == 0) or (method.evaluate_each_round and round_end):
                self._evaluate_and_log()
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint()
        bar.close()
        if cfg.save_every and self.step % cfg.save_every != 0:
            self.save_checkpoint()
        evaluated = self.evaluations and self.evaluations[-1]["step"] == self.step
        if cfg.eval_every and not evaluated:
            self._evaluate_and_log()
        for tracker in acc.trackers:  # not acc.end_training(): it destroys the process group, which the
            tracker.finish()  # next stage of the same processes needs (rlhf's policy stage, an experiment's runs)
        if acc.is_main_process:
            self.write_metrics()
        return TrainResult(self.history, self.evaluations, self.output_dir)

    def write_metrics(self) -> Path:
        """``output_dir/metrics.json``: every step's training metrics and every evaluation, the
        whole run's (a resumed run's history comes back from its checkpoint), whatever the tracker."""
        path = self.output_dir / "metrics.json"
        with runtime.atomic_file(path) as tmp:
            tmp.write_text(json.dumps({"history": self.history, "evaluations": self.evaluations}), encoding="utf-8")
        return path

    def _evaluate_and_log(self) -> None:
        result = self.evaluate()
        if result:
            self.evaluations.append(result)
            self.accelerator.log({k: v for k, v in result.items() if k not in ("step", "round")}, step=self.step)
            if self.accelerator.is_main_process:
                log.info("step %d: %s", self.step, {k: round(v, 4) for k, v in result.items()})
