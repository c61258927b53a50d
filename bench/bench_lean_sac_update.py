"""The issue-10 candidate "a lean SAC of our own", measured before it is written: the cost of
one SAC update alone (no environment, no replay buffer) in the leanest PyTorch form (two
critics and their targets, a tanh-Gaussian actor, fixed temperature, foreach Adam and
Polyak steps), eager and under ``torch.compile``, on Hopper's sizes (11 observations, 3
actions), 256-256, batch 256, one thread.

    python bench/bench_lean_sac_update.py [--compile]

If this bare update cannot beat sbx's whole loop (environment, relabelled replay buffer and
32 compiled updates: docs/benchmarks.md), a lean torch SAC is not worth writing.
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

OBS, ACT, HIDDEN, BATCH = 11, 3, 256, 256
GAMMA, TAU, ALPHA = 0.99, 0.005, 0.2
LOG_SQRT_2PI, LOG_2 = 0.9189385, 0.6931472


def mlp(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, outputs))


actor = mlp(OBS, 2 * ACT)
critics = [mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)]
targets = [mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)]
for target, critic in zip(targets, critics):
    target.load_state_dict(critic.state_dict())
    target.requires_grad_(False)
critic_params = [p for c in critics for p in c.parameters()]
target_params = [p for t in targets for p in t.parameters()]
critic_opt = torch.optim.Adam(critic_params, 3e-4, foreach=True)
actor_opt = torch.optim.Adam(actor.parameters(), 3e-4, foreach=True)


def sample_action(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u ~ N(mu, std); log pi(a|s) with the tanh correction 2 (log 2 - u - softplus(-2u))."""
    mu, log_std = actor(obs).chunk(2, -1)
    log_std = log_std.clamp(-20, 2)
    std = log_std.exp()
    u = mu + std * torch.randn_like(mu)
    gaussian = (-0.5 * ((u - mu) / std) ** 2 - log_std - LOG_SQRT_2PI).sum(-1)
    return torch.tanh(u), gaussian - (2 * (LOG_2 - u - F.softplus(-2 * u))).sum(-1)


def q_min(nets: list[nn.Module], obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    x = torch.cat([obs, act], -1)
    return torch.min(nets[0](x), nets[1](x)).squeeze(-1)


def update(obs, act, reward, next_obs, done) -> None:
    """One SAC update: both critics on the soft Bellman target, the actor, the Polyak step."""
    with torch.no_grad():
        next_act, next_logp = sample_action(next_obs)
        target = reward + GAMMA * (1 - done) * (q_min(targets, next_obs, next_act) - ALPHA * next_logp)
    x = torch.cat([obs, act], -1)
    critic_loss = sum(F.mse_loss(c(x).squeeze(-1), target) for c in critics)
    critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    critic_opt.step()
    for c in critics:
        c.requires_grad_(False)
    new_act, logp = sample_action(obs)
    actor_loss = (ALPHA * logp - q_min(critics, obs, new_act)).mean()
    actor_opt.zero_grad(set_to_none=True)
    actor_loss.backward()
    actor_opt.step()
    for c in critics:
        c.requires_grad_(True)
    with torch.no_grad():
        torch._foreach_lerp_(target_params, critic_params, TAU)


def rate(fn, n: int = 300) -> tuple[float, float]:
    """(updates per CPU-second, per wall-second) over ``n`` updates after 20 of warm-up."""
    batch = (torch.randn(BATCH, OBS), torch.rand(BATCH, ACT) * 2 - 1, torch.randn(BATCH), torch.randn(BATCH, OBS),
             torch.zeros(BATCH))
    for _ in range(20):
        fn(*batch)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn(*batch)
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compile", action="store_true", help="also time the update under torch.compile")
    args = p.parse_args()
    cpu, wall = rate(update)
    print(f"lean torch SAC update, eager: {cpu:.1f} per CPU-s ({wall:.1f} per wall-s)")
    if args.compile:
        cpu, wall = rate(torch.compile(update))
        print(f"lean torch SAC update, torch.compile: {cpu:.1f} per CPU-s ({wall:.1f} per wall-s)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    main()
