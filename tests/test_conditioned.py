"""Chapter 4: FLOAT's noisy weights, OAT's FiLM, dual BN, the ResNets, parameter counts and the ASIC delay model."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.attacks import Attack, fgsm
from helpers.models.conditioned import parameter_breakdown
from helpers.models.conditioned import (
    FLOAT_TRAIN_LAMBDAS, OAT_LAMBDAS, Conditioning, DualBatchNorm2d, FiLM, FloatConv2d, FloatLinear, LambdaEncoding,
    asic_conv_delays, conditioned_on, current_lambda, noise_rescale, parameter_breakdown, seeded_noise, set_lambda,
    set_noise_generator,
)
from helpers.cache import fingerprint
from helpers.train.once_for_all import (once_for_all_step_loss, sample_lambdas, slimmable_step_loss, train_once_for_all,
                                        training_work)
from helpers.models.resnet import cifar_resnet, resnet34
from helpers.pruning import apply_masks, effective_weights, prunable_parameters, random_masks
from helpers.train import evaluate, fit
from helpers.train.tradeoff import (interleaved_latency, parameter_table, per_seed_scores, seed_means, training_time_table,
                                    tradeoff_rows)


def tiny(conditioning: str | Conditioning = "none", in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return cifar_resnet(8, width=4, in_channels=in_channels, conditioning=conditioning)


def copy_plain_into(plain: nn.Module, conditioned: nn.Module) -> None:
    """Copy a plain ResNet's weights into its conditioned twin; plain BN -> BN_C."""
    target = conditioned.state_dict()
    for key, value in plain.state_dict().items():
        module, leaf = key.rsplit(".", 1)
        target[key if key in target else f"{module}.clean.{leaf}"].copy_(value)


def replay_noise(layer: FloatConv2d | FloatLinear, seed: int) -> torch.Tensor:
    """theta_hat - theta for the layer's current setting, drawn from a generator seeded with ``seed``."""
    layer.generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return layer.conditioned_weight() - layer.weight


