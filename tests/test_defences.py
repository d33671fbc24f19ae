"""helpers.models.defences and helpers.train.defences (Paper 5, Ch. 3): batch renormalisation, Elastic Sigmoid, Angular, Pairwise Difference, GMR, Table 3.1."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from helpers.attacks import fgsm
from helpers.models.defences import (
    DEFENCES, AngularLinear, BatchRenorm1d, Defence, ElasticSigmoid, PairwiseDifference, PixelScale,
    RenormSchedule, defence_network, pooled_defence_network, set_test_statistics,
)
from helpers.train.defences import (fgsm_accuracies, gmr_loss, input_gradient_norms, onehot_mse_loss, step_loss_for,
                                    train_defence)




def _batches(shape: tuple[int, ...], n: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * (1 + i) + i for i in range(n)]


# --- batch renormalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 5), (8, 5, 3)])
def test_batch_renorm_with_r_1_d_0_is_batch_norm(shape):
    torch.manual_seed(0)
    ours, bn = BatchRenorm1d(5, r_max=1.0, d_max=0.0), nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    ours.load_state_dict(bn.state_dict())  # same parameters and buffers, so the state dicts are compatible
    for x in _batches(shape):
        x_ours, x_bn = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out_ours, out_bn = ours(x_ours), bn(x_bn)
        assert torch.allclose(out_ours, out_bn, atol=1e-5)
        upstream = torch.randn_like(out_bn)
        (out_ours * upstream).sum().backward()
        (out_bn * upstream).sum().backward()
        assert torch.allclose(x_ours.grad, x_bn.grad, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(ours, name).float(), getattr(bn, name).float(), atol=1e-6), name
    assert torch.allclose(ours.weight.grad, bn.weight.grad, atol=1e-4)
    ours.eval(), bn.eval()
    x = _batches(shape, 1, seed=5)[0]
    assert torch.allclose(ours(x), bn(x), atol=1e-5)


def test_batch_renorm_unclipped_training_output_equals_inference_output():
    """Ioffe's point: with r and d inside their limits, training normalises by the moving averages."""
    layer = BatchRenorm1d(3, r_max=100.0, d_max=100.0, affine=False)
    layer.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    layer.running_var.copy_(torch.tensor([4.0, 0.25, 9.0]))
    x = _batches((32, 3), 1)[0]
    expected = (x - layer.running_mean) / (layer.running_var + layer.eps).sqrt()
    assert torch.allclose(layer.train()(x), expected, atol=1e-5)


def test_batch_renorm_clips_r_and_d():
    layer = BatchRenorm1d(1, r_max=2.0, d_max=0.5, affine=False)
    layer.running_var.fill_(100.0)  # sigma = 10: r = sigma_B / 10 is clipped to 1/2
    x = torch.tensor([[9.0], [11.0]])  # mu_B = 10, sigma_B ~ 1: d = 10 / 10 = 1 is clipped to 0.5
    x_hat = (x - 10.0) / (1.0 + layer.eps) ** 0.5
    assert torch.allclose(layer.train()(x), x_hat * 0.5 + 0.5, atol=1e-5)


def test_renorm_schedule_and_its_use_by_the_layer():
    schedule = RenormSchedule()
    assert schedule.limits(0) == (1.0, 0.0) and schedule.limits(5_000) == (1.0, 0.0)
    assert schedule.limits(25_000) == pytest.approx((1.0 + 2.0 * 20 / 35, 5.0))
    assert schedule.limits(40_000) == (3.0, 5.0) and schedule.limits(10**6) == (3.0, 5.0)
    layer = BatchRenorm1d(2, schedule=RenormSchedule(warmup_steps=1, r_max=2.0, r_max_step=3, d_max=1.0, d_max_step=2))
    seen = []
    for x in _batches((6, 2), 4):
        seen.append(layer.limits())
        layer(x)
    assert seen == [(1.0, 0.0), (1.0, 0.0), (1.5, 1.0), (2.0, 1.0)]


