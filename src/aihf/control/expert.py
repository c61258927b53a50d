"""Train the experts whose rollouts become the MuJoCo data: SAC on the true reward.

Resumable, and a resumed run is the uninterrupted one. At the first round of environment
steps (SB3's ``collect_rollouts``) that starts at or after every ``checkpoint_every`` steps,
the run writes
  checkpoints/step_<N>.safetensors   the policy (actor + critics) via ``policy_io.save_policy``
  resume/sac.safetensors, resume/replay_buffer.safetensors, resume/sac.json
                                     SAC, its optimisers and replay buffer, to continue an
                                     interrupted run (``sac_state``: no pickle)
  resume/run_state.json              the environment and random generators (``RunState``)
  progress.jsonl                     one line per finished training episode
and at the end ``provenance.json`` (seed, steps, wall time, evaluated return, versions).
With ``target_return`` each checkpoint is evaluated first (``eval_episodes`` deterministic
episodes on reset seeds from ``reset_seeds.checkpoint_evaluation_seed(seed)`` on, as ``make_data`` evaluates checkpoints
with its own seed; ``evaluations.json``, and in the resume state), and the run ends at the
first checkpoint whose mean reaches the target: that checkpoint is the final policy.
Re-running the same command continues from ``resume/`` when it exists (with other settings
than ``steps``, ``checkpoint_every``, ``eval_episodes`` or ``target_return`` it is refused; a smaller
``steps`` ends the run at the checkpoint it has reached)
(``test_a_resumed_expert_run_is_the_uninterrupted_run``). A round's start is the one point
where SB3's state is whole: the last transition is stored, the last observation kept
(``_last_obs``, saved with the model) and the updates of the round before are made. A
``resume/`` of the older pickled format (``model.zip``) is refused with a message, not read.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor

from aihf.control.policy_io import save_policy
from aihf.control.reset_seeds import checkpoint_evaluation_seed, expert_final_evaluation_seed
from aihf.control.rollout import evaluate_policy_return
from aihf.control.run_state import RunState
from aihf.control.sac_backend import Backend, make_sac
from aihf.control.sac_state import has_sac_state, load_sac_state, save_sac_state
from aihf.runtime import atomic_file, provenance


@dataclass
class ExpertConfig:
    """SAC on the true reward (the backend's defaults except where named). ``batched_updates``:
    ``train_freq = gradient_steps`` (one update per environment step either way; sbx runs
    them in one compiled call)."""

    env: str = "Hopper-v5"
    steps: int = 100_000
    seed: int = 0
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    learning_starts: int = 5_000
    checkpoint_every: int = 10_000
    eval_episodes: int = 10
    backend: Backend = "sb3"
    batched_updates: int = 1
    buffer_size: int = 1_000_000
    target_return: float | None = None


class _Checkpointer(BaseCallback):
    """Writes the policy and the resume state when a round of environment steps starts at or
    after every ``every`` steps (module docstring), and per-episode returns."""

    def __init__(self, out: Path, cfg: ExpertConfig, elapsed0: float = 0.0, cpu0: float = 0.0):
        super().__init__()
        self.out, self.every, self.net_arch = out, cfg.checkpoint_every, cfg.net_arch
        self.cfg, self.reached_at = cfg, None
        self.t0, self.elapsed0 = time.time(), elapsed0
        self.c0, self.cpu0 = time.process_time(), cpu0

    def elapsed(self) -> float:
        """Wall-clock seconds of training so far, over every resumed part."""
        return self.elapsed0 + time.time() - self.t0

    def cpu(self) -> float:
        """This process's CPU seconds of training so far (all its threads), over every part."""
        return self.cpu0 + time.process_time() - self.c0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                line = {"step": self.num_timesteps, "return": float(info["episode"]["r"]),
                        "length": int(info["episode"]["l"]), "elapsed_s": round(self.elapsed(), 1)}
                with open(self.out / "progress.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
        return self.reached_at is None  # False ends ``learn`` (after this one step, which no checkpoint holds)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.due():
            self.save()

    def due(self) -> int:
        """The step from which the next checkpoint is due: the first multiple of ``every``
        after the last checkpoint's step."""
        done = sorted((self.out / "checkpoints").glob("step_*.safetensors"))
        last = int(done[-1].stem.split("_")[1]) if done else 0
        return (last // self.every + 1) * self.every

    def save(self) -> None:
        """The policy checkpoint, its evaluation (with a target), then the resume state, which
        replaces the last one only once it is whole (``resume.new`` renamed; a crash in between
        leaves ``resume.old``, which ``train_expert`` falls back to)."""
        step = self.num_timesteps
        (self.out / "checkpoints").mkdir(exist_ok=True)
        save_policy(self.model.policy, self.out / "checkpoints" / f"step_{step:07d}.safetensors",
                    {"net_arch": self.net_arch, "step": step})
        evaluation = {}
        if self.cfg.target_return is not None:
            evaluation = _evaluate_checkpoint(self.model.policy, self.cfg, step, self.out)
            if evaluation["eval_return_mean"] >= self.cfg.target_return:
                self.reached_at = step
        new, current, old = (self.out / name for name in ("resume.new", "resume", "resume.old"))
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        save_sac_state(self.model, new)
        (new / "run_state.json").write_text(json.dumps(RunState.capture(self.model)))
        (new / "state.json").write_text(json.dumps({"step": step, "elapsed_s": self.elapsed(), "cpu_s": self.cpu(),
                                                    **evaluation}))
        if current.exists():
            current.rename(old)
        new.rename(current)
        shutil.rmtree(old, ignore_errors=True)


def _new_model(cfg: ExpertConfig, env: gym.Env):
    return make_sac(cfg.backend, env, policy_kwargs={"net_arch": cfg.net_arch}, learning_starts=cfg.learning_starts,
                    buffer_size=cfg.buffer_size, train_freq=cfg.batched_updates,
                    gradient_steps=cfg.batched_updates, seed=cfg.seed)


def _resume(cfg: ExpertConfig, resume: Path, env: gym.Env):
    """The model saved in ``resume`` with its environment and generators back where they were."""
    if not has_sac_state(resume):
        raise ValueError(f"{resume} was written by an older aihf (SB3's pickled model.zip and replay_buffer.pkl), "
                         "which this version does not read: continue it with that version, or remove it to start over")
    model = _new_model(cfg, env)
    load_sac_state(model, resume)
    model.get_env().envs[0].reset()  # the wrappers' bookkeeping starts an episode; RunState puts the rest back
    RunState.restore(json.loads((resume / "run_state.json").read_text()), model)
    return model


def _evaluate_checkpoint(policy, cfg: ExpertConfig, step: int, out: Path) -> dict:
    """Mean and std of the true return of ``cfg.eval_episodes`` deterministic episodes (reset
    seeds from ``checkpoint_evaluation_seed(cfg.seed)`` on); also written to ``out/evaluations.json`` by step."""
    returns = evaluate_policy_return(policy, gym.make(cfg.env), cfg.eval_episodes, seed=checkpoint_evaluation_seed(cfg.seed))
    evaluation = {"eval_return_mean": float(np.mean(returns)), "eval_return_std": float(np.std(returns))}
    path = out / "evaluations.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[str(step)] = evaluation
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(table, indent=1))
    print(f"step {step}: evaluated return {evaluation['eval_return_mean']:.1f} "
          f"(target {cfg.target_return:g})", flush=True)
    return evaluation


RESUME_MAY_CHANGE = ("steps", "checkpoint_every", "eval_episodes", "target_return")


def _check_resumable(cfg: ExpertConfig, saved: Path) -> int | None:
    """A run is continued only with its own settings; ``steps`` (the run may be lengthened,
    or ended at a checkpoint it has passed), ``checkpoint_every`` and ``eval_episodes`` may
    change. Returns the steps the run was started for when they change (for provenance)."""
    old = json.loads(saved.read_text())
    changed = sorted(k for k, v in asdict(cfg).items() if k not in RESUME_MAY_CHANGE and old.get(k) != v)
    if changed:
        raise ValueError(f"{saved.parent} holds a run made with other settings ({', '.join(changed)}): "
                         "give its settings to continue it, or another --out")
    return old["steps"] if old.get("steps") != cfg.steps else None


def train_expert(cfg: ExpertConfig, out_dir: str | Path) -> dict:
    """Train (or resume) SAC on ``cfg.env``'s true reward; return the provenance record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = Monitor(gym.make(cfg.env))
    resume = out / "resume"
    if not (resume / "state.json").exists() and (out / "resume.old" / "state.json").exists():
        (out / "resume.old").rename(resume)  # a crash between the two renames of _Checkpointer.save
    state = {"elapsed_s": 0.0, "cpu_s": 0.0}
    planned = None
    if (resume / "state.json").exists():
        planned = _check_resumable(cfg, out / "config.json")
        state = json.loads((resume / "state.json").read_text())
        model = _resume(cfg, resume, env)
        print(f"resuming {cfg.env} from step {state['step']}", flush=True)
    else:
        model = _new_model(cfg, env)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    callback = _Checkpointer(out, cfg, state["elapsed_s"], state.get("cpu_s", 0.0))
    if cfg.target_return is not None and state.get("eval_return_mean", -np.inf) >= cfg.target_return:
        callback.reached_at = state["step"]  # reached before the process stopped: the run is over
    remaining = cfg.steps - model.num_timesteps
    if remaining > 0 and callback.reached_at is None:
        model.learn(remaining, callback=callback, reset_num_timesteps=False)
    train_s, train_cpu_s = callback.elapsed(), callback.cpu()
    steps = callback.reached_at if callback.reached_at is not None else model.num_timesteps
    final = out / "checkpoints" / f"step_{steps:07d}.safetensors"
    if not final.exists():
        save_policy(model.policy, final, {"net_arch": cfg.net_arch, "step": steps})
    returns = evaluate_policy_return(model.policy, gym.make(cfg.env), cfg.eval_episodes,
                                     seed=expert_final_evaluation_seed(cfg.seed))
    record = {
        "env": cfg.env, "seed": cfg.seed, "steps": int(steps), "net_arch": cfg.net_arch,
        "learning_starts": cfg.learning_starts, "backend": cfg.backend, "batched_updates": cfg.batched_updates,
        "algorithm": f"SAC ({cfg.backend}), its defaults otherwise",
        "buffer_size": cfg.buffer_size, "train_wall_s": round(train_s, 1), "train_cpu_s": round(train_cpu_s, 1),
        "final_policy": final.name,
        "eval_episodes": cfg.eval_episodes, "eval_return_mean": float(np.mean(returns)),
        "eval_return_std": float(np.std(returns)), "eval_returns": [float(r) for r in returns],
        "resumed": state["elapsed_s"] > 0, "steps_planned_before": planned, "torch_threads": torch.get_num_threads(),
        "target_return": cfg.target_return, "stopped_at_target": callback.reached_at is not None,
        "versions": {**provenance(), "stable_baselines3": stable_baselines3.__version__,
                     "gymnasium": gym.__version__, "python": platform.python_version()},
    }
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
    return record