def test_float_at_lambda_zero_equals_the_plain_network():
    plain, floating = tiny("none"), tiny("float")
    with torch.no_grad():  # non-trivial BN parameters and statistics
        for bn in (m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    copy_plain_into(plain, floating)
    x = torch.rand(4, 3, 32, 32)
    assert current_lambda(floating) == (0.0, 0.0)
    for train in (False, True):
        plain.train(train), floating.train(train)
        assert torch.equal(floating(x), plain(x))
    set_lambda(floating, 1.0)
    assert not torch.allclose(floating.eval()(x), plain.eval()(x))


def test_noise_std_matches_the_weight_std_and_is_fresh_and_reproducible():
    torch.manual_seed(0)
    layer = FloatLinear(1000, 500, alpha_init=1.0)
    set_lambda(layer, 1.0)
    with torch.no_grad():
        noise = layer.conditioned_weight() - layer.weight
        again = layer.conditioned_weight() - layer.weight
    sigma = layer.weight.std().item()
    assert noise.std().item() == pytest.approx(sigma, rel=0.01)  # 500k draws: sd of the estimate ~0.1%
    assert abs(noise.mean().item()) < 0.01 * sigma
    assert abs(torch.corrcoef(torch.stack([noise.flatten(), layer.weight.detach().flatten()]))[0, 1]) < 0.01
    assert not torch.equal(noise, again)  # drawn afresh each forward
    torch.manual_seed(5)
    first = layer(torch.ones(2, 1000))
    torch.manual_seed(5)
    assert torch.equal(layer(torch.ones(2, 1000)), first)  # global seed reproduces
    set_noise_generator(layer, torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    out = layer(torch.ones(2, 1000))
    assert torch.equal(torch.get_rng_state(), state)  # the generator, not the global RNG, is used
    set_noise_generator(layer, torch.Generator().manual_seed(1))
    assert torch.equal(layer(torch.ones(2, 1000)), out)


def test_alpha_gets_gradients_and_none_flows_through_eta():
    torch.manual_seed(0)
    layer = FloatConv2d(3, 4, 3, padding=1)
    set_lambda(layer, 1.0)
    x = torch.rand(2, 3, 8, 8)
    layer.generator = torch.Generator().manual_seed(3)
    layer(x).square().sum().backward()
    w_hat = (layer.weight + replay_noise(layer, 3)).detach().requires_grad_(True)
    F.conv2d(x, w_hat, layer.bias.detach(), padding=1).square().sum().backward()
    assert torch.allclose(layer.weight.grad, w_hat.grad, atol=1e-5)  # d theta_hat / d theta = I: sigma detached
    expected_alpha_grad = (w_hat.grad * replay_noise(layer, 3) / layer.alpha.detach()).sum()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs() > 0
    assert layer.alpha.grad.item() == pytest.approx(expected_alpha_grad.item(), rel=1e-4)


@pytest.mark.parametrize("lam, lam_th, adversarial", [
    (0.0, 0.0, False), (0.2, 0.0, True), (1.0, 0.0, True),
    (0.2, 0.5, False), (0.5, 0.5, False), (0.7, 0.5, True), (1.0, 0.5, True),
])
def test_bn_switching_follows_lam_th(lam, lam_th, adversarial):
    model = tiny("float").train()
    set_lambda(model, lam, lam_th)
    duals = [m for m in model.modules() if isinstance(m, DualBatchNorm2d)]
    assert all(m.adversarial == adversarial for m in duals)
    before = [(m.clean.running_mean.clone(), m.adv.running_mean.clone()) for m in duals]
    model(torch.rand(4, 3, 16, 16))
    for m, (clean, adv) in zip(duals, before):
        assert torch.equal(m.clean.running_mean, clean) == adversarial
        assert torch.equal(m.adv.running_mean, adv) != adversarial


def test_eq6_rescaling_hand_computed_case():
    # Eq. 6 with lam_th = 0.5: alpha_new = alpha * 2 * lam_n below, alpha * 2 * (lam_n - 0.5) above
    assert noise_rescale(0.2, 0.5) == pytest.approx(0.4)
    assert noise_rescale(0.7, 0.5) == pytest.approx(0.4)
    assert noise_rescale(0.5, 0.5) == 1.0 and noise_rescale(1.0, 0.5) == 1.0
    assert noise_rescale(0.7, 0.0) == pytest.approx(0.7) and noise_rescale(0.0, 0.0) == 0.0
    torch.manual_seed(0)
    layer = FloatConv2d(4, 8, 3)  # alpha = 0.25
    eta = torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(9)) * layer.weight.std().item()
    for lam_n, lam_th, alpha_new in [(0.2, 0.5, 0.25 * 2 * 0.2), (0.7, 0.5, 0.25 * 2 * 0.2), (0.7, 0.0, 0.25 * 0.7),
                                     (1.0, 0.5, 0.25)]:
        set_lambda(layer, lam_n, lam_th)
        assert torch.allclose(replay_noise(layer, 9), alpha_new * eta, atol=1e-6)


def test_dual_bn_keeps_separate_running_stats():
    bn = DualBatchNorm2d(3).train()
    bn(torch.randn(64, 3, 4, 4) + 3)
    assert bn.clean.running_mean.mean().item() > 0.2 and torch.equal(bn.adv.running_mean, torch.zeros(3))
    bn.adversarial = True
    bn(torch.randn(64, 3, 4, 4) - 3)
    assert bn.adv.running_mean.mean().item() < -0.2 and bn.clean.running_mean.mean().item() > 0.2
    keys = set(bn.state_dict())
    assert {"clean.running_mean", "adv.running_mean", "clean.weight", "adv.weight"} <= keys


def test_film_identity_init_encoding_and_oat_lambda_choices():
    film = FiLM(8, in_features=4, identity_init=True)
    x = torch.randn(2, 8, 3, 3)
    with pytest.raises(RuntimeError, match="set_lambda"):
        film(x)
    film.code = torch.randn(1, 4)
    assert torch.equal(film(x), x)
    official = FiLM(8, in_features=4)
    official.code = torch.randn(1, 4)
    assert not torch.allclose(official(x), x)
    encoding = LambdaEncoding(OAT_LAMBDAS, "rand", 128)
    assert torch.allclose(encoding.matrix @ encoding.matrix.T, torch.eye(128), atol=1e-5)
    model = tiny("oat")
    set_lambda(model, 0.3)
    codes = [m.code for m in model.modules() if isinstance(m, FiLM)]
    assert all(torch.equal(c, model.lambda_encoding.matrix[3:4]) for c in codes)
    with pytest.raises(ValueError, match="OAT training lambdas"):
        set_lambda(model, 0.7)
    free = tiny(Conditioning("oat", encoding="none"))
    set_lambda(free, 0.7)
    assert all(m.code.item() == pytest.approx(0.7) for m in free.modules() if isinstance(m, FiLM))


def test_pruning_composes_with_float():
    model = tiny("float")
    float_layers = [m for m in model.modules() if isinstance(m, (FloatConv2d, FloatLinear))]
    assert {id(m) for m, _ in prunable_parameters(model).values()} == {id(m) for m in float_layers}
    masks = random_masks(model, 0.3, torch.Generator().manual_seed(0))
    apply_masks(model, masks)
    set_lambda(model, 1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model.train()(torch.rand(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
    assert all(m.alpha.grad is not None and m.alpha.grad.abs() > 0 for m in float_layers)
    for name, weight in effective_weights(model).items():
        assert torch.all(weight[masks[name] == 0] == 0)
    for name, (module, _) in prunable_parameters(model).items():
        with torch.no_grad():
            theta_hat = module.conditioned_weight()
        assert torch.all(theta_hat[masks[name] == 0] == 0)  # the noise is masked too
        assert torch.all(theta_hat[masks[name] == 1] != module.weight[masks[name] == 1])


def test_set_lambda_validation():
    model = tiny("float")
    for bad in (1.5, -0.1, True, "1"):
        with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\]"):
            set_lambda(model, bad)
    with pytest.raises(ValueError, match=r"lam_th must be a number in \[0, 1\)"):
        set_lambda(model, 0.5, lam_th=1.0)
    with pytest.raises(ValueError, match="no lambda-conditioned layers"):
        set_lambda(tiny("none"), 0.5)
    with pytest.raises(ValueError, match="conditioning must be one of"):
        cifar_resnet(8, conditioning="film")
    with pytest.raises(ValueError, match="depth"):
        cifar_resnet(21)


def test_resnet_parameter_counts_match_he_et_al_and_oat():
    counts = {d: parameter_breakdown(cifar_resnet(d))["total"] for d in (20, 32, 56)}
    assert counts == {20: 269_722, 32: 464_154, 56: 853_018}
    assert [round(counts[d] / 1e6, 2) for d in (20, 32, 56)] == [0.27, 0.46, 0.85]  # He et al. 2016, Table 6
    plain = parameter_breakdown(resnet34())
    assert plain["total"] == 21_282_122 and plain["overhead"] == 0  # FLOAT Sec. 4.3: ~21.28M
    floating = parameter_breakdown(resnet34(conditioning="float"))
    assert floating["alpha"] == 37 and floating["extra_batch_norm"] == plain["batch_norm"]  # 36 convs + fc
    assert floating["total"] == plain["total"] + floating["overhead"]
    oat = parameter_breakdown(resnet34(conditioning=Conditioning("oat", encoding="none")))
    assert oat["total"] - oat["extra_batch_norm"] == 31_403_978  # OAT's ResNet34OAT docstring: 31.4040M


def test_forward_shapes():
    for conditioning in ("none", "float", "oat"):
        model = tiny(conditioning).eval()
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
        assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 16)
        assert tiny(conditioning, in_channels=1).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        torch.manual_seed(0)
        assert resnet34(width=2, conditioning=conditioning).eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_sample_lambdas_follow_oat_and_algorithm_1():
    assert sample_lambdas(8, FLOAT_TRAIN_LAMBDAS).tolist() == [0.0] * 4 + [1.0] * 4
    lams = sample_lambdas(128, OAT_LAMBDAS, torch.Generator().manual_seed(0))
    assert (lams == 0).sum() == math.ceil(128 / 6) and torch.all(lams[:22] == 0)
    assert set(lams[22:].tolist()) <= {v for v in torch.tensor(OAT_LAMBDAS).tolist() if v}
    assert torch.equal(lams, sample_lambdas(128, OAT_LAMBDAS, torch.Generator().manual_seed(0)))


def test_step_loss_is_algorithm_1_and_fit_and_attacks_work_unchanged():
    model = tiny("float").train()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    attack = Attack("fgsm", eps=8 / 255)
    twin = copy.deepcopy(model)  # the step updates BN running statistics, which the attack (eval mode) reads
    set_noise_generator(model, torch.Generator().manual_seed(0))
    loss, out = once_for_all_step_loss(attack)(model, x, y)
    assert out.shape == (8, 10) and current_lambda(model) == (0.0, 0.0)
    model = twin
    set_noise_generator(model, torch.Generator().manual_seed(0))
    clean = F.cross_entropy(model(x[:4]), y[:4])
    with conditioned_on(model, 1.0):
        adv = F.cross_entropy(model(fgsm(model, x[4:], y[4:], 8 / 255)), y[4:])
    assert loss.item() == pytest.approx(0.5 * clean.item() + 0.5 * adv.item(), rel=1e-5)
    pgd = Attack("pgd", eps=8 / 255, alpha=2 / 255, steps=2)
    for conditioning, lambdas in (("float", FLOAT_TRAIN_LAMBDAS), ("oat", OAT_LAMBDAS)):
        model = tiny(conditioning)
        history = fit(model, (x, y), epochs=1, lr=0.01, batch_size=8, progress=False,
                      step_loss=once_for_all_step_loss(pgd, lambdas, torch.Generator().manual_seed(0)))
        assert math.isfinite(history[0]["loss"]) and current_lambda(model) == (0.0, 0.0)
        with conditioned_on(model, 1.0):
            result = evaluate(model, (x, y), attack=pgd)
        assert 0 <= result["robust"] <= 1


def test_asic_delay_model_hand_computed_and_paper_ratio():
    conv = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False))
    (row,) = asic_conv_delays(conv, (16, 32, 32))
    # n = 2304 weights; reads ceil(2304 / 8) * 9 ns; multiplies ceil(2304 / 175) = 14 rounds per output pixel
    assert row["conv_ns"] == 288 * 9 + 14 * 1024 * 4  # Eq. 7
    assert row["float_ns"] == 288 * 9 + 14 * 1025 * 4  # Eq. 8
    assert row["oat_ns"] == math.ceil((2304 + 32 + 1024) / 8) * 9 + 14 * 1024 * 4 + math.ceil(1056 / 175) * 4  # Eq. 9
    model = resnet34(conditioning=Conditioning("oat", encoding="none")).train()
    state = torch.get_rng_state()
    rows = asic_conv_delays(model, (3, 32, 32))
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert len(rows) == 36 and sum(r["film_weights"] == 0 for r in rows) == 3  # shortcut convs: no FiLM
    assert max(r["oat_ns"] / r["float_ns"] for r in rows) == pytest.approx(1.66, abs=0.005)  # Sec. 4.3: up to 1.66x


