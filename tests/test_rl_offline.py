"""helpers.rl BCQ/BC: shapes and the perturbation bound, Algorithm 1's masks, mask persistence through training
(targets included), and the batched ensemble against the single masked model (torch.nn.utils.prune)."""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import pruning, rl
from helpers.rl.stacked import LAYERS, StackedMLP


@pytest.fixture(scope="module")
def data():
    d = rl.random_dataset("Pendulum-v1", 400, seed=0)
    d.ref_min_score, d.ref_max_score = -1200.0, -150.0
    return d


def _agent(data, cloning=False, seed=0):
    torch.manual_seed(seed)
    return rl.BCQNetworks(data.state_dim, data.action_dim, data.max_action, cloning=cloning, width=0.1)


def test_paper_sizes_and_perturbation_bound(data):
    full = rl.BCQNetworks(11, 3, 1.0)
    assert (full.actor.l1.in_features, full.actor.l1.out_features, full.actor.l2.out_features) == (14, 400, 300)
    assert full.vae.latent_dim == 6 and full.vae.encoder.e2.out_features == 750
    assert full.vae.decoder.d1.in_features == 11 + 6 and full.critic.q2.l3.out_features == 1
    agent = _agent(data)
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.mul_(50)  # saturate tanh: the perturbation must still be within phi * max_action
    s = torch.randn(64, data.state_dim)
    a = torch.empty(64, data.action_dim).uniform_(-1.5, 1.5)
    out = agent.actor(s, a)
    assert out.shape == a.shape
    bound = agent.actor.phi * data.max_action
    assert ((out - a).abs() <= bound + 1e-6).all() and (out - a).abs().max() > 0.9 * bound
    assert (out.abs() <= data.max_action).all()
    act = agent.act(s[:5])
    assert act.shape == (5, data.action_dim) and (act.abs() <= data.max_action).all()


def test_pruning_losses_are_deterministic_and_masks_follow_algorithm_1(data):
    agent = _agent(data)
    batch = data.sample(100, torch.Generator().manual_seed(0))
    for name, (module, loss_fn) in rl.pruning_losses(agent).items():
        assert torch.equal(loss_fn(module, batch), loss_fn(module, batch)), name
    masks = rl.prune_agent(agent, "grasp", 0.05, data, torch.Generator().manual_seed(0))
    for name, net in agent.networks().items():
        kept = sum(int(m.sum()) for m in masks[name].values())
        total = sum(m.numel() for m in masks[name].values())
        assert kept == round(0.05 * total), name  # one global top-k per network, exact count
    rnd = rl.prune_agent(agent, "random", 0.05, data, torch.Generator().manual_seed(1), reference=masks)
    for name in masks:
        for p in masks[name]:
            assert rnd[name][p].sum() == masks[name][p].sum() and not torch.equal(rnd[name][p], masks[name][p])
    rl.apply_agent_masks(agent, masks)
    for q in (agent.critic.q1, agent.critic.q2, agent.critic_target.q1, agent.critic_target.q2):
        assert all(torch.equal(m, masks["critic"][k]) for k, m in pruning.current_masks(q).items())


@pytest.mark.parametrize("cloning", [False, True])
def test_ensemble_equals_single_masked_model_and_masks_persist(data, cloning):
    agents = [_agent(data, cloning, seed) for seed in (0, 1)]
    gen = torch.Generator().manual_seed(2)
    masks = [rl.prune_agent(agents[0], "snip", 0.1, data, gen), rl.prune_agent(agents[1], "magnitude", 0.3, data, gen)]
    refs = [rl.ReferenceBCQ(copy.deepcopy(a), m, train_unused=True) for a, m in zip(agents, masks)]
    ens = rl.BCQEnsemble(agents, masks, train_unused=True)
    ens.record = True
    trans = data.transitions()
    for _ in range(4):
        ens.train_step(trans)
        for e, ref in enumerate(refs):
            ref.train_step(trans, [x[e:e + 1] for x in ens.last_draws])
    for e, ref in enumerate(refs):
        ours = pruning.effective_weights(ens.agent(e))
        theirs = pruning.effective_weights(ref.agent)
        assert list(ours) == list(theirs) and any("target" in k for k in ours)
        for k in ours:
            torch.testing.assert_close(ours[k], theirs[k], atol=2e-6, rtol=1e-5)
        # pruned weights are still exactly zero in every network, targets included, and training moved the rest
        for k, w in theirs.items():
            net = ("critic" if k.startswith("critic") else "actor" if k.startswith("actor")
                   else "vae_encoder" if "encoder" in k else "vae_decoder")
            mask = masks[e][net][".".join(k.split(".")[-2:])]
            assert (w[mask == 0] == 0).all(), k
    assert not torch.equal(ens.agent(0).actor.l1.weight, agents[0].actor.l1.weight * masks[0]["actor"]["l1.weight"])


def test_bc_acts_with_the_decoder_and_ensemble_act_shapes(data):
    agents = [_agent(data, True, 0), _agent(data, True, 1)]
    ens = rl.BCQEnsemble(agents)
    obs = torch.randn(2, 3, data.state_dim)
    assert ens.act(obs).shape == (2, 3, data.action_dim)
    bcq = rl.BCQEnsemble([_agent(data, False, 0)])
    out = bcq.act(obs[:1])
    assert out.shape == (1, 3, data.action_dim) and (out.abs() <= data.max_action).all()
    before = [p.clone() for p in ens.critic.parameters()]
    losses = ens.train_step(data.transitions())  # BC: the VAE only (critic and actor never act)
    assert "critic" not in losses and losses["vae"].shape == (2,)
    assert all(torch.equal(a, b) for a, b in zip(before, ens.critic.parameters()))


