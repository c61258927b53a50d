"""The shipped MuJoCo data (docs/method.md sections 1 and 6), made from the SAC expert of
``expert.py`` and its intermediate checkpoints, and read back for experiments.

Files in ``data/mujoco/<env>/``:
  demos.npz          10k expert transitions (TransitionSet), deterministic expert actions, from the
                     last checkpoint or (``demonstrator``) the best evaluated one or a named one
  demos_low.npz      10k transitions from an early checkpoint (low-quality demonstrations)
  segments.npz       a pool of segments (``preferences.SegmentPool``) from every checkpoint
                     (with ``quality_levels``: from that many, chosen by evaluated return
                     spread from the worst to the best, ``spread_by_return``),
                     sampling actions stochastically so the pool spans many qualities;
                     with ``min_segment_len`` < ``segment_len`` a segment may end where its
                     episode ends (a fall shows as a short, low-return segment)
  prefs.npz          (winner, loser) pool indices, Bradley-Terry labelled on the true
                     segment return; the unbalanced presets take a prefix of it
  provenance.json    checkpoints used, returns, sizes, seeds, the command
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from aihf.config import Settings, setting
from aihf.control.policy_io import load_policy
from aihf.control.preferences import SegmentPool, bradley_terry_pairs, load_pairs
from aihf.control.reset_seeds import checkpoint_evaluation_seed, demo_seed, pool_seed
from aihf.control.rollout import evaluate_policy_return, policy_actor, run_episode
from aihf.data import DataError, SegmentPreferenceSet, TransitionSet

log = logging.getLogger(__name__)


@dataclass
class ExpertDataConfig(Settings):
    """What ``make_data`` rolls out of an expert's checkpoints."""

    env: str = setting("Hopper-v5", help="gymnasium environment id")
    seed: int = setting(0, help="seed of episodes, segment starts and labels")
    n_demos: int = setting(10_000, gt=0, help="demonstration transitions (each file)")
    segment_len: int = setting(25, gt=0, help="steps per segment (the longest, with min_segment_len)")
    min_segment_len: int | None = setting(None, gt=0, help="shortest segment: starts range so that a segment "
                                          "may end where its episode ends (null: every segment is segment_len)")
    segments_per_checkpoint: int = setting(150, gt=0, help="segments drawn from each checkpoint")
    n_prefs: int = setting(20_000, gt=0, help="labelled pairs")
    rel_temperature: float = setting(0.1, gt=0, help="Bradley-Terry temperature = this x std(segment returns)")
    low_checkpoint: int = setting(2, ge=0, help="index (sorted by step) of the checkpoint giving demos_low")
    quality_levels: int | None = setting(None, gt=1, help="draw segments from this many checkpoints, chosen by "
                                         "evaluated return spread evenly from the worst to the best (null: every one)")
    eval_episodes: int = setting(5, gt=0, help="deterministic episodes per checkpoint when quality_levels or "
                                 "demonstrator='best' chooses")
    demonstrator: str = setting("last", help="checkpoint behind demos.npz: 'last', 'best' (the highest evaluated "
                                "return) or a checkpoint file name such as step_0350016.safetensors")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_segment_len is not None and self.min_segment_len > self.segment_len:
            raise ValueError(f"min_segment_len ({self.min_segment_len}) must be <= segment_len ({self.segment_len})")


def _transitions(policy, env: gym.Env, n: int, seed: int, deterministic: bool) -> tuple[TransitionSet, list[float]]:
    """First ``n`` transitions of consecutive episodes, and those episodes' true returns."""
    episodes = []
    while sum(len(e) for e in episodes) < n:
        episodes.append(run_episode(policy_actor(policy, deterministic), env, seed + len(episodes)))
    every = TransitionSet.from_trajectories(episodes)
    return TransitionSet(every.observations[:n], every.actions[:n]), [e.ret for e in episodes]


def _segments(policy, env: gym.Env, count: int, length: int, seed: int, rng: np.random.Generator,
              min_length: int | None = None):
    """``count`` random segments of ``policy``'s stochastic episodes, padded with zeros to
    ``length`` steps, with their true returns and real lengths. A segment starts at a step
    drawn (without repeats within an episode) from those that leave at least ``min_length``
    steps (default ``length``), so with ``min_length < length`` the last ones end where the
    episode ends."""
    min_length = length if min_length is None else min_length
    obs, act, ret, lengths = [], [], [], []
    episode = 0
    while len(obs) < count:
        ep = run_episode(policy_actor(policy, deterministic=False), env, seed + episode)
        episode += 1
        n_starts = len(ep) - min_length + 1  # starts that leave at least min_length steps
        per_episode = len(ep) // length if min_length == length else max(len(ep) // length, 1)
        n_cut = min(per_episode, n_starts, count - len(obs))
        starts = rng.choice(n_starts, size=n_cut, replace=False) if n_cut > 0 else []
        for s in starts:
            n = min(length, len(ep) - s)
            obs.append(np.pad(ep.observations[s : s + n], ((0, length - n), (0, 0))))
            act.append(np.pad(ep.actions[s : s + n], ((0, length - n), (0, 0))))
            ret.append(float(ep.rewards[s : s + n].sum()))
            lengths.append(n)
    return obs, act, ret, lengths