def test_slimmable_float_resnet_half_width_is_the_shared_sub_network():
    from helpers.models.slimmable import set_width

    model = tiny(Conditioning("float", widths=(1.0, 0.5)), in_channels=1).eval()
    x = torch.rand(3, 1, 12, 12)
    set_lambda(model, 0.0)
    set_width(model, 0.5)
    half = model(x)
    # the same network built at half width, with the first half of every shared weight and the width-0.5 BNs
    narrow = cifar_resnet(8, width=2, in_channels=1, conditioning="float").eval()
    state = model.state_dict()
    for key, value in narrow.state_dict().items():
        source = key.replace(".clean.", ".bn.1.clean.").replace(".adv.", ".bn.1.adv.")
        shared = state[source] if source in state else state[key]
        value.copy_(shared[tuple(slice(0, n) for n in value.shape)] if value.dim() else shared)
    assert torch.allclose(narrow(x), half, atol=1e-6)
    set_width(model, 1.0)
    assert model(x).shape == half.shape and not torch.allclose(model(x), half)
    set_lambda(model, 1.0)  # noise on the shared weight, sliced: the half network's theta_hat is a slice
    conv = model.layers[1][0].conv1
    set_width(model, 0.5)
    assert conv.conditioned_weight()[: conv.active_shape()[0]].shape[0] == 4


