"""helpers.metrics: FLOPs accounting, reduction/recovery, PSNR and timing."""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn as nn

from helpers.attacks import gate_weights
from helpers.metrics import (flops_recovery, flops_reduction, latency_per_sample, median_seconds, module_flops,
                             paired_latency, psnr, recovery, seconds_per_sample, static_flops_reference, throughput)
from helpers.models import DYNAMIC_KINDS, GateTrace, all_gates_on, cifar_resnet, dynamic_resnet


def test_module_flops_hand_counted():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    costs = module_flops(net, torch.zeros(2, 3, 8, 8))
    assert costs == {"0": 8 * 4 * 4 * 3 * 3 * 3, "3": 128 * 5}


def test_cifar_resnet_flops_match_torch_flop_counter_and_the_formula():
    net = cifar_resnet(8, 10, 3, 16)
    ours = sum(module_flops(net, torch.zeros(1, 3, 32, 32)).values())
    # stem 32*32*16*27; stage1 2 convs 32*32*16*144; stage2 conv 16*16*32*144 + 16*16*32*288; stage3 likewise; fc
    expected = (1024 * 16 * 27 + 2 * 1024 * 16 * 144 + 256 * 32 * 144 + 256 * 32 * 288 + 64 * 64 * 288
                + 64 * 64 * 576 + 640)
    assert ours == expected == static_flops_reference(net, (3, 32, 32))


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_static_flops_match_torch_flop_counter(kind):
    model = dynamic_resnet(kind, 14, 10, 1, 4, 12).eval()
    assert model.backbone_flops() == static_flops_reference(model.net, (1, 12, 12))
    with all_gates_on(model):
        assert model.static_flops() == static_flops_reference(model, (1, 12, 12))
    assert model.static_flops() > model.backbone_flops()  # the gating networks cost something


@pytest.mark.parametrize("kind", DYNAMIC_KINDS)
def test_dynamic_equals_static_when_all_gates_on(kind):
    model = dynamic_resnet(kind, 14, 10, 1, 4, 12).eval()
    x = torch.rand(5, 1, 12, 12)
    with all_gates_on(model):
        assert (model.dynamic_flops(x) == model.static_flops()).all()
    # and unit accounting adds up: base + every unit in full = static
    with torch.no_grad():
        _, trace = model.forward_with_gates(x)
    assert trace.static_flops == model.static_flops()
    assert gate_weights(trace, "flops").sum().item() == pytest.approx(1.0)


def _trace(executed: list[list[int]], unit_flops: list[int], base: int) -> GateTrace:
    e = [torch.tensor(col, dtype=torch.bool).unsqueeze(1) for col in zip(*executed)]
    return GateTrace([x.float() for x in e], e, unit_flops, base)


def test_reduction_and_recovery_by_flops_and_by_count():
    # two units costing 10 and 30 on a base of 60 (static 100); two samples
    clean = _trace([[1, 0], [0, 0]], [10, 30], 60)  # costs 70 and 60: reduction 35%
    adv = _trace([[1, 1], [1, 0]], [10, 30], 60)  # costs 100 and 70
    assert clean.static_flops == 100
    assert flops_reduction(clean.dynamic_flops(), 100) == pytest.approx(0.35)
    # FLOP-weighted: saving 35 -> 15, recovery 20/35; counted: skipped units 3 -> 1, recovery 2/3
    assert flops_recovery(clean, adv) == pytest.approx(20 / 35)
    assert flops_recovery(clean.dynamic_flops(), adv.dynamic_flops(), 100) == pytest.approx(20 / 35)
    assert flops_recovery(clean, adv, weights="count") == pytest.approx(2 / 3)
    assert recovery(torch.tensor([5.0]), torch.tensor([5.0]), 10) == 0.0
    assert math.isnan(recovery(torch.tensor([10.0]), torch.tensor([10.0]), 10))
    with pytest.raises(ValueError, match="weights"):
        flops_recovery(clean, adv, weights="blocks")
    with pytest.raises(ValueError, match="static"):
        flops_recovery(clean.dynamic_flops(), adv.dynamic_flops())


def test_psnr_known_values():
    x = torch.rand(3, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    y[1, 0] += 0.1  # MSE 0.01 / 3 -> 20 + 10 log10(3) dB
    out = psnr(x, y)
    assert out[0].item() == pytest.approx(20.0, abs=1e-3)
    assert out[1].item() == pytest.approx(20 + 10 * math.log10(3), abs=1e-3)
    assert torch.isinf(out[2])
    assert psnr(x * 255, y * 255, data_range=255.0)[0].item() == pytest.approx(20.0, abs=1e-3)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, y[:2])


def test_timing_helpers_measure_and_refuse_bad_arguments():
    model = _tiny_linear()
    x = torch.rand(5, 4)
    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=3, warmup=2) >= 0 and len(calls) == 5
    assert latency_per_sample(model, x, repeats=2).shape == (5,)
    assert throughput(model, x, batch_size=2) > 0 and seconds_per_sample(model, x, repeats=2, batch_size=2) > 0
    entered = []

    @contextlib.contextmanager
    def variant(m):
        entered.append(m)
        yield m

    plain, other = paired_latency(model, x, variant, rounds=3)
    assert plain.shape == other.shape == (5,) and len(entered) == 3  # alternated: one variant pass per round
    for bad in (lambda: median_seconds(lambda: None, repeats=0), lambda: median_seconds(lambda: None, warmup=-1),
                lambda: latency_per_sample(model, x[:0]), lambda: throughput(model, x, batch_size=0),
                lambda: seconds_per_sample(model, x, batch_size=True), lambda: paired_latency(model, x, variant, 0)):
        with pytest.raises(ValueError):
            bad()


def _tiny_linear() -> torch.nn.Module:
    return torch.nn.Linear(4, 2).eval()
