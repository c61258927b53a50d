"""Environment steps per second of the AIHF loop (Algorithm 1 with SAC, relabelled replay
buffer, reward steps) on each SAC backend, against plain stable-baselines3 SAC on the same
environment with the same SAC settings, in one process. Runs alternate (SAC, AIHF on each
backend, SAC, ...) so that load from other processes hits them alike; the rate counts only
the steps after ``learning_starts`` and ``--warmup`` more (where SAC trains every step and
sbx's update is compiled), and the median over repeats is reported with its ratio to plain SB3 SAC of the same run.

    python bench/bench_control.py --env Hopper-v5 --steps 2000 --repeats 2 --backends sb3 sbx

Every backend makes one SAC update per environment step; sbx makes them ``--sbx-batch`` at
a time (``train_freq = gradient_steps``, one compiled call on one relabelled batch).

AIHF's data are random arrays of the shipped sizes (10k demonstrations, 20k pairs of
25-step segments): the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import os
from dataclasses import replace

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from aihf.control.algorithm import ControlLoopConfig, SACConfig, train_method  # noqa: E402
from aihf.control.reward_step import RewardStepConfig  # noqa: E402
from aihf.control.sac_backend import make_sac  # noqa: E402
from aihf.data import SegmentPreferenceSet, TransitionSet  # noqa: E402


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


def plain_sac(env_id: str, cfg: SACConfig, steps: int, seed: int, warmup: int) -> tuple[float, float]:
    s = cfg
    model = make_sac(s.backend, gym.make(env_id), learning_rate=s.learning_rate, buffer_size=s.buffer_size,
                     learning_starts=s.learning_starts, batch_size=s.batch_size, train_freq=s.train_freq,
                     gradient_steps=s.gradient_steps, policy_kwargs={"net_arch": s.net_arch}, seed=seed, verbose=0)
    clock = StepClock(s.learning_starts + warmup)
    model.learn(steps, callback=_ClockCallback(clock))
    return clock.rate()


def aihf_loop(env_id: str, loop: ControlLoopConfig, seed: int, demos, prefs, warmup: int) -> tuple[float, float]:
    clock = StepClock(loop.sac.learning_starts + warmup)
    train_method("aihf", loop, env_id, seed, demos, prefs, progress=clock)
    return clock.rate()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=2000, help="env steps per run, learning_starts included")
    p.add_argument("--learning-starts", type=int, default=500)
    p.add_argument("--warmup", type=int, default=200, help="steps after learning_starts that are not timed")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    p.add_argument("--reward-every", type=int, default=100)
    p.add_argument("--reward-updates", type=int, default=10)
    p.add_argument("--backends", nargs="+", default=["sb3"], choices=["sb3", "sbx"], help="SAC backends of the AIHF loop")
    p.add_argument("--sbx-batch", type=int, default=32, help="sbx: train_freq = gradient_steps")
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
    loops = {b: replace(loop, sac=replace(sac, backend=b)) if b == "sb3" else
             replace(loop, sac=replace(sac, backend=b, train_freq=args.sbx_batch, gradient_steps=args.sbx_batch))
             for b in args.backends}
    rates: dict[str, list[tuple[float, float]]] = {"sac_sb3": [], **{f"aihf_{b}": [] for b in loops}}
    for i in range(args.repeats):
        rates["sac_sb3"].append(plain_sac(args.env, sac, args.steps, i, args.warmup))
        for b, cfg in loops.items():
            rates[f"aihf_{b}"].append(aihf_loop(args.env, cfg, i, demos, prefs, args.warmup))
        print(f"repeat {i}: " + "; ".join(f"{name} {r[-1][0]:.1f} steps/s ({r[-1][1]:.1f} per CPU s)"
                                          for name, r in rates.items()), flush=True)
    medians = {name: np.median(r, axis=0) for name, r in rates.items()}
    base_wall, base_cpu = medians["sac_sb3"]
    print(json.dumps({
        "env": args.env, "steps": args.steps, "learning_starts": args.learning_starts, "warmup": args.warmup, "repeats": args.repeats,
        "net_arch": args.net_arch, "reward_every": args.reward_every, "reward_updates": args.reward_updates,
        "sbx_batch": args.sbx_batch if "sbx" in loops else None,
        **{f"{name}_steps_per_s": round(float(wall), 1) for name, (wall, _) in medians.items()},
        **{f"{name}_steps_per_cpu_s": round(float(cpu), 1) for name, (_, cpu) in medians.items()},
        **{f"{name}_vs_sac_sb3_cpu": round(float(cpu / base_cpu), 3) for name, (_, cpu) in medians.items() if name != "sac_sb3"},
        **{f"{name}_vs_sac_sb3_wall": round(float(wall / base_wall), 3) for name, (wall, _) in medians.items() if name != "sac_sb3"},
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
