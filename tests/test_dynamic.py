"""Dynamic networks of Chapter 3: gates, real skipping, dense/sparse equality, penalties, load-or-train."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from helpers.cache import fingerprint
from helpers.metrics import accuracy, flops_reduction
from helpers.models import (DYNAMIC_KINDS, ACTResNet, GatedWidthResNet, GateTrace, SkipResNet, all_gates_on,
                            dense_execution, dynamic_resnet, policy_sampling)
from helpers.models.dynamic import gate_pass
from helpers.train.dynamic import gate_statistics, hybrid_rl_loss, savings, trained_dynamic_net


def _randomised(kind: str, seed: int = 0):
    """A small eval-mode net whose gates disagree across samples and BN statistics are not the identity."""
    torch.manual_seed(seed)
    model = dynamic_resnet(kind, 14, 10, 1, 4, 12)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not name.startswith("net."):
            nn.init.normal_(module.weight, std=3.0)
            nn.init.normal_(module.bias, mean=4.6 if kind == "act" else 0.0, std=1.0)  # act: h near 1 - eps
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(module.bias, std=0.3)
    return model.eval()


def _mixed_batch(model, n: int = 16, seed: int = 0) -> torch.Tensor:
    """A batch on which at least one unit is executed by some samples and skipped by others (else retry)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(20):
        x = torch.rand(n, 1, 12, 12, generator=g) * torch.rand(n, 1, 1, 1, generator=g) * 3
        with torch.no_grad(), dense_execution(model):
            _, trace = model.forward_with_gates(x.clamp(0, 1))
        if any(0 < e.float().mean() < 1 for e in trace.executed):
            return x.clamp(0, 1)
    raise AssertionError("could not find a batch with mixed gate decisions")


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_sparse_eval_equals_masked_dense(kind):
    model = _randomised(kind)
    x = _mixed_batch(model)
    with torch.no_grad():
        sparse_logits, sparse = model.forward_with_gates(x)
        with dense_execution(model):
            dense_logits, dense = model.forward_with_gates(x)
    torch.testing.assert_close(sparse_logits, dense_logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(sparse.executed, dense.executed):
        assert torch.equal(a, b)
    for a, b in zip(sparse.probs, dense.probs):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["depth", "act"])
def test_skipped_blocks_see_only_running_samples(kind):
    model = _randomised(kind)
    x = _mixed_batch(model)
    with torch.no_grad():
        _, trace = model.forward_with_gates(x)
    seen: dict[int, int] = {}
    hooks = [b.conv1.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, len(i[0])))
             for k, b in enumerate(model.blocks)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    # gated unit u corresponds to block u + 1 (depth: all but the first; act: all but the first of each stage)
    gated = list(range(1, len(model.blocks))) if kind == "depth" else \
        [k for k in range(len(model.blocks)) if k - model.stage_of.index(model.stage_of[k]) > 0]
    assert len(gated) == len(trace.executed)
    for k, e in zip(gated, trace.executed):
        assert seen.get(k, 0) == int(e.sum()), f"block {k} ran on {seen.get(k, 0)} samples, {int(e.sum())} execute it"
    assert any(seen.get(k, 0) < len(x) for k in gated)


