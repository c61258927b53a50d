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

``posture`` (HalfCheetah): one deterministic episode of a saved policy
(``policy.safetensors``): its return, the root angle (observation 1, qpos[2]) averaged over
the episode, the share of steps with |angle| > 2 rad (on its back), and the mean forward
velocity (observation 8, qvel[0]). With ``--data`` and the run's ``reward_net.safetensors``
(``learned_reward_by_posture``): the learned reward per step along that episode, against its
mean on the pool's steps on the back and upright: whether the policy found states the reward
scores above what the data taught it for that posture.

    python scripts/mujoco_reward_diag.py reward runs/mujoco-paper/HalfCheetah-v5-balanced/runs/rlhf/seed0 \
        --data data/mujoco/HalfCheetah-v5
    python scripts/mujoco_reward_diag.py posture runs/mujoco-paper/HalfCheetah-v5-balanced/runs/sac_true/seed0

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

``sweep`` (settings compared on one split): for each experiment folder given (its
``config.yaml``, ``runs/<method>/seed*/result.json``), one row per method: the reward
weights and steps its runs were made with (read from their run keys), the seeds, the final
and last-5 returns normalised by the expert's (mean and 95% t-interval over seeds, the
experiment's own ``summarise``), the training-pair accuracy of the last reward step (mean over
seeds) and, where the runs' ``reward_net.safetensors`` are there, the correlation of learned
segment sums with true returns on the pool (``reward``, mean over seeds). Which split the
returns were measured on is a column too: choose on validation, report on test. ``--plot``
draws every row's learning curve in one PNG.

    python scripts/mujoco_reward_diag.py fit docs/results/mujoco-paper/Walker2d-v5-balanced
    python scripts/mujoco_reward_diag.py sweep runs/tune/*/Hopper-v5-balanced --plot sweep.png
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


UNREAD_WEIGHTS = {"ml_irl": ("w_pref",), "rlhf": ("w_demo",), "sac_true": ("w_demo", "w_pref"), "bc": ("w_demo", "w_pref")}
"""The reward weights a method's runs carry in their settings but do not use (ML-IRL has no
preference term, RLHF's reward model no demonstration term; SAC and BC learn no reward)."""


def sweep_row(folder: Path, method: str, results: list[dict], expert: float, correlations: list[float]) -> dict:
    """One ``sweep`` row: ``results`` are the method's result.json files (key and result) in
    ``folder``, ``correlations`` the learned-vs-true segment correlations of those runs whose
    reward net was found (empty: none)."""
    from aihf.eval.stats import mean_interval
    from aihf.experiments.mujoco import summarise

    settings = [r["key"]["settings"] for r in results]

    def one(values: list) -> object:
        return values[0] if len(set(map(str, values))) == 1 else "mixed"

    summary = summarise({method: [r["result"] for r in results]}, expert)[method]
    accuracies = [r["result"]["reward_diagnostics"][-1]["pref_train_accuracy"] for r in results
                  if r["result"].get("reward_diagnostics") and "pref_train_accuracy" in r["result"]["reward_diagnostics"][-1]]
    unread = UNREAD_WEIGHTS.get(method, ())
    return {"folder": str(folder), "method": method, "split": one([s.get("eval_split", "test") for s in settings]),
            **{w: "-" if w in unread else one([s["reward"][w] for s in settings]) for w in ("w_demo", "w_pref")},
            "reward_updates": "-" if method in ("bc", "sac_true") else one([s["reward_updates"] for s in settings]),
            "reward_normalize": "-" if method == "bc" else one([s.get("reward_normalize", False) for s in settings]),
            "steps": one([r["result"]["steps"][-1] for r in results]), "seeds": sorted(r["key"]["seed"] for r in results),
            "final": summary["normalised_mean"], "final_ci95": summary["normalised_ci95"],
            "late": summary["late_normalised_mean"], "late_ci95": summary["late_normalised_ci95"],
            "pair_accuracy": float(np.mean(accuracies)) if accuracies else None,
            "correlation": mean_interval(correlations) if correlations else None,
            **{field: one([r["key"][field] for r in results]) for field in ("env", "demos", "n_prefs")},
            "expert": expert, "runs": [r["result"] for r in results]}


def sweep_rows(folders: list[Path]) -> list[dict]:
    """``sweep_row`` for every method of every experiment folder (module docstring)."""
    import json

    import yaml

    from aihf import shipped
    from aihf.control.expert_data import demonstrator_return
    from aihf.control.reward_net import RewardNet

    rows = []
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        data_dir = Path(config["data_dir"]) if config["data_dir"] else shipped.mujoco_data_dir(config["env"])
        segments, demos = dict(np.load(data_dir / "segments.npz")), dict(np.load(data_dir / f"{config['demos']}.npz"))
        for method_dir in sorted(p for p in (folder / "runs").iterdir() if p.is_dir()):
            runs = sorted(method_dir.glob("seed*/result.json"))
            if not runs:
                continue
            nets = [run.parent / "reward_net.safetensors" for run in runs]
            correlations = [reward_fit(RewardNet.load(net), segments, demos)["correlation"] for net in nets if net.is_file()]
            rows.append(sweep_row(folder, method_dir.name, [json.loads(r.read_text(encoding="utf-8")) for r in runs],
                                  demonstrator_return(data_dir), correlations))
    return rows


