"""The architectural defences of the thesis's Chapter 3 (Paper 5, Sec. 3.2) and the six networks of its Table 3.1.

Layers: batch renormalisation (Ioffe 2017, Algorithm 1; PyTorch has none), Elastic Sigmoid (Sec. 3.2.2),
Angular neurons (Sec. 3.2.4) and Pairwise Difference (Sec. 3.2.3). ``defence_network(name)`` builds S, RS, A,
GMR, GMRES or PD on Szegedy et al.'s FC-100-100-10 and ``DEFENCES[name]`` holds that network's Table 3.1 column
(and its Table 3.2/3.3 accuracies). Their losses and training are in :mod:`helpers.train.defences`.

Where the thesis is silent, we follow its official Chainer code (benvcutilli/CountingPlusFriendly):
every layer, the output layer included, is linear part -> batch renormalisation -> activation; Angular
replaces the two hidden linear layers (the output layer stays linear); Pairwise Difference is the first
layer only and its patch is the whole image (a fully connected layer is a convolution whose kernel is the
input); Angular and Pairwise Difference weights start uniform in [-1, 1]; the moving averages decay by
0.8 per step. The thesis's layers saw pixels in 0..255, so the networks multiply their [0, 1] input by
``pixel_scale`` = 255 first: attacks and data stay in [0, 1] (eps 77/255).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checks

__all__ = [
    "ACTIVATIONS", "AngularLinear", "BatchRenorm1d", "DEFENCES", "Defence", "ElasticSigmoid", "LAYER_KINDS",
    "PairwiseDifference", "PixelScale", "RenormSchedule", "TEST_STATISTICS", "THESIS_PIXEL_SCALE",
    "defence_network", "pooled_defence_network", "set_test_statistics",
]

#: The thesis's networks saw 0..255 pixels (Sec. 3.3.1); ours take [0, 1] images and scale them.
THESIS_PIXEL_SCALE = 255.0

LAYER_KINDS = ("linear", "angular", "pairwise")
ACTIVATIONS = ("sigmoid", "elastic_sigmoid", None)
TEST_STATISTICS = ("running", "batch")


class PixelScale(nn.Module):
    """Multiply the input by a constant: [0, 1] images become the thesis's 0..255 pixels (Sec. 3.3.1).

    Data and attacks stay in [0, 1]; the layers see what the thesis's layers saw.
    """

    def __init__(self, scale: float = THESIS_PIXEL_SCALE):
        super().__init__()
        checks.number("pixel_scale", scale, low=0.0, low_open=True)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


# ---------------------------------------------------------------------------------------------------
# Batch renormalisation (Ioffe 2017), used by RS, A and PD (Table 3.1)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenormSchedule:
    """Ioffe 2017 Sec. 4 relaxation: r_max = 1, d_max = 0 (batch norm) for ``warmup_steps``, then linear ramps.

    r_max reaches ``r_max`` at step ``r_max_step`` and d_max reaches ``d_max`` at ``d_max_step`` (paper: 5k, 3 at 40k, 5 at 25k).
    """

    warmup_steps: int = 5_000
    r_max: float = 3.0
    r_max_step: int = 40_000
    d_max: float = 5.0
    d_max_step: int = 25_000

    def __post_init__(self) -> None:
        checks.integer("warmup_steps", self.warmup_steps, low=0)
        checks.number("r_max", self.r_max, low=1.0)
        checks.number("d_max", self.d_max, low=0.0)
        for name in ("r_max_step", "d_max_step"):
            checks.integer(name, getattr(self, name), low=self.warmup_steps + 1)

    def limits(self, step: int) -> tuple[float, float]:
        """(r_max, d_max) after ``step`` training steps.

        Constant at (1, 0) during the warm-up, linear to the final values, constant afterwards.
        """
        def ramp(end_step: int, start: float, end: float) -> float:
            fraction = (step - self.warmup_steps) / (end_step - self.warmup_steps)
            return start + min(max(fraction, 0.0), 1.0) * (end - start)

        return ramp(self.r_max_step, 1.0, self.r_max), ramp(self.d_max_step, 0.0, self.d_max)


class BatchRenorm1d(nn.Module):
    """Batch renormalisation (Ioffe 2017, Alg. 1): x_hat = (x - mu_B) / sigma_B * r + d with r, d held constant.

    r = clip(sigma_B / sigma, 1/r_max, r_max), d = clip((mu_B - mu) / sigma, -d_max, d_max); eval uses the moving averages.

    Inputs are (N, C) or (N, C, L), as for ``nn.BatchNorm1d``. The moving averages are kept as BatchNorm1d
    keeps them (mean and unbiased variance, ``running += momentum * (batch - running)``; Ioffe averages sigma
    itself), so r_max = 1, d_max = 0 is exactly ``nn.BatchNorm1d`` in both modes and the state dicts match.
    ``schedule`` overrides the fixed limits with ``schedule.limits(num_batches_tracked)``.
    ``test_statistics="batch"`` normalises by the batch's own statistics in eval mode (no update): the
    thesis's evaluation ("not using the values Batch Renormalization learned", Sec. 3.3.1).
    """

    def __init__(self, num_features: int, *, r_max: float = 1.0, d_max: float = 0.0, momentum: float = 0.1,
                 eps: float = 1e-5, affine: bool = True, schedule: RenormSchedule | None = None,
                 test_statistics: str = "running"):
        super().__init__()
        checks.integer("num_features", num_features, low=1)
        checks.number("r_max", r_max, low=1.0)
        checks.number("d_max", d_max, low=0.0)
        checks.number("eps", eps, low=0.0, low_open=True)
        if not (isinstance(momentum, (int, float)) and 0 < momentum <= 1):
            raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
        if test_statistics not in TEST_STATISTICS:
            raise ValueError(f"test_statistics must be one of {TEST_STATISTICS}, got {test_statistics!r}")
        self.num_features, self.r_max, self.d_max = num_features, float(r_max), float(d_max)
        self.momentum, self.eps, self.schedule, self.test_statistics = float(momentum), float(eps), schedule, test_statistics
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def limits(self) -> tuple[float, float]:
        """The (r_max, d_max) in force: the schedule's at the current step, else the fixed values.

        The step is ``num_batches_tracked``, the number of training batches seen.
        """
        if self.schedule is None:
            return self.r_max, self.d_max
        return self.schedule.limits(int(self.num_batches_tracked))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"x must be (N, {self.num_features}) or (N, {self.num_features}, L), got {tuple(x.shape)}")
        dims, shape = ((0,), (1, -1)) if x.dim() == 2 else ((0, 2), (1, -1, 1))
        if self.training or self.test_statistics == "batch":
            count = x.numel() // self.num_features
            if count < 2:
                raise ValueError(f"batch statistics need more than 1 value per feature, got x of shape {tuple(x.shape)}")
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            std = (var + self.eps).sqrt()
            x_hat = (x - mean.view(shape)) / std.view(shape)
            if self.training:
                with torch.no_grad():
                    running_std = (self.running_var + self.eps).sqrt()
                    r_max, d_max = self.limits()
                    r = (std / running_std).clamp(1 / r_max, r_max)
                    d = ((mean - self.running_mean) / running_std).clamp(-d_max, d_max)
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_var.lerp_(var * count / (count - 1), self.momentum)
                    self.num_batches_tracked += 1
                x_hat = x_hat * r.view(shape) + d.view(shape)
        else:
            x_hat = (x - self.running_mean.view(shape)) / (self.running_var + self.eps).sqrt().view(shape)
        if self.weight is None:
            return x_hat
        return x_hat * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        limits = f"schedule={self.schedule}" if self.schedule else f"r_max={self.r_max:g}, d_max={self.d_max:g}"
        return f"{self.num_features}, {limits}, momentum={self.momentum:g}, eps={self.eps:g}, test_statistics={self.test_statistics!r}"


def set_test_statistics(model: nn.Module, which: str) -> int:
    """Make every :class:`BatchRenorm1d` in ``model`` normalise by "running" averages or "batch" statistics in eval.

    "batch" is the thesis's evaluation of RS, A and PD (Sec. 3.3.1); returns how many layers were set.
    """
    if which not in TEST_STATISTICS:
        raise ValueError(f"which must be one of {TEST_STATISTICS}, got {which!r}")
    layers = [m for m in model.modules() if isinstance(m, BatchRenorm1d)]
    for layer in layers:
        layer.test_statistics = which
    return len(layers)


# ---------------------------------------------------------------------------------------------------
# The three defensive layers of Sec. 3.2
# ---------------------------------------------------------------------------------------------------


class ElasticSigmoid(nn.Module):
    """Elastic Sigmoid sigmoid(s * x) with one learnable slope s for the whole layer (Sec. 3.2.2, after Eq. 3.1).

    s starts at ``slope`` (1: the plain sigmoid); GMR can then shrink ``|s|`` and with it the input gradient.
    """

    def __init__(self, slope: float = 1.0):
        super().__init__()
        checks.number("slope", slope)
        self.slope = nn.Parameter(torch.tensor(float(slope)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.slope * x)


class AngularLinear(nn.Module):
    """Angular neurons y = w.x / (||w|| ||x|| + c) + b (Sec. 3.2.4, the cosine of Eq. 3.3 with the constant c).

    c > 0 keeps the derivative finite at x = 0 (thesis and official code: c = 0.2); no activation follows.
    Weights start uniform in [-1, 1] and the bias at 0, as in the official code. Inputs are (N, in_features).
    """

    def __init__(self, in_features: int, out_features: int, *, c: float = 0.2, bias: bool = True):
        super().__init__()
        checks.integer("in_features", in_features, low=1)
        checks.integer("out_features", out_features, low=1)
        checks.number("c", c, low=0.0, low_open=True)
        self.in_features, self.out_features, self.c = in_features, out_features, float(c)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1.0, 1.0))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """The damped cosine w.x / (||w|| ||x|| + c) of every input row with every neuron, without the bias.

        Its magnitude is below 1 for every input because c > 0 (Cauchy-Schwarz).
        """
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must be (N, {self.in_features}), got {tuple(x.shape)}")
        norms = x.norm(dim=1, keepdim=True) * self.weight.norm(dim=1)
        return (x @ self.weight.T) / (norms + self.c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.cosine(x)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, c={self.c:g}, bias={self.bias is not None}"


class PairwiseDifference(nn.Module):
    """Pairwise Difference (Sec. 3.2.3): per patch v, out_o = sum_ij w_oij * sigmoid(v_i - v_j), a linear map of D.

    D_ij = v_i - v_j over every ordered pair of the patch's (sub)pixels, diagonal included (constant 0.5: a bias).

    Patches are taken like a convolution's (``F.unfold``: all channels, ``kernel_size``, ``stride``, no
    padding), so (N, C, H, W) becomes (N, out_channels, H', W'); a kernel the size of the image makes it
    the fully connected first layer of the PD network. The weights (out_channels, n, n), n = C * kh * kw,
    start uniform in [-1, 1] as in the official code; the whole difference matrix is held in memory
    (N * H' * W' * n^2 values: 12.3M for a batch of 20 whole MNIST images).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
                 stride: int | tuple[int, int] = 1):
        super().__init__()
        checks.integer("in_channels", in_channels, low=1)
        checks.integer("out_channels", out_channels, low=1)
        self.kernel_size = self._pair("kernel_size", kernel_size)
        self.stride = self._pair("stride", stride)
        self.in_channels, self.out_channels = in_channels, out_channels
        n = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels, n, n).uniform_(-1.0, 1.0))

    @staticmethod
    def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
        pair = (value, value) if isinstance(value, int) else tuple(value)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints >= 1, got {value!r}")
        for v in pair:
            checks.integer(name, v, low=1)
        return pair  # type: ignore[return-value]

    def differences(self, x: torch.Tensor) -> torch.Tensor:
        """The difference matrices D_ij = v_i - v_j of every patch, shape (N, patches, n, n) (Sec. 3.2.3).

        Patch elements are ordered as ``F.unfold`` orders them: channel, then row, then column.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] < self.kernel_size[0] or x.shape[3] < self.kernel_size[1]:
            raise ValueError(f"x of shape {tuple(x.shape)} is smaller than kernel_size {self.kernel_size}")
        patches = F.unfold(x, self.kernel_size, stride=self.stride).transpose(1, 2)
        return patches.unsqueeze(-1) - patches.unsqueeze(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        comparisons = torch.sigmoid(self.differences(x)).flatten(2)
        out = comparisons @ self.weight.flatten(1).T
        height = (x.shape[2] - self.kernel_size[0]) // self.stride[0] + 1
        width = (x.shape[3] - self.kernel_size[1]) // self.stride[1] + 1
        return out.transpose(1, 2).reshape(x.shape[0], self.out_channels, height, width)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"



# ---------------------------------------------------------------------------------------------------
# Table 3.1: the six networks
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defence:
    """One column of Table 3.1 (Sec. 3.3.1): layer kinds, batch renormalisation, activation, lr, GMR weight.

    ``clean``, ``fgsm_white_box``, ``fgsm_black_box``: the thesis's MNIST test accuracies in % (Tables 3.3, 3.2).
    """

    name: str
    title: str
    layers: tuple[str, str, str]
    renorm: bool
    activation: str | None
    lr: float
    gmr_weight: float
    clean: float
    fgsm_white_box: float
    fgsm_black_box: float

    def __post_init__(self) -> None:
        if len(self.layers) != 3 or any(kind not in LAYER_KINDS for kind in self.layers):
            raise ValueError(f"layers must be three of {LAYER_KINDS}, got {self.layers!r}")
        if "pairwise" in self.layers[1:]:
            raise ValueError(f"layers: pairwise difference works on images, so only as the first layer; got {self.layers!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        checks.number("lr", self.lr, low=0.0, low_open=True)
        checks.number("gmr_weight", self.gmr_weight, low=0.0)

    @property
    def uses_gmr(self) -> bool:
        """True when training adds the GMR penalty (GMR and GMRES): see :func:`helpers.train.defences.step_loss_for`."""
        return self.gmr_weight > 0


_LINEAR3 = ("linear", "linear", "linear")

#: Table 3.1 (with Tables 3.2 and 3.3), in the thesis's order.
DEFENCES: dict[str, Defence] = {d.name: d for d in (
    Defence("S", "Standard", _LINEAR3, False, "sigmoid", 0.002, 0.0, 95.86, 46.16, 45.28),
    Defence("RS", "Renormalized Standard", _LINEAR3, True, "sigmoid", 0.002, 0.0, 97.80, 43.30, 45.27),
    Defence("A", "Angular", ("angular", "angular", "linear"), True, None, 0.0002, 0.0, 85.40, 0.53, 56.35),
    Defence("GMR", "Gradient Magnitude Reduction", _LINEAR3, False, "sigmoid", 0.0009, 0.5, 96.09, 37.67, 43.24),
    Defence("GMRES", "GMR + Elastic Sigmoid", _LINEAR3, False, "elastic_sigmoid", 0.002, 0.5, 96.72, 36.98, 44.70),
    Defence("PD", "Pairwise Difference", ("pairwise", "linear", "linear"), True, "sigmoid", 0.002, 0.0, 95.91, 32.20, 49.87),
)}


def _activation(kind: str | None) -> nn.Module | None:
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "elastic_sigmoid":
        return ElasticSigmoid()
    return None


def defence_network(name: str, *, image_shape: Sequence[int] = (1, 28, 28), widths: Sequence[int] = (100, 100),
                    num_classes: int = 10, pixel_scale: float = THESIS_PIXEL_SCALE,
                    renorm_schedule: RenormSchedule | None = RenormSchedule(), renorm_momentum: float = 0.2,
                    angular_c: float = 0.2) -> nn.Sequential:
    """The Table 3.1 network ``name`` (S, RS, A, GMR, GMRES, PD) on FC-100-100-10 (Sec. 3.3.1).

    Each layer is linear part -> batch renormalisation (RS, A, PD) -> activation; input ``(N, *image_shape)`` in [0, 1].

    ``pixel_scale`` multiplies the input first (255: the thesis's pixels; 1: none). ``renorm_schedule=None``
    keeps r_max = 1, d_max = 0 (batch norm in training, the official code's start); ``renorm_momentum`` 0.2
    is the official decay 0.8. Modules are named ``layer1, renorm1, act1, ...``.
    """
    if name not in DEFENCES:
        raise ValueError(f"name must be one of {', '.join(DEFENCES)}; got {name!r}")
    spec = DEFENCES[name]
    image_shape = tuple(image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
    for value in image_shape:
        checks.integer("image_shape", value, low=1)
    if len(widths) != 2:
        raise ValueError(f"widths must be two hidden widths (FC-100-100-10: (100, 100)), got {tuple(widths)!r}")
    for value in widths:
        checks.integer("widths", value, low=1)
    checks.integer("num_classes", num_classes, low=1)
    if not (isinstance(renorm_momentum, (int, float)) and 0 < renorm_momentum <= 1):
        raise ValueError(f"renorm_momentum must be in (0, 1], got {renorm_momentum!r}")
    checks.number("angular_c", angular_c, low=0.0, low_open=True)
    channels, height, width = image_shape
    sizes = (channels * height * width, *widths, num_classes)
    modules: OrderedDict[str, nn.Module] = OrderedDict(pixels=PixelScale(pixel_scale))
    if spec.layers[0] != "pairwise":
        modules["flatten"] = nn.Flatten()
    for index, kind in enumerate(spec.layers, start=1):
        n_in, n_out = sizes[index - 1], sizes[index]
        if kind == "pairwise":
            modules[f"layer{index}"] = PairwiseDifference(channels, n_out, (height, width))
            modules["flatten"] = nn.Flatten()
        elif kind == "angular":
            modules[f"layer{index}"] = AngularLinear(n_in, n_out, c=angular_c)
        else:
            modules[f"layer{index}"] = nn.Linear(n_in, n_out)
        if spec.renorm:
            modules[f"renorm{index}"] = BatchRenorm1d(n_out, momentum=renorm_momentum, schedule=renorm_schedule)
        activation = _activation(spec.activation)
        if activation is not None:
            modules[f"act{index}"] = activation
    return nn.Sequential(modules)


def pooled_defence_network(name: str, *, image_shape: Sequence[int] = (1, 28, 28), pool: int = 1,
                           test_statistics: str = "batch") -> nn.Sequential:
    """:func:`defence_network` ``name``, for PD on images average-pooled by ``pool`` first (``pool=1``: none;
    pooling shrinks the whole-image Pairwise Difference layer, which has one weight per pixel pair), with the
    batch renormalisation of RS, A and PD using ``test_statistics`` at test time."""
    pool = checks.integer("pool", pool, low=1)
    if name == "PD" and pool > 1:
        c, h, w = image_shape
        net = nn.Sequential(nn.AvgPool2d(pool), defence_network("PD", image_shape=(c, h // pool, w // pool)))
    else:
        net = defence_network(name, image_shape=image_shape)
    if DEFENCES[name].renorm:
        set_test_statistics(net, test_statistics)
    return net
