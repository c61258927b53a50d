"""Why a MuJoCo run did what it did: read-only diagnostics of finished runs' files
(docs/results.md quotes their output: the HalfCheetah cells, and "Why AIHF and ML-IRL
coincide").

``reward``: how a learned reward net (``reward_net.safetensors``) relates to the true reward
on the data's preference pool (``segments.npz``): the correlation of the learned segment sums
R_hat(sigma) = sum_t r_hat(s_t, a_t) with the true segment returns, the scale ratio
mean R_hat / mean R over the pool, the per-step learned reward's spread on the segments,
and its mean on the demonstrations (with the demonstrated actions, and with zero actions).
Per source checkpoint of the pool: the true and learned segment sums and the per-step mean.
The pool's labels are Bradley-Terry draws, P(sigma_1 > sigma_2) = sigmoid((R_1 - R_2) / T)
(data/mujoco/README.md gives each environment's T), so a reward fitted to them alone
approaches r / T: a scale near 1/T is what a good preference-only fit looks like.

``posture`` (HalfCheetah): ``--episodes`` deterministic episodes of a saved policy
(``policy.safetensors``; reset seeds ``--seed``, ``--seed`` + 1, ...; one by default): per
episode its return, the root angle (observation 1, qpos[2]) averaged over the episode, the
share of steps with |angle| > 2 rad (on its back), and the mean forward velocity
(observation 8, qvel[0]); with more than one, a summary over them (``posture_summary``: how
many episodes spend most of their steps on the back, the means). With ``--data`` and the
run's ``reward_net.safetensors`` (``pool_reward_by_posture``): the learned reward per step
along each episode, against its mean on the pool's steps on the back and upright: whether the
policy found states the reward scores above what the data taught it for that posture. When
that file holds a reward ensemble, also its members' standard deviation per step
(``RewardEnsemble.disagreement``) along each episode, on the pool's steps by posture and on
the demonstrations: whether the members disagree where the policy went more than on the data.

    python scripts/mujoco_reward_diag.py reward runs/mujoco-paper/HalfCheetah-v5-balanced/runs/rlhf/seed0 \
        --data data/mujoco/HalfCheetah-v5
    python scripts/mujoco_reward_diag.py posture runs/mujoco-paper/HalfCheetah-v5-balanced/runs/sac_true/seed0 --episodes 10

``terms`` (AIHF): how hard each term of the reward objective pulls on a run's final reward
net, in the run's own reward step (``RewardLearner.loss`` under the preset's ``loop.reward``:
the paper preset's full batches, l_D scaled by ``demo_horizon``): the gradient norms of w_D H l_D (every demonstration against the
transitions of ``--episodes`` deterministic episodes of the run's final policy, standing in
for the step's fresh trajectories) and of w_P l_BT (every preference pair), their ratio and
cosine, and the share of the reward net's parameters where the sum's sign (Adam's step
direction) is the demonstration term's alone.

``fit`` (a cell's AIHF and ML-IRL runs): from their ``result.json`` reward diagnostics, each
seed's training-pair accuracy (the share of preference pairs the reward orders right; ML-IRL
never trains on them) and demonstration-over-policy margin per step, at the first, a
quarter, half and the last reward step: whether AIHF's preference term changed its reward.

``replay``: each run's saved policy (``policy.safetensors``) on the episodes of the run's
final evaluation (``final_evaluation``: its cell's ``config.yaml`` gives the environment,
``loop.eval_split`` and ``loop.eval_episodes``, its folder name the seed; ``--episodes``
takes the first few instead): the mean return against the one ``result.json`` recorded
there, and the change as a share of the expert's return (the cell's ``results.json``);
copied runs are skipped, and with several runs a summary of the changes' sizes follows. A
run made since the saved policy is the one that evaluation scored gives it back exactly (on
the same machine, with every episode); a run saved before holds the policy one round of SAC
updates past it (``sac.gradient_steps`` updates: 25 in the paper preset), so the difference
shows how far a final return moves in one round.

    python scripts/mujoco_reward_diag.py replay runs/mujoco-paper/Hopper-v5-few-demonstrations/runs/ml_irl/seed*
    python scripts/mujoco_reward_diag.py fit docs/results/mujoco-paper/Walker2d-v5-balanced
    python scripts/mujoco_reward_diag.py terms runs/mujoco-paper/Walker2d-v5-balanced/runs/aihf/seed0 \
        --data data/mujoco/Walker2d-v5 --env Walker2d-v5
    python scripts/mujoco_reward_diag.py terms runs/mujoco-paper/HalfCheetah-v5-few-preferences/runs/aihf/seed0 \
        --data data/mujoco/HalfCheetah-v5 --env HalfCheetah-v5 --set n_prefs=200
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT_ANGLE, FORWARD_VELOCITY = 1, 8  # HalfCheetah-v5 observation indices: qpos[2] (root angle), qvel[0]


def per_step_rewards(net, observations: np.ndarray, actions: np.ndarray, spread: bool = False) -> np.ndarray:
    """r_hat(s, a) for arrays of shape (..., obs_dim) and (..., act_dim), shape (...); with
    ``spread`` (an ensemble) its members' standard deviation there instead."""
    obs = torch.tensor(observations, dtype=torch.float32)  # copies: episodes' arrays are read-only
    act = torch.tensor(actions, dtype=torch.float32)
    per_step = net.disagreement if spread else net
    with torch.no_grad():
        flat = per_step(obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1]))
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


