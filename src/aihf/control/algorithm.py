"""Algorithm 1 with SAC as the policy step (docs/method.md section 3), and the baselines that share
its loop (docs/method.md section 5, "Control").

SAC's replay buffer relabels every sampled minibatch with the current r_theta
(``relabel.RelabelledReplayBuffer``), so each SAC update uses the latest reward, divided by
its running standard deviation when ``reward_normalize`` is set. Two schedules
(``ControlLoopConfig.schedule``) decide when the reward steps (``reward_step.RewardLearner``) happen:

``alternating`` (docs/method.md section 3's single loop)
    one ``SAC.learn`` call; a callback does, every ``reward_every`` environment steps
    (= K SAC updates with train_freq = gradient_steps = 1), ``reward_updates`` reward steps
    on demonstrations vs. transitions drawn from the last ``policy_window`` replay entries,
    plus segment preferences.
``ml_irl`` (the schedule of ML-IRL's public MuJoCo code)
    per outer iteration: SAC trains ``iteration_steps`` environment steps on the current
    reward (buffer kept); then ``trajectories_per_iteration`` fresh trajectories of the
    current (stochastic) policy are rolled out; then ``reward_updates`` full-batch reward
    steps: every demonstration against every transition of those trajectories (the linear
    form is mean r(policy) - mean r(expert)), plus ``pref_batch`` segment pairs (all when null).

Both evaluate the true return every ``eval_every`` steps. On the ``ml_irl`` schedule every
method runs SAC in the same outer iterations (RLHF and true-reward SAC without a reward step),
and a run can write a resume point every ``resume_every`` iterations (``run_checkpoint``).

Methods (``CONTROL_METHODS``), all on the same loop and budget:
  aihf     w_D = w_P = 1, reward and policy updated alternately (Algorithm 1)
  ml_irl   w_P = 0 (demonstrations only), alternating
  rlhf     w_D = 0: the reward is fitted on preferences first (as many reward updates as the
           alternating methods make in total), then frozen while SAC trains (two stages)
  sac_true SAC on the environment's true reward (reference)
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from aihf.config import Settings, setting
from aihf.control.policy_io import save_policy
from aihf.control.relabel import RelabelledReplayBuffer, control_reward_scaler
from aihf.control.reset_seeds import evaluation_seed, policy_trajectory_seed
from aihf.control.reward_net import RewardEnsemble, RewardNet
from aihf.control.reward_step import Resample, RewardLearner, RewardStepConfig
from aihf.control.sac_backend import Backend, load_policy_tensors, make_sac, policy_tensors
from aihf.control.rollout import evaluation_episodes, policy_actor, run_episode
from aihf.control.run_checkpoint import ResumePoint
from aihf.data import SegmentPreferenceSet, Trajectory, TransitionSet
from aihf.objective import EnsembleRule, check_ensemble_settings
from aihf.reward_scale import RewardScaler
from aihf.runtime import set_seed

log = logging.getLogger(__name__)

CONTROL_METHODS = ("aihf", "ml_irl", "rlhf", "sac_true")
Schedule = Literal["alternating", "ml_irl"]


@dataclass
class SACConfig(Settings):
    """SAC settings of the policy step (``backend``: ``sac_backend``). ``ent_coef``: None
    (default) fixes SAC's entropy temperature at the objective's ``reward.beta``; ``"auto"``
    lets SAC tune it (then beta no longer weighs the entropy, and the run says so); a number
    sets it directly."""

    backend: Backend = setting("sb3", help="sb3 (PyTorch) | sbx (JAX, faster; pip install 'aihf[fast]')")
    net_arch: list[int] = setting(factory=lambda: [256, 256], help="hidden sizes of actor and critics")
    learning_rate: float = setting(3e-4, gt=0, help="Adam learning rate of actor, critics (and temperature)")
    batch_size: int = setting(256, gt=0, help="transitions per SAC update")
    learning_starts: int = setting(1000, ge=0, help="environment steps of random actions before the first update")
    buffer_size: int = setting(100_000, gt=0, help="replay buffer capacity")
    train_freq: int = setting(1, gt=0, help="environment steps between update rounds")
    gradient_steps: int = setting(1, gt=0, help="SAC updates per round")
    ent_coef: float | Literal["auto"] | None = setting(None, gt=0, help="entropy temperature: null = reward.beta, 'auto' = tuned")


@dataclass
class ControlLoopConfig(Settings):
    """Budget and schedule of one run of Algorithm 1 (or a baseline on the same loop)."""

    total_steps: int = setting(20_000, gt=0, help="environment steps of the policy step (the budget)")
    schedule: Schedule = setting("alternating", help="when reward steps happen: alternating | ml_irl (module docstring)")
    reward_every: int = setting(100, gt=0, help="alternating: environment steps between reward updates")
    reward_updates: int = setting(1, gt=0, help="reward steps per reward update (alternating) or per iteration (ml_irl)")
    policy_window: int = setting(5_000, gt=0, help="alternating: policy samples come from the last N replay entries")
    iteration_steps: int = setting(5_000, gt=0, help="ml_irl: SAC environment steps per outer iteration")
    trajectories_per_iteration: int = setting(10, gt=0, help="ml_irl: fresh trajectories of the current policy per reward update")
    reward_hidden: list[int] = setting(factory=lambda: [64, 64], help="hidden sizes of the reward MLP")
    reward_clamp: float | None = setting(None, gt=0, help="reward output clamped to [-c, c] (ML-IRL: 10); null: unbounded")
    reward_shift: float = setting(0.0, help="constant added to every learned reward in SAC's updates (reported when not 0)")
    reward_normalize: bool = setting(False, help="divide the learned reward SAC sees by its running standard deviation "
                                     "(reward_scale; docs/control.md \"The reward's scale\")")
    reward_ensemble: int = setting(1, ge=1, help="reward nets, trained alike from different initialisations; from 2 on, "
                                   "SAC sees their combination (reward_ensemble_rule; docs/control.md \"Reward ensembles\")")
    reward_ensemble_rule: EnsembleRule = setting("mean", help="how an ensemble's rewards combine: mean | uwo (mean - "
                                                 "penalty * variance) | wco (minimum)")
    reward_ensemble_penalty: float = setting(0.0, ge=0, help="uwo: the weight of the members' variance")
    reward_ensemble_resample: Resample = setting("none", help="each member fits its own bootstrap resample of the "
                                                 "demonstrations and of the preference pairs (pairs) or of their "
                                                 "segments (segments); none: every member the same data")
    eval_every: int = setting(5_000, gt=0, help="environment steps between true-return evaluations")
    resume_every: int = setting(0, ge=0, help="ml_irl: outer iterations between resume points of a run "
                                "(run_checkpoint; 0: none); they do not change the run")
    eval_episodes: int = setting(10, gt=0, help="episodes per evaluation (deterministic policy)")
    eval_split: Literal["test", "validation"] = setting(
        "test", help="the evaluations' reset seeds: test (the reported results) or validation (a disjoint set, "
        "for choosing settings without looking at the test episodes; reset_seeds.evaluation_seed)")
    sac: SACConfig = setting(factory=SACConfig, help="SAC settings")
    reward: RewardStepConfig = setting(factory=RewardStepConfig, help="objective and reward optimiser")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ensemble_settings(self.reward_ensemble, self.reward_ensemble_rule, self.reward_ensemble_penalty,
                                self.reward_ensemble_resample)
        rounds = self.sac.train_freq
        if self.schedule == "ml_irl" and (self.iteration_steps % rounds or self.total_steps % rounds):
            raise ValueError(f"iteration_steps ({self.iteration_steps}) and total_steps ({self.total_steps}) must be "
                             f"multiples of sac.train_freq ({rounds}): SAC collects whole rounds of train_freq "
                             "steps, so an iteration would otherwise run past its budget")

    def iterations(self) -> int:
        """ml_irl: outer iterations, the last one shorter when ``iteration_steps`` does not divide the budget."""
        return math.ceil(self.total_steps / self.iteration_steps)

    def reward_update_count(self) -> int:
        """Reward steps an alternating method makes in one run (RLHF's stage 1 makes as many)."""
        if self.schedule == "ml_irl":
            return self.iterations() * self.reward_updates
        return max(self.total_steps - self.sac.learning_starts, 0) // self.reward_every * self.reward_updates


def entropy_temperature(cfg: ControlLoopConfig) -> float | str:
    """SAC's ``ent_coef``: the objective's beta unless ``sac.ent_coef`` sets it (or ``"auto"``)."""
    return cfg.reward.beta if cfg.sac.ent_coef is None else cfg.sac.ent_coef


def reward_scaler(cfg: ControlLoopConfig, learner: RewardLearner | None) -> RewardScaler | None:
    """The scaler of the rewards SAC sees (``relabel``): running moments without centring when
    ``reward_normalize`` is set and the method learns its reward; None otherwise."""
    return control_reward_scaler() if cfg.reward_normalize and learner is not None else None


def make_reward(cfg: ControlLoopConfig, obs_dim: int, act_dim: int) -> RewardNet | RewardEnsemble:
    """The reward a learned-reward method trains: one ``RewardNet``, or ``reward_ensemble`` of
    them combined by ``reward_ensemble_rule``, initialised one after the other from torch's
    generator (member 0 is the net a one-net run starts from)."""
    members = [RewardNet(obs_dim, act_dim, tuple(cfg.reward_hidden), cfg.reward_clamp) for _ in range(cfg.reward_ensemble)]
    if cfg.reward_ensemble == 1:
        return members[0]
    return RewardEnsemble(members, cfg.reward_ensemble_rule, cfg.reward_ensemble_penalty)


def method_reward_config(method: str, base: RewardStepConfig) -> RewardStepConfig:
    """The reward-step weights each method uses (docs/method.md section 2's special cases)."""
    if method == "aihf":
        return base
    if method == "ml_irl":
        return replace(base, w_pref=0.0)
    if method == "rlhf":
        return replace(base, w_demo=0.0)
    raise ValueError(f"method {method!r} has no learned reward; methods: {CONTROL_METHODS}")


@dataclass
class RunResult:
    """Evaluation curve (env steps, mean and std of the true return), wall time, reward losses
    and, on the ml_irl schedule, the reward's state after each iteration's reward step
    (``RewardLearner.diagnostics`` on that iteration's policy trajectories, with its env step);
    with ``reward_normalize``, the standard deviation s that SAC's rewards were divided by at
    each evaluation (``reward_scales``, aligned with ``steps``).

    ``eval_reward`` (methods that learn a reward; aligned with ``steps``): the learned reward
    as it stands at each evaluation, on that evaluation's episodes (``RewardLearner.diagnostics``:
    ``policy_mean`` is r_theta per step over all steps of the deterministic policy's episodes,
    ``demo_mean`` the same on every demonstration transition, ``margin`` their difference). The
    true return falling while the policy's learned reward per step rises to the demonstrations'
    or above is the signature of reward exploitation. A run resumed from a resume point written
    without it (older code) records none, so the list never misaligns with ``steps``."""

    steps: list[int]
    returns: list[float]
    stds: list[float]
    wall_s: float
    reward_losses: list[float]
    reward_diagnostics: list[dict[str, float]] = field(default_factory=list)
    reward_scales: list[float] = field(default_factory=list)
    eval_reward: list[dict[str, float]] = field(default_factory=list)


class _AlgorithmOneCallback(BaseCallback):
    """Reward steps every ``reward_every`` env steps (alternating methods) and evaluations,
    keeping the weights of the policy each one scored (``evaluated_weights``)."""

    def __init__(self, cfg: ControlLoopConfig, learner: RewardLearner | None, alternate: bool,
                 eval_env: gym.Env, seed: int, progress=None):
        super().__init__()
        self.cfg, self.learner, self.alternate = cfg, learner, alternate
        self.eval_env, self.seed, self.progress = eval_env, seed, progress
        self.result = RunResult([], [], [], 0.0, [])
        self.evaluated_weights: dict[str, torch.Tensor] | None = None

    def evaluate(self) -> None:
        episodes = evaluation_episodes(self.model.policy, self.eval_env, self.cfg.eval_episodes,
                                       seed=evaluation_seed(self.cfg.eval_split, self.seed, len(self.result.steps)))
        self.evaluated_weights = {k: v.clone() for k, v in policy_tensors(self.model.policy).items()}
        returns = [e.ret for e in episodes]
        if self.learner is not None and len(self.result.eval_reward) == len(self.result.steps):
            self.record_learned_reward(episodes)
        self.result.steps.append(int(self.num_timesteps))
        self.result.returns.append(float(np.mean(returns)))
        self.result.stds.append(float(np.std(returns)))
        self.logger.record("eval/true_return", float(np.mean(returns)))
        scaler = self.model.replay_buffer.reward_scaler
        if scaler is not None:
            self.result.reward_scales.append(scaler.std)
            self.logger.record("reward/sac_scale", scaler.std)

    def record_learned_reward(self, episodes: list[Trajectory]) -> None:
        """``RunResult.eval_reward``'s entry for this evaluation's ``episodes``, and to TensorBoard."""
        diagnostics = self.learner.diagnostics(*transition_tensors(episodes))
        self.result.eval_reward.append(diagnostics)
        for name in ("policy_mean", "demo_mean"):
            if name in diagnostics:
                self.logger.record(f"eval/learned_reward_{name}", diagnostics[name])

    def _on_step(self) -> bool:
        t = self.num_timesteps
        if (self.alternate and t >= self.cfg.sac.learning_starts and t % self.cfg.reward_every == 0):
            buffer: RelabelledReplayBuffer = self.model.replay_buffer
            for _ in range(self.cfg.reward_updates):
                obs, act = buffer.recent(self.cfg.policy_window, self.learner.cfg.demo_batch or self.cfg.policy_window)
                self.result.reward_losses.append(self.learner.step(obs, act))
            self.logger.record("reward/loss", self.result.reward_losses[-1])
        if t % self.cfg.eval_every == 0:
            self.evaluate()
        if self.progress is not None:
            self.progress.update(1)
        return True


def transition_tensors(episodes: list[Trajectory]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's observation and action of ``episodes``, concatenated, as tensors (copies:
    the data layer's arrays are read-only)."""
    samples = TransitionSet.from_trajectories(episodes)
    return torch.tensor(samples.observations), torch.tensor(samples.actions)


def policy_trajectories(policy, env: gym.Env, n: int, seed: int) -> list[Trajectory]:
    """``n`` episodes of ``policy`` acting stochastically (as it explores), env reset with
    seeds seed, seed+1, ...: the current policy's samples of the ml_irl reward step."""
    act = policy_actor(policy, deterministic=False)
    return [run_episode(act, env, seed + i) for i in range(n)]


def _ml_irl_iterations(model, cfg: ControlLoopConfig, learner: RewardLearner | None, callback: "_AlgorithmOneCallback",
                       collect_env: gym.Env, seed: int, method: str, start: int, resume: ResumePoint | None,
                       clock: Callable[[], float]) -> None:
    """The ml_irl schedule (module docstring) from outer iteration ``start``: SAC for
    ``iteration_steps``, then, for the methods that learn their reward as they go, fresh
    trajectories of the current policy and ``reward_updates`` full-batch reward steps.
    RLHF (frozen reward) and SAC on the true reward run the same SAC iterations without the
    reward step, so every method has the same resume points (``run_checkpoint``)."""
    for k in range(start, cfg.iterations()):
        if resume is not None and resume.due(k, start):
            resume.save(k, model, learner, callback.result, clock())
        steps = min(cfg.iteration_steps, cfg.total_steps - model.num_timesteps)
        model.learn(steps, callback=callback, tb_log_name=method, reset_num_timesteps=model.num_timesteps == 0)
        if method not in ("aihf", "ml_irl"):
            continue
        episodes = policy_trajectories(model.policy, collect_env, cfg.trajectories_per_iteration,
                                       seed=policy_trajectory_seed(seed, k, cfg.trajectories_per_iteration))
        obs, act = transition_tensors(episodes)
        for _ in range(cfg.reward_updates):
            callback.result.reward_losses.append(learner.step(obs, act))
        model.logger.record("reward/loss", callback.result.reward_losses[-1])
        model.logger.record("reward/policy_sample_return", float(np.mean([e.ret for e in episodes])))
        diagnostics = learner.diagnostics(obs, act)
        for name, value in diagnostics.items():
            model.logger.record(f"reward/{name}", value)
        callback.result.reward_diagnostics.append({"step": int(model.num_timesteps), **diagnostics})


def train_method(method: str, cfg: ControlLoopConfig, env_id: str, seed: int,
                 demos: TransitionSet | None, prefs: SegmentPreferenceSet | None,
                 out_dir: str | Path | None = None, progress=None,
                 env: gym.Env | None = None, eval_env: gym.Env | None = None,
                 resume: ResumePoint | None = None) -> RunResult:
    """Train ``method`` (one of ``CONTROL_METHODS``) for ``cfg.total_steps`` env steps with ``seed``.

    Writes, when ``out_dir`` is given, ``policy.safetensors`` (the policy the final evaluation
    scored, whose return ends ``returns``), ``reward_net.safetensors``
    (learned-reward methods) and TensorBoard logs under ``out_dir/tb``. ``env`` and
    ``eval_env`` default to ``gym.make(env_id)``. ``resume`` (ml_irl schedule): continue from
    its resume point when it holds one of this run, and write one every ``resume.every``
    outer iterations (``run_checkpoint``); the caller removes it once the run's results are safe.
    """
    if method not in CONTROL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {CONTROL_METHODS}")
    if resume is not None and cfg.schedule != "ml_irl":
        raise ValueError("resume points exist only on the ml_irl schedule (outer iterations)")
    set_seed(seed)
    env = env if env is not None else gym.make(env_id)
    eval_env = eval_env if eval_env is not None else gym.make(env_id)
    learner = None
    if method != "sac_true":
        net = make_reward(cfg, env.observation_space.shape[0], env.action_space.shape[0])
        reward_cfg = method_reward_config(method, cfg.reward)
        if cfg.schedule == "ml_irl" and method in ("aihf", "ml_irl"):
            reward_cfg = replace(reward_cfg, demo_batch=None)  # ML-IRL's full expert batch
        learner = RewardLearner(net, reward_cfg, demos, prefs, np.random.default_rng(seed), cfg.reward_ensemble_resample)
        if cfg.reward_shift:
            log.warning("%s: every learned reward is shifted by reward_shift=%g in SAC's updates", method, cfg.reward_shift)
    t0 = time.time()
    tb_dir = str(Path(out_dir) / "tb") if out_dir else None
    saved = resume.saved() if resume is not None else None
    alternate = method in ("aihf", "ml_irl") and cfg.schedule == "alternating"
    callback = _AlgorithmOneCallback(cfg, learner, alternate, eval_env, seed, progress)
    if saved is None and method == "rlhf":  # stage 1: the reward on preferences, before SAC
        callback.result.reward_losses = [learner.step() for _ in range(cfg.reward_update_count())]
    s = cfg.sac
    model = make_sac(
        s.backend, env, ent_coef=entropy_temperature(cfg), learning_rate=s.learning_rate, buffer_size=s.buffer_size,
        learning_starts=s.learning_starts, batch_size=s.batch_size, train_freq=s.train_freq,
        gradient_steps=s.gradient_steps, policy_kwargs={"net_arch": s.net_arch},
        replay_buffer_class=RelabelledReplayBuffer,
        replay_buffer_kwargs={"reward_fn": learner.net if learner else None, "reward_shift": cfg.reward_shift,
                              "reward_scaler": reward_scaler(cfg, learner)},
        tensorboard_log=tb_dir, seed=seed, verbose=0,
    )
    start, spent = 0, 0.0
    if saved is not None:
        restored = resume.restore(saved, model, learner)
        start, spent = restored.iteration, restored.wall_s
        callback.result = RunResult(**restored.result)
        if progress is not None:
            progress.update(model.num_timesteps)
    clock = lambda: spent + time.time() - t0  # noqa: E731 (wall time over every attempt)
    if cfg.schedule == "ml_irl":
        _ml_irl_iterations(model, cfg, learner, callback, eval_env, seed, method, start, resume, clock)
    else:
        model.learn(cfg.total_steps, callback=callback, tb_log_name=method)
    if not callback.result.steps or callback.result.steps[-1] != model.num_timesteps:
        callback.evaluate()
    result = callback.result
    result.wall_s = clock()
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        # SB3 trains a round (gradient_steps updates) after the callback's last step,
        # which held the final evaluation: save the policy that evaluation scored, not the one past it
        load_policy_tensors(model.policy, callback.evaluated_weights)
        save_policy(model.policy, Path(out_dir) / "policy.safetensors", {"net_arch": cfg.sac.net_arch})
        if learner is not None:
            learner.net.save(Path(out_dir) / "reward_net.safetensors")
    return result