def test_sweep_configs_and_cached_sweep(data, tmp_path, monkeypatch):
    configs = rl.sweep_configs(["snip", "random"], [0.0, 0.5, 0.9], [0, 1])
    assert len(configs) == 2 * (1 + 2 * 2) and sum(c["method"] == "dense" for c in configs) == 2
    with pytest.raises(ValueError, match="methods"):
        rl.sweep_configs(["obd"], [0.5], [0])
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    rows = rl.run_sweep(data, "BC", ["snip", "random"], [0.0, 0.9], [0], steps=2, width=0.1, episodes=1,
                        progress=False)
    assert len(rows) == 3 and {r["method"] for r in rows} == {"dense", "snip", "random"}
    assert all(len(r["episode_scores"]) == 1 and r["score"] == r["episode_scores"][0] for r in rows)
    sparse = [r for r in rows if r["method"] != "dense"]
    for r in sparse:  # one global top-k per network: every network at 10% density
        assert all(abs(d - 0.1) < 1e-3 for d in r["density"].values())
    again = rl.run_sweep(data, "BC", ["snip", "random"], [0.0, 0.9], [0], steps=2, width=0.1, episodes=1,
                         progress=False)
    assert again == rows and list((tmp_path / "rl" / "sweeps").glob("BC-*.json"))


@pytest.mark.parametrize("network", ["critic", "vae_encoder"])
def test_stacked_masks_agree_with_torch_prune(data, network):
    """One mask mechanism in effect: a masked StackedMLP member computes the same outputs and (masked) gradients as
    the same network masked with torch.nn.utils.prune (helpers.pruning.apply_masks)."""
    agents = [_agent(data, seed=seed) for seed in (0, 1, 2)]
    modules = [a.networks()[network] for a in agents]
    gen = torch.Generator().manual_seed(3)
    masks = [rl.prune_agent(a, method, 0.2, data, gen)[network]
             for a, method in zip(agents, ("snip", "grasp", "magnitude"))]
    masks[2] = None  # a dense member beside the masked ones
    stack = StackedMLP(modules, LAYERS[network], masks)
    pruned = [copy.deepcopy(m) for m in modules]
    for module, m in zip(pruned, masks):
        if m is not None:
            pruning.apply_masks(module, m)
    g = torch.Generator().manual_seed(4)
    s, a = torch.randn(3, 16, data.state_dim, generator=g), torch.randn(3, 16, data.action_dim, generator=g)
    out = stack(torch.cat([s, a], -1))
    upstream = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * upstream).sum(), stack.parameters())
    stack.mask_grads(grads)
    for e, module in enumerate(pruned):
        theirs = module(s[e], a[e])
        if network == "critic":
            ours = out[e]
        else:  # the encoder's heads are one stacked layer: (mean, log_std) side by side
            latent = module.mean.out_features
            ours = (out[e, :, :latent], out[e, :, latent:].clamp(-4, 15).exp())
            theirs = torch.cat(theirs, -1)
            ours = torch.cat(ours, -1)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        if network == "critic":
            (theirs * upstream[e]).sum().backward()
        else:
            h = torch.relu(module.e2(torch.relu(module.e1(torch.cat([s[e], a[e]], -1)))))
            (torch.cat([module.mean(h), module.log_std(h)], -1) * upstream[e]).sum().backward()
        n = len(stack.weights)
        for layer, (group, w_grad, b_grad) in enumerate(zip(stack.layers, grads[:n], grads[n:])):
            orig = "weight_orig" if masks[e] is not None else "weight"
            want_w = torch.cat([getattr(getattr(module, k), orig).grad for k in group], 0)
            want_b = torch.cat([getattr(module, k).bias.grad for k in group], 0)
            torch.testing.assert_close(w_grad[e].t(), want_w, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(b_grad[e, 0], want_b, rtol=1e-5, atol=1e-6)
        if masks[e] is not None:  # the same masks come back in the book's format
            assert all(torch.equal(stack.masks_of(e)[k], masks[e][k]) for k in masks[e])


def test_offline_rl_scores_through_the_pruning_registry(data, monkeypatch):
    """helpers.rl has no scorer of its own: pruning_scores calls helpers.pruning.SCORERS (one registry)."""
    calls = []
    for name, scorer in list(pruning.SCORERS.items()):
        def spy(model, loss_fn, batch, _name=name, _scorer=scorer):
            calls.append((_name, batch is None))
            return _scorer(model, loss_fn, batch)
        monkeypatch.setitem(pruning.SCORERS, name, spy)
    agent = _agent(data)
    for method in ("snip", "grasp", "magnitude"):
        rl.pruning_scores(agent, method, data, torch.Generator().manual_seed(0))
    assert calls == [("snip", False)] * 4 + [("grasp", False)] * 4 + [("magnitude", True)] * 4
    assert rl.PRUNING_METHODS == pruning.SINGLE_SHOT_METHODS == (*pruning.SCORERS, "random")
    with pytest.raises(ValueError, match="method must be one of 'snip', 'grasp', 'magnitude'; got 'obd'"):
        rl.pruning_scores(agent, "obd", data, torch.Generator())