def test_train_once_for_all_recipes_cache_and_validation(tmp_path, monkeypatch):
    from helpers.pruning import compression_ratio

    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g))
    attack = Attack("pgd", eps=0.03, alpha=0.01, steps=1)
    common = dict(attack=attack, arch="resnet8", width=4, epochs=2, lr=0.05, batch_size=8, progress=False)
    model, history = train_once_for_all("float", data, **common)
    assert len(history) == 2 and current_lambda(model) == (0.0, 0.0)
    again, history_again = train_once_for_all("float", data, **common)  # loads the finished checkpoint
    assert history_again == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert len(list((tmp_path / "checkpoints").glob("ch4-float-*.pt"))) == 1
    sparse, _ = train_once_for_all("floats-i", data, density=0.25, **common)
    assert compression_ratio(sparse) == pytest.approx(4.0, rel=0.01)
    slim, _ = train_once_for_all("floats-slim", data, density=0.5, **common)
    assert any(isinstance(m, DualBatchNorm2d) for m in slim.modules())
    oat, _ = train_once_for_all("oat", data, lambda_choices=(0.0, 0.5, 1.0), **common)
    assert any(isinstance(m, FiLM) for m in oat.modules())
    plain, _ = train_once_for_all("pgd-at", data, lam=0.5, **common)
    assert not any(isinstance(m, (FloatConv2d, DualBatchNorm2d)) for m in plain.modules())
    with pytest.raises(ValueError, match="method must be one of"):
        train_once_for_all("pni", data, **common)
    with pytest.raises(ValueError, match="needs a global density"):
        train_once_for_all("floats-c", data, **common)
    with pytest.raises(ValueError, match="lam must be a number"):
        train_once_for_all("pgd-at", data, **common)
    with pytest.raises(ValueError, match="lam is the PGD-AT loss weight"):
        train_once_for_all("float", data, lam=0.5, **common)
    # the slimmable step loss sums the widths' losses and leaves the model at full width
    calls = []

    def inner(model, x, y):
        calls.append(model.layers[0][0].conv1.width)
        return torch.tensor(float(len(calls))), torch.zeros(len(y), 3)

    loss, _ = slimmable_step_loss(inner, (0.5, 1.0))(slim, *data)
    assert calls == [1.0, 0.5] and loss.item() == 3.0 and slim.layers[0][0].conv1.width == 1.0