def between_checkpoint_share(returns: np.ndarray, source: np.ndarray) -> float:
    """The share of the pool's return variance that lies between checkpoints (law of total
    variance: sum_i n_i (mean_i - mean)^2 / sum_j (R_j - mean)^2); 1 means every checkpoint's
    segments have one return, 0 that checkpoints do not differ on average."""
    total = float(((returns - returns.mean()) ** 2).sum())
    groups = [returns[source == i] for i in np.unique(source)]
    between = sum(len(g) * (g.mean() - returns.mean()) ** 2 for g in groups)
    return float(between / total) if total > 0 else 0.0


def spread_by_return(returns: list[float], count: int) -> list[int]:
    """Indices of ``count`` checkpoints whose returns lie nearest to ``count`` evenly spaced
    levels from the lowest return to the highest (each checkpoint used once, the levels
    taken in turn), in index order; every index when ``count`` covers them all."""
    if count >= len(returns):
        return list(range(len(returns)))
    values = np.asarray(returns, dtype=float)
    chosen: list[int] = []
    for level in np.linspace(values.min(), values.max(), count):
        free = [i for i in range(len(values)) if i not in chosen]
        chosen.append(min(free, key=lambda i: (abs(values[i] - level), i)))
    return sorted(chosen)


def _demonstrator_index(choice: str, paths: list[Path], evaluated: dict[str, float]) -> int:
    """Which checkpoint ``ExpertDataConfig.demonstrator`` names: the last, the best evaluated or one by name.

    SAC's deterministic policy can fall in some episodes late in training while an earlier
    checkpoint does not (Hopper), so the best evaluated checkpoint is not always the last."""
    if choice == "last":
        return len(paths) - 1
    if choice == "best":
        return max(range(len(paths)), key=lambda i: (evaluated[paths[i].name], i))
    names = [p.name for p in paths]
    if choice not in names:
        raise ValueError(f"demonstrator={choice!r}: not 'last', 'best' or one of the checkpoints {names}")
    return names.index(choice)


def make_data(cfg: ExpertDataConfig, checkpoint_dir: str | Path, out_dir: str | Path) -> dict:
    """Roll out the checkpoints in ``checkpoint_dir`` (``step_*.safetensors``) into ``out_dir``."""
    env = gym.make(cfg.env)
    rng = np.random.default_rng(cfg.seed)
    paths = sorted(Path(checkpoint_dir).glob("step_*.safetensors"))
    if len(paths) <= cfg.low_checkpoint:
        raise ValueError(f"{checkpoint_dir}: need more than {cfg.low_checkpoint} checkpoints, found {len(paths)}")
    policies = [load_policy(p, env) for p in paths]
    evaluated: dict[str, float] = {}
    if cfg.quality_levels is not None or cfg.demonstrator == "best":
        evaluated = {p.name: float(np.mean(evaluate_policy_return(policy, env, cfg.eval_episodes,
                                                                checkpoint_evaluation_seed(cfg.seed))))
                     for p, policy in zip(paths, policies)}
    expert = _demonstrator_index(cfg.demonstrator, paths, evaluated)
    demos, demo_returns = _transitions(policies[expert], env, cfg.n_demos, demo_seed(cfg.seed), deterministic=True)
    low, low_returns = _transitions(policies[cfg.low_checkpoint], env, cfg.n_demos, demo_seed(cfg.seed, low_quality=True),
                                    deterministic=True)
    pool_indices = list(range(len(paths)))
    if cfg.quality_levels is not None:
        pool_indices = spread_by_return(list(evaluated.values()), cfg.quality_levels)
    obs, act, ret, src, lengths = [], [], [], [], []
    for i in pool_indices:
        o, a, r, n = _segments(policies[i], env, cfg.segments_per_checkpoint, cfg.segment_len, pool_seed(cfg.seed, i),
                               rng, cfg.min_segment_len)
        obs += o
        act += a
        ret += r
        src += [i] * len(o)
        lengths += n
    variable = cfg.min_segment_len is not None and cfg.min_segment_len < cfg.segment_len
    pool = SegmentPool(np.asarray(obs, np.float32), np.asarray(act, np.float32), np.asarray(ret), np.asarray(src),
                       np.asarray(lengths) if variable else None)
    temperature = cfg.rel_temperature * float(np.std(pool.returns))
    pairs = bradley_terry_pairs(pool.returns, cfg.n_prefs, temperature, rng)
    agree = float(np.mean(pool.returns[pairs[:, 0]] > pool.returns[pairs[:, 1]]))
    cross = pool.source[pairs[:, 0]] != pool.source[pairs[:, 1]]
    record = {
        "config": asdict(cfg), "checkpoints": [p.name for p in paths],
        "demonstrator_checkpoint": paths[expert].name, "demonstrator_return_mean": float(np.mean(demo_returns)),
        "demonstrator_returns": demo_returns, "low_checkpoint": paths[cfg.low_checkpoint].name,
        "low_return_mean": float(np.mean(low_returns)), "bt_temperature": temperature,
        "pref_label_agrees_with_true_return": agree,
        "pref_pairs_across_checkpoints": float(cross.mean()),
        "between_checkpoint_share_of_return_variance": between_checkpoint_share(pool.returns, pool.source),
        "segment_length_mean": float(np.mean(lengths)), "segment_length_min": int(np.min(lengths)),
        "segment_return_by_checkpoint": {paths[i].name: float(np.mean(pool.returns[pool.source == i]))
                                         for i in pool_indices},
        "checkpoint_eval_return": evaluated, "pool_checkpoints": [paths[i].name for i in pool_indices],
        "sizes": {"demos": len(demos), "demos_low": len(low), "segments": len(pool.returns), "prefs": len(pairs)},
    }
    write_data_dir(out_dir, demos, low, pool, pairs, record)
    return record