def test_width_convolves_only_executed_channels():
    from torch.utils.flop_counter import FlopCounterMode

    model = _randomised("width")
    x = _mixed_batch(model, n=4)
    with torch.no_grad():
        _, trace = model.forward_with_gates(x)
        with FlopCounterMode(display=False) as counter:
            model(x)
    assert any(0 < e.float().mean() < 1 for e in trace.executed)
    # torch counts 2 FLOPs per multiply-add of the convolutions and matmuls that really ran
    assert counter.get_total_flops() // 2 == int(trace.dynamic_flops().sum())


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_dynamic_flops_are_what_really_runs(kind):
    from torch.utils.flop_counter import FlopCounterMode

    model = _randomised(kind)
    x = _mixed_batch(model, n=8)
    flops = model.dynamic_flops(x)
    assert (flops < model.static_flops()).any() and (flops >= model.base_flops()).all()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() // 2 == int(flops.sum())


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_probabilities_follow_the_threshold_and_penalty_reaches_gates(kind):
    model = _randomised(kind)
    x = _mixed_batch(model)
    _, trace = model.forward_with_gates(x)
    for p, e in zip(trace.probs, trace.executed):
        assert p.shape == e.shape and p.shape[0] == len(x)
        assert torch.equal(p > 0.5, e)
    model.train()
    _, trace = model.forward_with_gates(x)
    model.zero_grad()
    model.gating_penalty(trace).backward()
    gate_params = model.halting if kind == "act" else model.gates
    assert sum(float(q.grad.abs().sum()) for q in gate_params.parameters() if q.grad is not None) > 0
    # the penalty pushes towards less computation: one small step on it lowers it
    with torch.no_grad():
        for q in gate_params.parameters():
            if q.grad is not None:
                q -= 1e-3 * q.grad
    before = float(model.gating_penalty(trace))
    _, after_trace = model.forward_with_gates(x)
    assert float(model.gating_penalty(after_trace)) < before


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_gate_probabilities_are_differentiable_in_the_input(kind):
    model = _randomised(kind)
    x = _mixed_batch(model).requires_grad_(True)
    _, trace = model.forward_with_gates(x)  # eval, sparse path: what the attack sees
    grad, = torch.autograd.grad(sum(p.sum() for p in trace.probs), x)
    assert grad.abs().sum() > 0


def test_all_gates_on_runs_every_unit_and_straight_through_is_hard():
    model = _randomised("depth")
    x = _mixed_batch(model)
    with torch.no_grad(), all_gates_on(model):
        _, trace = model.forward_with_gates(x)
    assert all(bool(e.all()) for e in trace.executed)
    assert (trace.dynamic_flops() == model.static_flops()).all()
    model.train()
    _, trace = model.forward_with_gates(x)
    assert all(torch.equal(p > 0.5, e) for p, e in zip(trace.probs, trace.executed))


def test_act_halts_and_ponder_cost():
    model = _randomised("act")
    x = _mixed_batch(model)
    with torch.no_grad():
        _, trace = model.forward_with_gates(x)
    units = trace.executed_units().float() + 3  # + the always-run first unit of each stage
    # ponder = sum over stages of N + R with R in (0, 1]
    assert (trace.ponder > units).all() and (trace.ponder <= units + 3).all()
    # once a stage halts no later unit of that stage runs
    per_stage = [len(s) - 1 for s in model.net.layers]
    k = 0
    for count in per_stage:
        e = torch.cat(trace.executed[k:k + count], 1)
        assert (e[:, 1:] <= e[:, :-1]).all()
        k += count


def test_validation():
    with pytest.raises(ValueError, match="kind"):
        dynamic_resnet("height")
    with pytest.raises(ValueError, match="ACT needs"):
        ACTResNet(depth=8)
    with pytest.raises(ValueError, match="image_size"):
        SkipResNet(image_size=2)
    model = GatedWidthResNet(14, 10, 1, 4, 12)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.rand(2, 3, 12, 12))


def test_trained_dynamic_net_loads_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 1, 12, 12, generator=g), torch.randint(0, 3, (48,), generator=g)
    first = trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, batch_size=16, progress=False)
    assert first.checkpoint.exists() and not first.training and "flops_fraction" in first.history[0]
    again = trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, batch_size=16, progress=False)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    other = trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, batch_size=16, penalty=0.25,
                                progress=False)
    assert other.checkpoint != first.checkpoint