def test_identity_film_starts_as_the_dual_bn_network():
    torch.manual_seed(0)
    oat = cifar_resnet(8, width=4, conditioning=Conditioning("oat", film_identity_init=True)).eval()
    flt = cifar_resnet(8, width=4, conditioning="float").eval()
    target = flt.state_dict()
    for key, value in oat.state_dict().items():
        if key in target and target[key].shape == value.shape:
            target[key].copy_(value)
    x = torch.rand(2, 3, 16, 16)
    for lam in OAT_LAMBDAS:
        set_lambda(oat, lam)
        with conditioned_on(flt, 1.0 if lam > 0 else 0.0):
            for m in flt.modules():
                if isinstance(m, FloatConv2d | FloatLinear):
                    m.noise_scale = 0.0  # compare with the noise-free dual-BN network
            assert torch.allclose(oat(x), flt(x), atol=1e-5)


def test_label_fingerprint_matches_the_old_digest():
    """train_once_for_all's cache key keeps the old sha256-of-labels digest (cached models still load)."""
    import hashlib

    y = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(1))
    assert fingerprint(y, length=12) == hashlib.sha256(y.cpu().numpy().tobytes()).hexdigest()[:12]


def test_seeded_noise_draws_from_a_seeded_generator_and_restores_the_global_rng():
    model = cifar_resnet(8, 3, 1, 4, conditioning="float")
    set_lambda(model, 1.0)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        with seeded_noise(model, 3):
            a = model.eval()(x)
        with seeded_noise(model, 3):
            b = model(x)
    torch.testing.assert_close(a, b)
    assert all(m.generator is None for m in model.modules() if hasattr(m, "generator"))
    with pytest.raises(ValueError, match="seed"):
        with seeded_noise(model, -1):
            pass