def test_batch_statistics_at_test_time_is_batch_norm_without_updates():
    net = defence_network("RS", image_shape=(1, 4, 4), widths=(6, 5), pixel_scale=1.0)
    bn_net = defence_network("RS", image_shape=(1, 4, 4), widths=(6, 5), pixel_scale=1.0, renorm_schedule=None)
    bn_net.load_state_dict(net.state_dict())
    x = _batches((8, 1, 4, 4), 1)[0]
    assert set_test_statistics(net.eval(), "batch") == 3
    before = net.renorm1.running_mean.clone()
    assert torch.allclose(net(x), bn_net.train()(x), atol=1e-6)
    assert torch.equal(net.renorm1.running_mean, before)


# --- the three layers ----------------------------------------------------------------------------------


def test_angular_outputs_stay_below_one_and_approach_the_cosine():
    torch.manual_seed(0)
    layer = AngularLinear(20, 7)
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    x = torch.cat([torch.randn(50, 20) * scale for scale in (1e-3, 1.0, 1e3)] + [torch.zeros(1, 20)])
    cosine = layer.cosine(x)
    assert cosine.abs().max() < 1
    assert torch.allclose(layer(x), cosine + layer.bias)
    assert torch.equal(layer(torch.zeros(1, 20)), layer.bias.detach()[None])  # c keeps x = 0 finite
    parallel = layer.weight.detach()[:1] * 1e4  # x along w: the damped cosine is just below 1
    assert 0.999 < layer.cosine(parallel)[0, 0] < 1
    big = torch.randn(10, 20) * 1e4
    exact = nn.functional.cosine_similarity(big[:, None, :], layer.weight.detach()[None], dim=2)
    assert torch.allclose(layer.cosine(big), exact, atol=1e-5)


def test_elastic_sigmoid_starts_at_one_and_its_slope_learns():
    act = ElasticSigmoid()
    x = torch.linspace(-3, 3, 13)
    assert act.slope.item() == 1.0 and act.slope.requires_grad
    assert torch.allclose(act(x), torch.sigmoid(x))
    act(x).pow(2).sum().backward()
    s = torch.sigmoid(x)
    assert torch.allclose(act.slope.grad, (2 * s * s * (1 - s) * x).sum())  # d/ds sigmoid(s x) = x s' (s x)
    net = defence_network("GMRES", image_shape=(1, 4, 4), widths=(6, 5))
    slopes = [m.slope for m in net.modules() if isinstance(m, ElasticSigmoid)]
    assert len(slopes) == 3 and all(p.item() == 1.0 for p in slopes)  # one slope per layer
    loss, _ = step_loss_for(DEFENCES["GMRES"])(net, torch.rand(8, 1, 4, 4), torch.randint(0, 10, (8,)))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in slopes)


def test_pairwise_difference_on_a_hand_made_patch():
    layer = PairwiseDifference(1, 2, kernel_size=2)
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # one 2x2 patch, v = (0, 1, 2, 3)
    d = layer.differences(x)
    v = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert d.shape == (1, 1, 4, 4) and torch.equal(d[0, 0], v[:, None] - v[None, :])  # D_ij = v_i - v_j
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0, 3] = 1.0  # sigmoid(v_0 - v_3) = sigmoid(-3)
        layer.weight[1, 2, 1] = 2.0  # 2 sigmoid(v_2 - v_1) = 2 sigmoid(1)
        layer.weight[1, 1, 1] = 4.0  # the diagonal is sigmoid(0) = 0.5: 4 * 0.5
    out = layer(x)
    expected = torch.tensor([torch.sigmoid(torch.tensor(-3.0)), 2 * torch.sigmoid(torch.tensor(1.0)) + 2.0])
    assert out.shape == (1, 2, 1, 1) and torch.allclose(out.flatten(), expected)


