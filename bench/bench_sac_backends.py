"""Candidates for a faster SAC policy step (issue 10 item 1): environment steps per second of
stable-baselines3's SAC against sbx's (SB3's interface on JAX), same settings, one process,
one thread each, alternating candidates so that load from other processes hits them alike.

    pip install sbx-rl          # pulls jax, flax, optax (keep torch==2.13.0 pinned beside it)
    python bench/bench_sac_backends.py --env Hopper-v5 --steps 3000 --repeats 2

Candidates: SB3 SAC (one update per env step); sbx SAC with one update per env step; sbx
with ``train_freq = gradient_steps = 32`` (the same number of updates, 32 at a time in one
compiled call). Rates count the steps after a warm-up of ``learning_starts + 200`` steps
(SAC trains every step there; the warm-up also compiles sbx's update); wall-clock and
CPU-time rates are both printed, with the ratios to SB3 of the same repeat. On a loaded
machine the CPU-time ratios are the ones to read.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402


def rate(cls, env_id: str, steps: int, learning_starts: int, net_arch: list[int], **kwargs) -> tuple[float, float]:
    """(env steps per wall second, per CPU second) of ``cls``'s SAC after the warm-up."""
    model = cls("MlpPolicy", gym.make(env_id), learning_starts=learning_starts, batch_size=256, buffer_size=100_000,
                seed=0, ent_coef=0.2, policy_kwargs={"net_arch": net_arch}, verbose=0, **kwargs)
    model.learn(learning_starts + 200)
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    from sbx import SAC as SbxSAC
    from stable_baselines3 import SAC as Sb3SAC

    candidates = {
        "sb3": (Sb3SAC, {"device": "cpu"}),
        "sbx 1/1": (SbxSAC, {}),
        "sbx 32/32": (SbxSAC, {"train_freq": 32, "gradient_steps": 32}),
    }
    for repeat in range(args.repeats):
        rates = {name: rate(cls, args.env, args.steps, args.learning_starts, args.net_arch, **kw)
                 for name, (cls, kw) in candidates.items()}
        base = rates["sb3"]
        print(f"repeat {repeat}: " + "; ".join(
            f"{name} {wall:.1f} steps/s ({cpu:.1f} per CPU-s, x{cpu / base[1]:.2f})" for name, (wall, cpu) in rates.items()),
            flush=True)


if __name__ == "__main__":
    main()
