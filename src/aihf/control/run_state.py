"""Everything a SAC run's next step depends on beside the saved model and replay buffer, as JSON.

Used where a run is written to disk to be continued (``expert.py``'s experts, the ML-IRL
schedule's resume points in ``run_checkpoint.py``): restored into a model loaded from the
backend's own files, the continued run is the uninterrupted one to the bit.
"""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.monitor import Monitor


class RunState:
    """What a SAC run's next step depends on beside the saved model, as JSON: Python's and
    NumPy's global generators (the replay buffer samples with ``np.random``), torch's (SB3's
    policy samples actions with it), sbx's JAX key of the updates (``model.key``: loading
    the model seeds it again; the policy's own keys are saved with it), the
    environment's generators (``np_random`` for resets, its action space's for the random
    actions before ``learning_starts``), its MuJoCo integration state (``mj_getState``:
    time, positions, velocities, controls and the solver's warm start, so the next step is
    computed from the same numbers), the time limit's step count and the Monitor's episode
    so far."""

    @staticmethod
    def capture(model) -> dict:
        env = model.get_env().envs[0]
        base = env.unwrapped
        state = {
            "python": jsonable(random.getstate()),
            "numpy": jsonable(np.random.get_state(legacy=False)),
            "torch": torch.get_rng_state().tolist(),
            "env_np_random": jsonable(base.np_random.bit_generator.state),
            "action_space": jsonable(env.action_space.np_random.bit_generator.state),
            "wrappers": {},
        }
        if hasattr(model, "key"):  # sbx
            state["jax_key"] = np.asarray(model.key).tolist()
        if hasattr(base, "data"):  # a MuJoCo environment
            import mujoco

            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            physics = np.empty(mujoco.mj_stateSize(base.model, spec))
            mujoco.mj_getState(base.model, base.data, physics, spec)
            state["mujoco"] = physics.tolist()
        for wrapper in _wrappers(env):
            if isinstance(wrapper, gym.wrappers.TimeLimit):
                state["wrappers"]["time_limit_steps"] = wrapper._elapsed_steps
            if isinstance(wrapper, Monitor):
                state["wrappers"]["monitor_rewards"] = [float(r) for r in wrapper.rewards]
        return state

    @staticmethod
    def restore(state: dict, model) -> None:
        """Put ``model``'s environment (just reset: its wrappers start an episode) and every
        generator back where ``state`` was taken."""
        env = model.get_env().envs[0]
        if "jax_key" in state:
            import jax.numpy as jnp

            model.key = jnp.asarray(state["jax_key"], dtype=jnp.uint32)
        random.setstate(_tuples(state["python"]))
        np.random.set_state(state["numpy"])
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
        base = env.unwrapped
        base.np_random.bit_generator.state = state["env_np_random"]
        env.action_space.np_random.bit_generator.state = state["action_space"]
        if "mujoco" in state:
            import mujoco

            mujoco.mj_setState(base.model, base.data, np.asarray(state["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(base.model, base.data)
        for wrapper in _wrappers(env):
            if isinstance(wrapper, gym.wrappers.TimeLimit):
                wrapper._elapsed_steps = state["wrappers"]["time_limit_steps"]
            if isinstance(wrapper, Monitor):
                wrapper.rewards = list(state["wrappers"]["monitor_rewards"])


def _wrappers(env: gym.Env):
    """``env`` and every wrapper inside it, outermost first."""
    while True:
        yield env
        if not hasattr(env, "env"):
            return
        env = env.env


def jsonable(value):
    """NumPy arrays and tuples inside a generator's state as JSON lists."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    return value


def _tuples(value):
    """``random.getstate()``'s nested tuples back from JSON lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
