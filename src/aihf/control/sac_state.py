"""A SAC run's training state written as safetensors and JSON, and read back without unpickling.

SB3's own files (``model.save``: cloudpickled objects inside the zip's JSON; the replay
buffer: a pickle) run whatever code a tampered file names when they are read. Here a saved
run is read back into a model built afresh with the run's settings (``sac_backend.make_sac``,
which also makes the relabelling buffer), and only arrays and JSON are read. Both backends:

  sac.safetensors            the networks and their optimisers: SB3's ``get_parameters()``
                             (``policy``, ``actor.optimizer``, ``critic.optimizer``, with auto
                             temperature ``ent_coef_optimizer``; read back by ``set_parameters``)
                             and its temperature tensor; sbx's
                             flax train states (``actor``, ``qf`` with its target parameters,
                             ``ent_coef``: parameters, optax state and step) and the policy's
                             PRNG keys; the last observation and episode starts of the rollout
  replay_buffer.safetensors  the filled part of the replay buffer's arrays
  sac.json                   counters (``num_timesteps``, ``_n_updates``, ``_episode_num``,
                             progress), the episode-info buffers, the buffer's position and
                             fullness, the optimisers' param groups, and the format

What the run's next step also depends on (random generators, the environment's physics) is
``run_state.RunState``'s. ``tests/test_control_resume.py`` and the expert's resume test check
that a run continued from these files is the uninterrupted run to the bit, and that resuming
reads no pickle.
"""

from __future__ import annotations

import json
from collections import deque
from operator import attrgetter
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from aihf.control.sac_backend import policy_backend
from aihf.runtime import optimizer_state, optimizer_tensors

FORMAT = 2  # sac.json's "format"; none: 1, optimiser tensors named "<index>/<slot>" (read no more)
_FILES = ("sac.safetensors", "replay_buffer.safetensors", "sac.json")
_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining")
_ROLLOUT = ("_last_obs", "_last_original_obs", "_last_episode_starts")
_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def has_sac_state(folder: Path) -> bool:
    """Whether ``folder`` holds the three files ``save_sac_state`` writes."""
    return all((folder / name).is_file() for name in _FILES)