def test_recalibrated_batchnorm_holds_the_exact_statistics():
    from helpers.train import recalibrate_batchnorm

    model = _randomised("depth")
    x = torch.rand(30, 1, 12, 12)
    momentum = model.net.bn1.momentum
    recalibrate_batchnorm(model, x, batch_size=10)  # the average of 3 batch means, not an EMA of them
    with torch.no_grad():
        stem = model.net.conv1(x)
    torch.testing.assert_close(model.net.bn1.running_mean, stem.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert not model.training and model.net.bn1.momentum == momentum


# ---- SkipNet+HRL and the gate designs -----------------------------------------------------------------------------

def test_policy_sampling_draws_the_gates_from_bernoulli_p():
    model = _randomised("depth").train()
    with torch.no_grad():
        for gate in model.gates:  # unsaturated gates, p around 0.7
            gate.fc2.weight.mul_(0.01)
            gate.fc2.bias.fill_(0.8)
    x = torch.rand(4000, 1, 12, 12)
    torch.manual_seed(1)
    with torch.no_grad(), policy_sampling(model):
        _, trace = model.forward_with_gates(x)
    assert trace.log_probs is not None and len(trace.log_probs) == len(trace.probs)
    gaps = []  # how far the thresholded decision would be from the sampled one: the test must tell them apart
    for p, run, log_p in zip(trace.probs, trace.executed, trace.log_probs):
        # the executed share is the mean of p (Bernoulli draws), not the share of p > 0.5 (4 standard errors)
        assert abs(run.float().mean() - p.mean()) < 4 * 0.5 / len(x) ** 0.5
        gaps.append(float(abs(p.mean() - (p > 0.5).float().mean())))
        expected = torch.where(run, torch.log(p), torch.log1p(-p))
        torch.testing.assert_close(log_p, expected, atol=1e-5, rtol=1e-5)
    assert max(gaps) > 0.05
    model.eval()  # eval passes threshold p > 0.5 even inside policy_sampling
    with torch.no_grad(), policy_sampling(model):
        _, trace = model.forward_with_gates(x[:4])
    assert trace.log_probs is None and all(torch.equal(r, p > 0.5) for r, p in zip(trace.executed, trace.probs))


def test_hybrid_rl_loss_is_reinforce_with_skipping_rewards():
    model = _randomised("depth").train()
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
    alpha, rl_weight, gamma = 0.3, 0.05, 0.9
    torch.manual_seed(2)
    with policy_sampling(model):
        logits, trace = model.forward_with_gates(x)
    loss = hybrid_rl_loss(logits, y, trace, alpha=alpha, rl_weight=rl_weight, gamma=gamma)
    # by hand: R_l = sum_{k >= l} gamma^(k-l) r_k + gamma^(G-l) (-CE), r_k = alpha / G (1 - a_k)
    ce = nn.functional.cross_entropy(logits, y, reduction="none").detach()
    actions = torch.cat([e.float() for e in trace.executed], 1)  # (N, G)
    n_gates = actions.shape[1]
    returns = torch.zeros_like(actions)
    for l in range(n_gates):
        r = sum(gamma ** (k - l) * alpha / n_gates * (1 - actions[:, k]) for k in range(l, n_gates))
        returns[:, l] = r + gamma ** (n_gates - l) * -ce
    log_p = torch.cat(trace.log_probs, 1)
    policy = -(rl_weight * returns * log_p).sum()
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, y) + policy)
    # the gates learn only from REINFORCE: the sampled actions carry no gradient of the cross-entropy
    gate_params = list(model.gates.parameters())
    g_loss = torch.autograd.grad(loss, gate_params, retain_graph=True)
    g_policy = torch.autograd.grad(policy, gate_params)
    for a, b in zip(g_loss, g_policy):
        torch.testing.assert_close(a, b)


def test_hrl_stage_is_cached_and_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 1, 12, 12, generator=g), torch.randint(0, 3, (48,), generator=g)
    hrl = dict(epochs=1, lr=1e-3, optimizer="adam", weight_decay=0.0)
    net = trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, batch_size=16, hrl=hrl, progress=False)
    assert [h["stage"] for h in net.history] == ["sp", "hrl"] and "hrl" in net.checkpoint.name
    assert net.settings["hrl"]["alpha"] == 0.1  # the official default fills the keys not given
    again = trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, batch_size=16, hrl=hrl, progress=False)
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    sp_only = trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, batch_size=16, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), sp_only.state_dict().values()))
    with pytest.raises(ValueError, match="kind='depth' only"):
        trained_dynamic_net("width", (x, y), depth=8, width=4, epochs=1, hrl=hrl, progress=False)
    with pytest.raises(ValueError, match="keys among"):
        trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, hrl=dict(steps=3), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        trained_dynamic_net("depth", (x, y), depth=8, width=4, epochs=1, hrl=dict(epochs=0), progress=False)


