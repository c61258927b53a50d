"""Why a MuJoCo run did what it did: two read-only diagnostics of a finished run's files
(docs/results.md, "HalfCheetah, partly filled", quotes their output).

``reward``: how a learned reward net (``reward_net.safetensors``) relates to the true reward
on the data's preference pool (``segments.npz``): the correlation of the learned segment sums
R_hat(sigma) = sum_t r_hat(s_t, a_t) with the true segment returns, the scale ratio
mean R_hat / mean R over the pool, the per-step learned reward's spread on the segments,
and its mean on the demonstrations (with the demonstrated actions, and with zero actions).
Per source checkpoint of the pool: the true and learned segment sums and the per-step mean.
The pool's labels are Bradley-Terry draws, P(sigma_1 > sigma_2) = sigmoid((R_1 - R_2) / T)
(data/mujoco/README.md gives each environment's T), so a reward fitted to them alone
approaches r / T: a scale near 1/T is what a good preference-only fit looks like.

``posture`` (HalfCheetah): one deterministic episode of a saved policy
(``policy.safetensors``): its return, the root angle (observation 1, qpos[2]) averaged over
the episode, the share of steps with |angle| > 2 rad (on its back), and the mean forward
velocity (observation 8, qvel[0]).

    python scripts/mujoco_reward_diag.py reward runs/mujoco-paper/HalfCheetah-v5-balanced/runs/rlhf/seed0 \
        --data data/mujoco/HalfCheetah-v5
    python scripts/mujoco_reward_diag.py posture runs/mujoco-paper/HalfCheetah-v5-balanced/runs/sac_true/seed0
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT_ANGLE, FORWARD_VELOCITY = 1, 8  # HalfCheetah-v5 observation indices: qpos[2] (root angle), qvel[0]


def per_step_rewards(net, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """r_hat(s, a) for arrays of shape (..., obs_dim) and (..., act_dim), shape (...)."""
    obs = torch.as_tensor(observations, dtype=torch.float32)
    act = torch.as_tensor(actions, dtype=torch.float32)
    with torch.no_grad():
        flat = net(obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1]))
    return flat.reshape(obs.shape[:-1]).numpy()


def reward_fit(net, segments: dict, demos: dict) -> dict:
    """The learned reward against the true one on the pool (module docstring): a dict of
    ``correlation``, ``scale``, per-step ``step_mean``/``step_std``/``step_min``/``step_max`` on
    the segments, ``demo_mean``, ``demo_zero_action_mean`` and ``by_source`` (one row per
    checkpoint: ``source``, ``true``, ``learned``, ``step_mean``)."""
    rewards = per_step_rewards(net, segments["obs"], segments["act"])
    mask = np.arange(rewards.shape[1])[None, :] < np.asarray(segments["lengths"])[:, None]
    learned, true = (rewards * mask).sum(axis=1), np.asarray(segments["returns"], dtype=np.float64)
    steps = rewards[mask]
    demo_actions = np.asarray(demos["actions"])
    by_source = []
    for source in np.unique(segments["source"]):
        rows = np.asarray(segments["source"]) == source
        by_source.append({"source": int(source), "true": float(true[rows].mean()), "learned": float(learned[rows].mean()),
                          "step_mean": float(rewards[mask & rows[:, None]].mean())})
    return {
        "correlation": float(np.corrcoef(learned, true)[0, 1]),
        "scale": float(learned.mean() / true.mean()),
        "step_mean": float(steps.mean()), "step_std": float(steps.std()),
        "step_min": float(steps.min()), "step_max": float(steps.max()),
        "demo_mean": float(per_step_rewards(net, demos["observations"], demo_actions).mean()),
        "demo_zero_action_mean": float(per_step_rewards(net, demos["observations"], np.zeros_like(demo_actions)).mean()),
        "by_source": by_source,
    }


def posture(observations: np.ndarray, rewards: np.ndarray) -> dict:
    """HalfCheetah's posture over one episode (module docstring)."""
    angle = np.asarray(observations)[:, ROOT_ANGLE]
    return {"return": float(np.sum(rewards)), "root_angle_mean": float(angle.mean()),
            "on_back_share": float((np.abs(angle) > 2.0).mean()),
            "forward_velocity_mean": float(np.asarray(observations)[:, FORWARD_VELOCITY].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    reward = commands.add_parser("reward", help="a run's reward net against the true reward on the pool")
    reward.add_argument("run", type=Path, help="a run folder holding reward_net.safetensors")
    reward.add_argument("--data", type=Path, required=True, help="the data folder (segments.npz, demos.npz)")
    pose = commands.add_parser("posture", help="HalfCheetah: root angle and velocity of a run's policy")
    pose.add_argument("run", type=Path, help="a run folder holding policy.safetensors")
    pose.add_argument("--env", default="HalfCheetah-v5")
    pose.add_argument("--seed", type=int, default=123, help="the episode's reset seed")
    args = parser.parse_args()
    if args.command == "reward":
        from aihf.control.reward_net import RewardNet

        fit = reward_fit(RewardNet.load(args.run / "reward_net.safetensors"), dict(np.load(args.data / "segments.npz")),
                         dict(np.load(args.data / "demos.npz")))
        print(f"{args.run}: segment sums correlate {fit['correlation']:.3f} with true returns, scale "
              f"{fit['scale']:.4f} (1/scale {1 / fit['scale']:.1f}); per step on the pool mean {fit['step_mean']:.2f} "
              f"sd {fit['step_std']:.2f} [{fit['step_min']:.2f}, {fit['step_max']:.2f}]; on the demonstrations "
              f"{fit['demo_mean']:.2f} (zero actions {fit['demo_zero_action_mean']:.2f})")
        for row in fit["by_source"]:
            print(f"  checkpoint {row['source']}: true {row['true']:.0f}, learned {row['learned']:.1f}, "
                  f"per step {row['step_mean']:.2f}")
    else:
        import gymnasium as gym

        from aihf.control.policy_io import load_policy
        from aihf.control.rollout import policy_actor, run_episode

        env = gym.make(args.env)
        episode = run_episode(policy_actor(load_policy(args.run / "policy.safetensors", env)), env, seed=args.seed)
        found = posture(np.asarray(episode.observations), np.asarray(episode.rewards))
        print(f"{args.run}: return {found['return']:.0f}, root angle mean {found['root_angle_mean']:.2f} rad, "
              f"|angle| > 2 rad on {found['on_back_share']:.0%} of steps, forward velocity {found['forward_velocity_mean']:.2f}")


if __name__ == "__main__":
    main()