def term_gradients(net, cfg, demos, prefs, policy_obs: np.ndarray, policy_act: np.ndarray) -> dict:
    """The two terms' gradients at ``net`` (``terms`` in the module docstring): ``demo_norm``,
    ``pref_norm``, ``ratio`` (demo over preference), ``cosine``, ``demo_sign_share`` and
    ``pref_accuracy`` (``RewardLearner.diagnostics``' training-pair accuracy, as the runs record
    it). Each term is the run's own reward step, ``RewardLearner.loss`` under ``cfg`` with the
    other term's weight and the reward L2 set to 0 (its batch sizes, ``demo_horizon`` and form)."""
    from dataclasses import replace

    from aihf.control.reward_step import RewardLearner

    obs, act = (torch.as_tensor(a, dtype=torch.float32) for a in (policy_obs, policy_act))
    parameters = [p for p in net.parameters() if p.requires_grad]

    def term(**weights) -> tuple[torch.Tensor, RewardLearner]:
        learner = RewardLearner(net, replace(cfg, reward_l2=0.0, **weights), demos, prefs, np.random.default_rng(0))
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(learner.loss(obs, act), parameters)]), learner

    (g_demo, _), (g_pref, learner) = term(w_pref=0.0), term(w_demo=0.0)
    both = g_demo + g_pref
    return {"demo_norm": float(g_demo.norm()), "pref_norm": float(g_pref.norm()),
            "ratio": float(g_demo.norm() / g_pref.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(g_demo, g_pref, dim=0)),
            "demo_sign_share": float((torch.sign(both) == torch.sign(g_demo)).float().mean()),
            "pref_accuracy": learner.diagnostics(obs, act)["pref_train_accuracy"]}


