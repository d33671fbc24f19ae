"""TD3 (Fujimoto et al. 2018), the online agent that makes the expert for generated offline datasets.

Fujimoto's TD3 (sfujim/TD3): deterministic actor, twin critics with clipped double-Q targets, target policy
smoothing (noise 0.2 clipped to 0.5), delayed actor and target updates (every 2 steps), Gaussian exploration
noise 0.1, Adam 3e-4, batch 256, tau 0.005, uniform random actions for the first ``start_steps`` steps. The twin
critic is one stacked module (:class:`~helpers.rl.stacked.StackedMLP`), targets move with ``_foreach_lerp_``.
Hidden sizes are a parameter (Fujimoto's 256-256; this book's CPU scales use smaller ones for Pendulum).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .. import checks
from ..progress import tqdm
from .stacked import StackedMLP

__all__ = ["TD3Expert", "train_td3"]


class TD3Expert(nn.Module):
    """The deterministic TD3 actor ``s -> max_action * tanh(MLP(s))`` (what gets saved and rolled out)."""

    def __init__(self, state_dim: int, action_dim: int, max_action: float, hidden: int = 256) -> None:
        super().__init__()
        self.max_action = float(max_action)
        self.l1 = nn.Linear(state_dim, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, action_dim)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.l1(state))
        a = torch.relu(self.l2(a))
        return self.max_action * torch.tanh(self.l3(a))

    def policy(self) -> Callable[[np.ndarray], np.ndarray]:
        """A numpy policy ``obs -> action`` for rollouts."""

        def act(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return self(torch.as_tensor(obs, dtype=torch.float32)).numpy()

        return act


class _Q(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(state_dim + action_dim, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, 1)


def train_td3(env_id: str, steps: int, seed: int = 0, hidden: int = 256, start_steps: int = 1000,
              batch_size: int = 256, lr: float = 3e-4, expl_noise: float = 0.1, policy_noise: float = 0.2,
              noise_clip: float = 0.5, policy_freq: int = 2, discount: float = 0.99, tau: float = 0.005,
              progress: bool = True) -> tuple[TD3Expert, list[float]]:
    """Train TD3 online on ``env_id`` for ``steps`` environment steps (one gradient step per env step).

    Fujimoto et al. 2018, Algorithm 1. Returns the actor and the returns of the training episodes.
    """
    import gymnasium as gym

    for name, value, low in (("steps", steps, 1), ("seed", seed, 0), ("hidden", hidden, 1),
                             ("start_steps", start_steps, 0), ("batch_size", batch_size, 1)):
        checks.integer(name, value, low=low)
    checks.number("lr", lr, 0, low_open=True)
    env = gym.make(env_id)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    s_dim, a_dim = env.observation_space.shape[0], env.action_space.shape[0]
    max_action = float(env.action_space.high[0])
    actor = TD3Expert(s_dim, a_dim, max_action, hidden)
    stack_a = StackedMLP([actor], (("l1",), ("l2",), ("l3",)))
    stack_c = StackedMLP([_Q(s_dim, a_dim, hidden), _Q(s_dim, a_dim, hidden)], (("l1",), ("l2",), ("l3",)))
    targ_a, targ_c = stack_a.clone(), stack_c.clone()
    opt_a = torch.optim.Adam(stack_a.parameters(), lr=lr, foreach=True)
    opt_c = torch.optim.Adam(stack_c.parameters(), lr=lr, foreach=True)
    src, dst = [*stack_a.parameters(), *stack_c.parameters()], [*targ_a.parameters(), *targ_c.parameters()]
    buf = {k: torch.zeros(steps, d) for k, d in (("s", s_dim), ("a", a_dim), ("r", 1), ("s2", s_dim), ("nd", 1))}

    def pi(net: StackedMLP, s: torch.Tensor) -> torch.Tensor:
        return max_action * torch.tanh(net(s))

    def q(net: StackedMLP, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([s, a], -1)
        return net(x.expand(2, *x.shape[1:]))  # (2, B, 1)

    returns, ret = [], 0.0
    obs, _ = env.reset(seed=seed)
    for t in tqdm(range(steps), desc=f"TD3 {env_id}", disable=not progress, mininterval=2.0):
        if t < start_steps:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                action = pi(stack_a, torch.as_tensor(obs, dtype=torch.float32)[None, None])[0, 0].numpy()
            action = np.clip(action + rng.normal(0, max_action * expl_noise, a_dim), -max_action, max_action)
        nxt, reward, terminated, truncated, _ = env.step(action)
        for k, v in (("s", obs), ("a", action), ("r", [reward]), ("s2", nxt), ("nd", [1.0 - float(terminated)])):
            buf[k][t] = torch.as_tensor(np.asarray(v, dtype=np.float32))
        ret += float(reward)
        obs = nxt
        if terminated or truncated:
            returns.append(ret)
            ret = 0.0
            obs, _ = env.reset()
        if t + 1 < max(start_steps, batch_size):
            continue
        idx = torch.randint(t + 1, (1, batch_size), generator=gen)
        s, a, r, s2, nd = (buf[k][idx] for k in ("s", "a", "r", "s2", "nd"))
        with torch.no_grad():
            noise = (torch.randn(a.shape, generator=gen) * policy_noise).clamp(-noise_clip, noise_clip)
            a2 = (pi(targ_a, s2) + noise * max_action).clamp(-max_action, max_action)
            y = r + nd * discount * q(targ_c, s2, a2).min(0).values
        critic_loss = (q(stack_c, s, a) - y).pow(2).mean(1).sum()
        grads = torch.autograd.grad(critic_loss, stack_c.parameters())
        for p, g in zip(stack_c.parameters(), grads):
            p.grad = g
        opt_c.step()
        if t % policy_freq == 0:
            w, b = stack_c.select(slice(0, 1))
            actor_loss = -stack_c(torch.cat([s, pi(stack_a, s)], -1), w, b).mean()
            grads = torch.autograd.grad(actor_loss, stack_a.parameters())
            for p, g in zip(stack_a.parameters(), grads):
                p.grad = g
            opt_a.step()
            with torch.no_grad():
                torch._foreach_lerp_(dst, src, tau)
    env.close()
    actor.load_state_dict(stack_a.state_dict_of(0))
    return actor, returns