# -- helpers.train.tradeoff: CA and RA of a conditioned network, the trade-off sweep -------------------------------

def _ca_ra_setup():
    from helpers.attacks import Attack

    g = torch.Generator().manual_seed(4)
    data = (torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g))
    torch.manual_seed(0)
    floating = cifar_resnet(8, 10, 1, 4, conditioning="float")
    return data, floating, Attack("pgd", eps=8 / 255, alpha=2 / 255, steps=2)


def test_clean_and_robust_accuracy_seeds_the_noise_and_restores_the_model():
    """Eqs. 4/6 of FLOAT at (lam, lam_th): the same numbers as seeded_noise + conditioned_on + evaluate, every call."""
    from helpers.train.tradeoff import clean_and_robust_accuracy

    data, floating, attack = _ca_ra_setup()
    with seeded_noise(floating, 5), conditioned_on(floating, 0.7, 0.5):
        by_hand = evaluate(floating, data, attack=attack, seed=5)
    assert clean_and_robust_accuracy(floating, data, attack, 0.7, 0.5, seed=5) == by_hand
    assert clean_and_robust_accuracy(floating, data, attack, 0.7, 0.5, seed=5) == by_hand  # noise re-seeded
    assert current_lambda(floating) == (0.0, 0.0)
    assert all(m.generator is None for m in floating.modules() if isinstance(m, FloatConv2d | FloatLinear))
    plain = tiny("none", in_channels=1)
    assert clean_and_robust_accuracy(plain, data, attack, None, seed=2) == evaluate(plain, data, attack=attack, seed=2)
    for bad, match in [(dict(lam=1.5), "lam must"), (dict(lam=0.5, lam_th=1.0), "lam_th must"),
                       (dict(lam=0.5, seed=-1), "seed must")]:
        with pytest.raises(ValueError, match=match):
            clean_and_robust_accuracy(floating, data, attack, **bad)
    with pytest.raises(ValueError, match="attack must be callable"):
        clean_and_robust_accuracy(floating, data, "pgd", 0.5)


def test_tradeoff_rows_cover_every_setting_and_share_the_boundary_lambdas():
    from helpers.models import noise_rescale
    from helpers.train.tradeoff import clean_and_robust_accuracy, tradeoff_rows

    data, floating, attack = _ca_ra_setup()
    torch.manual_seed(0)
    oat = cifar_resnet(8, 10, 1, 4, conditioning=Conditioning("oat", lambda_choices=(0.0, 0.2, 0.7, 1.0)))
    plain = tiny("none", in_channels=1)
    lambdas = (0.0, 0.2, 0.7, 1.0)
    rows = tradeoff_rows(floating, data, {"PGD-2": attack}, lambdas=lambdas, oat_model=oat, pgdat_models={1.0: plain},
                         seed=3)
    assert [(r["method"], r["lam"]) for r in rows] == (
        [("FLOAT λth=0", lam) for lam in lambdas] + [("FLOAT λth=0.5", lam) for lam in lambdas]
        + [("OAT", lam) for lam in lambdas] + [("PGD-AT", 1.0)])
    by = {(r["method"], r["lam"]): r for r in rows}
    for lam in lambdas:  # lambda_n = 0 and 1: the same network at both thresholds; the others evaluated at each
        r = by[("FLOAT λth=0.5", lam)]
        direct = clean_and_robust_accuracy(floating, data, attack, lam, 0.5, seed=3)
        assert (r["CA"], r["RA"]) == (direct["clean"], direct["robust"])
        assert r["s"] == noise_rescale(lam, 0.5)
    oat_02 = clean_and_robust_accuracy(oat, data, attack, 0.2, seed=3)
    assert (by[("OAT", 0.2)]["CA"], by[("OAT", 0.2)]["RA"]) == (oat_02["clean"], oat_02["robust"])
    assert math.isnan(by[("PGD-AT", 1.0)]["s"]) and math.isnan(by[("OAT", 0.2)]["s"])
    with pytest.raises(ValueError, match="attacks must"):
        tradeoff_rows(floating, data, {}, lambdas=lambdas)
    with pytest.raises(ValueError, match=r"lambdas\[1\] must"):
        tradeoff_rows(floating, data, {"PGD-2": attack}, lambdas=(0.0, 2.0))


