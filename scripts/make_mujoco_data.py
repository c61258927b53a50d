"""Make data/mujoco/<env>/ from the expert checkpoints of scripts/make_mujoco_experts.py.

    python scripts/make_mujoco_data.py --env Hopper-v5 --checkpoints runs/experts/Hopper-v5/checkpoints \
        --out data/mujoco/Hopper-v5 [--quality-levels 8 --segment-len 100 --min-segment-len 20 --demonstrator best]

See src/aihf/control/expert_data.py for the files and their meaning.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from aihf.control.expert_data import ExpertDataConfig, make_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--checkpoints", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--segments-per-checkpoint", type=int, default=150)
    p.add_argument("--low-checkpoint", type=int, default=2)
    p.add_argument("--segment-len", type=int, default=25, help="steps per segment (the longest)")
    p.add_argument("--min-segment-len", type=int, default=None,
                   help="shortest segment: a segment may end where its episode ends (default: all --segment-len)")
    p.add_argument("--quality-levels", type=int, default=None,
                   help="segments from this many checkpoints, chosen by evaluated return from the worst to the best")
    p.add_argument("--eval-episodes", type=int, default=5,
                   help="deterministic episodes per checkpoint for the choices by evaluated return")
    p.add_argument("--demonstrator", default="last",
                   help="checkpoint behind demos.npz: last, best (highest evaluated return) or a file name")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = ExpertDataConfig(env=args.env, seed=args.seed, segments_per_checkpoint=args.segments_per_checkpoint,
                     low_checkpoint=args.low_checkpoint, segment_len=args.segment_len,
                     min_segment_len=args.min_segment_len, quality_levels=args.quality_levels,
                     eval_episodes=args.eval_episodes, demonstrator=args.demonstrator)
    record = make_data(cfg, args.checkpoints, args.out)
    record["command"] = " ".join(["python", *sys.argv])
    (Path(args.out) / "provenance.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "demonstrator_returns"}, indent=2))


if __name__ == "__main__":
    main()
