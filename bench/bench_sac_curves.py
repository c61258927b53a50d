"""Learning curves of the two SAC backends on the true reward, at equal updates (issue 10
item 1: a faster policy step is chosen by its speed *at an equal learning curve*).

SB3 SAC makes one update per environment step; sbx SAC makes the same number,
``--sbx-batch`` at a time (``train_freq = gradient_steps``), so its acting policy is up to
that many updates behind. Each (backend, seed) is one resumable expert run
(``aihf.control.expert.train_expert``, SB3's SAC defaults, auto-tuned entropy) under
``OUT/<backend>-seed<k>/``, skipped when its ``provenance.json`` exists; every checkpoint is
then scored by 10 deterministic episodes on reset seeds no training run uses
(``curve.json``; a checkpoint is listed at its multiple of ``--checkpoint-every``: sbx's
rounds of N steps place it up to N - 1 steps later, recorded as ``actual_step``). The script prints one table (mean and 95% t-interval over seeds at each
checkpoint, and CPU-seconds per 1,000 environment steps) and writes ``OUT/curves.png``.

    python bench/bench_sac_curves.py --env Hopper-v5 --steps 30000 --seeds 0 1 2 --out runs/sac-curves
    python bench/bench_sac_curves.py ... --only sbx     # one backend per process, two at a time
    python bench/bench_sac_curves.py ... --report       # table and plot of what is finished
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from aihf.control.expert import ExpertConfig, train_expert  # noqa: E402
from aihf.control.policy_io import load_policy  # noqa: E402
from aihf.control.rollout import evaluate_policy_return  # noqa: E402
from aihf.eval.stats import interval_caption, mean_interval  # noqa: E402

EVAL_SEED = 5_000_000  # reset seeds of the scoring episodes: no training run resets with these


def run_unit(args, backend: str, seed: int) -> Path:
    """Train (or resume, or skip) one (backend, seed) run, then score its checkpoints."""
    folder = Path(args.out) / f"{backend}-seed{seed}"
    cfg = ExpertConfig(env=args.env, steps=args.steps, seed=seed, net_arch=args.net_arch,
                       learning_starts=args.learning_starts, checkpoint_every=args.checkpoint_every,
                       backend=backend, batched_updates=args.sbx_batch if backend == "sbx" else 1)
    if not (folder / "provenance.json").exists():
        train_expert(cfg, folder)
    if not (folder / "curve.json").exists():
        env = gym.make(args.env)
        points = []
        for path in sorted((folder / "checkpoints").glob("step_*.safetensors")):
            returns = evaluate_policy_return(load_policy(path, env), env, args.eval_episodes, seed=EVAL_SEED)
            step = int(path.stem.split("_")[1])  # sbx's rounds of N steps can end past a multiple: the nominal step
            points.append({"step": step - step % cfg.checkpoint_every, "actual_step": step,
                           "return": float(np.mean(returns))})
        (folder / "curve.json").write_text(json.dumps(points, indent=1))
    return folder


def report(out: Path) -> str:
    """The markdown table of every finished run under ``out`` and the plot ``out/curves.png``."""
    runs: dict[str, list[tuple[dict, list[dict]]]] = {}
    for folder in sorted(out.glob("*-seed*")):
        if (folder / "curve.json").exists():
            backend = folder.name.rsplit("-seed", 1)[0]
            runs.setdefault(backend, []).append((json.loads((folder / "provenance.json").read_text()),
                                                 json.loads((folder / "curve.json").read_text())))
    if not runs:
        return "no finished runs"
    steps = sorted({p["step"] for entries in runs.values() for _, curve in entries for p in curve})
    curves = {b: {s: mean_interval([p["return"] for _, curve in entries for p in curve if p["step"] == s])
                  for s in steps} for b, entries in runs.items()}
    names = list(runs)
    lines = ["| env steps | " + " | ".join(f"{b} (n={len(runs[b])})" for b in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for s in steps:
        cells = [f"{c[s]['mean']:.0f} ± {c[s]['ci95']:.0f}" if c[s]["n"] > 1 else f"{c[s]['mean']:.0f}"
                 for c in (curves[b] for b in names)]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    for key, label in (("train_cpu_s", "CPU s per 1k steps"), ("train_wall_s", "wall s per 1k steps")):
        cells = [f"{np.mean([p[key] / p['steps'] * 1000 for p, _ in runs[b]]):.1f}" for b in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    _plot(curves, out / "curves.png", next(iter(runs.values()))[0][0]["env"], [len(runs[b]) for b in names])
    return "\n".join(lines)


def _plot(curves: dict, path: Path, env: str, ns: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for backend, curve in curves.items():
        steps = sorted(curve)
        mean = np.array([curve[s]["mean"] for s in steps])
        half = np.nan_to_num(np.array([curve[s]["ci95"] for s in steps]))
        ax.plot(steps, mean, marker="o", label=backend)
        ax.fill_between(steps, mean - half, mean + half, alpha=0.2)
    ax.set_xlabel("environment steps (= SAC updates)")
    ax.set_ylabel("true return (deterministic policy)")
    ax.set_title(f"SAC backends on {env}; {interval_caption(ns)}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--learning-starts", type=int, default=5_000)
    p.add_argument("--checkpoint-every", type=int, default=5_000)
    p.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    p.add_argument("--sbx-batch", type=int, default=32)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--only", choices=["sb3", "sbx"], help="run one backend's seeds (one process per backend)")
    p.add_argument("--report", action="store_true", help="only print the table and write the plot")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    if not args.report:
        for seed in args.seeds:
            for backend in [args.only] if args.only else ["sb3", "sbx"]:
                run_unit(args, backend, seed)
    print(report(Path(args.out)))


if __name__ == "__main__":
    main()