def sweep_label(row: dict) -> str:
    """``aihf w_D=1 w_P=30``: the method, AIHF's two weights (the swept ones; another method
    reads one weight, or none) and ``normalised`` where SAC saw the reward divided by its scale."""
    def weight(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    weights = [f"w_D={weight(row['w_demo'])} w_P={weight(row['w_pref'])}"] if row["method"] == "aihf" else []
    normalised = ["normalised"] if row["reward_normalize"] is True else []
    return " ".join([row["method"], *weights, *normalised])


def plot_sweep(rows: list[dict], path: Path) -> None:
    """Every row's learning curve (mean over its seeds, +- 1 sd) in one figure, normalised by
    the expert's return: ``experiments.mujoco.plot_curves`` with one curve per setting."""
    from aihf.experiments.mujoco import plot_curves

    first = rows[0]
    plot_curves({"env": first["env"], "demos": first["demos"], "n_prefs": first["n_prefs"], "seeds": first["seeds"],
                 "demonstrator_return": first["expert"], "eval_split": first["split"],
                 "runs": {label: r["runs"] for label, r in zip(_distinct_labels(rows), rows)}}, path)


def _distinct_labels(rows: list[dict]) -> list[str]:
    """``sweep_label`` of each row, with the folder's grid name in front where two rows would
    share one (settings the label does not show)."""
    labels = [sweep_label(r) for r in rows]
    return [f"{Path(r['folder']).parent.name}: {label}" if labels.count(label) > 1 else label
            for label, r in zip(labels, rows)]


def sweep_table(rows: list[dict]) -> str:
    """``sweep_rows`` as a markdown table (a mean alone where one seed gives no interval)."""
    def interval(mean: float, ci95: float) -> str:
        return f"{mean:.3f}" + (f" +- {ci95:.3f}" if np.isfinite(ci95) else "")

    lines = ["| folder | method | split | steps | w_D | w_P | reward steps | reward normalised | seeds | "
             "final, normalised | last 5, normalised | training-pair accuracy | segment correlation |", "|---" * 13 + "|"]
    for r in rows:
        correlation = "-" if r["correlation"] is None else interval(r["correlation"]["mean"], r["correlation"]["ci95"])
        accuracy = "-" if r["pair_accuracy"] is None else f"{r['pair_accuracy']:.3f}"
        lines.append(f"| {r['folder']} | {r['method']} | {r['split']} | {r['steps']} | {r['w_demo']} | {r['w_pref']} | "
                     f"{r['reward_updates']} | {r['reward_normalize']} | {', '.join(map(str, r['seeds']))} | {interval(r['final'], r['final_ci95'])} | "
                     f"{interval(r['late'], r['late_ci95'])} | {accuracy} | {correlation} |")
    return "\n".join(lines)


def posture(observations: np.ndarray, rewards: np.ndarray) -> dict:
    """HalfCheetah's posture over one episode (module docstring)."""
    angle = np.asarray(observations)[:, ROOT_ANGLE]
    return {"return": float(np.sum(rewards)), "root_angle_mean": float(angle.mean()),
            "on_back_share": float((np.abs(angle) > 2.0).mean()),
            "forward_velocity_mean": float(np.asarray(observations)[:, FORWARD_VELOCITY].mean())}


def learned_reward_by_posture(episode_rewards: np.ndarray, pool_rewards: np.ndarray, segments: dict) -> dict:
    """The learned reward per step along an episode (``episode_rewards``), and on the pool's
    real steps (``pool_rewards``, shape of ``segments["obs"]`` less its last axis) split by
    posture: on the back (|root angle| > 2 rad) and upright, with the pool's forward velocity
    on each."""
    obs = np.asarray(segments["obs"])
    real = np.arange(obs.shape[1])[None, :] < np.asarray(segments["lengths"])[:, None]
    back = (np.abs(obs[..., ROOT_ANGLE]) > 2.0) & real
    upright = ~(np.abs(obs[..., ROOT_ANGLE]) > 2.0) & real
    velocity = obs[..., FORWARD_VELOCITY]
    return {"episode": float(np.mean(episode_rewards)),
            "pool_back": float(pool_rewards[back].mean()), "pool_back_velocity": float(velocity[back].mean()),
            "pool_back_share": float(back.sum() / real.sum()),
            "pool_upright": float(pool_rewards[upright].mean()), "pool_upright_velocity": float(velocity[upright].mean())}


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
    pose.add_argument("--data", type=Path, help="the data folder (segments.npz): also the run's learned reward along "
                      "the episode against the pool's, by posture")
    fit_cmd = commands.add_parser("fit", help="AIHF against ML-IRL: training-pair accuracy and margin over a cell's runs")
    fit_cmd.add_argument("cell", type=Path, help="a cell folder holding runs/aihf/seed*/ and runs/ml_irl/seed*/")
    terms = commands.add_parser("terms", help="AIHF: the gradient of each reward-objective term at a run's reward")
    terms.add_argument("run", type=Path, help="a run folder holding reward_net.safetensors and policy.safetensors")
    terms.add_argument("--data", type=Path, required=True, help="the data folder (demos.npz, prefs.npz, segments.npz)")
    terms.add_argument("--env", required=True)
    terms.add_argument("--preset", default="paper", help="the configs/mujoco preset the run was made with")
    terms.add_argument("--episodes", type=int, default=10, help="policy episodes standing in for the step's samples")
    terms.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                       help="the run's preset overrides (e.g. n_prefs=200 for the few-preferences cell)")
    sweep = commands.add_parser("sweep", help="settings compared: one row per method of each experiment folder")
    sweep.add_argument("folders", type=Path, nargs="+", help="experiment folders (config.yaml, runs/<method>/seed*/)")
    sweep.add_argument("--plot", type=Path, help="also draw every row's learning curve into this PNG")
    args = parser.parse_args()
    if args.command == "sweep":
        rows = sweep_rows(args.folders)
        print(sweep_table(rows))
        if args.plot:
            plot_sweep(rows, args.plot)
            print(f"plot: {args.plot}")
        return
    if args.command == "terms":
        report_terms(args)
        return
    if args.command == "fit":
        import json

        for run in sorted((args.cell / "runs" / "aihf").glob("seed*/result.json")):
            other = args.cell / "runs" / "ml_irl" / run.parent.name / "result.json"
            if not other.is_file():
                continue
            rows = fit_over_training(*(json.loads(path.read_text())["result"]["reward_diagnostics"] for path in (run, other)))
            print(f"{args.cell.name} {run.parent.name}: step, pair accuracy AIHF / ML-IRL, margin per step AIHF / ML-IRL: "
                  + "; ".join(f"{step}: {a:.3f} / {m:.3f}, {ma:.2f} / {mm:.2f}" for step, a, m, ma, mm in rows))
        return
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
        if args.data:
            from aihf.control.reward_net import RewardNet

            net, segments = RewardNet.load(args.run / "reward_net.safetensors"), dict(np.load(args.data / "segments.npz"))
            by = learned_reward_by_posture(per_step_rewards(net, episode.observations, episode.actions),
                                           per_step_rewards(net, segments["obs"], segments["act"]), segments)
            print(f"  learned reward per step: this episode {by['episode']:.3f} (true {np.mean(episode.rewards):.3f}); "
                  f"the pool's steps on the back ({by['pool_back_share']:.1%} of them, velocity "
                  f"{by['pool_back_velocity']:.2f}) {by['pool_back']:.3f}, upright (velocity "
                  f"{by['pool_upright_velocity']:.2f}) {by['pool_upright']:.3f}")


