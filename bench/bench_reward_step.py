"""The control reward step on distinct segments against both sides of every pair: CPU-seconds
of one full-batch AIHF reward step (loss, backward; the `paper` MuJoCo preset's step: every
demonstration, 10,000 policy transitions, every preference pair) on shipped data, one thread.

    python bench/bench_reward_step.py --env Hopper-v5 --repeats 3

Pairs drawn from a pool repeat its segments (Hopper: 20,000 pairs over 1,200 segments);
``RewardLearner`` evaluates each distinct segment once. The peer evaluates both sides of every
pair, as the learner did before; both give the same loss (printed) and gradient (tested in
tests/test_control.py).
"""

import argparse
import time

import numpy as np
import torch

from aihf import shipped
from aihf.control.expert_data import load_data
from aihf.control.reward_net import RewardNet
from aihf.control.reward_step import RewardLearner, RewardStepConfig
from aihf.objective import aihf_reward_loss


def cpu_seconds(step) -> tuple[float, float]:
    start = time.process_time()
    loss = step()
    loss.backward()
    return time.process_time() - start, float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--n-prefs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    demos, prefs = load_data(shipped.mujoco_data_dir(args.env), "demos", 10_000, args.n_prefs)
    torch.manual_seed(0)
    net = RewardNet(demos.observations.shape[1], demos.actions.shape[1], (64, 64), 10.0)
    cfg = RewardStepConfig(w_demo=1.0, w_pref=1.0, reward_l2=0.0, demo_batch=None, pref_batch=None, demo_horizon=1000)
    start = time.process_time()
    learner = RewardLearner(net, cfg, demos, prefs, np.random.default_rng(0))
    setup = time.process_time() - start
    policy_obs, policy_act = torch.tensor(demos.observations), torch.tensor(demos.actions)  # 10,000 stand-in transitions
    tensor = lambda x: torch.tensor(np.asarray(x))  # noqa: E731
    sides = [tensor(a) for a in (prefs.obs_w, prefs.act_w, prefs.mask_w(), prefs.obs_l, prefs.act_l, prefs.mask_l())]
    demo_obs, demo_act = tensor(demos.observations), tensor(demos.actions)

    def both_sides():
        net.zero_grad()
        return aihf_reward_loss(net(demo_obs, demo_act), net(policy_obs, policy_act), net.segment_reward(*sides[:3]),
                                net.segment_reward(*sides[3:]), 1000.0, 1.0, "linear", 0.0)

    def distinct():
        net.zero_grad()
        return learner.loss(policy_obs, policy_act)

    segments = len(learner.segments["obs"])
    print(f"{args.env}: {len(prefs.obs_w)} pairs over {segments} distinct segments (setup {setup:.2f} CPU-s)")
    for repeat in range(args.repeats):
        (t_distinct, l_distinct), (t_both, l_both) = cpu_seconds(distinct), cpu_seconds(both_sides)
        print(f"repeat {repeat}: distinct segments {t_distinct:.3f} CPU-s (loss {l_distinct:.6g}), both sides of "
              f"every pair {t_both:.3f} CPU-s (loss {l_both:.6g}): {t_both / t_distinct:.1f}x")


if __name__ == "__main__":
    main()