def save_sac_state(model, folder: Path) -> None:
    """Write ``model``'s training state (module docstring) into ``folder`` (which exists)."""
    arrays, meta = _network_state(model)
    for name in _ROLLOUT:
        if getattr(model, name) is not None:
            arrays[f"rollout/{name}"] = np.ascontiguousarray(getattr(model, name))
    meta["format"] = FORMAT
    meta["counters"] = {name: getattr(model, name) for name in _COUNTERS}
    meta["ep_info_buffer"] = _jsonable_episodes(model.ep_info_buffer)
    meta["ep_success_buffer"] = [bool(s) for s in model.ep_success_buffer]
    save_file(arrays, str(folder / "sac.safetensors"))
    buffer = model.replay_buffer
    size = buffer.buffer_size if buffer.full else buffer.pos
    save_file({name: np.ascontiguousarray(getattr(buffer, name)[:size]) for name in _BUFFER_ARRAYS
               if getattr(buffer, name, None) is not None}, str(folder / "replay_buffer.safetensors"))
    meta["replay_buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full), "buffer_size": int(buffer.buffer_size)}
    (folder / "sac.json").write_text(json.dumps(meta), encoding="utf-8")


def load_sac_state(model, folder: Path) -> None:
    """Put the state ``save_sac_state`` wrote into ``model``, built with the same settings."""
    meta = json.loads((folder / "sac.json").read_text(encoding="utf-8"))
    if meta.get("format", 1) != FORMAT:
        raise ValueError(f"{folder / 'sac.json'} is of format {meta.get('format', 1)}, written by an older aihf; this "
                         f"one reads format {FORMAT}: start the run afresh (or finish it with the aihf that began it)")
    arrays = load_file(str(folder / "sac.safetensors"))
    _load_network_state(model, arrays, meta)
    for name in _ROLLOUT:
        setattr(model, name, arrays.get(f"rollout/{name}"))
    for name, value in meta["counters"].items():
        setattr(model, name, value)
    model.ep_info_buffer = deque(meta["ep_info_buffer"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(meta["ep_success_buffer"], maxlen=model._stats_window_size)
    buffer, saved = model.replay_buffer, meta["replay_buffer"]
    if saved["buffer_size"] != buffer.buffer_size:
        raise ValueError(f"{folder / 'sac.json'}: replay_buffer.buffer_size is {saved['buffer_size']}, "
                         f"the model's is {buffer.buffer_size}")
    for name, values in load_file(str(folder / "replay_buffer.safetensors")).items():
        getattr(buffer, name)[: len(values)] = values
    buffer.pos, buffer.full = saved["pos"], saved["full"]


def _jsonable_episodes(episodes) -> list[dict]:
    """SB3's episode-info dicts (return ``r``, length ``l``, time ``t``) with NumPy scalars as numbers."""
    return [{k: v.item() if isinstance(v, np.generic) else v for k, v in info.items()} for info in episodes]


def _network_state(model) -> tuple[dict[str, np.ndarray], dict]:
    if policy_backend(model.policy) == "sbx":
        from flax.serialization import to_state_dict
        from flax.traverse_util import flatten_dict

        arrays = {f"{part}/{name}": np.asarray(leaf) for part, train_state in _sbx_train_states(model).items()
                  for name, leaf in flatten_dict(to_state_dict(train_state), sep="/").items()}
        arrays["keys/policy"], arrays["keys/noise"] = np.asarray(model.policy.key), np.asarray(model.policy.noise_key)
        return arrays, {}
    tensors, groups = {}, {}
    for name, state in model.get_parameters().items():  # SB3: the policy's and each optimiser's state_dict
        if "param_groups" in state:
            more, groups[name] = optimizer_tensors(state, prefix=f"{name}/")
        else:
            more = {f"{name}/{key}": value.detach().cpu().contiguous() for key, value in state.items()}
        tensors.update(more)
    for name in model._get_torch_save_params()[1]:  # the temperature: ent_coef_tensor or log_ent_coef
        tensors[f"variable/{name}"] = attrgetter(name)(model).detach().cpu().contiguous()
    return {k: v.numpy() for k, v in tensors.items()}, {"optimizers": groups}


def _load_network_state(model, arrays: dict[str, np.ndarray], meta: dict) -> None:
    if policy_backend(model.policy) == "sbx":
        import jax.numpy as jnp

        states = {part: _restored_train_state(train_state, arrays, part)
                  for part, train_state in _sbx_train_states(model).items()}
        model.policy.actor_state, model.policy.qf_state, model.ent_coef_state = (
            states["actor"], states["qf"], states["ent_coef"])
        model.policy.key, model.policy.noise_key = jnp.asarray(arrays["keys/policy"]), jnp.asarray(arrays["keys/noise"])
        return
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    params = {}
    for name in model.get_parameters():
        if name in meta["optimizers"]:
            params[name] = optimizer_state(tensors, meta["optimizers"][name], prefix=f"{name}/")
        else:
            params[name] = {key[len(name) + 1:]: value for key, value in tensors.items() if key.startswith(f"{name}/")}
    model.set_parameters(params, exact_match=True)
    with torch.no_grad():
        for name in model._get_torch_save_params()[1]:
            attrgetter(name)(model).copy_(tensors[f"variable/{name}"])


def _sbx_train_states(model) -> dict:
    return {"actor": model.policy.actor_state, "qf": model.policy.qf_state, "ent_coef": model.ent_coef_state}


def _restored_train_state(target, arrays: dict[str, np.ndarray], part: str):
    """``target`` (a flax train state of the fresh model) with every leaf from ``arrays``: the
    target gives the tree (empty optax states included) and each leaf's kind."""
    import jax.numpy as jnp
    from flax.serialization import from_state_dict, to_state_dict
    from flax.traverse_util import empty_node, flatten_dict, unflatten_dict

    flat = flatten_dict(to_state_dict(target), sep="/", keep_empty_nodes=True)
    for name, leaf in flat.items():
        if leaf is empty_node:
            continue
        key = f"{part}/{name}"
        if key not in arrays:
            raise KeyError(f"sac.safetensors lacks {key}: written with other SAC settings")
        value = arrays[key]
        flat[name] = type(leaf)(value.item()) if isinstance(leaf, (int, float)) else jnp.asarray(value)
    return from_state_dict(target, unflatten_dict(flat, sep="/"))
