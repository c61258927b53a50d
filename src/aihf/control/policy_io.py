"""Save and load SAC policies as safetensors (no pickle).

stable-baselines3's ``.zip`` stores the network weights as torch state dicts read back with
``torch.load(weights_only=True)``, but its ``data`` entry holds cloudpickled objects
(policy class, learning-rate schedule, spaces) that ``SAC.load`` unpickles, and the replay
buffer is a plain pickle. So shipped policies are the policy's state dict in safetensors
plus the few plain settings needed to rebuild it (``net_arch``), never an SB3 ``.zip``.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
from safetensors.torch import load_file, save_file
from stable_baselines3 import SAC
from stable_baselines3.sac.policies import SACPolicy


def save_policy(policy: SACPolicy, path: str | Path, meta: dict | None = None) -> None:
    """Write ``policy.state_dict()`` to ``path`` (safetensors) with ``meta`` as string metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in (meta or {}).items()})


def policy_metadata(path: str | Path) -> dict:
    """The ``meta`` that ``save_policy`` stored."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def load_policy(path: str | Path, env: gym.Env) -> SACPolicy:
    """Rebuild an SB3 SAC policy for ``env`` from a file written by ``save_policy``.

    The file's metadata must hold ``net_arch`` (a list of hidden sizes).
    """
    net_arch = policy_metadata(path)["net_arch"]
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": net_arch}, device="cpu", buffer_size=1)
    state = load_file(str(path))
    model.policy.load_state_dict(state)
    model.policy.set_training_mode(False)
    return model.policy


__all__ = ["save_policy", "load_policy", "policy_metadata"]
