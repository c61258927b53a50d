"""Train the SAC experts behind data/mujoco (true reward), resumably.

    nice -n 10 python scripts/make_mujoco_experts.py --env Hopper-v5 --steps 1000000 --seed 0 \
        --backend sbx --batched-updates 32 --out runs/experts/Hopper-v5

Re-running the same command resumes from the last checkpoint, and the resumed run is the
uninterrupted one. ``--target-return R`` ends the run at the first checkpoint that evaluates
at R or more (issue 10's Walker2d expert: at least 4,000). See src/aihf/control/expert.py for what is written; provenance.json holds
seed, steps, wall time and the evaluated return. ``--backend sbx`` needs ``aihf[fast]``.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

from aihf.control.expert import ExpertConfig, train_expert  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    p.add_argument("--checkpoint-every", type=int, default=10_000)
    p.add_argument("--learning-starts", type=int, default=5_000)
    p.add_argument("--backend", choices=["sb3", "sbx"], default="sb3")
    p.add_argument("--batched-updates", type=int, default=1, help="train_freq = gradient_steps (sbx: 32)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--target-return", type=float, help="evaluate each checkpoint (--eval-episodes deterministic "
                   "episodes) and end the run at the first whose mean return reaches this")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ExpertConfig(env=args.env, steps=args.steps, seed=args.seed, net_arch=args.net_arch,
                       checkpoint_every=args.checkpoint_every, learning_starts=args.learning_starts,
                       backend=args.backend, batched_updates=args.batched_updates, eval_episodes=args.eval_episodes,
                       target_return=args.target_return)
    try:
        record = train_expert(cfg, args.out)
    except ValueError as err:  # a folder holding a run with other settings
        sys.exit(f"make_mujoco_experts: {err}")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
