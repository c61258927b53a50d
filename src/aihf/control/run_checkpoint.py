"""Resume points of a control run on the ``ml_irl`` schedule (``algorithm.train_method``).

A paper-scale run (300k-1M environment steps) takes most of an hour of one core; a resume
point at the start of every ``loop.resume_every``-th outer iteration (after the previous
iteration's reward step, where SB3's state is whole: ``learn`` has returned) lets a stopped
run continue instead of starting over, and the continued run is the uninterrupted one
(``tests/test_control_resume.py``). The folder, written atomically (``runtime.atomic_directory``):

  model.zip, replay_buffer.pkl    SAC and its replay buffer in the backend's own format
                                  (pickles inside: written and read back by this run only,
                                  never shipped or loaded from elsewhere)
  reward_net.safetensors          r_theta
  reward_optimizer.safetensors    Adam's moments of r_theta (its hyper-parameters in state.json)
  state.json                      the run's key (a folder made with other settings is not
                                  resumed), the iteration, the curve and reward losses so far,
                                  the wall time, the reward learner's generator,
                                  ``run_state.RunState`` and, with ``reward_normalize``, the
                                  moments of the rewards SAC saw (``relabel``)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import torch
from safetensors.torch import load_file, save_file

from aihf.control.relabel import control_reward_scaler
from aihf.control.reward_step import RewardLearner
from aihf.control.run_state import RunState, jsonable
from aihf.control.sac_backend import Backend, sac_class
from aihf.runtime import atomic_directory

log = logging.getLogger(__name__)


@dataclass
class Restored:
    """A run read back from its resume folder: the SAC model (with its buffer), the next
    outer iteration, the curve so far (``RunResult`` fields) and the wall time spent."""

    model: object
    iteration: int
    result: dict
    wall_s: float


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam's per-parameter state as named tensors, and the rest (param groups) as JSON."""
    state = optimizer.state_dict()
    tensors = {f"{index}/{name}": value.detach().cpu().contiguous()
               for index, slots in state["state"].items() for name, value in slots.items()}
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, slot = name.split("/", 1)
        slots.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": slots, "param_groups": groups["param_groups"]})


@dataclass
class ResumePoint:
    """Where one run keeps its resume point (``folder``), what the run is (``key``: any JSON
    value, compared on resume) and how often it writes one (every ``every`` outer
    iterations; 0: never)."""

    folder: Path
    key: dict
    every: int

    def due(self, iteration: int, start: int) -> bool:
        """Write one at the start of ``iteration`` (not at the one the run started or resumed at)."""
        return self.every > 0 and iteration > start and iteration % self.every == 0

    def save(self, iteration: int, model, learner: RewardLearner | None, result, wall_s: float) -> None:
        with atomic_directory(self.folder) as tmp:
            model.save(tmp / "model.zip")
            model.save_replay_buffer(tmp / "replay_buffer.pkl")
            state = {"key": self.key, "iteration": iteration, "result": asdict(result), "wall_s": wall_s,
                     "run_state": RunState.capture(model)}
            if model.replay_buffer.reward_scaler is not None:
                state["reward_scaler"] = model.replay_buffer.reward_scaler.state().tolist()
            if learner is not None:
                learner.net.save(tmp / "reward_net.safetensors")
                tensors, groups = _optimizer_tensors(learner.optimizer)
                save_file(tensors, str(tmp / "reward_optimizer.safetensors"))
                state["reward"] = {"rng": jsonable(learner.rng.bit_generator.state), "updates": learner.updates,
                                   "optimizer": groups}
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")

    def load(self, backend: Backend, env: gym.Env, learner: RewardLearner | None,
             tensorboard_log: str | None) -> Restored | None:
        """The saved run with ``env``, the generators and ``learner`` (its net, optimiser and
        generator) back where they were; None when there is none, or it is another run's (then
        it is removed, with a warning)."""
        path = self.folder / "state.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("key") != self.key:
            log.warning("%s holds a resume point of a run with other settings: removed, the run starts over", self.folder)
            self.clear()
            return None
        model = sac_class(backend).load(self.folder / "model.zip", env=env, force_reset=False,
                                        **({"device": "cpu"} if backend == "sb3" else {}))
        model.load_replay_buffer(self.folder / "replay_buffer.pkl")
        model.tensorboard_log = tensorboard_log  # the saved one names the folder of the interrupted attempt
        if learner is not None:
            learner.net.load_state_dict(load_file(str(self.folder / "reward_net.safetensors")))
            _load_optimizer(learner.optimizer, load_file(str(self.folder / "reward_optimizer.safetensors")),
                            state["reward"]["optimizer"])
            learner.rng.bit_generator.state = state["reward"]["rng"]
            learner.updates = state["reward"]["updates"]
        model.replay_buffer.reward_fn = learner.net if learner is not None else None  # not the unpickled copy
        moments = state.get("reward_scaler")  # set whatever the pickle held
        model.replay_buffer.reward_scaler = None if moments is None else control_reward_scaler(moments)
        model.get_env().envs[0].reset()  # the wrappers' bookkeeping starts an episode; RunState puts the rest back
        RunState.restore(state["run_state"], model)
        log.info("resuming from %s at iteration %d (%d environment steps)", self.folder, state["iteration"],
                 model.num_timesteps)
        return Restored(model, state["iteration"], state["result"], state["wall_s"])

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
