"""scripts/mujoco_reward_diag.py: the reward-fit figures against closed forms on a reward
whose relation to the true one is known, and the posture figures on hand-made observations."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

spec = importlib.util.spec_from_file_location(
    "mujoco_reward_diag", Path(__file__).resolve().parent.parent / "scripts" / "mujoco_reward_diag.py")
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)


class ScaledTrueReward(torch.nn.Module):
    """r_hat(s, a) = s[0] / T: an exact preference-only fit of the true reward s[0]."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, obs, act):
        return obs[:, 0] / self.temperature + 0.0 * act.sum(dim=1)


def test_an_exact_fit_at_temperature_t_has_correlation_one_and_scale_one_over_t():
    rng = np.random.default_rng(0)
    n, horizon = 30, 7
    obs = rng.normal(1.0, 1.0, size=(n, horizon, 3)).astype(np.float32)
    lengths = rng.integers(2, horizon + 1, size=n)
    mask = np.arange(horizon)[None] < lengths[:, None]
    obs[~mask] = 1e6  # padding beyond a segment's length must not count
    returns = np.where(mask, obs[..., 0], 0.0).sum(axis=1)
    segments = {"obs": obs, "act": np.zeros((n, horizon, 2), np.float32), "lengths": lengths,
                "returns": returns.astype(np.float64), "source": np.repeat([0, 5, 9], n // 3)}
    demos = {"observations": np.full((4, 3), 2.0, np.float32), "actions": np.ones((4, 2), np.float32)}
    fit = diag.reward_fit(ScaledTrueReward(4.0), segments, demos)
    assert abs(fit["correlation"] - 1.0) < 1e-9 and abs(fit["scale"] - 0.25) < 1e-6
    steps = obs[..., 0][mask] / 4.0
    assert np.isclose(fit["step_mean"], steps.mean()) and np.isclose(fit["step_max"], steps.max())
    assert fit["demo_mean"] == fit["demo_zero_action_mean"] == 0.5
    assert [row["source"] for row in fit["by_source"]] == [0, 5, 9]
    first = fit["by_source"][0]
    assert np.isclose(first["learned"], returns[:10].mean() / 4.0) and np.isclose(first["true"], returns[:10].mean())


def test_posture_reads_the_root_angle_and_forward_velocity():
    obs = np.zeros((4, 17))
    obs[:, diag.ROOT_ANGLE] = [3.1, 3.2, 0.1, -2.5]
    obs[:, diag.FORWARD_VELOCITY] = [1.0, 2.0, 3.0, 6.0]
    found = diag.posture(obs, np.array([1.0, 2.0, 3.0, 4.0]))
    assert found == {"return": 10.0, "root_angle_mean": np.mean([3.1, 3.2, 0.1, -2.5]), "on_back_share": 0.75,
                     "forward_velocity_mean": 3.0}