def fit_over_training(aihf: list[dict], ml_irl: list[dict]) -> list[tuple[int, float, float, float, float]]:
    """(environment step, AIHF's and ML-IRL's training-pair accuracy, AIHF's and ML-IRL's margin)
    at the first, a quarter, half and the last of two runs' reward diagnostics (``fit``)."""
    picks = sorted({0, len(aihf) // 4, len(aihf) // 2, len(aihf) - 1})
    return [(aihf[i]["step"], aihf[i]["pref_train_accuracy"], ml_irl[i]["pref_train_accuracy"],
             aihf[i]["margin"], ml_irl[i]["margin"]) for i in picks]


def posture(observations: np.ndarray, rewards: np.ndarray) -> dict:
    """HalfCheetah's posture over one episode (module docstring)."""
    angle = np.asarray(observations)[:, ROOT_ANGLE]
    return {"return": float(np.sum(rewards)), "root_angle_mean": float(angle.mean()),
            "on_back_share": float((np.abs(angle) > 2.0).mean()),
            "forward_velocity_mean": float(np.asarray(observations)[:, FORWARD_VELOCITY].mean())}


def posture_summary(found: list[dict]) -> dict:
    """Several episodes' ``posture`` figures in one: the number of episodes on their back for
    most of their steps (``on_back_share`` > 0.5), and the means over episodes of ``posture``'s
    return, on-back share and forward velocity, under the same keys."""
    return {"episodes": len(found), "on_back_episodes": sum(f["on_back_share"] > 0.5 for f in found),
            "return": float(np.mean([f["return"] for f in found])),
            "on_back_share": float(np.mean([f["on_back_share"] for f in found])),
            "forward_velocity_mean": float(np.mean([f["forward_velocity_mean"] for f in found]))}


def pool_reward_by_posture(pool_rewards: np.ndarray, segments: dict) -> dict:
    """The learned reward on the pool's real steps (``pool_rewards``, shape of
    ``segments["obs"]`` less its last axis) split by posture: on the back (|root angle| > 2 rad)
    and upright, with the pool's forward velocity on each and the back steps' share."""
    obs = np.asarray(segments["obs"])
    real = np.arange(obs.shape[1])[None, :] < np.asarray(segments["lengths"])[:, None]
    on_back = np.abs(obs[..., ROOT_ANGLE]) > 2.0
    back, upright = on_back & real, ~on_back & real
    velocity = obs[..., FORWARD_VELOCITY]
    return {"pool_back": float(pool_rewards[back].mean()), "pool_back_velocity": float(velocity[back].mean()),
            "pool_back_share": float(back.sum() / real.sum()),
            "pool_upright": float(pool_rewards[upright].mean()), "pool_upright_velocity": float(velocity[upright].mean())}


def data_folder(text: str) -> Path:
    """An existing data folder for ``--data`` (one of data/mujoco/<ENV>), or argparse's error naming it."""
    folder = Path(text)
    if not (folder / "segments.npz").is_file():
        raise argparse.ArgumentTypeError(f"{folder} holds no segments.npz: give an environment's data folder, "
                                         "e.g. data/mujoco/HalfCheetah-v5")
    return folder


def run_folder(*files: str):
    """An argparse type: a run folder holding ``files``, or argparse's error naming the folder
    and what it lacks (a run restored from an export keeps only its result.json)."""
    def check(text: str) -> Path:
        folder = Path(text)
        missing = [name for name in files if not (folder / name).is_file()]
        if missing:
            raise argparse.ArgumentTypeError(f"{folder} holds no {' or '.join(missing)}: give the folder of a run trained "
                                             "on this machine (an exported or restored run keeps only its result.json)")
        return folder
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    reward = commands.add_parser("reward", help="a run's reward net against the true reward on the pool")
    reward.add_argument("run", type=run_folder("reward_net.safetensors"), help="a run folder holding reward_net.safetensors")
    reward.add_argument("--data", type=data_folder, required=True, help="the data folder (segments.npz, demos.npz)")
    pose = commands.add_parser("posture", help="HalfCheetah: root angle and velocity of a run's policy")
    pose.add_argument("run", type=run_folder("policy.safetensors"), help="a run folder holding policy.safetensors")
    pose.add_argument("--env", default="HalfCheetah-v5")
    pose.add_argument("--seed", type=int, default=123, help="the first episode's reset seed")
    pose.add_argument("--episodes", type=int, default=1, help="deterministic episodes, reset seeds --seed, --seed + 1, ...")
    pose.add_argument("--data", type=data_folder, help="the data folder (segments.npz): also the run's learned reward along "
                      "the episode against the pool's, by posture")
    fit_cmd = commands.add_parser("fit", help="AIHF against ML-IRL: training-pair accuracy and margin over a cell's runs")
    fit_cmd.add_argument("cell", type=Path, help="a cell folder holding runs/aihf/seed*/ and runs/ml_irl/seed*/")
    terms = commands.add_parser("terms", help="AIHF: the gradient of each reward-objective term at a run's reward")
    terms.add_argument("run", type=run_folder("reward_net.safetensors", "policy.safetensors"), help="a run folder holding reward_net.safetensors and policy.safetensors")
    terms.add_argument("--data", type=data_folder, required=True, help="the data folder (demos.npz, prefs.npz, segments.npz)")
    terms.add_argument("--env", required=True)
    terms.add_argument("--preset", default="paper", help="the configs/mujoco preset the run was made with")
    terms.add_argument("--episodes", type=int, default=10, help="policy episodes standing in for the step's samples")
    terms.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                       help="the run's preset overrides (e.g. n_prefs=200 for the few-preferences cell)")
    replay = commands.add_parser("replay", help="a run's saved policy on its final evaluation's reset seeds")
    replay.add_argument("runs", nargs="+", type=run_folder("policy.safetensors", "result.json"),
                        help="run folders (<cell>/runs/<method>/seed<k>) holding policy.safetensors and result.json")
    replay.add_argument("--episodes", type=int, help="the first episodes of that evaluation (default: all of them)")
    args = parser.parse_args()
    if args.command == "posture" and args.data and not (args.run / "reward_net.safetensors").is_file():
        parser.error(f"posture --data: {args.run} holds no reward_net.safetensors")
    {"reward": report_reward, "posture": report_posture, "fit": report_fit, "terms": report_terms,
     "replay": report_replay}[args.command](args)


def report_reward(args) -> None:
    """``reward`` (module docstring): the fit line, then one per source checkpoint."""
    from aihf.control.reward_net import load_reward

    fit = reward_fit(load_reward(args.run / "reward_net.safetensors"), dict(np.load(args.data / "segments.npz")),
                     dict(np.load(args.data / "demos.npz")))
    print(f"{args.run}: segment sums correlate {fit['correlation']:.3f} with true returns, scale "
          f"{fit['scale']:.4f} (1/scale {1 / fit['scale']:.1f}); per step on the pool mean {fit['step_mean']:.2f} "
          f"sd {fit['step_std']:.2f} [{fit['step_min']:.2f}, {fit['step_max']:.2f}]; on the demonstrations "
          f"{fit['demo_mean']:.2f} (zero actions {fit['demo_zero_action_mean']:.2f})")
    for row in fit["by_source"]:
        print(f"  checkpoint {row['source']}: true {row['true']:.0f}, learned {row['learned']:.1f}, "
              f"per step {row['step_mean']:.2f}")


def report_fit(args) -> None:
    """``fit`` (module docstring): one line per seed with both runs."""
    import json

    for run in sorted((args.cell / "runs" / "aihf").glob("seed*/result.json")):
        other = args.cell / "runs" / "ml_irl" / run.parent.name / "result.json"
        if not other.is_file():
            continue
        rows = fit_over_training(*(json.loads(path.read_text())["result"]["reward_diagnostics"] for path in (run, other)))
        print(f"{args.cell.name} {run.parent.name}: step, pair accuracy AIHF / ML-IRL, margin per step AIHF / ML-IRL: "
              + "; ".join(f"{step}: {a:.3f} / {m:.3f}, {ma:.2f} / {mm:.2f}" for step, a, m, ma, mm in rows))


def report_posture(args) -> None:
    """``posture`` (module docstring): each episode's line, then the summary over them."""
    import gymnasium as gym

    from aihf.control.policy_io import load_policy
    from aihf.control.rollout import evaluation_episodes

    env = gym.make(args.env)
    episodes = evaluation_episodes(load_policy(args.run / "policy.safetensors", env), env, args.episodes, args.seed)
    net, ensemble = None, False
    if args.data:
        from aihf.control.reward_net import RewardEnsemble, load_reward

        net, segments = load_reward(args.run / "reward_net.safetensors"), dict(np.load(args.data / "segments.npz"))
        pool = pool_reward_by_posture(per_step_rewards(net, segments["obs"], segments["act"]), segments)
        ensemble = isinstance(net, RewardEnsemble)
        if ensemble:
            pool_spread = pool_reward_by_posture(per_step_rewards(net, segments["obs"], segments["act"], True), segments)
            demos = dict(np.load(args.data / "demos.npz"))
            demo_spread = float(per_step_rewards(net, demos["observations"], demos["actions"], True).mean())
    found = []
    for seed, episode in enumerate(episodes, start=args.seed):
        found.append(posture(np.asarray(episode.observations), np.asarray(episode.rewards)))
        print(f"{args.run} (reset seed {seed}): return {found[-1]['return']:.0f}, root angle mean "
              f"{found[-1]['root_angle_mean']:.2f} rad, |angle| > 2 rad on {found[-1]['on_back_share']:.0%} of steps, "
              f"forward velocity {found[-1]['forward_velocity_mean']:.2f}")
        if net is not None:
            learned = np.mean(per_step_rewards(net, episode.observations, episode.actions))
            spread = (f"; members' sd per step {per_step_rewards(net, episode.observations, episode.actions, True).mean():.3f}"
                      if ensemble else "")
            print(f"  learned reward per step: this episode {learned:.3f} (true {np.mean(episode.rewards):.3f}){spread}")
    if net is not None:
        print(f"the same reward on the pool's steps on the back ({pool['pool_back_share']:.1%} of them, velocity "
              f"{pool['pool_back_velocity']:.2f}) {pool['pool_back']:.3f}, upright (velocity "
              f"{pool['pool_upright_velocity']:.2f}) {pool['pool_upright']:.3f}")
    if ensemble:
        print(f"the members' sd per step on the pool's steps on the back {pool_spread['pool_back']:.3f}, upright "
              f"{pool_spread['pool_upright']:.3f}; on the demonstrations {demo_spread:.3f}")
    if len(found) > 1:
        total = posture_summary(found)
        print(f"over {total['episodes']} episodes: {total['on_back_episodes']} on the back for most of their steps; "
              f"mean return {total['return']:.0f}, on-back share {total['on_back_share']:.0%}, "
              f"forward velocity {total['forward_velocity_mean']:.2f}")


def final_evaluation(run: Path) -> tuple[str, int, int]:
    """The environment of a run folder (``<cell>/runs/<method>/seed<k>``), the reset seed of its
    final evaluation's first episode (``reset_seeds.evaluation_seed`` of the cell's
    ``loop.eval_split``, the seed ``k`` and the evaluation's index in ``result.json``) and its
    number of episodes (``loop.eval_episodes``)."""
    import json
    import re

    import yaml

    from aihf.control.reset_seeds import evaluation_seed

    config = yaml.safe_load((run.parents[2] / "config.yaml").read_text(encoding="utf-8"))
    steps = json.loads((run / "result.json").read_text(encoding="utf-8"))["result"]["steps"]
    seed = int(re.fullmatch(r"seed(\d+)", run.name).group(1))
    loop = config["loop"]
    return config["env"], evaluation_seed(loop.get("eval_split", "test"), seed, len(steps) - 1), loop["eval_episodes"]


def report_replay(args) -> None:
    """``replay`` (module docstring): one line per run."""
    import json

    import gymnasium as gym

    from aihf.control.policy_io import load_policy
    from aihf.control.rollout import evaluate_policy_return

    changes = []
    for run in args.runs:
        saved = json.loads((run / "result.json").read_text(encoding="utf-8"))
        if "copied_from" in saved:
            print(f"{run}: a copy of {saved['copied_from']}, skipped")
            continue
        env_id, first, episodes = final_evaluation(run)
        recorded = saved["result"]
        env = gym.make(env_id)
        returns = evaluate_policy_return(load_policy(run / "policy.safetensors", env), env, args.episodes or episodes, first)
        expert = json.loads((run.parents[2] / "results.json").read_text(encoding="utf-8"))["demonstrator_return"]
        changes.append((np.mean(returns) - recorded["returns"][-1]) / expert)
        print(f"{run}: recorded {recorded['returns'][-1]:.0f} (sd {recorded['stds'][-1]:.0f} over {episodes} episodes), "
              f"saved policy {np.mean(returns):.0f} (sd {np.std(returns):.0f} over {len(returns)}); change "
              f"{changes[-1]:+.3f} of the expert's return ({expert:.0f})")
    if len(changes) > 1:
        size = np.abs(changes)
        print(f"over {len(changes)} runs: |change| median {np.median(size):.3f} of the expert's return, mean "
              f"{size.mean():.3f}; above 0.05 in {int((size > 0.05).sum())}, above 0.10 in {int((size > 0.10).sum())}")


def report_terms(args) -> None:
    import gymnasium as gym

    from aihf.config import load_config
    from aihf.control.expert_data import load_data
    from aihf.control.policy_io import load_policy
    from aihf.control.reward_net import load_reward
    from aihf.control.rollout import policy_actor, run_episode
    from aihf.experiments.mujoco import MujocoConfig
    from aihf.shipped import find_config

    cfg = load_config(MujocoConfig, find_config("mujoco", args.preset), args.set, defaults={"env": args.env})
    demos, prefs = load_data(args.data, cfg.demos, cfg.n_demos, cfg.n_prefs)
    env = gym.make(args.env)
    act = policy_actor(load_policy(args.run / "policy.safetensors", env))
    episodes = [run_episode(act, env, seed=10**9 + i) for i in range(args.episodes)]
    found = term_gradients(load_reward(args.run / "reward_net.safetensors"), cfg.loop.reward, demos, prefs,
                           np.concatenate([e.observations for e in episodes]), np.concatenate([e.actions for e in episodes]))
    print(f"{args.run}: |grad w_D H l_D| {found['demo_norm']:.4g}, |grad w_P l_BT| {found['pref_norm']:.4g} "
          f"(ratio {found['ratio']:.1f}, cosine {found['cosine']:.2f}); Adam's step direction is the demonstration "
          f"term's on {found['demo_sign_share']:.1%} of the parameters; training-pair accuracy "
          f"{found['pref_accuracy']:.3f} ({args.episodes} deterministic episodes of the final policy, "
          f"mean return {np.mean([e.ret for e in episodes]):.0f})")


if __name__ == "__main__":
    main()
