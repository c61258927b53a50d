"""Algorithm 1, steps 2-3 for control (docs/method.md section 3): one reward update.

For a minibatch of demonstration transitions (s_E, a_E), transitions (s, a) of the current
policy pi_k, and segment pairs (tau_w, tau_l) with r(tau) = sum_t r(s_t, a_t) over each
segment's real steps (segments may end early, where their episode ended), minimise

    l_R = w_D * H * l_D( r(s_E, a_E), r(s, a) ) + w_P * l_BT( r(tau_w), r(tau_l) ) + l2 * mean r^2

with ``objective.aihf_reward_loss`` (its w_demo = w_D * H; H = ``demo_horizon``, below). With
the linear l_D its negative gradient is
    g = w_D H [grad r(s_E,a_E) - grad r(s,a)] + w_P (1 - sigma(r(tau_w) - r(tau_l))) [grad r(tau_w) - grad r(tau_l)]
(batch means). w_D = 0 is RLHF's reward model, w_P = 0 is ML-IRL.

With a reward ensemble (``reward_net.RewardEnsemble``) each member r_k takes this step on
its own minibatch draw, and the step minimises sum_k l_R(r_k): the members share no
parameter and Adam acts on each parameter alone, so every member follows exactly the steps it
would take by itself (docs/method.md section 7). With a ``resample`` each member draws only
from its own bootstrap resample of the data, drawn once when the learner is made, so the
members differ in the data they fit as well as in their initialisation: n of the n
demonstration transitions with replacement, and either n of the n preference pairs
(``pairs``; Christiano et al., 2017, section 2.2.3) or, for pairs drawn from a shared pool of
segments, S of the S distinct segments with replacement and every pair between two drawn
segments, counted c_w * c_l times where c is how often each was drawn (``segments``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch

from aihf.config import setting
from aihf.control.reward_net import RewardEnsemble, RewardNet
from aihf.data import SegmentPreferenceSet, TransitionSet
from aihf.objective import DemoForm, ObjectiveConfig, aihf_reward_loss
from aihf.runtime import check_finite


Resample = Literal["none", "pairs", "segments"]  # how each ensemble member's data are resampled


@dataclass
class RewardStepConfig(ObjectiveConfig):
    """The objective (``ObjectiveConfig``, shared with the language-model methods: docs/method.md
    section 2) and the reward step's optimiser and batch sizes (section 3).

    ``beta`` is the entropy temperature of the SAC policy step (the inner problem
    max E[sum r] + beta H(pi) is section 2's with a uniform pi_ref); 0.2 is ML-IRL's fixed
    temperature for MuJoCo. The control demonstration term defaults to the exact
    (``linear``) ML-IRL form. ``weight_decay`` is Adam's L2 term (``torch.optim.Adam``'s,
    as ML-IRL's reward optimiser has it).

    ``demo_horizon`` H puts the demonstration term on the scale of a trajectory: l_D is
    computed on per-step rewards (batch means over transitions) and multiplied by H, so with
    H = T, the episode length, it is the trajectory log-likelihood's
    E_E[sum_t r] - E_pi[sum_t r] for T-step episodes (docs/method.md section 2, "Control"),
    as ML-IRL's code has it (T x the per-step mean). The preference term is already on
    segment sums. With w_P = 0 the scale changes nothing but Adam's weight decay (Adam is
    invariant to it); in AIHF it sets how the two terms weigh against each other: H = 1
    weighs a demonstration step like a whole preference segment (the demonstration term about
    T times lighter than in the objective with w_D = w_P).
    """

    RETIRED: ClassVar[dict[str, Any]] = {"preference_form": "sigmoid"}  # ObjectiveConfig's until it moved to the
    # language models' MethodConfig: the explicit reward's preference term is always Bradley-Terry's

    beta: float = setting(0.2, gt=0, help="SAC's entropy temperature (and the objective's beta)")
    demo_form: DemoForm = setting("linear", help="demonstration term: linear (ML-IRL's exact gradient) or logistic")
    reward_l2: float = setting(0.01, ge=0, help="penalty l2 * mean r^2 on the rewards of the batch")
    lr: float = setting(1e-4, gt=0, help="Adam learning rate of the reward net")
    weight_decay: float = setting(0.0, ge=0, help="Adam's L2 weight decay of the reward net")
    demo_batch: int | None = setting(256, gt=0, help="demonstration transitions per reward step (null: all)")
    pref_batch: int | None = setting(64, gt=0, help="segment pairs per reward step (null: all)")
    demo_horizon: int = setting(1, ge=1, help="the demonstration term times this many steps (the episode length "
                                "T: trajectory scale, as ML-IRL's code; 1: per step)")


class RewardLearner:
    """Holds r_theta (a net or an ensemble of them), its Adam optimiser and the two data sets;
    ``step`` is one reward update. ``resample`` (an ensemble only, not ``none``): each
    member's own bootstrap resample of the demonstration transitions and of the preference
    pairs or their segments (module docstring), drawn here from ``rng``."""

    def __init__(self, net: RewardNet | RewardEnsemble, cfg: RewardStepConfig, demos: TransitionSet | None,
                 prefs: SegmentPreferenceSet | None, rng: np.random.Generator, resample: Resample = "none"):
        if cfg.w_demo > 0 and demos is None:
            raise ValueError("w_demo > 0 needs demonstrations")
        if cfg.w_pref > 0 and prefs is None:
            raise ValueError("w_pref > 0 needs preferences")
        if resample != "none" and not isinstance(net, RewardEnsemble):
            raise ValueError(f"resample={resample!r} gives each member of an ensemble its own data: it needs a reward "
                             "ensemble")
        if resample not in get_args(Resample):
            raise ValueError(f"unknown resample {resample!r}: one of {get_args(Resample)}")
        self.net, self.cfg, self.rng = net, cfg, rng
        self.members: list[RewardNet] = list(net.members) if isinstance(net, RewardEnsemble) else [net]
        self.optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.demos = {} if demos is None else _tensors(observations=demos.observations, actions=demos.actions)
        self.segments, self.prefs = {}, {}  # each distinct segment once; pairs as indices into them
        if prefs is not None:
            distinct = prefs.distinct_segments()
            self.segments = _tensors(obs=distinct.obs, act=distinct.act, mask=distinct.mask)
            self.prefs = _tensors(preferred=distinct.preferred, rejected=distinct.rejected)
        self.member_rows = [{} if resample == "none" else self._resample(resample) for _ in self.members]
        self.updates = 0

    def _resample(self, unit: Resample) -> dict[str, torch.Tensor]:
        """One member's bootstrap resample, as row indices: n of the n demonstration rows drawn
        with replacement; n of the n pairs (``pairs``), or the pairs between S segments drawn
        with replacement from the S distinct ones, pair j repeated c[w_j] * c[l_j] times
        (``segments``)."""
        rows = {}
        if self.demos:
            n = _rows(self.demos)
            rows["demos"] = torch.as_tensor(self.rng.integers(0, n, size=n))
        if self.prefs and unit == "pairs":
            n = _rows(self.prefs)
            rows["prefs"] = torch.as_tensor(self.rng.integers(0, n, size=n))
        elif self.prefs:
            n_segments = len(self.segments["obs"])
            drawn = np.bincount(self.rng.integers(0, n_segments, size=n_segments), minlength=n_segments)
            times = drawn[self.prefs["preferred"].numpy()] * drawn[self.prefs["rejected"].numpy()]
            if not times.any():
                raise ValueError(f"a segment resample of {n_segments} segments left no preference pair whose two "
                                 "segments were both drawn: too few pairs to resample by segment (use pairs)")
            rows["prefs"] = torch.as_tensor(np.repeat(np.arange(len(times)), times))
        return rows

    def _draw(self, arrays: dict[str, torch.Tensor], size: int | None,
              rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``size`` rows drawn with replacement from ``rows`` (a bootstrap resample; ``None``:
        every row); ``size=None``: all of them, in order (a full batch)."""
        if rows is None:
            if size is None:
                return arrays
            idx = torch.as_tensor(self.rng.integers(0, _rows(arrays), size=size))
        else:
            idx = rows if size is None else rows[torch.as_tensor(self.rng.integers(0, len(rows), size=size))]
        return {k: v[idx] for k, v in arrays.items()}

    def loss(self, policy_obs: torch.Tensor | None, policy_act: torch.Tensor | None) -> torch.Tensor:
        """l_R on a fresh minibatch, summed over the members (one net: its l_R), each member on
        its own draw; ``policy_*`` are samples of pi_k (needed when w_demo > 0)."""
        return sum(self._member_loss(member, rows, policy_obs, policy_act)
                   for member, rows in zip(self.members, self.member_rows))

    def _member_loss(self, net: RewardNet, rows: dict[str, torch.Tensor], policy_obs: torch.Tensor | None,
                     policy_act: torch.Tensor | None) -> torch.Tensor:
        """l_R of one member on its draw (from ``rows``, its bootstrap resample, when it has one)."""
        cfg = self.cfg
        r_demo = r_pol = r_w = r_l = None
        if cfg.w_demo > 0:
            d = self._draw(self.demos, cfg.demo_batch, rows.get("demos"))
            r_demo = net(d["observations"], d["actions"])
            r_pol = net(policy_obs, policy_act)
        if cfg.w_pref > 0:
            r_w, r_l = self._pair_rewards(self._draw(self.prefs, cfg.pref_batch, rows.get("prefs")), net)
        return aihf_reward_loss(r_demo, r_pol, r_w, r_l, cfg.w_demo * cfg.demo_horizon, cfg.w_pref, cfg.demo_form,
                                cfg.reward_l2, label_smoothing=cfg.label_smoothing,
                                label_noise=cfg.label_noise)

    def _pair_rewards(self, pairs: dict[str, torch.Tensor], net: RewardNet | RewardEnsemble
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """r(tau_w), r(tau_l) of the given pairs under ``net``, each segment they use evaluated
        once (the same values and gradient as evaluating both sides of every pair)."""
        n = len(pairs["preferred"])
        used, where = torch.unique(torch.cat([pairs["preferred"], pairs["rejected"]]), return_inverse=True)
        s = self.segments
        rewards = net.segment_reward(s["obs"][used], s["act"][used], s["mask"][used])
        return rewards[where[:n]], rewards[where[n:]]

    @torch.no_grad()
    def diagnostics(self, policy_obs: torch.Tensor, policy_act: torch.Tensor, max_pairs: int = 1000) -> dict[str, float]:
        """Where the reward stands: mean and sd of r per step on every demonstration transition
        and on the given policy transitions, their difference (the demonstration-over-policy
        margin), and the share of the first ``max_pairs`` preference pairs it ranks right
        (training pairs: a fit diagnostic, not a held-out accuracy). With an ensemble, r is its
        combination (what the policy sees), and ``<demo|policy>_disagreement`` the members'
        standard deviation per step, averaged. No gradient, no update."""
        out: dict[str, float] = {}
        demos = (self.demos["observations"], self.demos["actions"]) if self.demos else None
        for name, inputs in (("demo", demos), ("policy", (policy_obs, policy_act))):
            if inputs is not None:
                rewards = self.net(*inputs)
                out[f"{name}_mean"], out[f"{name}_std"] = float(rewards.mean()), float(rewards.std())
                if isinstance(self.net, RewardEnsemble):
                    out[f"{name}_disagreement"] = float(self.net.disagreement(*inputs).mean())
        if "demo_mean" in out:
            out["margin"] = out["demo_mean"] - out["policy_mean"]
        if self.prefs:
            r_w, r_l = self._pair_rewards({k: v[:max_pairs] for k, v in self.prefs.items()}, self.net)
            out["pref_train_accuracy"] = float((r_w > r_l).float().mean())
        return out

    def step(self, policy_obs: torch.Tensor | None = None, policy_act: torch.Tensor | None = None) -> float:
        """One Adam step on l_R; returns its value (NaN/inf raises before the update)."""
        loss = self.loss(policy_obs, policy_act)
        value = check_finite(loss, "reward loss", self.updates)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return value


def _rows(arrays: dict[str, torch.Tensor]) -> int:
    return len(next(iter(arrays.values())))


def _tensors(**arrays: np.ndarray) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(np.asarray(array)) for name, array in arrays.items()}
