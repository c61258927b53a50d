"""Train the SAC experts behind data/mujoco (true reward), resumably.

    nice -n 10 python scripts/make_mujoco_experts.py --env Hopper-v5 --steps 100000 --seed 0 \
        --out runs/experts/Hopper-v5

Re-running the same command resumes from the last checkpoint. See src/aihf/control/expert.py
for what is written; provenance.json holds seed, steps, wall time and the evaluated return.
"""

import argparse
import json

import torch

from aihf.control.expert import ExpertConfig, train_expert


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    p.add_argument("--checkpoint-every", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ExpertConfig(env=args.env, steps=args.steps, seed=args.seed, net_arch=args.net_arch,
                       checkpoint_every=args.checkpoint_every)
    print(json.dumps(train_expert(cfg, args.out), indent=2))


if __name__ == "__main__":
    main()
