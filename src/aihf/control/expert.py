"""Train the experts whose rollouts become the MuJoCo data: SAC on the true reward.

Resumable: every ``checkpoint_every`` environment steps the run writes
  checkpoints/step_<N>.safetensors   the policy (actor + critics) via ``policy_io.save_policy``
  resume/model.zip, resume/replay_buffer.pkl   SB3's own format, to continue an interrupted
                                     run (pickles inside: local only, never shipped)
  progress.jsonl                     one line per finished training episode
and at the end ``provenance.json`` (seed, steps, wall time, evaluated return, versions).
Re-running the same command continues from ``resume/`` when it exists.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor

from aihf.control.policy_io import save_policy
from aihf.control.rollout import evaluate_policy_return


@dataclass
class ExpertConfig:
    """SAC on the true reward (SB3 defaults except where named)."""

    env: str = "Hopper-v5"
    steps: int = 100_000
    seed: int = 0
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    learning_starts: int = 5_000
    checkpoint_every: int = 10_000
    eval_episodes: int = 10


class _Checkpointer(BaseCallback):
    """Writes the policy every ``every`` steps, the resume state, and per-episode returns."""

    def __init__(self, out: Path, every: int, net_arch: list[int], t0: float, elapsed0: float):
        super().__init__()
        self.out, self.every, self.net_arch = out, every, net_arch
        self.t0, self.elapsed0 = t0, elapsed0

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.t0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                line = {"step": self.num_timesteps, "return": float(info["episode"]["r"]),
                        "length": int(info["episode"]["l"]), "elapsed_s": round(self.elapsed(), 1)}
                with open(self.out / "progress.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
        if self.num_timesteps % self.every == 0:
            self.save()
        return True

    def save(self) -> None:
        step = self.num_timesteps
        (self.out / "checkpoints").mkdir(exist_ok=True)
        save_policy(self.model.policy, self.out / "checkpoints" / f"step_{step:07d}.safetensors",
                    {"net_arch": self.net_arch, "step": step})
        resume = self.out / "resume"
        resume.mkdir(exist_ok=True)
        self.model.save(resume / "model.zip")
        self.model.save_replay_buffer(resume / "replay_buffer.pkl")
        (resume / "state.json").write_text(json.dumps({"step": step, "elapsed_s": self.elapsed()}))


def train_expert(cfg: ExpertConfig, out_dir: str | Path) -> dict:
    """Train (or resume) SAC on ``cfg.env``'s true reward; return the provenance record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = Monitor(gym.make(cfg.env))
    resume = out / "resume"
    elapsed0 = 0.0
    if (resume / "state.json").exists():
        state = json.loads((resume / "state.json").read_text())
        elapsed0 = state["elapsed_s"]
        model = SAC.load(resume / "model.zip", env=env, device="cpu")
        model.load_replay_buffer(resume / "replay_buffer.pkl")
        print(f"resuming {cfg.env} from step {state['step']}", flush=True)
    else:
        model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": cfg.net_arch},
                    learning_starts=cfg.learning_starts, buffer_size=max(cfg.steps, 1),
                    seed=cfg.seed, device="cpu")
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    callback = _Checkpointer(out, cfg.checkpoint_every, cfg.net_arch, time.time(), elapsed0)
    remaining = cfg.steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=callback, reset_num_timesteps=False)
    if model.num_timesteps % cfg.checkpoint_every:
        callback.save()
    train_s = callback.elapsed()
    final = out / "checkpoints" / f"step_{model.num_timesteps:07d}.safetensors"
    returns = evaluate_policy_return(model.policy, gym.make(cfg.env), cfg.eval_episodes, seed=10_000 + cfg.seed)
    record = {
        "env": cfg.env, "seed": cfg.seed, "steps": int(model.num_timesteps), "net_arch": cfg.net_arch,
        "learning_starts": cfg.learning_starts, "algorithm": "SB3 SAC, defaults otherwise",
        "train_wall_s": round(train_s, 1), "final_policy": final.name,
        "eval_episodes": cfg.eval_episodes, "eval_return_mean": float(np.mean(returns)),
        "eval_return_std": float(np.std(returns)), "eval_returns": [float(r) for r in returns],
        "resumed": elapsed0 > 0, "torch_threads": torch.get_num_threads(),
        "versions": {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__,
                     "gymnasium": gym.__version__, "python": platform.python_version()},
    }
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
    return record
