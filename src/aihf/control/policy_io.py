"""Save and load SAC policies as safetensors (no pickle), for either SAC backend.

stable-baselines3's ``.zip`` stores the network weights as torch state dicts read back with
``torch.load(weights_only=True)``, but its ``data`` entry holds cloudpickled objects
(policy class, learning-rate schedule, spaces) that ``SAC.load`` unpickles, and the replay
buffer is a plain pickle (sbx's ``.zip`` likewise). So shipped policies are the policy's
weights in safetensors (``sac_backend.policy_tensors``) plus the few plain settings needed to
rebuild it (``net_arch``, and ``backend`` for an sbx policy), never a ``.zip``.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
from safetensors.torch import load_file, save_file

from aihf.control.sac_backend import load_policy_tensors, make_sac, policy_backend, policy_tensors


def save_policy(policy, path: str | Path, meta: dict | None = None) -> None:
    """Write ``policy``'s weights to ``path`` (safetensors) with ``meta`` and the backend
    (``"sb3"`` or ``"sbx"``) as string metadata."""
    meta = {**(meta or {}), "backend": policy_backend(policy)}
    save_file(policy_tensors(policy), str(path), metadata={k: json.dumps(v) for k, v in meta.items()})


def policy_metadata(path: str | Path) -> dict:
    """The ``meta`` that ``save_policy`` stored."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def load_policy(path: str | Path, env: gym.Env):
    """Rebuild the SAC policy (SB3's or sbx's, as the file says; SB3 for files that name no
    backend) for ``env`` from a file written by ``save_policy``.

    The file's metadata must hold ``net_arch`` (a list of hidden sizes).
    """
    meta = policy_metadata(path)
    model = make_sac(meta.get("backend", "sb3"), env, policy_kwargs={"net_arch": meta["net_arch"]}, buffer_size=1)
    load_policy_tensors(model.policy, load_file(str(path)))
    model.policy.set_training_mode(False)
    return model.policy


__all__ = ["save_policy", "load_policy", "policy_metadata"]
