"""Control world (docs/method.md sections 3, 5, 6): reward net, SAC with relabelled rewards,
Algorithm 1 and its baselines, expert data. Registers the toy task ``aihf/ContextTarget-v0``
(``aihf.control.toy``) with gymnasium."""

import gymnasium as gym

if "aihf/ContextTarget-v0" not in gym.registry:
    gym.register("aihf/ContextTarget-v0", entry_point="aihf.control.toy:ContextTarget")