def test_pairwise_difference_patches_and_shapes():
    torch.manual_seed(0)
    layer = PairwiseDifference(2, 3, kernel_size=(2, 3), stride=(1, 2))
    x = torch.rand(5, 2, 4, 7)
    out = layer(x)
    assert out.shape == (5, 3, 3, 3)
    patch = x[1, :, 2:4, 2:5].flatten()  # output row 2, column 1: rows 2-3, columns 2-4
    manual = torch.einsum("oij,ij->o", layer.weight, torch.sigmoid(patch[:, None] - patch[None, :]))
    assert torch.allclose(out[1, :, 2, 1], manual, atol=1e-5)


# --- losses and GMR -----------------------------------------------------------------------------------


def test_onehot_mse_loss_is_the_thesis_loss_and_drives_fgsm():
    out = torch.tensor([[0.2, 0.9, 0.1], [0.5, 0.5, 0.0]])
    y = torch.tensor([1, 2])
    assert torch.allclose(onehot_mse_loss(out, y), torch.tensor([0.04 + 0.01 + 0.01, 0.25 + 0.25 + 1.0]))
    torch.manual_seed(0)
    net = defence_network("S", image_shape=(1, 4, 4), widths=(6, 5))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 10, (8,))
    adv = fgsm(net, x, y, eps=0.1, loss_fn=onehot_mse_loss)
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert onehot_mse_loss(net(adv), y).sum() > onehot_mse_loss(net(x), y).sum()


def _direct_penalty(net: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """The GMR loss one image at a time with plain autograd calls (no batching tricks)."""
    losses, grads = [], []
    for xi, yi in zip(x, y):
        xi = xi[None].clone().requires_grad_(True)
        loss = ((net(xi)[0] - nn.functional.one_hot(yi, 10).float()) ** 2).sum()
        (g,) = torch.autograd.grad(loss, xi, create_graph=True)
        losses.append(loss)
        grads.append(g.flatten())
    grads = torch.stack(grads)
    if reduction == "sample":
        penalty = torch.stack([g.norm() for g in grads]).mean()
    else:
        penalty = (grads / len(x)).norm()  # gradient of the batch mean w.r.t. the whole batch
    return torch.stack(losses).mean() + 0.5 * penalty


@pytest.mark.parametrize("reduction", ["sample", "batch"])
def test_gmr_loss_and_its_gradients_equal_a_direct_autograd_computation(reduction):
    torch.manual_seed(0)
    net = defence_network("GMR", image_shape=(1, 4, 4), widths=(6, 5), pixel_scale=1.0)
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 10, (6,))
    ours, out = gmr_loss(net, x, y, weight=0.5, reduction=reduction)
    assert out.shape == (6, 10)
    direct = _direct_penalty(net, x, y, reduction)
    assert torch.allclose(ours, direct, atol=1e-6)
    params = list(net.parameters())
    g_ours = torch.autograd.grad(ours, params)
    g_direct = torch.autograd.grad(direct, params)
    for a, b in zip(g_ours, g_direct):
        assert torch.allclose(a, b, atol=1e-6)
    plain = torch.autograd.grad(onehot_mse_loss(net(x), y).mean(), params)
    assert any(not torch.allclose(a, b) for a, b in zip(g_ours, plain))  # the penalty reaches the weights


def test_gmr_penalty_is_in_the_units_of_the_pixels_the_layers_see():
    torch.manual_seed(0)
    scaled = defence_network("GMR", image_shape=(1, 4, 4), widths=(6, 5), pixel_scale=255.0)
    bare = nn.Sequential(*list(scaled.children())[1:])
    x, y = torch.rand(4, 1, 4, 4), torch.randint(0, 10, (4,))
    _, norms_scaled, _ = input_gradient_norms(scaled, x, y, pixel_scale=255.0)
    _, norms_bare, _ = input_gradient_norms(bare, 255.0 * x, y)
    assert torch.allclose(norms_scaled, norms_bare, rtol=1e-5)
    assert torch.allclose(gmr_loss(scaled, x, y, weight=0.0)[0], onehot_mse_loss(scaled(x), y).mean())