def test_policy_sampling_and_hrl_loss_need_a_skipnet_and_a_sampled_trace():
    with pytest.raises(ValueError, match="SkipResNet"):
        policy_sampling(ACTResNet(14, 10, 1, 4, 12))
    model = _randomised("depth")
    logits, trace = model.forward_with_gates(torch.rand(2, 1, 12, 12))
    with pytest.raises(ValueError, match="policy_sampling"):
        hybrid_rl_loss(logits, torch.tensor([0, 1]), trace)


def test_gate_designs():
    bn = SkipResNet(14, 10, 1, 4, 12)
    plain = SkipResNet(14, 10, 1, 4, 12, gate="mlp")
    assert isinstance(bn.gates[0].norm, nn.BatchNorm1d) and isinstance(plain.gates[0].norm, nn.Identity)
    assert GatedWidthResNet(14, 10, 1, 4, 12).gates[0].norm.num_features == 4
    with pytest.raises(ValueError, match="gate must be one of"):
        SkipResNet(14, 10, 1, 4, 12, gate="lstm")


def test_data_fingerprint_matches_the_old_digest():
    """The cache key of a trained net keeps the digest of the old hand-written sha256 (cached nets still load)."""
    import hashlib

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(20, 1, 28, 28, generator=g), torch.randint(0, 10, (20,), generator=g)
    h = hashlib.sha256(y.cpu().numpy().tobytes())
    h.update(x[:, :, ::7, ::7].contiguous().cpu().numpy().tobytes())
    assert fingerprint(y, x[:, :, ::7, ::7], length=16) == h.hexdigest()[:16]


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_gate_pass_in_chunks_equals_one_pass(kind):
    model = _randomised(kind)
    x = _mixed_batch(model, n=10)
    with torch.no_grad():
        logits, trace = model.forward_with_gates(x)
    chunked_logits, chunked = gate_pass(model, x, batch_size=3)
    assert torch.allclose(chunked_logits, logits, atol=1e-5)
    assert torch.equal(chunked.dynamic_flops(), trace.dynamic_flops())
    assert torch.equal(chunked.executed_units(), trace.executed_units())
    assert chunked.static_flops == trace.static_flops == model.static_flops()
    assert chunked.flat_probs().shape == (10, trace.total_units())
    assert (chunked.ponder is None) == (kind != "act")
    with pytest.raises(ValueError, match="batch_size"):
        gate_pass(model, x, batch_size=0)
    with pytest.raises(ValueError, match="traces"):
        GateTrace.cat([])


def test_savings_of_a_dynamic_net():
    model = _randomised("width")
    x = _mixed_batch(model, n=8)
    y = torch.arange(8) % 10
    logits, trace = gate_pass(model, x)
    row = savings(model, logits, trace, y)
    assert row["accuracy"] == accuracy(logits, y)
    assert row["reduced FLOPs"] == flops_reduction(trace.dynamic_flops(), model.static_flops()) > 0
    assert 0 < row["reduced units (count)"] < 1 and row["gated units"] == trace.total_units()
    assert row["static MFLOPs"] == model.static_flops() / 1e6
    assert row["gate overhead"] == 1 - model.backbone_flops() / model.static_flops() > 0


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_gate_statistics_match_the_notebooks_former_loop(kind):
    model = _randomised(kind)
    _, trace = gate_pass(model, _mixed_batch(model, n=8))
    flops = trace.dynamic_flops()
    probs = torch.cat([p.detach().flatten() for p in trace.probs])
    assert gate_statistics(trace, flops) == {
        "gated units": trace.total_units(),
        "share executed": float(trace.executed_units().float().mean()) / trace.total_units(),
        "gates within 0.1 of 0.5": float(((probs - 0.5).abs() < 0.1).float().mean()),
        "distinct FLOPs values": int(flops.unique().numel())}
    row = gate_statistics(trace, flops)
    assert 0 < row["share executed"] < 1 and 1 <= row["distinct FLOPs values"] <= 8
