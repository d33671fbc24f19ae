"""Evaluation episodes with gymnasium for many policies at once.

:func:`evaluate_batch` runs ``episodes`` episodes for each of P policies in lockstep (P x episodes gymnasium
environments) and asks one batched function for all actions per time step, e.g. a
:class:`~helpers.rl.offline.BCQEnsemble`'s ``act``. Episode ``k`` of every policy starts from the same seed
(``seed + k``), so policies are compared on the same initial states.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["evaluate_batch", "evaluate_agent"]

BatchPolicy = Callable[[torch.Tensor], torch.Tensor]


def evaluate_batch(act: BatchPolicy, env_id: str, policies: int, episodes: int = 5, seed: int = 0,
                   max_steps: int | None = None) -> np.ndarray:
    """Undiscounted returns ``(policies, episodes)``; ``act(obs (P, K, S)) -> actions (P, K, A)``.

    Finished episodes stop accumulating (their rows still get an action, which is ignored).
    """
    import gymnasium as gym

    for name, value, low in (("policies", policies, 1), ("episodes", episodes, 1), ("seed", seed, 0)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    envs = [[gym.make(env_id) for _ in range(episodes)] for _ in range(policies)]
    obs = np.stack([np.stack([env.reset(seed=seed + k)[0] for k, env in enumerate(row)]) for row in envs])
    high = envs[0][0].action_space.high
    returns = np.zeros((policies, episodes))
    done = np.zeros((policies, episodes), bool)
    steps = 0
    while not done.all() and (max_steps is None or steps < max_steps):
        actions = act(torch.as_tensor(obs, dtype=torch.float32)).cpu().numpy()
        for p in range(policies):
            for k in range(episodes):
                if done[p, k]:
                    continue
                o, r, term, trunc, _ = envs[p][k].step(np.clip(actions[p, k], -high, high))
                obs[p, k] = o
                returns[p, k] += r
                done[p, k] = term or trunc
        steps += 1
    for row in envs:
        for env in row:
            env.close()
    return returns


def evaluate_agent(agent, env_id: str, episodes: int = 5, seed: int = 0,
                   generator: torch.Generator | None = None) -> np.ndarray:
    """Returns ``(episodes,)`` of one :class:`~helpers.rl.networks.BCQNetworks` agent (its ``act``)."""

    def act(obs: torch.Tensor) -> torch.Tensor:
        return agent.act(obs[0], generator=generator)[None]

    return evaluate_batch(act, env_id, 1, episodes, seed)[0]