def report_terms(args) -> None:
    import gymnasium as gym

    from aihf.config import load_config
    from aihf.control.expert_data import load_data
    from aihf.control.policy_io import load_policy
    from aihf.control.reward_net import RewardNet
    from aihf.control.rollout import policy_actor, run_episode
    from aihf.experiments.mujoco import MujocoConfig
    from aihf.shipped import find_config

    cfg = load_config(MujocoConfig, find_config("mujoco", args.preset), args.set, defaults={"env": args.env})
    demos, prefs = load_data(args.data, cfg.demos, cfg.n_demos, cfg.n_prefs)
    env = gym.make(args.env)
    act = policy_actor(load_policy(args.run / "policy.safetensors", env))
    episodes = [run_episode(act, env, seed=10**9 + i) for i in range(args.episodes)]
    found = term_gradients(RewardNet.load(args.run / "reward_net.safetensors"), cfg.loop.reward, demos, prefs,
                           np.concatenate([e.observations for e in episodes]), np.concatenate([e.actions for e in episodes]))
    print(f"{args.run}: |grad w_D H l_D| {found['demo_norm']:.4g}, |grad w_P l_BT| {found['pref_norm']:.4g} "
          f"(ratio {found['ratio']:.1f}, cosine {found['cosine']:.2f}); Adam's step direction is the demonstration "
          f"term's on {found['demo_sign_share']:.1%} of the parameters; training-pair accuracy "
          f"{found['pref_accuracy']:.3f} ({args.episodes} deterministic episodes of the final policy, "
          f"mean return {np.mean([e.ret for e in episodes]):.0f})")


if __name__ == "__main__":
    main()
