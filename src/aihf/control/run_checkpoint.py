"""Resume points of a control run on the ``ml_irl`` schedule (``algorithm.train_method``).

A paper-scale run (300k-1M environment steps) takes most of an hour of one core; a resume
point at the start of every ``loop.resume_every``-th outer iteration (after the previous
iteration's reward step, where SB3's state is whole: ``learn`` has returned) lets a stopped
run continue instead of starting over, and the continued run is the uninterrupted one
(``tests/test_control_resume.py``). Nothing in it is a pickle: the run reads it back into a
model built afresh with its settings. The folder, written atomically (``runtime.atomic_directory``):

  sac.safetensors, replay_buffer.safetensors, sac.json
                                  SAC, its optimisers and its replay buffer (``sac_state``)
  reward_net.safetensors          r_theta
  reward_optimizer.safetensors    Adam's moments of r_theta (its hyper-parameters in state.json)
  state.json                      the format, the run's key (a folder made with other settings
                                  is not resumed), the iteration, the curve and reward losses so
                                  far, the wall time, the reward learner's generator,
                                  ``run_state.RunState`` and, with ``reward_normalize``, the
                                  moments of the rewards SAC saw (``relabel``)
"""

from __future__ import annotations

import json
import logging
import operator
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from aihf.control.relabel import control_reward_scaler
from aihf.control.reward_step import RewardLearner
from aihf.control.run_state import RunState, jsonable
from aihf.control.sac_state import has_sac_state, load_sac_state, save_sac_state
from aihf.runtime import atomic_directory, optimizer_state, optimizer_tensors

log = logging.getLogger(__name__)


FORMAT = 3  # 1: SB3's pickled model.zip and replay_buffer.pkl; 2: optimiser tensors named "<index>/<slot>"
#   (neither read any more)


@dataclass
class Restored:
    """Where a restored run stands: the next outer iteration, the curve so far (``RunResult``
    fields) and the wall time spent."""

    iteration: int
    result: dict
    wall_s: float


@dataclass
class ResumePoint:
    """Where one run keeps its resume point (``folder``), what the run is (``key``: any JSON
    value, compared on resume by ``same(saved, key)``, equality unless the caller knows better)
    and how often it writes one (every ``every`` outer iterations; 0: never)."""

    folder: Path
    key: dict
    every: int
    same: Callable[[dict, dict], bool] = operator.eq

    def due(self, iteration: int, start: int) -> bool:
        """Write one at the start of ``iteration`` (not at the one the run started or resumed at)."""
        return self.every > 0 and iteration > start and iteration % self.every == 0

    def save(self, iteration: int, model, learner: RewardLearner | None, result, wall_s: float) -> None:
        with atomic_directory(self.folder) as tmp:
            save_sac_state(model, tmp)
            state = {"format": FORMAT, "key": self.key, "iteration": iteration, "result": asdict(result),
                     "wall_s": wall_s, "run_state": RunState.capture(model)}
            if model.replay_buffer.reward_scaler is not None:
                state["reward_scaler"] = model.replay_buffer.reward_scaler.state().tolist()
            if learner is not None:
                learner.net.save(tmp / "reward_net.safetensors")
                tensors, groups = optimizer_tensors(learner.optimizer.state_dict())
                save_file(tensors, str(tmp / "reward_optimizer.safetensors"))
                state["reward"] = {"rng": jsonable(learner.rng.bit_generator.state), "updates": learner.updates,
                                   "optimizer": groups}
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")

    def _read(self) -> tuple[dict | None, str | None]:
        """(The resume point's state.json when it holds this run, else None; why it does not, when one is there.)"""
        path = self.folder / "state.json"
        if not path.is_file():
            return None, None
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("format") != FORMAT or not has_sac_state(self.folder):
            return None, "of an older format"
        if not self.same(state.get("key", {}), self.key):
            return None, "of a run with other settings"
        return state, None

    def held(self) -> dict | None:
        """The resume point's state.json when it holds this run; read only (``saved`` also removes another's)."""
        return self._read()[0]

    def saved(self) -> dict | None:
        """The resume point's state.json when it holds this run; None when there is none, or
        it is another run's or an older format's (then it is removed, with a warning)."""
        state, problem = self._read()
        if problem is not None:
            log.warning("%s holds a resume point %s: removed, the run starts over", self.folder, problem)
            self.clear()
        return state

    def restore(self, state: dict, model, learner: RewardLearner | None) -> Restored:
        """Put ``model`` (built afresh with the run's settings, its relabelling buffer holding
        ``learner``'s net), its environment, the generators and ``learner`` (net, optimiser,
        generator) back where ``state`` (``saved()``) was taken."""
        load_sac_state(model, self.folder)
        if learner is not None:
            learner.net.load_state_dict(load_file(str(self.folder / "reward_net.safetensors")))
            learner.optimizer.load_state_dict(optimizer_state(
                load_file(str(self.folder / "reward_optimizer.safetensors")), state["reward"]["optimizer"]))
            learner.rng.bit_generator.state = state["reward"]["rng"]
            learner.updates = state["reward"]["updates"]
        moments = state.get("reward_scaler")
        model.replay_buffer.reward_scaler = None if moments is None else control_reward_scaler(moments)
        model.get_env().envs[0].reset()  # the wrappers' bookkeeping starts an episode; RunState puts the rest back
        RunState.restore(state["run_state"], model)
        log.info("resuming from %s at iteration %d (%d environment steps)", self.folder, state["iteration"],
                 model.num_timesteps)
        return Restored(state["iteration"], state["result"], state["wall_s"])

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
