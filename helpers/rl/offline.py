"""BCQ and BC training, many masked configurations at once (Fujimoto et al. 2019; Arnob et al. 2021, Alg. 1).

:class:`BCQEnsemble` trains E agents (:class:`~helpers.rl.networks.BCQNetworks`, each with its own masks) as
one batched model: every network is a :class:`~helpers.rl.stacked.StackedMLP`, the twin critics are one stacked
module of 2E members, Adam runs over the stacked tensors (elementwise, so identical to per-agent optimisers),
target networks move with ``torch._foreach_lerp_`` and nothing in :meth:`BCQEnsemble.train` syncs with the host.

One gradient step of BCQ (sfujim/BCQ, ``BCQ.train``), per agent, on a batch of 100 transitions:
VAE ``MSE(recon, a) + 0.5 KL``; critics ``MSE(Q_k(s,a), y)`` with
``y = r + γ (1-d) max_{10 samples} [λ min + (1-λ) max](Q'1, Q'2)(s', ξ'(s', D(s')))``; actor ``-Q1(s, ξ(s, D(s)))``;
``θ' <- τ θ + (1-τ) θ'``. BC (BEAR's ``algos.BCQ(cloning=True)``) acts with the VAE decoder alone (latent clipped
to 0.25); its critic and actor never touch its actions, so by default they are not trained (``train_unused``).

:func:`prune_agent` computes Algorithm 1's masks (one batch per network, one global top-k per network, critic 2
copies critic 1's mask) and :func:`apply_agent_masks` attaches them to an ``nn.Module`` agent, targets included.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import checks, pruning
from ..pruning import apply_masks, keep_top
from ..progress import tqdm
from .networks import NETWORK_NAMES, BCQNetworks, Transitions, pruning_losses
from .stacked import LAYERS, StackedMLP

__all__ = ["BCQEnsemble", "ReferenceBCQ", "prune_agent", "pruning_scores", "masks_from_scores", "apply_agent_masks", "PRUNING_METHODS",
           "PRUNING_BATCH", "agent_density"]

PRUNING_METHODS = pruning.SINGLE_SHOT_METHODS  # the scorers of helpers.pruning.SCORERS, and "random"
PRUNING_BATCH = {"snip": 100, "grasp": 200}  # Sec. 4 of Arnob et al.: one batch of 100 (SNIP) / 200 (GraSP)
AgentMasks = Mapping[str, Mapping[str, Tensor]]


def pruning_scores(agent: BCQNetworks, method: str, data: Any,
                   generator: torch.Generator) -> dict[str, dict[str, Tensor]]:
    """Per network, the importance scores of ``method`` (a name of ``helpers.pruning.SCORERS``; keep the highest).

    SNIP / GraSP (Eqs. 1, 4 of Arnob et al.): from the network's own loss (:func:`~helpers.rl.networks.pruning_losses`)
    on ONE batch of :data:`PRUNING_BATCH` transitions (100 / 200, Sec. 4) drawn from ``data`` (an
    ``OfflineDataset``) with ``generator``; a scorer without a batch size (magnitude, |θ| at initialisation) draws
    nothing. The critic is scored on ``Q1`` only (Algorithm 1).
    """
    checks.choice("method", method, tuple(pruning.SCORERS))
    scorer = pruning.SCORERS[method]
    batch = data.sample(PRUNING_BATCH[method], generator) if method in PRUNING_BATCH else None
    return {name: scorer(module, loss_fn, batch) for name, (module, loss_fn) in pruning_losses(agent).items()}


def masks_from_scores(scores: Mapping[str, Mapping[str, Tensor]], density: float) -> dict[str, dict[str, Tensor]]:
    """One global top-k per network (``helpers.pruning.keep_top``), keeping ``density`` of its weights."""
    density = pruning.check_density(density)
    return {name: keep_top(s, density) for name, s in scores.items()}


def prune_agent(agent: BCQNetworks, method: str, density: float, data: Any, generator: torch.Generator,
                reference: AgentMasks | None = None) -> dict[str, dict[str, Tensor]]:
    """Algorithm 1's masks for every network of ``agent``: ``{network: {param: 0/1}}`` keeping ``density``.

    ``"snip"`` / ``"grasp"`` / ``"magnitude"``: :func:`pruning_scores`, then one global top-k per network;
    ``"random"``: ``reference``'s layer-wise kept counts at random positions (``random_masks_like``; without
    ``reference``, every layer at ``density``). The critic mask is computed on ``Q1`` and used for ``Q2`` (copy).
    """
    checks.choice("method", method, PRUNING_METHODS)
    density = pruning.check_density(density)
    if method == "random":
        if reference is None:
            return {name: pruning.random_masks(net, density, generator) for name, net in agent.networks().items()}
        return {name: pruning.random_masks_like(reference[name], generator) for name in NETWORK_NAMES}
    return masks_from_scores(pruning_scores(agent, method, data, generator), density)


def apply_agent_masks(agent: BCQNetworks, masks: AgentMasks) -> BCQNetworks:
    """Attach ``masks`` with ``helpers.pruning.apply_masks``: each network, ``Q1``'s mask on ``Q2``, targets too.

    Algorithm 1: ``θ1 <- θ1 ⊙ M_θ1``, critic 2 with the same mask, ``φ <- φ ⊙ M_φ``, ``ω_E``, ``ω_D``; the target
    networks are re-copied from the masked networks so that they start (and, with masks, stay) sparse.
    """
    for name in NETWORK_NAMES:
        if name not in masks:
            raise ValueError(f"masks must have an entry for every network {NETWORK_NAMES}; missing {name!r}")
    apply_masks(agent.actor, masks["actor"])
    apply_masks(agent.critic.q1, masks["critic"])
    apply_masks(agent.critic.q2, masks["critic"])
    apply_masks(agent.vae.encoder, masks["vae_encoder"])
    apply_masks(agent.vae.decoder, masks["vae_decoder"])
    agent.actor_target = _copy_module(agent.actor)
    agent.critic_target = _copy_module(agent.critic)
    for p in [*agent.actor_target.parameters(), *agent.critic_target.parameters()]:
        p.requires_grad_(False)
    return agent


def _copy_module(module: torch.nn.Module) -> torch.nn.Module:
    """``deepcopy`` of a module carrying ``torch.nn.utils.prune`` masks (its ``weight`` is recomputed without grad
    first: the pruned ``weight`` attribute is a non-leaf tensor, which ``deepcopy`` refuses)."""
    with torch.no_grad():
        for m in module.modules():
            if hasattr(m, "weight_orig") and hasattr(m, "weight_mask"):
                m.weight = m.weight_orig * m.weight_mask
    return copy.deepcopy(module)


def agent_density(masks: AgentMasks) -> dict[str, float]:
    """Fraction of weights kept per network."""
    return {name: float(sum(m.sum() for m in ms.values()) / sum(m.numel() for m in ms.values()))
            for name, ms in masks.items()}


class BCQEnsemble:
    """E BCQ (or BC) agents with their masks, trained as one batched model; see the module docstring.

    ``agents``: initialised :class:`BCQNetworks` without pruning reparametrisation (their weights are read);
    ``masks``: per agent ``{network: {param: mask}}`` or None (dense). All agents share ``cloning``.
    """

    def __init__(self, agents: Sequence[BCQNetworks], masks: Sequence[AgentMasks | None] | None = None, *,
                 lr: float = 1e-3, tau: float = 0.005, batch_size: int = 100, target_samples: int = 10,
                 action_samples: int = 100, train_unused: bool = False, seed: int = 0) -> None:
        if not agents or not all(isinstance(a, BCQNetworks) for a in agents):
            raise ValueError("agents must be a non-empty list of BCQNetworks")
        if len({a.cloning for a in agents}) != 1:
            raise ValueError("agents must all be BCQ or all BC (cloning)")
        if masks is not None and len(masks) != len(agents):
            raise ValueError(f"masks must have one entry per agent ({len(agents)}), got {len(masks)}")
        checks.integer("batch_size", batch_size, low=1)
        checks.number("tau", tau, 0, 1, low_open=True)
        masks = [None] * len(agents) if masks is None else list(masks)
        ref = agents[0]
        self.members = len(agents)
        self.cloning = ref.cloning
        self.max_action, self.discount, self.lmbda = ref.max_action, ref.discount, ref.lmbda
        self.phi = ref.actor.phi
        self.width = ref.width
        self.latent_dim = ref.vae.latent_dim
        self.tau, self.batch_size = float(tau), batch_size
        self.target_samples, self.action_samples = target_samples, action_samples
        self.train_unused = bool(train_unused)
        self.train_rl = not self.cloning or self.train_unused
        self.device = ref.actor.l1.weight.device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.steps = 0
        self.record = False
        self.last_draws: list[Tensor] = []
        self._replay: list[Tensor] | None = None

        def pick(name: str) -> list[Mapping[str, Tensor] | None]:
            return [None if m is None else m[name] for m in masks]

        self.actor = StackedMLP([a.actor for a in agents], LAYERS["actor"], pick("actor"))
        critics = [q for a in agents for q in (a.critic.q1, a.critic.q2)]  # member 2e: Q1, 2e+1: Q2 of agent e
        critic_masks = [m for m in pick("critic") for _ in range(2)]
        self.critic = StackedMLP(critics, LAYERS["critic"], critic_masks)
        self.encoder = StackedMLP([a.vae.encoder for a in agents], LAYERS["vae_encoder"], pick("vae_encoder"))
        self.decoder = StackedMLP([a.vae.decoder for a in agents], LAYERS["vae_decoder"], pick("vae_decoder"))
        self.actor_target = self.actor.clone()
        self.critic_target = self.critic.clone()
        adam = dict(lr=lr, foreach=True)
        self.vae_opt = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], **adam)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), **adam)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), **adam)
        self._targets = [*self.actor_target.parameters(), *self.critic_target.parameters()]
        self._sources = [*self.actor.parameters(), *self.critic.parameters()]

    # ----- the networks, batched over members -------------------------------------------------------------
    def _draw(self, tensor: Tensor) -> Tensor:
        if self._replay is not None:
            return self._replay.pop(0)
        if self.record:
            self.last_draws.append(tensor)
        return tensor

    def _latent(self, shape: tuple[int, ...], clip: float | None) -> Tensor:
        z = torch.randn(*shape, self.latent_dim, generator=self.generator, device=self.device)
        return self._draw(z if clip is None else z.clamp_(-clip, clip))

    def decode(self, state: Tensor, clip: float = 0.5) -> Tensor:
        z = self._latent(state.shape[:-1], clip)
        out = self.decoder(torch.cat([state, z], -1))
        if torch.is_grad_enabled():
            return self.max_action * torch.tanh(out)
        return out.tanh_().mul_(self.max_action)

    def perturb(self, net: StackedMLP, state: Tensor, action: Tensor) -> Tensor:
        out = net(torch.cat([state, action], -1))
        if torch.is_grad_enabled():
            out = self.phi * self.max_action * torch.tanh(out)
            return (out + action).clamp(-self.max_action, self.max_action)
        return out.tanh_().mul_(self.phi * self.max_action).add_(action).clamp_(-self.max_action, self.max_action)

    def q_both(self, net: StackedMLP, state: Tensor, action: Tensor) -> Tensor:
        """``(E, B, S), (E, B, A) -> (E, 2, B)``: both critics of every agent in one batched pass."""
        x = torch.cat([state, action], -1)
        e, b, d = x.shape
        x = x.unsqueeze(1).expand(e, 2, b, d).reshape(2 * e, b, d)
        return net(x).reshape(e, 2, b)

    def q1(self, state: Tensor, action: Tensor) -> Tensor:
        """``Q1`` of every agent (members 0, 2, 4, ... of the critic stack): ``(E, B)``."""
        w, b = self.critic.select(slice(0, None, 2))
        return self.critic(torch.cat([state, action], -1), w, b).squeeze(-1)

    # ----- training -------------------------------------------------------------------------------------------
    def _step(self, opt: torch.optim.Optimizer, loss: Tensor, nets: Sequence[StackedMLP]) -> None:
        params = [p for net in nets for p in net.parameters()]
        grads = torch.autograd.grad(loss, params)
        offset = 0
        for net in nets:
            n = len(net.weights)
            net.mask_grads(grads[offset:offset + n])
            offset += len(net.parameters())
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()

    def train_step(self, data: Transitions, draws: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
        """One gradient step of every agent on its own batch drawn from ``data``; losses stay on the device.

        ``draws``: replay these random tensors (batch indices, then latents, in the order drawn) instead of
        drawing; with ``record = True`` the draws of the step are kept in ``last_draws`` (tests use both).
        """
        e, bs = self.members, self.batch_size
        self.last_draws = []
        self._replay = None if draws is None else list(draws)
        idx = self._draw(torch.randint(data.state.shape[0], (e, bs), generator=self.generator, device=self.device))
        s, a, r, s2, nd = (x[idx] for x in data)
        # VAE: MSE(recon, a) + 0.5 KL, per agent (means over its batch), summed over agents.
        h = self.encoder(torch.cat([s, a], -1))
        mean, log_std = h[..., :self.latent_dim], h[..., self.latent_dim:].clamp(-4, 15)
        std = log_std.exp()
        z = mean + std * self._latent((e, bs), None)
        recon = self.max_action * torch.tanh(self.decoder(torch.cat([s, z], -1)))
        recon_loss = (recon - a).pow(2).mean((1, 2))
        kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean((1, 2))
        vae_loss = recon_loss + 0.5 * kl
        self._step(self.vae_opt, vae_loss.sum(), [self.encoder, self.decoder])
        losses = {"vae": vae_loss.detach()}
        if self.train_rl:
            with torch.no_grad():
                n = self.target_samples
                s2rep = s2.repeat_interleave(n, 1)
                a2 = self.decode(s2rep)
                if not self.cloning:
                    a2 = self.perturb(self.actor_target, s2rep, a2)
                q = self.q_both(self.critic_target, s2rep, a2)
                q = self.lmbda * q.min(1).values + (1 - self.lmbda) * q.max(1).values
                q = q.reshape(e, bs, n).max(-1).values
                y = r.squeeze(-1) + nd.squeeze(-1) * self.discount * q
            current = self.q_both(self.critic, s, a)
            critic_loss = (current - y.unsqueeze(1)).pow(2).mean(2).sum(1)
            self._step(self.critic_opt, critic_loss.sum(), [self.critic])
            sampled = self.decode(s).detach()
            actor_loss = -self.q1(s, self.perturb(self.actor, s, sampled)).mean(1)
            self._step(self.actor_opt, actor_loss.sum(), [self.actor])
            with torch.no_grad():
                torch._foreach_lerp_(self._targets, self._sources, self.tau)
            losses.update(critic=critic_loss.detach(), actor=actor_loss.detach())
        self._replay = None
        self.steps += 1
        return losses

    def train(self, data: Transitions, steps: int, progress: bool = False, desc: str = "BCQ") -> dict[str, Tensor]:
        """``steps`` gradient steps; returns the last step's per-agent losses (one host sync at the end)."""

        checks.integer("steps", steps, low=0)
        losses: dict[str, Tensor] = {}
        for _ in tqdm(range(steps), desc=desc, disable=not progress, mininterval=2.0):
            losses = self.train_step(data)
        return {k: v.cpu() for k, v in losses.items()}

    # ----- acting ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        """Greedy actions ``(E, N, A)`` for states ``(E, N, S)`` (agent e acts on ``state[e]``).

        BCQ: the best of ``action_samples`` (100) perturbed VAE actions by ``Q1``; BC: the decoder, latent
        clipped to 0.25 (BEAR's ``decode_bc_test``).
        """
        if self.cloning:
            return self.decode(state, clip=0.25)
        e, n, _ = state.shape
        k = self.action_samples
        rep = state.repeat_interleave(k, 1)
        action = self.perturb(self.actor, rep, self.decode(rep))
        q1 = self.q1(rep, action).reshape(e, n, k)
        best = q1.argmax(-1)
        return action.reshape(e, n, k, -1).gather(2, best[..., None, None].expand(e, n, 1, action.shape[-1]))[:, :, 0]

    # ----- export ---------------------------------------------------------------------------------------------
    def agent(self, member: int) -> BCQNetworks:
        """Agent ``member`` as an ``nn.Module`` :class:`BCQNetworks` (masks attached with ``apply_masks``)."""
        checks.integer("member", member, 0, self.members - 1)
        state_dim = self.actor.weights[0].shape[1] - self.decoder.weights[-1].shape[2]
        action_dim = self.decoder.weights[-1].shape[2]
        agent = BCQNetworks(state_dim, action_dim, self.max_action, self.phi, self.cloning, self.discount, self.lmbda,
                            self.width)
        parts = {"actor": (agent.actor, self.actor, member), "q1": (agent.critic.q1, self.critic, 2 * member),
                 "q2": (agent.critic.q2, self.critic, 2 * member + 1),
                 "vae_encoder": (agent.vae.encoder, self.encoder, member),
                 "vae_decoder": (agent.vae.decoder, self.decoder, member)}
        for module, stack, i in parts.values():
            module.load_state_dict(stack.state_dict_of(i))
            masks = stack.masks_of(i)
            if masks is not None:
                apply_masks(module, masks)
        agent.actor_target.load_state_dict(self.actor_target.state_dict_of(member))
        agent.critic_target.q1.load_state_dict(self.critic_target.state_dict_of(2 * member))
        agent.critic_target.q2.load_state_dict(self.critic_target.state_dict_of(2 * member + 1))
        return agent


class ReferenceBCQ:
    """One BCQ/BC agent trained in the structure of the original code (sfujim/BCQ, BEAR's ``algos.BCQ``).

    ``nn.Module`` networks (masks attached with ``torch.nn.utils.prune`` via :func:`apply_agent_masks`), the two
    critics evaluated one after the other, three Adam optimisers with ``zero_grad / backward / step``, and target
    networks updated parameter by parameter. It draws its random numbers in the same order and shapes as a
    one-member :class:`BCQEnsemble` (or replays one member's ``draws``), so both compute the same thing: the
    benchmark's baseline and the tests' ground truth.
    """

    def __init__(self, agent: BCQNetworks, masks: AgentMasks | None = None, *, lr: float = 1e-3, tau: float = 0.005,
                 batch_size: int = 100, target_samples: int = 10, train_unused: bool = False, seed: int = 0) -> None:
        self.agent = agent if masks is None else apply_agent_masks(agent, masks)
        self.tau, self.batch_size, self.target_samples = tau, batch_size, target_samples
        self.train_rl = not agent.cloning or train_unused
        self.generator = torch.Generator().manual_seed(seed)
        self.vae_opt = torch.optim.Adam(agent.vae.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=lr)
        self.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=lr)
        self._replay: list[Tensor] | None = None

    def _draw(self, tensor: Tensor) -> Tensor:
        return tensor if self._replay is None else self._replay.pop(0)[0]

    def _latent(self, n: int, clip: float | None) -> Tensor:
        z = torch.randn(1, n, self.agent.vae.latent_dim, generator=self.generator)[0]
        return self._draw(z if clip is None else z.clamp(-clip, clip))

    def train_step(self, data: Transitions, draws: Sequence[Tensor] | None = None) -> None:
        import torch.nn.functional as F

        ag, bs, n = self.agent, self.batch_size, self.target_samples
        self._replay = None if draws is None else list(draws)
        idx = self._draw(torch.randint(data.state.shape[0], (1, bs), generator=self.generator)[0])
        state, action, reward, next_state, not_done = (x[idx] for x in data)
        mean, std = ag.vae.encoder(state, action)
        recon = ag.vae.decoder(state, mean + std * self._latent(bs, None))
        kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
        vae_loss = F.mse_loss(recon, action) + 0.5 * kl
        self.vae_opt.zero_grad()
        vae_loss.backward()
        self.vae_opt.step()
        if self.train_rl:
            with torch.no_grad():
                rep = next_state.repeat_interleave(n, 0)
                a2 = ag.vae.decode(rep, z=self._latent(bs * n, 0.5))
                if not ag.cloning:
                    a2 = ag.actor_target(rep, a2)
                q1 = ag.critic_target.q1(rep, a2)
                q2 = ag.critic_target.q2(rep, a2)
                q = ag.lmbda * torch.min(q1, q2) + (1 - ag.lmbda) * torch.max(q1, q2)
                q = q.reshape(bs, n).max(1).values.reshape(-1, 1)
                target = reward + not_done * ag.discount * q
            current1 = ag.critic.q1(state, action)
            current2 = ag.critic.q2(state, action)
            critic_loss = F.mse_loss(current1, target) + F.mse_loss(current2, target)
            self.critic_opt.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            sampled = ag.vae.decode(state, z=self._latent(bs, 0.5))
            actor_loss = -ag.critic.q1(state, ag.actor(state, sampled)).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                # Per parameter, as the original code. Masked networks carry weight_orig (the same names in the
                # target copy); lerping weight_orig lerps the effective weight weight_orig * mask.
                for net, target_net in ((ag.critic, ag.critic_target), (ag.actor, ag.actor_target)):
                    for param, target_param in zip(net.parameters(), target_net.parameters()):
                        target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
        self._replay = None