# --- Table 3.1 ----------------------------------------------------------------------------------------


def test_defences_are_table_3_1():
    assert list(DEFENCES) == ["S", "RS", "A", "GMR", "GMRES", "PD"]
    assert {k: d.lr for k, d in DEFENCES.items()} == {"S": 0.002, "RS": 0.002, "A": 0.0002, "GMR": 0.0009,
                                                      "GMRES": 0.002, "PD": 0.002}
    assert {k for k, d in DEFENCES.items() if d.renorm} == {"RS", "A", "PD"}
    assert {k for k, d in DEFENCES.items() if d.uses_gmr} == {"GMR", "GMRES"}
    assert DEFENCES["A"].activation is None and DEFENCES["GMRES"].activation == "elastic_sigmoid"


@pytest.mark.parametrize("name", list(DEFENCES))
def test_every_table_3_1_network_builds_and_trains_on_mnist_shaped_inputs(name):
    torch.manual_seed(0)
    net = defence_network(name)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    step_loss = step_loss_for(DEFENCES[name])
    if step_loss is None:
        out = net(x)
        loss = onehot_mse_loss(out, y).mean()
    else:
        loss, out = step_loss(net, x, y)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    torch.optim.SGD(net.parameters(), lr=DEFENCES[name].lr, momentum=0.85).step()
    assert torch.isfinite(net.eval()(x)).all()
    widths = [m.out_features for m in net.modules() if isinstance(m, (nn.Linear, AngularLinear))]
    widths += [m.out_channels for m in net.modules() if isinstance(m, PairwiseDifference)]
    assert sorted(widths) == [10, 100, 100]  # FC-100-100-10


# --- argument checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make,name", [
    (lambda: BatchRenorm1d(0), "num_features"),
    (lambda: BatchRenorm1d(3, r_max=0.5), "r_max"),
    (lambda: BatchRenorm1d(3, d_max=-1.0), "d_max"),
    (lambda: BatchRenorm1d(3, momentum=0.0), "momentum"),
    (lambda: BatchRenorm1d(3, eps=0.0), "eps"),
    (lambda: BatchRenorm1d(3, test_statistics="moving"), "test_statistics"),
    (lambda: BatchRenorm1d(3)(torch.zeros(1, 3)), "batch statistics"),
    (lambda: BatchRenorm1d(3)(torch.zeros(4, 2)), "x must be"),
    (lambda: RenormSchedule(warmup_steps=10, r_max_step=5), "r_max_step"),
    (lambda: RenormSchedule(r_max=0.9), "r_max"),
    (lambda: set_test_statistics(nn.Linear(2, 2), "moving"), "which"),
    (lambda: ElasticSigmoid(float("nan")), "slope"),
    (lambda: AngularLinear(3, 2, c=0.0), "c must"),
    (lambda: AngularLinear(0, 2), "in_features"),
    (lambda: AngularLinear(3, 2)(torch.zeros(2, 4)), "x must be"),
    (lambda: PairwiseDifference(1, 2, kernel_size=0), "kernel_size"),
    (lambda: PairwiseDifference(1, 2, kernel_size=2, stride=(1, 0)), "stride"),
    (lambda: PairwiseDifference(1, 2, kernel_size=3)(torch.zeros(1, 1, 2, 2)), "kernel_size"),
    (lambda: PixelScale(0.0), "pixel_scale"),
    (lambda: onehot_mse_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long)), "output"),
    (lambda: gmr_loss(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), weight=-0.5), "weight"),
    (lambda: gmr_loss(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), reduction="sum"), "reduction"),
    (lambda: input_gradient_norms(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), pixel_scale=-1), "pixel_scale"),
    (lambda: defence_network("B"), "name"),
    (lambda: defence_network("S", widths=(100,)), "widths"),
    (lambda: defence_network("S", widths=(100, 0)), "widths"),
    (lambda: defence_network("S", num_classes=0), "num_classes"),
    (lambda: defence_network("S", image_shape=(28, 28)), "image_shape"),
    (lambda: defence_network("RS", renorm_momentum=1.5), "renorm_momentum"),
    (lambda: defence_network("A", angular_c=-0.2), "angular_c"),
    (lambda: Defence("X", "x", ("linear", "pairwise", "linear"), False, "sigmoid", 0.1, 0.0, 0, 0, 0), "layers"),
    (lambda: Defence("X", "x", ("linear",) * 3, False, "relu", 0.1, 0.0, 0, 0, 0), "activation"),
    (lambda: Defence("X", "x", ("linear",) * 3, False, "sigmoid", 0.0, 0.0, 0, 0, 0), "lr"),
])
def test_bad_arguments_raise_value_error_naming_the_parameter(make, name):
    with pytest.raises(ValueError, match=name):
        make()


