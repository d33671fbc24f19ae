"""Properties of FLOATS-c channel pruning, Table 1's metrics and the slimmable layers (FLOATS slim).

Channel norms against a direct sum, exact channel counts with the smallest-norm channels removed,
channel reduction and compression ratios on hand-built masks, a physically smaller convolution that
gives the same output, and slimmable layers that use exactly the first channels and their own BN.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers.models.slimmable import (
    SlimmableConv2d,
    SlimmableLinear,
    SwitchableBatchNorm2d,
    active_channels,
    set_width,
)
from helpers.pruning import apply_masks, current_masks, density, effective_weights
from helpers.pruning.channels import channel_masks, channel_norms, channel_reduction, compact_conv2d, compression_ratio
from helpers.pruning.sparse_momentum import SparseMomentum


def make_conv(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)
    )


def make_slim(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        SlimmableConv2d(1, 4, 3, slim_in=False), SwitchableBatchNorm2d(4), nn.ReLU(),
        SlimmableConv2d(4, 6, 3, bias=False), SwitchableBatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), SlimmableLinear(6, 3),
    )


def test_channel_norms_are_squared_frobenius_norms_of_input_channel_slices():
    weight = torch.randn(5, 3, 2, 2)
    direct = torch.stack([(weight[:, c, :, :] ** 2).sum() for c in range(3)])
    assert torch.allclose(channel_norms(weight), direct)
    linear = torch.randn(4, 7)
    assert torch.allclose(channel_norms(linear), (linear**2).sum(0))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        channel_norms(torch.randn(5))


def test_channel_masks_keep_exactly_the_fraction_and_drop_the_smallest_norms():
    model = make_conv()
    masks = channel_masks(model, 0.5)
    weights = effective_weights(model)
    for name, mask in masks.items():
        c_in = mask.shape[1]
        kept = torch.stack([mask[:, c].all() for c in range(c_in)])
        assert torch.equal(kept, torch.stack([mask[:, c].any() for c in range(c_in)]))  # whole slices
        assert int(kept.sum()) == c_in // 2
        norms = torch.stack([(weights[name][:, c] ** 2).sum() for c in range(c_in)])
        assert norms[~kept].max() < norms[kept].min()  # the smallest-norm channels are the ones removed


def test_channel_masks_nest_in_existing_masks_and_can_spare_the_output_layer():
    model = make_conv()
    first = current_masks(model)
    first["0.weight"][0, 0, 0, 0] = 0
    apply_masks(model, first)
    masks = channel_masks(model, 0.5, include_output=False)
    for name, mask in masks.items():
        assert torch.all(mask <= first[name])  # masks only shrink
    assert masks["0.weight"][0, 0, 0, 0] == 0
    assert bool(masks["5.weight"].all())  # the output layer is left as it was
    tiny = channel_masks(model, 0.01)["2.weight"]
    assert int(tiny.transpose(0, 1).reshape(6, -1).any(1).sum()) == 1  # a layer keeps at least one channel
    for bad in (0, 1.5, "x"):
        with pytest.raises(ValueError, match="keep_fraction must be a number in"):
            channel_masks(model, bad)


def test_channel_reduction_factor_counts_present_input_channels():
    model = make_conv()
    masks = current_masks(model)
    masks["2.weight"][:, :3] = 0  # conv2 keeps 3 of 6 input channels
    masks["5.weight"][:, :64] = 0  # the Linear keeps 64 of 128 input features
    apply_masks(model, masks)
    assert channel_reduction(model) == pytest.approx((2 + 6) / (2 + 3))
    assert channel_reduction(model, include_linear=True) == pytest.approx((2 + 6 + 128) / (2 + 3 + 64))
    with pytest.raises(ValueError, match="no Conv2d layer"):
        channel_reduction(nn.Sequential(nn.Linear(3, 2)))


def test_compact_conv2d_is_smaller_and_gives_the_same_output():
    model = make_conv()
    apply_masks(model, channel_masks(model, 0.5))
    conv = model[2]
    small, kept = compact_conv2d(conv)
    assert small.weight.shape == (8, 3, 3, 3) and kept.tolist() == sorted(kept.tolist())
    x = torch.randn(2, 6, 5, 5)
    assert torch.allclose(small(x[:, kept]), conv(x), atol=1e-6)
    with pytest.raises(ValueError, match="groups=1"):
        compact_conv2d(nn.Conv2d(4, 4, 3, groups=2))


def test_compression_ratio_is_one_over_density():
    model = make_conv()
    assert compression_ratio(model) == 1.0
    apply_masks(model, channel_masks(model, 0.5))
    assert compression_ratio(model) == pytest.approx(1 / density(model))


def test_slimmable_forward_at_half_width_uses_the_first_channels_and_its_own_bn():
    model = make_slim().train()
    x = torch.randn(4, 1, 6, 6)
    conv1, bn1, conv2, bn2, head = model[0], model[1], model[3], model[4], model[8]
    full_stats = [bn.bn[0].running_mean.clone() for bn in (bn1, bn2)]
    half_stats = [bn.bn[1].running_mean.clone() for bn in (bn1, bn2)]
    set_width(model, 0.5)
    out = model(x)
    h = F.relu(F.batch_norm(F.conv2d(x, conv1.weight[:2], conv1.bias[:2]), None, None, training=True))
    h = F.relu(F.batch_norm(F.conv2d(h, conv2.weight[:3, :2]), None, None, training=True))
    expected = F.linear(h.mean((2, 3)), head.weight[:, :3], head.bias)
    assert out.shape == (4, 3) and torch.allclose(out, expected, atol=1e-5)
    for bn, full, half in zip((bn1, bn2), full_stats, half_stats):
        assert torch.equal(bn.bn[0].running_mean, full)  # the full width's BN is untouched
        assert not torch.equal(bn.bn[1].running_mean, half)  # the half width's BN saw the batch
        assert bn.bn[1].num_features == bn.bn[0].num_features // 2
    set_width(model, 1.0)
    assert model(x).shape == (4, 3) and conv2.active_shape() == (6, 4)


def test_slimmable_layers_take_masks_and_report_width_aware_metrics():
    model = make_slim()
    masks = current_masks(model)
    assert list(masks) == ["0.weight", "3.weight", "8.weight"]
    masks["3.weight"][:, 0] = 0  # one input channel of conv2 (inside the half-width slice)
    apply_masks(model, masks)
    set_width(model, 0.5)
    x = torch.randn(2, 1, 6, 6)
    model.eval()(x)
    assert torch.all(model[3].weight[:, 0] == 0)
    total = 4 * 9 + 6 * 4 * 9 + 3 * 6
    active = 2 * 9 + (3 * 2 - 3) * 9 + 3 * 3  # conv1 [:2], conv2 [:3, :2] minus channel 0, head [:, :3]
    assert compression_ratio(model) == pytest.approx(total / active)
    assert channel_reduction(model) == pytest.approx((1 + 4) / (1 + 1))
    sm = SparseMomentum(model.train(), 0.5, total_epochs=2)
    sm.apply_initial()
    assert sm.managed_density() == pytest.approx(sm.target / sm.total)


def test_slimmable_argument_validation():
    model = make_slim()
    with pytest.raises(ValueError, match=r"width must be one of \(1.0, 0.5\)"):
        set_width(model, 0.25)
    with pytest.raises(ValueError, match="no slimmable layer"):
        set_width(nn.Linear(2, 2), 0.5)
    for widths in ((), (0.0, 1.0), (1.5,), "1.0"):
        with pytest.raises(ValueError, match=r"widths must be a list of at least 1 item\(s\), each a number in \(0, 1\]"):
            SlimmableConv2d(4, 4, 3, widths=widths)
    with pytest.raises(ValueError, match="widths must be distinct"):
        SlimmableConv2d(4, 4, 3, widths=(1.0, 1.0))
    with pytest.raises(ValueError, match="leaves no channel"):
        SwitchableBatchNorm2d(1, widths=(1.0, 0.5))
    assert active_channels(6, 0.5) == 3 and active_channels(5, 0.5) == 2
