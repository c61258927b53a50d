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

It first prints the compute bound (``compute_bound``): the multiply-adds of one SAC update
counted layer by layer, over this core's measured matrix-multiply rate.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402


def update_flops(obs_dim: int, act_dim: int, hidden: list[int], batch: int) -> float:
    """Floating-point operations of one SAC update (two critics, two target critics, a
    Gaussian actor with mean and log-std heads; biases and activations left out), counting a
    backward pass as twice its forward (input and weight gradients):

        per sample: 4 A + 12 Q multiply-adds, A = actor forward, Q = one critic's forward:
        critic step: actor forward at s' (A), two target critics (2Q), two critics forward
        and backward (6Q); actor step: actor forward and backward (3A), two critics forward
        and backward at (s, pi(s)) (6Q, less the weight gradients that frameworks compute
        anyway: counted as 4Q). Returns 2 x multiply-adds x batch."""
    def mlp(inp: int, out: int) -> int:
        sizes = [inp, *hidden, out]
        return sum(a * b for a, b in zip(sizes, sizes[1:]))
    actor, critic = mlp(obs_dim, 2 * act_dim), mlp(obs_dim + act_dim, 1)
    return 2.0 * (4 * actor + 12 * critic) * batch


def matmul_flops_per_s(size: int = 256, repeats: int = 2000) -> float:
    """This core's rate on ``size`` x ``size`` by ``size`` x ``size`` float32 products (torch,
    one thread): the best a dense 256-wide layer with batch 256 can do here."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(50):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * size**3 * repeats / (time.perf_counter() - t)


def compute_bound(env_id: str, net_arch: list[int], batch: int = 256) -> tuple[float, float, float]:
    """(FLOP per update, FLOP/s of one core, updates per second of one core at best)."""
    env = gym.make(env_id)
    flops = update_flops(env.observation_space.shape[0], env.action_space.shape[0], net_arch, batch)
    peak = matmul_flops_per_s()
    return flops, peak, peak / flops


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
    flops, peak, bound = compute_bound(args.env, args.net_arch)
    print(f"compute bound: {flops / 1e9:.3f} GFLOP per update, {peak / 1e9:.1f} GFLOP/s on one core "
          f"(torch matmul 256^3) -> at most {bound:.0f} updates (env steps) per second per core", flush=True)
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
