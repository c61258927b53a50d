"""Every reset seed the control code draws (``env.reset(seed=...)``), in one place.

An episode's initial state is a function of its reset seed, so the ranges below keep the
episodes that are measured apart from those that data and training are made of. Each
function returns the first seed of a run of episodes, which take it and the next ones
(``evaluate_policy_return`` and the data makers count up from it).

| episodes | first reset seed | drawn by |
|---|---|---|
| demonstrations (the demonstrator, deterministic) | data seed | ``expert_data.make_data`` |
| low-quality demonstrations | data seed + 5,000 | ``expert_data.make_data`` |
| preference-pool episodes of checkpoint ``c`` (index among the sorted checkpoints) | data seed + 100,000 (c + 1) | ``expert_data.make_data`` |
| the expert's final evaluation | 10,000 + expert seed | ``expert.train_expert`` |
| a run's evaluation ``j`` (run seed ``s``), test | 1,000,000 + 1,000 s + j | ``algorithm``, BC in ``experiments.mujoco`` |
| the same, validation | 3,000,000 + 1,000 s + j | the same |
| the reward step's policy trajectories, iteration ``k`` (``n`` per iteration) | 10,000,000 + 100,000 s + k n | ``algorithm`` |
| checkpoint evaluations (expert training; the data's choice of checkpoints) | 100,000,000 + seed | ``expert``, ``expert_data`` |

Consecutive evaluations of a run share all but one reset seed (evaluation ``j`` with 10
episodes takes ``j .. j + 9`` above its base), so a run's curve compares checkpoints on
nearly the same initial states. Test and validation never meet for run seeds below 1,000
with fewer than 1,000 evaluations, nor do they meet the policy trajectories.

One overlap is known and kept (tests/test_reset_seeds.py pins it): the preference-pool
episodes of checkpoint 9 start at data seed + 1,000,000, which for the data seed 0 of every
shipped data set (each pool holds checkpoint 9) are the test evaluation seeds of run seed
0. Those episodes share only their initial state with that run's evaluations (other
policies, sampled actions), and the locomotion tasks draw initial states as small noise
around one pose (docs/control.md "Reset seeds" gives the scales). Moving either range would change the
shipped data or every reported run, so the overlap is documented instead.
"""

from __future__ import annotations

from typing import Literal

LOW_DEMOS_OFFSET = 5_000
POOL_STRIDE = 100_000
EXPERT_FINAL_EVALUATION = 10_000
EVALUATION_BASES = {"test": 1_000_000, "validation": 3_000_000}
POLICY_TRAJECTORIES = 10_000_000
CHECKPOINT_EVALUATION = 100_000_000

Split = Literal["test", "validation"]


def demo_seed(data_seed: int, low_quality: bool = False) -> int:
    """The first episode of the demonstrations (``low_quality``: of demos_low)."""
    return data_seed + (LOW_DEMOS_OFFSET if low_quality else 0)


def pool_seed(data_seed: int, checkpoint: int) -> int:
    """The first episode that checkpoint number ``checkpoint`` (0-based, sorted by step)
    rolls out for the preference pool."""
    return data_seed + POOL_STRIDE * (checkpoint + 1)


def expert_final_evaluation_seed(seed: int) -> int:
    """The first episode of an expert run's final evaluation."""
    return EXPERT_FINAL_EVALUATION + seed


def checkpoint_evaluation_seed(seed: int) -> int:
    """The first episode of every checkpoint evaluation made with ``seed`` (the same episodes
    for each checkpoint, so checkpoints are compared on the same initial states)."""
    return CHECKPOINT_EVALUATION + seed


def evaluation_seed(split: Split, seed: int, index: int) -> int:
    """The first episode of run seed ``seed``'s ``index``-th evaluation on ``split``."""
    return EVALUATION_BASES[split] + 1000 * seed + index


def policy_trajectory_seed(seed: int, iteration: int, per_iteration: int) -> int:
    """The first of the ``per_iteration`` policy episodes of the reward step after outer
    iteration ``iteration`` of run seed ``seed``."""
    return POLICY_TRAJECTORIES + 100_000 * seed + iteration * per_iteration
