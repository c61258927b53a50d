"""Environment steps per second of the AIHF loop (Algorithm 1 with SAC, relabelled replay
buffer, reward steps) against plain stable-baselines3 SAC on the same environment, with the
same SAC settings, in one process. Runs alternate (SAC, AIHF, SAC, AIHF, ...) so that load
from other processes hits both alike; the rate counts only the steps after
``learning_starts`` (where SAC trains every step), and the median over repeats is reported.

    python bench/bench_control.py --env Hopper-v5 --steps 2000 --repeats 2

AIHF's data are random arrays of the shipped sizes (10k demonstrations, 20k pairs of
25-step segments): the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from aihf.control.algorithm import ControlLoopConfig, SACConfig, train_method
from aihf.control.reward_step import RewardStepConfig
from aihf.data import SegmentPreferenceSet, TransitionSet


class StepClock:
    """Counts env steps (``update``) and times those after ``start``, in wall-clock and in
    this process's CPU time (the latter is robust to other processes on a shared machine)."""

    def __init__(self, start: int):
        self.start, self.n = start, 0
        self.t_start = self.t_end = self.c_start = self.c_end = 0.0

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.n == self.start:
            self.t_start, self.c_start = time.perf_counter(), time.process_time()
        self.t_end, self.c_end = time.perf_counter(), time.process_time()

    def rate(self) -> tuple[float, float]:
        """(steps per wall-clock second, steps per CPU second)."""
        n = self.n - self.start
        return n / (self.t_end - self.t_start), n / (self.c_end - self.c_start)


class _ClockCallback(BaseCallback):
    def __init__(self, clock: StepClock):
        super().__init__()
        self.clock = clock

    def _on_step(self) -> bool:
        self.clock.update(1)
        return True


def plain_sac(env_id: str, cfg: SACConfig, steps: int, seed: int) -> tuple[float, float]:
    s = cfg
    model = SAC("MlpPolicy", gym.make(env_id), learning_rate=s.learning_rate, buffer_size=s.buffer_size,
                learning_starts=s.learning_starts, batch_size=s.batch_size, train_freq=s.train_freq,
                gradient_steps=s.gradient_steps, policy_kwargs={"net_arch": s.net_arch}, seed=seed,
                device="cpu", verbose=0)
    clock = StepClock(s.learning_starts)
    model.learn(steps, callback=_ClockCallback(clock))
    return clock.rate()


def aihf_loop(env_id: str, loop: ControlLoopConfig, seed: int, demos, prefs) -> tuple[float, float]:
    clock = StepClock(loop.sac.learning_starts)
    train_method("aihf", loop, env_id, seed, demos, prefs, progress=clock)
    return clock.rate()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=2000, help="env steps per run, learning_starts included")
    p.add_argument("--learning-starts", type=int, default=500)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    p.add_argument("--reward-every", type=int, default=100)
    p.add_argument("--reward-updates", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = gym.make(args.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    rng = np.random.default_rng(0)
    demos = TransitionSet(rng.normal(size=(10_000, obs_dim)), rng.uniform(-1, 1, (10_000, act_dim)))
    prefs = SegmentPreferenceSet(*(rng.normal(size=(20_000, 25, d)) for d in (obs_dim, act_dim, obs_dim, act_dim)))
    sac = SACConfig(net_arch=args.net_arch, learning_starts=args.learning_starts, buffer_size=args.steps)
    loop = ControlLoopConfig(total_steps=args.steps, reward_every=args.reward_every, reward_updates=args.reward_updates,
                      eval_every=10 * args.steps, sac=sac, reward=RewardStepConfig())
    sac_rates, aihf_rates = [], []
    for i in range(args.repeats):
        sac_rates.append(plain_sac(args.env, sac, args.steps, seed=i))
        aihf_rates.append(aihf_loop(args.env, loop, i, demos, prefs))
        print(f"repeat {i}: SAC {sac_rates[-1][0]:.1f} steps/s ({sac_rates[-1][1]:.1f} per CPU s), "
              f"AIHF {aihf_rates[-1][0]:.1f} steps/s ({aihf_rates[-1][1]:.1f} per CPU s)", flush=True)
    (sac_wall, sac_cpu), (aihf_wall, aihf_cpu) = np.median(sac_rates, axis=0), np.median(aihf_rates, axis=0)
    print(json.dumps({
        "env": args.env, "steps": args.steps, "learning_starts": args.learning_starts, "repeats": args.repeats,
        "net_arch": args.net_arch, "reward_every": args.reward_every, "reward_updates": args.reward_updates,
        "sac_steps_per_s": round(float(sac_wall), 1), "aihf_steps_per_s": round(float(aihf_wall), 1),
        "sac_steps_per_cpu_s": round(float(sac_cpu), 1), "aihf_steps_per_cpu_s": round(float(aihf_cpu), 1),
        "aihf_overhead_cpu": round(float(sac_cpu / aihf_cpu - 1), 3),
        "aihf_overhead_wall": round(float(sac_wall / aihf_wall - 1), 3),
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