def test_training_settings_and_rules_of_the_chapter_rows():
    """One scale row gives train_once_for_all's keywords (the same checkpoint key in every Chapter 4 notebook)."""
    from helpers.attacks import Attack
    from helpers.train.once_for_all import TRAINING_RULES, training_settings

    pgd7 = Attack("pgd", eps=8 / 255, alpha=2 / 255, steps=7)
    row = dict(EPOCHS=1, TRAIN_N=64, TEST_N=32, ARCH="resnet20", WIDTH=4, BATCH_SIZE=32, LR=0.05, WEIGHT_DECAY=5e-4,
               LR_SCHEDULE="cosine", AUGMENT=None)
    assert training_settings(row, attack=pgd7, seed=0, device="cpu") == dict(
        attack=pgd7, arch="resnet20", width=4, epochs=1, lr=0.05, batch_size=32, weight_decay=5e-4,
        lr_schedule="cosine", augment=None, seed=0, device="cpu")
    with pytest.raises(ValueError, match="lacks the training settings ARCH"):
        training_settings({k: v for k, v in row.items() if k != "ARCH"}, attack=pgd7)
    assert TRAINING_RULES["AUGMENT"]("AUGMENT", None) is None
    for name, bad in [("ARCH", "resnet21"), ("WIDTH", 0), ("LR_SCHEDULE", "step"), ("AUGMENT", "mixup")]:
        with pytest.raises(ValueError, match=f"^{name} must"):
            TRAINING_RULES[name](name, bad)


def test_parameter_table_counts_roles_totals_and_four_copies():
    float_model, oat_model, plain = tiny("float"), tiny(Conditioning("oat", lambda_choices=(0.0, 1.0))), tiny()
    table = parameter_table(float_model, oat_model, plain, copies=4)
    assert list(table.columns) == ["FLOAT", "OAT", "PGD-AT (one λ)", "PGD-AT:4T"]
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert list(table.loc["total"]) == [total(float_model), total(oat_model), total(plain), 4 * total(plain)]
    assert table.loc["weights", "PGD-AT:4T"] == 4 * parameter_breakdown(plain)["weights"]
    assert table.loc["weights + FiLM (Fig. 7b)", "OAT"] == table.loc["weights", "OAT"] + table.loc["film", "OAT"]


def test_training_time_table_means_epochs_and_sums_the_pgdat_models():
    # the sum row is named by the number of PGD-AT models trained (book scale trains two: PGD-AT:2T, not 4T)
    histories = {"FLOAT": [{"seconds": 1.0}, {"seconds": 3.0}], "OAT": [{"seconds": 3.0}],
                 "PGD-AT λ=0": [{"seconds": 1.0}], "PGD-AT λ=1": [{"seconds": 2.0}]}
    table = training_time_table(histories)
    assert table["seconds per epoch"].to_dict() == {"FLOAT": 2.0, "OAT": 3.0, "PGD-AT λ=0": 1.0, "PGD-AT λ=1": 2.0,
                                                    "PGD-AT:2T (sum of the two)": 3.0}
    assert table.loc["OAT", "relative to FLOAT"] == 1.5
    four = dict(histories, **{"PGD-AT λ=0.2": [{"seconds": 1.0}], "PGD-AT λ=0.7": [{"seconds": 1.0}]})
    assert training_time_table(four).loc["PGD-AT:4T (sum of the four)", "seconds per epoch"] == 5.0


