"""Offline reinforcement learning: D4RL-layout datasets, BCQ and BC networks, training and evaluation.

Chapter 2 (Arnob et al. 2021, single-shot pruning for offline RL) uses every part: datasets
(:mod:`~helpers.rl.datasets`; generated with a TD3 expert, :mod:`~helpers.rl.generate`, :mod:`~helpers.rl.online`),
the networks and their pruning losses (:mod:`~helpers.rl.networks`), batched BCQ/BC training with masks
(:mod:`~helpers.rl.offline`, :mod:`~helpers.rl.stacked`), evaluation episodes (:mod:`~helpers.rl.evaluation`) and
the sparsity sweep of the paper's Figs 1-2 (:mod:`~helpers.rl.sweep`) and the masks and storage of pruned agents
(Figs 3-4, Table 1; :mod:`~helpers.rl.pruned_agents`).
"""
from __future__ import annotations

import warnings

try:
    import mujoco
except ImportError:  # gymnasium's MuJoCo tasks need the `mujoco` wheel (a dependency); without it they fail on use
    mujoco = None

from . import datasets, evaluation, generate, networks, offline, online, pruned_agents, stacked, sweep
from .datasets import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .generate import *  # noqa: F401,F403
from .networks import *  # noqa: F401,F403
from .offline import *  # noqa: F401,F403
from .online import *  # noqa: F401,F403
from .pruned_agents import *  # noqa: F401,F403
from .stacked import *  # noqa: F401,F403
from .sweep import *  # noqa: F401,F403

__all__ = [*datasets.__all__, *generate.__all__, *networks.__all__, *offline.__all__, *online.__all__,
           *evaluation.__all__, *pruned_agents.__all__, *stacked.__all__, *sweep.__all__]


def _mujoco_notice(message: str) -> None:
    """MuJoCo's C warnings as Python warnings (filterable, and shown once), except its compiler's deprecation notices
    about gymnasium's own model files (``settotalmass`` in HalfCheetah's XML), which say nothing about our runs."""
    if "is deprecated" not in message:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


if mujoco is not None:
    mujoco.set_mju_user_warning(_mujoco_notice)
