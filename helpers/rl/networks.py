"""The networks of continuous BCQ (Fujimoto et al. 2019, sfujim/BCQ) and of BEAR's BC, and their losses.

Sizes as in Fujimoto's code: the perturbation actor ``(s, a) -> 400 -> 300 -> a`` adds at most
``phi * max_action`` to a VAE action; the twin critics ``(s, a) -> 400 -> 300 -> 1``; the VAE
``(s, a) -> 750 -> 750 -> (mean, log_std)`` with latent ``2 * action_dim`` and decoder ``(s, z) -> 750 -> 750 -> a``.
The VAE is split into :class:`VAEEncoder` and :class:`VAEDecoder` so that each is a separately prunable
network (``ω_E``, ``ω_D`` of Algorithm 1 of Arnob et al. 2021), and the twin critic holds two
:class:`Critic` modules ``q1``, ``q2`` so that critic 2 can take critic 1's mask.

BC is BEAR's (Kumar et al. 2019, aviralkumar2907/BEAR ``algos.BCQ(cloning=True)``): the same networks, and the
policy is the VAE decoder with the latent clipped to [-0.25, 0.25] (see :mod:`helpers.rl.offline`).

:func:`pruning_losses` gives, per network, ``(module, loss_fn)`` with ``loss_fn(module, batch)`` that network's own
training loss on one batch (Algorithm 1: ``L(θ1), L(φ), L(ω_E), L(ω_D)``), for ``helpers.pruning.snip_scores``
and ``grasp_scores``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import checks

__all__ = [
    "Transitions",
    "Actor",
    "Critic",
    "TwinCritic",
    "VAEEncoder",
    "VAEDecoder",
    "VAE",
    "BCQNetworks",
    "vae_loss",
    "critic_target",
    "pruning_losses",
    "NETWORK_NAMES",
    "LAMBDA",
]

LAMBDA = 0.75  # soft clipped double Q (Fujimoto et al. 2019, Eq. 13; sfujim/BCQ default lmbda=0.75)
NETWORK_NAMES = ("actor", "critic", "vae_encoder", "vae_decoder")


class Transitions(NamedTuple):
    """A batch of transitions: ``state (B, S)``, ``action (B, A)``, ``reward (B, 1)``, ``next_state (B, S)``,
    ``not_done (B, 1)`` (0 where the episode terminated, as sfujim/BCQ's replay buffer)."""

    state: Tensor
    action: Tensor
    reward: Tensor
    next_state: Tensor
    not_done: Tensor


class Actor(nn.Module):
    """BCQ perturbation model ξ_φ(s, a): ``a + phi * max_action * tanh(MLP(s, a))``, clamped to the action box.

    Fujimoto et al. 2019, Sec. 4 (Eq. 11-12); ``phi = 0.05`` as sfujim/BCQ.
    """

    def __init__(self, state_dim: int, action_dim: int, max_action: float, phi: float = 0.05,
                 hidden: tuple[int, int] = (400, 300)) -> None:
        super().__init__()
        checks.integer("state_dim", state_dim, low=1)
        checks.integer("action_dim", action_dim, low=1)
        self.max_action = checks.number("max_action", max_action, 0, low_open=True)
        self.phi = checks.number("phi", phi, 0, low_open=True)
        self.l1 = nn.Linear(state_dim + action_dim, hidden[0])
        self.l2 = nn.Linear(hidden[0], hidden[1])
        self.l3 = nn.Linear(hidden[1], action_dim)

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        a = F.relu(self.l1(torch.cat([state, action], -1)))
        a = F.relu(self.l2(a))
        a = self.phi * self.max_action * torch.tanh(self.l3(a))
        return (a + action).clamp(-self.max_action, self.max_action)


class Critic(nn.Module):
    """One Q network ``Q_θ(s, a)``: ``(s, a) -> 400 -> 300 -> 1`` (one half of sfujim/BCQ's Critic)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, int] = (400, 300)) -> None:
        super().__init__()
        checks.integer("state_dim", state_dim, low=1)
        checks.integer("action_dim", action_dim, low=1)
        self.l1 = nn.Linear(state_dim + action_dim, hidden[0])
        self.l2 = nn.Linear(hidden[0], hidden[1])
        self.l3 = nn.Linear(hidden[1], 1)

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        q = F.relu(self.l1(torch.cat([state, action], -1)))
        q = F.relu(self.l2(q))
        return self.l3(q)


class TwinCritic(nn.Module):
    """The twin critics ``Q_θ1, Q_θ2`` (Fujimoto et al. 2018/2019); ``forward`` returns both."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, int] = (400, 300)) -> None:
        super().__init__()
        self.q1 = Critic(state_dim, action_dim, hidden)
        self.q2 = Critic(state_dim, action_dim, hidden)

    def forward(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        return self.q1(state, action), self.q2(state, action)


class VAEEncoder(nn.Module):
    """VAE encoder ``E_ω(s, a) -> (mean, std)``: 750-750, ``log_std`` clamped to [-4, 15] (sfujim/BCQ)."""

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int, hidden: int = 750) -> None:
        super().__init__()
        checks.integer("state_dim", state_dim, low=1)
        checks.integer("action_dim", action_dim, low=1)
        checks.integer("latent_dim", latent_dim, low=1)
        self.e1 = nn.Linear(state_dim + action_dim, hidden)
        self.e2 = nn.Linear(hidden, hidden)
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_std = nn.Linear(hidden, latent_dim)

    def forward(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        z = F.relu(self.e1(torch.cat([state, action], -1)))
        z = F.relu(self.e2(z))
        return self.mean(z), self.log_std(z).clamp(-4, 15).exp()


class VAEDecoder(nn.Module):
    """VAE decoder ``D_ω(s, z) -> max_action * tanh(.)``: 750-750 (sfujim/BCQ)."""

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int, max_action: float, hidden: int = 750) -> None:
        super().__init__()
        checks.integer("state_dim", state_dim, low=1)
        checks.integer("action_dim", action_dim, low=1)
        checks.integer("latent_dim", latent_dim, low=1)
        self.max_action = checks.number("max_action", max_action, 0, low_open=True)
        self.latent_dim = latent_dim
        self.d1 = nn.Linear(state_dim + latent_dim, hidden)
        self.d2 = nn.Linear(hidden, hidden)
        self.d3 = nn.Linear(hidden, action_dim)

    def forward(self, state: Tensor, z: Tensor) -> Tensor:
        a = F.relu(self.d1(torch.cat([state, z], -1)))
        a = F.relu(self.d2(a))
        return self.max_action * torch.tanh(self.d3(a))


def _latent(state: Tensor, latent_dim: int, clip: float | None, generator: torch.Generator | None) -> Tensor:
    z = torch.randn(*state.shape[:-1], latent_dim, generator=generator, device=state.device, dtype=state.dtype)
    return z if clip is None else z.clamp(-clip, clip)


class VAE(nn.Module):
    """The conditional VAE ``G_ω = {E_ω, D_ω}`` of BCQ (Fujimoto et al. 2019, Eq. 10); latent ``2 * action_dim``."""

    def __init__(self, state_dim: int, action_dim: int, max_action: float, latent_dim: int | None = None,
                 hidden: int = 750) -> None:
        super().__init__()
        latent_dim = 2 * action_dim if latent_dim is None else latent_dim
        self.latent_dim = latent_dim
        self.max_action = checks.number("max_action", max_action, 0, low_open=True)
        self.encoder = VAEEncoder(state_dim, action_dim, latent_dim, hidden)
        self.decoder = VAEDecoder(state_dim, action_dim, latent_dim, max_action, hidden)

    def forward(self, state: Tensor, action: Tensor,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction, mean and std: ``z = mean + std * eps`` (reparametrisation)."""
        mean, std = self.encoder(state, action)
        z = mean + std * _latent(state, self.latent_dim, None, generator)
        return self.decoder(state, z), mean, std

    def decode(self, state: Tensor, z: Tensor | None = None, clip: float = 0.5,
               generator: torch.Generator | None = None) -> Tensor:
        """Sample actions: ``z ~ N(0, 1)`` clipped to ``[-clip, clip]`` (0.5 in BCQ, 0.25 for BEAR's BC policy)."""
        if z is None:
            z = _latent(state, self.latent_dim, clip, generator)
        return self.decoder(state, z)


def vae_loss(encoder: nn.Module, decoder: nn.Module, batch: Transitions,
             generator: torch.Generator | None = None) -> Tensor:
    """VAE loss ``MSE(recon, a) + 0.5 * KL(N(mean, std) || N(0, 1))`` (sfujim/BCQ, KL averaged over elements)."""
    mean, std = encoder(batch.state, batch.action)
    z = mean + std * _latent(batch.state, mean.shape[-1], None, generator)
    recon = decoder(batch.state, z)
    recon_loss = F.mse_loss(recon, batch.action)
    kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
    return recon_loss + 0.5 * kl


class BCQNetworks(nn.Module):
    """All networks of one BCQ/BC agent: actor, twin critic, their targets, and the VAE.

    ``cloning=True`` is BEAR's BC (``algos.BCQ(cloning=True)``): the critic target uses VAE actions without
    perturbation and the policy is the VAE decoder (latent clipped to 0.25). ``width`` scales every hidden
    layer (1.0: the paper's 400-300 and 750-750; smaller widths are this book's CPU scales).
    """

    def __init__(self, state_dim: int, action_dim: int, max_action: float, phi: float = 0.05,
                 cloning: bool = False, discount: float = 0.99, lmbda: float = LAMBDA, width: float = 1.0) -> None:
        super().__init__()
        width = checks.number("width", width, 0, low_open=True)
        self.state_dim, self.action_dim, self.max_action = state_dim, action_dim, float(max_action)
        self.width = width
        hidden = (max(1, round(400 * width)), max(1, round(300 * width)))
        vae_hidden = max(1, round(750 * width))
        self.cloning = bool(cloning)
        self.discount = float(discount)
        self.lmbda = float(lmbda)
        self.actor = Actor(state_dim, action_dim, max_action, phi, hidden)
        self.critic = TwinCritic(state_dim, action_dim, hidden)
        self.vae = VAE(state_dim, action_dim, max_action, hidden=vae_hidden)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        for p in [*self.actor_target.parameters(), *self.critic_target.parameters()]:
            p.requires_grad_(False)

    def networks(self) -> dict[str, nn.Module]:
        """The separately prunable networks by name (critic = ``critic.q1``; ``q2`` copies its mask)."""
        return {"actor": self.actor, "critic": self.critic.q1, "vae_encoder": self.vae.encoder,
                "vae_decoder": self.vae.decoder}

    @torch.no_grad()
    def act(self, state: Tensor, samples: int = 100, generator: torch.Generator | None = None) -> Tensor:
        """Greedy action for a batch of states ``(N, S)``.

        BCQ: ``samples`` VAE actions perturbed by the actor, the one with the highest ``Q1`` (sfujim/BCQ uses
        100). BC: one VAE action with the latent clipped to 0.25 (BEAR's ``decode_bc_test``).
        """
        if self.cloning:
            return self.vae.decode(state, clip=0.25, generator=generator)
        n = state.shape[0]
        rep = state.repeat_interleave(samples, 0)
        action = self.actor(rep, self.vae.decode(rep, generator=generator))
        q1 = self.critic.q1(rep, action).reshape(n, samples)
        best = q1.argmax(1)
        return action.reshape(n, samples, -1)[torch.arange(n), best]


@torch.no_grad()
def critic_target(agent: BCQNetworks, batch: Transitions, samples: int = 10,
                  generator: torch.Generator | None = None) -> Tensor:
    """BCQ target ``r + γ (1-d) max_i [λ min(Q'1, Q'2) + (1-λ) max(Q'1, Q'2)](s', a_i)`` (Fujimoto 2019, Eq. 13).

    ``a_i`` are ``samples`` (10) VAE actions at ``s'``, perturbed by the target actor (BCQ) or not (BC).
    """
    b = batch.next_state.shape[0]
    rep = batch.next_state.repeat_interleave(samples, 0)
    action = agent.vae.decode(rep, generator=generator)
    if not agent.cloning:
        action = agent.actor_target(rep, action)
    q1, q2 = agent.critic_target(rep, action)
    q = agent.lmbda * torch.min(q1, q2) + (1 - agent.lmbda) * torch.max(q1, q2)
    q = q.reshape(b, samples).max(1).values.reshape(-1, 1)
    return batch.reward + batch.not_done * agent.discount * q


#: ``loss(network, transitions) -> scalar``: one network of an agent scored on a batch of transitions.
AgentLoss = Callable[[nn.Module, Transitions], Tensor]


def pruning_losses(agent: BCQNetworks, seed: int = 0) -> dict[str, tuple[nn.Module, AgentLoss]]:
    """Per network, ``(module, loss_fn)`` with ``loss_fn(module, batch)`` that network's own training loss.

    Algorithm 1 of Arnob et al. 2021: ``L(φ)`` actor ``-Q1(s, ξ_φ(s, D(s)))``; ``L(θ1)`` critic
    ``MSE(Q1(s, a), y)`` with the BCQ target ``y`` (:func:`critic_target`, from the agent's target networks);
    ``L(ω_E)``, ``L(ω_D)`` the VAE loss (:func:`vae_loss`) with the other half of the VAE held as is.
    The other networks are taken from ``agent`` when the loss is called. Every call draws its noise from a
    generator seeded with ``seed``, so a loss is a deterministic function of the weights.
    """
    if not isinstance(agent, BCQNetworks):
        raise ValueError(f"agent must be a BCQNetworks, got {type(agent).__name__}")

    def gen() -> torch.Generator:
        return torch.Generator(device=agent.actor.l1.weight.device).manual_seed(seed)

    def actor_loss(actor: nn.Module, batch: Transitions) -> Tensor:
        sampled = agent.vae.decode(batch.state, generator=gen()).detach()
        return -agent.critic.q1(batch.state, actor(batch.state, sampled)).mean()

    def critic_loss(q1: nn.Module, batch: Transitions) -> Tensor:
        return F.mse_loss(q1(batch.state, batch.action), critic_target(agent, batch, generator=gen()))

    def encoder_loss(encoder: nn.Module, batch: Transitions) -> Tensor:
        return vae_loss(encoder, agent.vae.decoder, batch, generator=gen())

    def decoder_loss(decoder: nn.Module, batch: Transitions) -> Tensor:
        return vae_loss(agent.vae.encoder, decoder, batch, generator=gen())

    nets = agent.networks()
    return {"actor": (nets["actor"], actor_loss), "critic": (nets["critic"], critic_loss),
            "vae_encoder": (nets["vae_encoder"], encoder_loss), "vae_decoder": (nets["vae_decoder"], decoder_loss)}