def test_training_work_counts_the_passes_each_method_makes_by_construction():
    # FLOAT (S = {0, 1}): half the batch clean (1 pass), half attacked (7 steps + 1 pass): 4.5 passes per image;
    # OAT (S = {0, .2, .7, 1}): a quarter clean, half both clean and attacked, a quarter attacked: 6.75
    assert training_work((0.0, 1.0), 32, 7) == pytest.approx(4.5)
    assert training_work((0.0, 0.2, 0.7, 1.0), 32, 7, batches=4000) == pytest.approx(6.75, abs=0.05)
    assert training_work((0.0,), 8, 7) == 1.0  # standard training: one clean pass
    with pytest.raises(ValueError):
        training_work((0.0, 1.0), 0, 7)


def test_per_seed_scores_stacks_one_row_per_seed_in_seed_order():
    frame = pd.DataFrame([dict(method="OAT", lam=1.0, attack="PGD-7", seed=1, clean_correct=[1, 1], robust_correct=[0, 1]),
                          dict(method="OAT", lam=1.0, attack="PGD-7", seed=0, clean_correct=[0, 1], robust_correct=[0, 0]),
                          dict(method="OAT", lam=0.2, attack="PGD-7", seed=0, clean_correct=[1, 0], robust_correct=[1, 0])])
    assert per_seed_scores(frame, "CA", method="OAT", lam=1.0).tolist() == [[0, 1], [1, 1]]
    assert per_seed_scores(frame, "RA", method="OAT", lam=0.2 + 1e-12).tolist() == [[1, 0]]  # floats: tolerance
    with pytest.raises(ValueError, match="several rows of one seed"):
        per_seed_scores(frame, "CA", method="OAT")
    with pytest.raises(ValueError, match="no row matches"):
        per_seed_scores(frame, "CA", method="FLOAT")
    with pytest.raises(ValueError, match="no column"):
        per_seed_scores(frame, "CA", model="OAT")


def test_seed_means_averages_accuracies_over_seeds_per_setting():
    frame = pd.DataFrame([dict(method="FLOAT", lam=0.0, attack="PGD-7", s=0.0, CA=0.5, RA=0.1, seed=0),
                          dict(method="FLOAT", lam=0.0, attack="PGD-7", s=0.0, CA=0.7, RA=0.3, seed=1),
                          dict(method="OAT", lam=0.0, attack="PGD-7", s=math.nan, CA=0.4, RA=0.2, seed=0)])
    means = seed_means(frame)
    assert means[["method", "CA", "RA"]].values.tolist() == [["FLOAT", 0.6, pytest.approx(0.2)], ["OAT", 0.4, 0.2]]
    assert math.isnan(means.loc[1, "s"])


def test_tradeoff_rows_keeps_per_image_scores_that_match_the_accuracies():
    model, data = tiny("float"), (torch.rand(6, 3, 32, 32), torch.randint(0, 10, (6,)))
    attack = Attack("fgsm", eps=8 / 255)
    rows = tradeoff_rows(model, data, {"FGSM": attack}, lambdas=(0.0, 0.2, 1.0), oat_model=tiny("oat"), per_example=True)
    for row in rows:
        assert len(row["clean_correct"]) == 6 and float(np.mean(row["clean_correct"])) == pytest.approx(row["CA"])
        assert float(np.mean(row["robust_correct"])) == pytest.approx(row["RA"])
    assert not any("clean_correct" in r for r in tradeoff_rows(None, data, {"FGSM": attack}, lambdas=(0.0,),
                                                                 oat_model=tiny("oat")))


def test_interleaved_latency_times_every_candidate_relative_to_the_reference():
    model, x = tiny("float"), torch.randn(4, 3, 32, 32)
    latency = interleaved_latency({"plain": (tiny(), None), "FLOAT λ=1": (model, 1.0)}, x, 2, reference="plain")
    assert list(latency.columns) == ["ms per batch of 64", "relative to plain"]
    assert latency.loc["plain", "relative to plain"] == 1.0 and (latency["ms per batch of 64"] > 0).all()
    with pytest.raises(ValueError, match="rounds"):
        interleaved_latency({"plain": (tiny(), None)}, x, 0, reference="plain")
