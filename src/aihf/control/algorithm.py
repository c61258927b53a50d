"""Algorithm 1 with SAC as the policy step (docs/method.md section 3), and the baselines that share
its loop (docs/method.md section 5, "Control").

One SB3 ``SAC.learn`` call runs the whole loop. Its replay buffer relabels every sampled
minibatch with the current r_theta (``relabel.RelabelledReplayBuffer``); a callback does,
every ``reward_every`` environment steps (= K SAC updates with train_freq = gradient_steps
= 1), ``reward_updates`` reward steps on demonstrations vs. the latest policy transitions
plus segment preferences (``reward_step.RewardLearner``), and evaluates the true return
every ``eval_every`` steps.

Methods (``METHODS``), all on the same loop and budget:
  aihf     w_D = w_P = 1, reward and policy updated alternately (Algorithm 1)
  ml_irl   w_P = 0 (demonstrations only), alternating
  rlhf     w_D = 0: the reward is fitted on preferences first (as many reward updates as the
           alternating methods make in total), then frozen while SAC trains (two stages)
  sac_true SAC on the environment's true reward (reference)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from aihf.control.policy_io import save_policy
from aihf.control.relabel import RelabelledReplayBuffer
from aihf.control.reward_net import RewardNet
from aihf.control.reward_step import RewardLearner, RewardStepConfig
from aihf.control.rollout import evaluate_policy_return
from aihf.data import SegmentPreferenceSet, TransitionSet
from aihf.runtime import set_seed

METHODS = ("aihf", "ml_irl", "rlhf", "sac_true")


@dataclass
class SACConfig:
    """SB3 SAC settings of the policy step. ``ent_coef``: None (default) fixes SAC's entropy
    temperature at the objective's ``reward.beta``; ``"auto"`` lets SB3 tune it (then beta
    no longer weighs the entropy, and the run says so); a number sets it directly."""

    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    learning_rate: float = 3e-4
    batch_size: int = 256
    learning_starts: int = 1000
    buffer_size: int = 100_000
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: float | Literal["auto"] | None = None


@dataclass
class LoopConfig:
    """Budget and schedule of one run of Algorithm 1 (or a baseline on the same loop)."""

    total_steps: int = 20_000
    reward_every: int = 100
    reward_updates: int = 1
    policy_window: int = 5_000
    reward_hidden: list[int] = field(default_factory=lambda: [64, 64])
    reward_shift: float = 0.0
    eval_every: int = 5_000
    eval_episodes: int = 10
    sac: SACConfig = field(default_factory=SACConfig)
    reward: RewardStepConfig = field(default_factory=RewardStepConfig)


def entropy_temperature(cfg: LoopConfig) -> float | str:
    """SAC's ``ent_coef``: the objective's beta unless ``sac.ent_coef`` sets it (or ``"auto"``)."""
    if cfg.sac.ent_coef is None:
        return cfg.reward.beta
    if cfg.sac.ent_coef != "auto" and not cfg.sac.ent_coef > 0:
        raise ValueError(f"sac.ent_coef must be > 0, 'auto' or null, got {cfg.sac.ent_coef}")
    return cfg.sac.ent_coef


def method_reward_config(method: str, base: RewardStepConfig) -> RewardStepConfig:
    """The reward-step weights each method uses (docs/method.md section 2's special cases)."""
    if method == "aihf":
        return base
    if method == "ml_irl":
        return replace(base, w_pref=0.0)
    if method == "rlhf":
        return replace(base, w_demo=0.0)
    raise ValueError(f"method {method!r} has no learned reward; methods: {METHODS}")


@dataclass
class RunResult:
    """Evaluation curve (env steps, mean and std of the true return) and wall time."""

    steps: list[int]
    returns: list[float]
    stds: list[float]
    wall_s: float
    reward_losses: list[float]


class _AlgorithmOneCallback(BaseCallback):
    """Reward steps every ``reward_every`` env steps (alternating methods) and evaluations."""

    def __init__(self, cfg: LoopConfig, learner: RewardLearner | None, alternate: bool,
                 eval_env: gym.Env, seed: int, progress=None):
        super().__init__()
        self.cfg, self.learner, self.alternate = cfg, learner, alternate
        self.eval_env, self.seed, self.progress = eval_env, seed, progress
        self.result = RunResult([], [], [], 0.0, [])

    def evaluate(self) -> None:
        returns = evaluate_policy_return(self.model.policy, self.eval_env, self.cfg.eval_episodes,
                                         seed=1_000_000 + 1000 * self.seed + len(self.result.steps))
        self.result.steps.append(int(self.num_timesteps))
        self.result.returns.append(float(np.mean(returns)))
        self.result.stds.append(float(np.std(returns)))
        self.logger.record("eval/true_return", float(np.mean(returns)))

    def _on_step(self) -> bool:
        t = self.num_timesteps
        if (self.alternate and t >= self.cfg.sac.learning_starts and t % self.cfg.reward_every == 0):
            buffer: RelabelledReplayBuffer = self.model.replay_buffer
            for _ in range(self.cfg.reward_updates):
                obs, act = buffer.recent(self.cfg.policy_window, self.learner.cfg.demo_batch)
                self.result.reward_losses.append(self.learner.step(obs, act))
            self.logger.record("reward/loss", self.result.reward_losses[-1])
        if t % self.cfg.eval_every == 0:
            self.evaluate()
        if self.progress is not None:
            self.progress.update(1)
        return True


def train_method(method: str, cfg: LoopConfig, env_id: str, seed: int,
                 demos: TransitionSet | None, prefs: SegmentPreferenceSet | None,
                 out_dir: str | Path | None = None, progress=None,
                 env: gym.Env | None = None, eval_env: gym.Env | None = None) -> RunResult:
    """Train ``method`` (one of ``METHODS``) for ``cfg.total_steps`` env steps with ``seed``.

    Writes, when ``out_dir`` is given, ``policy.safetensors``, ``reward_net.safetensors``
    (learned-reward methods) and TensorBoard logs under ``out_dir/tb``. ``env`` and
    ``eval_env`` default to ``gym.make(env_id)``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    set_seed(seed)
    env = env if env is not None else gym.make(env_id)
    eval_env = eval_env if eval_env is not None else gym.make(env_id)
    learner = None
    if method != "sac_true":
        net = RewardNet(env.observation_space.shape[0], env.action_space.shape[0], tuple(cfg.reward_hidden))
        learner = RewardLearner(net, method_reward_config(method, cfg.reward), demos, prefs,
                                np.random.default_rng(seed))
    alternate = method in ("aihf", "ml_irl")
    t0 = time.time()
    pre_losses = []
    if method == "rlhf":
        n_alternating = max(cfg.total_steps - cfg.sac.learning_starts, 0) // cfg.reward_every * cfg.reward_updates
        pre_losses = [learner.step() for _ in range(n_alternating)]
    s = cfg.sac
    model = SAC(
        "MlpPolicy", env, ent_coef=entropy_temperature(cfg), learning_rate=s.learning_rate, buffer_size=s.buffer_size,
        learning_starts=s.learning_starts, batch_size=s.batch_size, train_freq=s.train_freq,
        gradient_steps=s.gradient_steps, policy_kwargs={"net_arch": s.net_arch},
        replay_buffer_class=RelabelledReplayBuffer,
        replay_buffer_kwargs={"reward_fn": learner.net if learner else None, "reward_shift": cfg.reward_shift},
        tensorboard_log=str(Path(out_dir) / "tb") if out_dir else None, seed=seed, device="cpu", verbose=0,
    )
    callback = _AlgorithmOneCallback(cfg, learner, alternate, eval_env, seed, progress)
    model.learn(cfg.total_steps, callback=callback, tb_log_name=method)
    if not callback.result.steps or callback.result.steps[-1] != model.num_timesteps:
        callback.evaluate()
    result = callback.result
    result.reward_losses = pre_losses + result.reward_losses
    result.wall_s = time.time() - t0
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_policy(model.policy, Path(out_dir) / "policy.safetensors", {"net_arch": s.net_arch})
        if learner is not None:
            learner.net.save(Path(out_dir) / "reward_net.safetensors")
    return result
