"""The SAC that runs the policy step: stable-baselines3's (PyTorch) or sbx's (JAX).

Both have SB3's interface (``learn``, callbacks, ``replay_buffer_class``, ``policy.predict``),
so Algorithm 1's loop, the relabelling buffer (``relabel.RelabelledReplayBuffer``, an SB3
``ReplayBuffer``: sbx samples through it too, and converts the relabelled torch batch to
NumPy) and the evaluation code are the same for both. What differs is speed: sbx compiles
its update with XLA and, with ``train_freq = gradient_steps = N``, runs N updates (the same
number per environment step) in one compiled call on one batch of N x batch_size
transitions sampled, and relabelled, at once. docs/benchmarks.md has the measurements
(``bench/bench_sac_backends.py``); the policy weights are saved in the same safetensors file
either way (``policy_tensors``), with the backend in its metadata.

sbx is an optional dependency (``pip install "aihf[fast]"``, the package ``sbx-rl``).
"""

from __future__ import annotations

from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from aihf.config import ConfigError

Backend = Literal["sb3", "sbx"]
BACKENDS = ("sb3", "sbx")


def sac_class(backend: Backend):
    """The SAC class of ``backend``; a clear error when sbx is asked for but not installed."""
    if backend == "sb3":
        from stable_baselines3 import SAC

        return SAC
    if backend == "sbx":
        try:
            from sbx import SAC
        except ImportError as err:
            raise ConfigError("sac.backend: sbx needs the sbx-rl package (JAX): pip install 'aihf[fast]'") from err
        return SAC
    raise ConfigError(f"sac.backend: unknown backend {backend!r}; choose from {BACKENDS}")


def make_sac(backend: Backend, env: gym.Env, **kwargs):
    """``SAC("MlpPolicy", env, **kwargs)`` of ``backend`` (SB3 on the CPU). Without a
    ``tensorboard_log`` folder its logger writes nowhere: SB3's own default would make an
    empty folder ``SB3-<time>`` in the temp directory at every ``learn`` call."""
    from stable_baselines3.common.logger import Logger

    if backend == "sb3":
        kwargs.setdefault("device", "cpu")
    model = sac_class(backend)("MlpPolicy", env, **kwargs)
    if kwargs.get("tensorboard_log") is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def policy_backend(policy) -> Backend:
    """``"sbx"`` for an sbx policy (its weights are flax train states: ``actor_state``), else
    ``"sb3"`` (both are SB3 ``BasePolicy`` objects, torch modules)."""
    return "sbx" if hasattr(policy, "actor_state") else "sb3"


def _sbx_states(policy) -> dict:
    """sbx's parameter trees by name: the actor's, the critics' and the target critics'."""
    return {"actor": policy.actor_state.params, "qf": policy.qf_state.params,
            "qf_target": policy.qf_state.target_params}


def policy_tensors(policy) -> dict[str, torch.Tensor]:
    """Every weight of ``policy`` by name, as CPU tensors: an SB3 policy's ``state_dict`` (on
    the CPU, views of the live parameters: clone them to keep a snapshot), or an sbx policy's
    actor, critic and target-critic parameters (``actor/...``, ``qf/...``, ``qf_target/...``,
    the flax tree's path joined with '/'; copies)."""
    if policy_backend(policy) == "sb3":
        return {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    from flax.traverse_util import flatten_dict

    return {f"{part}/{name}": torch.from_numpy(np.array(value))
            for part, tree in _sbx_states(policy).items()
            for name, value in flatten_dict(tree, sep="/").items()}


def load_policy_tensors(policy, tensors: dict[str, torch.Tensor]) -> None:
    """Set ``policy``'s weights from ``policy_tensors``' output (every name must match)."""
    if policy_backend(policy) == "sb3":
        policy.load_state_dict(tensors)
        return
    import jax.numpy as jnp
    from flax.traverse_util import flatten_dict, unflatten_dict

    loaded = {}
    for part, tree in _sbx_states(policy).items():
        names = flatten_dict(tree, sep="/")
        missing = [f"{part}/{n}" for n in names if f"{part}/{n}" not in tensors]
        if missing:
            raise KeyError(f"policy file lacks {missing[:3]}")
        loaded[part] = unflatten_dict({n: jnp.asarray(tensors[f"{part}/{n}"].numpy()) for n in names}, sep="/")
    policy.actor_state = policy.actor_state.replace(params=loaded["actor"])
    policy.qf_state = policy.qf_state.replace(params=loaded["qf"], target_params=loaded["qf_target"])


__all__ = ["BACKENDS", "Backend", "make_sac", "sac_class", "policy_backend", "policy_tensors", "load_policy_tensors"]