def write_data_dir(out: str | Path, demos: TransitionSet, demos_low: TransitionSet, pool: SegmentPool,
                   pairs: np.ndarray, provenance: dict) -> None:
    """Write the files that ``load_data`` reads; ``provenance`` must hold
    ``demonstrator_return_mean`` (the normaliser of the experiments)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    demos.save(out / "demos.npz")
    demos_low.save(out / "demos_low.npz")
    pool.save(out / "segments.npz")
    np.savez_compressed(out / "prefs.npz", pairs=pairs)
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2))


def load_data(data_dir: str | Path, demos: str = "demos", n_demos: int | None = None,
              n_prefs: int | None = None) -> tuple[TransitionSet, SegmentPreferenceSet]:
    """Demonstrations (``demos`` = "demos" or "demos_low", first ``n_demos``) and the first
    ``n_prefs`` preference pairs from a ``make_data`` directory (fewer, with a warning, when
    the files hold fewer). Bad files or values are ``DataError`` naming the file, the row
    (transition, segment or pair index) and the array."""
    d = Path(data_dir)
    transitions = TransitionSet.load(d / f"{demos}.npz")
    if n_demos is not None:
        if n_demos > len(transitions):
            log.warning("%s: n_demos=%d asked, but the file holds %d transitions: using all %d",
                        d / f"{demos}.npz", n_demos, len(transitions), len(transitions))
        transitions = TransitionSet(transitions.observations[:n_demos], transitions.actions[:n_demos])
    pool = SegmentPool.load(d / "segments.npz")
    pairs = load_pairs(d / "prefs.npz", n_segments=len(pool))
    if n_prefs is not None and n_prefs > len(pairs):
        log.warning("%s: n_prefs=%d asked, but the file holds %d pairs: using all %d",
                    d / "prefs.npz", n_prefs, len(pairs), len(pairs))
    return transitions, pool.preferences(pairs[:n_prefs])


def demonstrator_return(data_dir: str | Path, demos: str = "demos") -> float:
    """The mean true return of the episodes behind ``<demos>.npz``: the expert's for
    ``demos`` (the normaliser of every table), the early checkpoint's for ``demos_low``
    (``provenance.json``'s ``demonstrator_return_mean`` and ``low_return_mean``)."""
    fields = {"demos": "demonstrator_return_mean", "demos_low": "low_return_mean"}
    if demos not in fields:
        raise ValueError(f"demos must be one of {sorted(fields)}, got {demos!r}")
    path, field = Path(data_dir) / "provenance.json", fields[demos]
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(field)
    except FileNotFoundError:
        raise DataError("no such file", source=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise DataError(f"not a readable JSON object ({err})", source=str(path)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"expected a finite number, got {value!r}", source=str(path), field=field)
    return float(value)