# --- the notebook's building and training ------------------------------------------------------------


def test_pooled_network_pools_only_pd_and_sets_batch_statistics():
    pd_net = pooled_defence_network("PD", pool=4)
    assert isinstance(pd_net[0], nn.AvgPool2d) and pd_net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    s_net = pooled_defence_network("S", pool=4)
    assert not any(isinstance(m, nn.AvgPool2d) for m in s_net.modules())
    assert all(m.test_statistics == "batch" for m in pooled_defence_network("RS").modules()
               if isinstance(m, BatchRenorm1d))
    with pytest.raises(ValueError, match="pool must be an int >= 1; got 0"):
        pooled_defence_network("PD", pool=0)


def test_train_defence_keys_its_checkpoint_by_the_notebook_settings(tmp_path, monkeypatch):
    from helpers import cache

    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(40, 1, 28, 28, generator=g), torch.randint(0, 10, (40,), generator=g))
    torch.manual_seed(0)
    history = train_defence(pooled_defence_network("GMR"), "GMR", data, data, epochs=1, patience=1, seed=0,
                            dataset="fashion-mnist", pd_pool=4, gmr_reduction="sample")
    assert len(history) == 1
    # the settings the notebook hand-built before (pd_pool only for PD; the per-sample penalty it used then): cached
    # checkpoints stay valid
    settings = dict(network="GMR", seed=0, dataset="fashion-mnist", train_n=40, epochs=1, patience=1, pd_pool=None,
                    lr=DEFENCES["GMR"].lr)
    assert (tmp_path / "checkpoints" / f"ch5-defences-GMR-{cache.digest(settings)}.pt").is_file()
    torch.manual_seed(0)  # the official whole-batch penalty (the default) and a target accuracy: keys of their own
    train_defence(pooled_defence_network("GMR"), "GMR", data, data, epochs=1, patience=1, seed=0,
                  dataset="fashion-mnist", pd_pool=4, target_accuracy=0.5)
    keyed = dict(settings, gmr_reduction="batch", target_accuracy=0.5)
    assert (tmp_path / "checkpoints" / f"ch5-defences-GMR-{cache.digest(keyed)}.pt").is_file()
    with pytest.raises(ValueError, match="name must be one of 'S', 'RS'"):
        train_defence(pooled_defence_network("S"), "X", data, data, epochs=1, patience=1, seed=0, dataset="d",
                      pd_pool=1)


def test_fgsm_accuracies_report_clean_white_black_and_small_eps():
    from helpers.train import evaluate

    g = torch.Generator().manual_seed(0)
    data = (torch.rand(20, 1, 28, 28, generator=g), torch.randint(0, 10, (20,), generator=g))
    torch.manual_seed(0)
    nets, source = {"S": pooled_defence_network("S").eval()}, pooled_defence_network("S").eval()
    out = fgsm_accuracies(nets, data, eps=0.3, small_eps=0.04, source=source, batch_size=10, seed=0)
    assert set(out["S"]) == {"clean", "white", "black", "white_small"}
    assert out["S"]["clean"] == evaluate(nets["S"], data, batch_size=10)["clean"]
    assert all(0 <= v <= 1 for v in out["S"].values())
