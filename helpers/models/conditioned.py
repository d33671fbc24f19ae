"""Lambda-conditioned layers of Chapter 4: FLOAT's noisy weights and OAT's FiLM, both with dual batch norm.

FLOAT (Kundu et al. 2023) conditions the *weights*: theta_hat = theta + lambda * alpha * eta (Eq. 4), with
BN_C for clean and BN_A for adversarial inputs. OAT (Wang et al. 2020) conditions the *features* with a FiLM
MLP after every BN. The conditioned layers read lambda from attributes that :func:`set_lambda` writes by
walking the modules, so ``model(x)``, ``helpers.train.fit`` and ``helpers.attacks`` work unchanged:

    set_lambda(model, 0.7, lam_th=0.5)       # or: with conditioned_on(model, 0.7, 0.5): ...
    evaluate(model, test, attack=pgd7)

Noisy layers subclass ``nn.Conv2d`` / ``nn.Linear`` and keep a plain ``weight`` Parameter, so
``helpers.pruning`` (``torch.nn.utils.prune`` on ``weight``) composes with them.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import checks, eval_mode, model_device
from .slimmable import SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d

__all__ = [
    "CONDITIONINGS", "OAT_LAMBDAS", "FLOAT_TRAIN_LAMBDAS", "FLOAT_EVAL_LAMBDAS",
    "noise_rescale", "WeightNoise", "FloatConv2d", "FloatLinear", "SlimmableFloatConv2d", "SlimmableFloatLinear", "FiLM", "DualBatchNorm2d", "LambdaEncoding",
    "Conditioning", "set_lambda", "current_lambda", "conditioned_on", "set_noise_generator",
    "seeded_noise", "parameter_breakdown", "asic_conv_delays",
]

CONDITIONINGS = ("none", "float", "oat")
#: OAT's training lambdas (official code, ``--lambda_choices``); lambda = 0 goes through BN_c, the rest BN_a.
OAT_LAMBDAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)
#: FLOAT trains at the two boundary conditions only (Sec. 3.1, Algorithm 1: half clean, half adversarial).
FLOAT_TRAIN_LAMBDAS: tuple[float, ...] = (0.0, 1.0)
#: The lambda_n FLOAT evaluates at (Sec. 4.2, S_lambda_n); FLOAT's OAT baseline is trained on the same set (Sec. 4.3).
FLOAT_EVAL_LAMBDAS: tuple[float, ...] = (0.0, 0.2, 0.7, 1.0)
ENCODINGS = ("rand", "none")


def noise_rescale(lam_n: float, lam_th: float = 0.0) -> float:
    """The factor s that multiplies alpha at inference, alpha_new = s * alpha (Eq. 6 of FLOAT).

    lam_th = 0.5 gives Eq. 6 (2 lam_n below the threshold, 2 (lam_n - 0.5) above); lam_th = 0 gives s = lam_n
    (Sec. 3.1); other thresholds use the same two linear ramps, lam_n / lam_th and (lam_n - lam_th) / (1 - lam_th).
    """
    lam_n = checks.number("lam_n", lam_n, 0, 1)
    lam_th = checks.number("lam_th", lam_th, 0, 1, high_open=True)
    if lam_n <= lam_th:
        return lam_n / lam_th if lam_th > 0 else 0.0
    return (lam_n - lam_th) / (1.0 - lam_th)


class WeightNoise:
    """Mixin for Conv2d/Linear: theta_hat = theta + s * alpha * eta, eta ~ N(0, std(theta)^2) (Eq. 4 of FLOAT).

    alpha is a learnable scalar per layer (init 0.25, as PNI); s = lambda * Eq. 6 factor is set by
    :func:`set_lambda`. eta is drawn afresh every forward (train and eval) from ``generator`` (None: the global
    torch RNG) with no gradient; std(theta) is detached. Under ``torch.nn.utils.prune`` theta is the masked
    weight, its std is taken over the whole masked tensor (zeros included, as ``weight.std()`` in PNI), and the
    noise is masked too, so pruned weights stay exactly zero in theta_hat.
    """

    weight: Tensor
    alpha: nn.Parameter

    def __init__(self, *args, alpha_init: float = 0.25, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init), dtype=self.weight.dtype, device=self.weight.device))
        self.noise_scale = 0.0  # s in theta + s * alpha * eta
        self.lam, self.lam_th = 0.0, 0.0
        self.generator: torch.Generator | None = None

    def conditioned_weight(self) -> Tensor:
        """theta_hat for the current lambda, with a fresh eta (Eq. 4 of FLOAT; Eq. 6 re-scales alpha).

        At s = 0 this is ``self.weight`` itself, so the layer equals its plain counterpart exactly.
        """
        weight = self.weight
        if self.noise_scale == 0:
            return weight
        with torch.no_grad():
            device = self.generator.device if self.generator is not None else weight.device
            eta = torch.randn(weight.shape, generator=self.generator, dtype=weight.dtype, device=device).to(weight.device)
            eta = eta * weight.std()
            mask = getattr(self, "weight_mask", None)  # torch.nn.utils.prune's buffer
            if mask is not None:
                eta = eta * mask
        return weight + (self.noise_scale * self.alpha) * eta


class FloatConv2d(WeightNoise, nn.Conv2d):
    """``nn.Conv2d`` whose weight is theta + s * alpha * eta in every forward (Eq. 4 of FLOAT).

    Same constructor as ``nn.Conv2d`` plus ``alpha_init``; ``.weight`` stays a plain Parameter.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.conditioned_weight(), self.bias)


class FloatLinear(WeightNoise, nn.Linear):
    """``nn.Linear`` whose weight is theta + s * alpha * eta in every forward (Eq. 4 of FLOAT).

    Same constructor as ``nn.Linear`` plus ``alpha_init``; ``.weight`` stays a plain Parameter.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.conditioned_weight(), self.bias)


class SlimmableFloatConv2d(WeightNoise, SlimmableConv2d):
    """FLOATS slim's convolution (Fig. 4b of FLOAT): Eq. 4's noisy weight, sliced to the current width.

    theta_hat = theta + s * alpha * eta on the full (shared) weight, eta's std that of the full weight, then
    ``theta_hat[:C_o w, :C_i w]`` as in :class:`~helpers.models.slimmable.SlimmableConv2d`.
    """

    def forward(self, x: Tensor) -> Tensor:
        out_active, in_active = self.active_shape()
        return F.conv2d(x, self.conditioned_weight()[:out_active, :in_active], None if self.bias is None else
                        self.bias[:out_active], self.stride, self.padding, self.dilation)


class SlimmableFloatLinear(WeightNoise, SlimmableLinear):
    """FLOATS slim's classifier: Eq. 4's noisy weight on the first ``int(in w)`` features (full output).

    Same slicing as :class:`~helpers.models.slimmable.SlimmableLinear`.
    """

    def forward(self, x: Tensor) -> Tensor:
        out_active, in_active = self.active_shape()
        return F.linear(x, self.conditioned_weight()[:out_active, :in_active],
                        None if self.bias is None else self.bias[:out_active])


class FiLM(nn.Module):
    """OAT's FiLM: [scale, shift] = leaky_relu(MLP(e(lambda))), out = x * scale + shift per channel (Wang et al. 2020).

    MLP = Linear(d, 2C) -> LeakyReLU -> Linear(2C, 2C), as the official FiLM_Layer (which also applies the leaky
    ReLU to scale and shift). ``identity_init`` starts at scale 1, shift 0 (the official code uses PyTorch's init).
    """

    def __init__(self, channels: int, in_features: int = 128, identity_init: bool = False) -> None:
        super().__init__()
        if channels < 1 or in_features < 1:
            raise ValueError(f"channels and in_features must be >= 1, got {channels} and {in_features}")
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(in_features, 2 * channels), nn.LeakyReLU(), nn.Linear(2 * channels, 2 * channels))
        if identity_init:
            with torch.no_grad():
                self.mlp[2].weight.zero_()
                self.mlp[2].bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))
        self.register_buffer("code", None, persistent=False)  # e(lambda), shape (1, d); set by set_lambda
        self.lam, self.lam_th = 0.0, 0.0

    def forward(self, x: Tensor) -> Tensor:
        if self.code is None:
            raise RuntimeError("FiLM has no lambda yet: call set_lambda(model, lam) first")
        scale, shift = F.leaky_relu(self.mlp(self.code)).chunk(2, dim=-1)
        shape = (1, self.channels) + (1,) * (x.dim() - 2)
        return x * scale.reshape(shape) + shift.reshape(shape)


class DualBatchNorm2d(nn.Module):
    """BN_C for clean and BN_A for adversarial inputs, chosen by lambda > lam_th (Sec. 3.1 of FLOAT; OAT's dual BN).

    Each branch keeps its own affine parameters and running statistics; an optional FiLM follows (OAT).
    """

    def __init__(self, num_features: int, film: FiLM | None = None) -> None:
        super().__init__()
        self.clean = nn.BatchNorm2d(num_features)
        self.adv = nn.BatchNorm2d(num_features)
        self.film = film
        self.adversarial = False
        self.lam, self.lam_th = 0.0, 0.0

    def forward(self, x: Tensor) -> Tensor:
        out = (self.adv if self.adversarial else self.clean)(x)
        return out if self.film is None else self.film(out)


class LambdaEncoding(nn.Module):
    """e(lambda): row j of a fixed random orthogonal d x d matrix for the j-th training lambda (OAT, ``--encoding rand``).

    ``kind="none"`` feeds lambda itself (d = 1), the form Eq. 9 of FLOAT counts; any lambda in [0, 1] then works.
    """

    def __init__(self, choices: Sequence[float] = OAT_LAMBDAS, kind: str = "rand", dim: int = 128, seed: int = 0) -> None:
        super().__init__()
        checks.choice("kind", kind, ENCODINGS)
        self.choices = tuple(checks.number(f"lambda_choices[{i}]", c, 0, 1) for i, c in enumerate(choices))
        if not self.choices or len(set(self.choices)) != len(self.choices):
            raise ValueError(f"lambda_choices must be a non-empty list of distinct values in [0, 1], got {choices!r}")
        self.kind = kind
        if kind == "rand":
            if not (isinstance(dim, int) and dim >= len(self.choices)):
                raise ValueError(f"dim must be an int >= len(lambda_choices) = {len(self.choices)}, got {dim!r}")
            gaussian = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            self.register_buffer("matrix", torch.linalg.qr(gaussian)[0].float())
        self.dim = dim if kind == "rand" else 1

    def forward(self, lam: float) -> Tensor:
        if self.kind == "none":
            return torch.tensor([[float(lam)]])
        index = next((j for j, c in enumerate(self.choices) if math.isclose(c, lam, abs_tol=1e-9)), None)
        if index is None:
            raise ValueError(f"lam must be one of the OAT training lambdas {self.choices} with the 'rand' "
                             f"encoding, got {lam!r}")
        return self.matrix[index:index + 1]


@dataclass(frozen=True)
class Conditioning:
    """How a model's layers are built: ``kind`` "none" (plain), "float" (Eq. 4 of FLOAT + dual BN) or "oat" (FiLM + dual BN).

    Its ``conv``, ``linear`` and ``norm`` methods are the layer factories the ResNets use. ``widths`` (e.g.
    ``(1.0, 0.5)``) builds slimmable layers with a (dual) BN per width instead: FLOATS slim (Sec. 3.2, Fig. 4b).
    ``film_identity_init`` starts every FiLM at scale 1, shift 0 (see :class:`FiLM`).
    """

    kind: str = "none"
    alpha_init: float = 0.25
    lambda_choices: tuple[float, ...] = OAT_LAMBDAS
    encoding: str = "rand"
    encoding_dim: int = 128
    encoding_seed: int = 0
    film_identity_init: bool = False
    widths: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        checks.choice("conditioning", self.kind, CONDITIONINGS)
        if self.widths is not None and self.kind == "oat":
            raise ValueError("widths (slimmable layers) are supported for conditioning 'none' and 'float', got 'oat'")

    @classmethod
    def of(cls, value: str | Conditioning) -> Conditioning:
        """A ``Conditioning`` from its kind name, or the given one unchanged."""
        return value if isinstance(value, Conditioning) else cls(kind=value)

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
             slim_in: bool = True) -> nn.Conv2d:
        """A bias-free conv: ``FloatConv2d`` for FLOAT, else ``nn.Conv2d`` (slimmable versions with ``widths``).

        ``slim_in=False`` keeps all input channels at every width (the stem reads the image).
        """
        if self.widths is not None:
            cls = SlimmableFloatConv2d if self.kind == "float" else SlimmableConv2d
            extra = dict(alpha_init=self.alpha_init) if self.kind == "float" else {}
            return cls(in_channels, out_channels, kernel_size, stride, padding, bias=False, widths=self.widths,
                       slim_in=slim_in, **extra)
        if self.kind == "float":
            return FloatConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, alpha_init=self.alpha_init)
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)

    def linear(self, in_features: int, out_features: int) -> nn.Linear:
        """``FloatLinear`` for FLOAT, else ``nn.Linear`` (OAT has no FiLM after the classifier); slimmable input with ``widths``."""
        if self.widths is not None:
            if self.kind == "float":
                return SlimmableFloatLinear(in_features, out_features, alpha_init=self.alpha_init, widths=self.widths)
            return SlimmableLinear(in_features, out_features, widths=self.widths)
        if self.kind == "float":
            return FloatLinear(in_features, out_features, alpha_init=self.alpha_init)
        return nn.Linear(in_features, out_features)

    def norm(self, channels: int, film: bool = True) -> nn.Module:
        """BN (plain), dual BN (FLOAT), or dual BN followed by FiLM when ``film`` (OAT); one per width with ``widths``."""
        if self.widths is not None:
            make_bn = DualBatchNorm2d if self.kind == "float" else nn.BatchNorm2d
            return SwitchableBatchNorm2d(channels, widths=self.widths, make_bn=make_bn)
        if self.kind == "none":
            return nn.BatchNorm2d(channels)
        modulation = None
        if self.kind == "oat" and film:
            in_features = 1 if self.encoding == "none" else self.encoding_dim
            modulation = FiLM(channels, in_features, self.film_identity_init)
        return DualBatchNorm2d(channels, modulation)

    def encoder(self) -> LambdaEncoding | None:
        """The model's lambda encoding (OAT only)."""
        if self.kind != "oat":
            return None
        return LambdaEncoding(self.lambda_choices, self.encoding, self.encoding_dim, self.encoding_seed)


_CONDITIONED = (WeightNoise, DualBatchNorm2d, FiLM)


def _conditioned_modules(model: nn.Module) -> list[nn.Module]:
    modules = [m for m in model.modules() if isinstance(m, _CONDITIONED)]
    if not modules:
        raise ValueError("model has no lambda-conditioned layers (FloatConv2d, FloatLinear, DualBatchNorm2d, FiLM); "
                         "build it with conditioning='float' or 'oat'")
    return modules


def set_lambda(model: nn.Module, lam: float, lam_th: float = 0.0) -> None:
    """Condition every layer on lambda: noise s = Eq. 6 (FLOAT), BN_A iff lam > lam_th, FiLM input e(lam) (OAT).

    Training uses lam in {0, 1} (FLOAT) or OAT's choices with lam_th = 0; at inference lam is FLOAT's lambda_n.
    """
    lam = checks.number("lam", lam, 0, 1)
    lam_th = checks.number("lam_th", lam_th, 0, 1, high_open=True)
    modules = _conditioned_modules(model)
    code = None
    if any(isinstance(m, FiLM) for m in modules):
        encoders = [m for m in model.modules() if isinstance(m, LambdaEncoding)]
        if len(encoders) != 1:
            raise ValueError(f"a model with FiLM layers needs exactly one LambdaEncoding module, found {len(encoders)}")
        code = encoders[0](lam)
    scale, adversarial = noise_rescale(lam, lam_th), lam > lam_th
    for module in modules:
        module.lam, module.lam_th = lam, lam_th
        if isinstance(module, WeightNoise):
            module.noise_scale = scale
        elif isinstance(module, DualBatchNorm2d):
            module.adversarial = adversarial
        else:
            module.code = code.to(module.mlp[0].weight)


def current_lambda(model: nn.Module) -> tuple[float, float]:
    """The (lam, lam_th) the model's conditioned layers were last set to (Eq. 6 of FLOAT's lambda_n, lambda_th).

    A freshly built conditioned ResNet is at (0, 0): the clean path.
    """
    first = _conditioned_modules(model)[0]
    return first.lam, first.lam_th


@contextmanager
def conditioned_on(model: nn.Module, lam: float, lam_th: float = 0.0) -> Iterator[nn.Module]:
    """Run a block with the model conditioned on (lam, lam_th) (Eqs. 4 and 6 of FLOAT), then restore the setting.

    ``with conditioned_on(model, 1.0): x_adv = attack(model, x, y)``.
    """
    previous = current_lambda(model)
    set_lambda(model, lam, lam_th)
    try:
        yield model
    finally:
        set_lambda(model, *previous)


def set_noise_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Draw every FLOAT layer's eta (Eq. 4 of FLOAT) from ``generator``; None goes back to the global torch RNG.

    Either way the noise is reproducible: seed the generator, or the global RNG with ``torch.manual_seed``.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    layers = [m for m in model.modules() if isinstance(m, WeightNoise)]
    if not layers:
        raise ValueError("model has no FLOAT layers (FloatConv2d / FloatLinear)")
    for layer in layers:
        layer.generator = generator


@contextmanager
def seeded_noise(model: nn.Module, seed: int) -> Iterator[torch.Generator]:
    """Within the block every FLOAT layer draws its eta (Eq. 4 of FLOAT) from a Generator seeded with ``seed``;
    afterwards the layers go back to the global torch RNG. Yields the generator (for an attack's random start)."""
    generator = torch.Generator().manual_seed(checks.integer("seed", seed, low=0))
    set_noise_generator(model, generator)
    try:
        yield generator
    finally:
        set_noise_generator(model, None)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameters by role: conv/linear ``weights``, ``batch_norm`` (BN or BN_C), ``extra_batch_norm`` (BN_A), ``alpha``, ``film``.

    ``overhead`` = extra BN + alpha + FiLM: what FLOAT (Sec. 4.3, Fig. 7b) or OAT adds to the plain model.
    """
    role: dict[int, str] = {}
    for module in model.modules():
        if isinstance(module, FiLM):
            role.update((id(p), "film") for p in module.parameters())
        elif isinstance(module, DualBatchNorm2d):
            role.update((id(p), "extra_batch_norm") for p in module.adv.parameters())
        elif isinstance(module, WeightNoise):
            role[id(module.alpha)] = "alpha"
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            role.update((id(p), "batch_norm") for p in module.parameters(recurse=False) if id(p) not in role)
    counts = dict.fromkeys(("weights", "batch_norm", "extra_batch_norm", "alpha", "film"), 0)
    for p in model.parameters():
        counts[role.get(id(p), "weights")] += p.numel()
    counts["total"] = sum(counts.values())
    counts["overhead"] = counts["extra_batch_norm"] + counts["alpha"] + counts["film"]
    return counts


def _trace_convs(model: nn.Module, input_size: Sequence[int]) -> dict[str, tuple[nn.Conv2d, tuple[int, int], bool]]:
    """Run the model once on zeros (eval mode, RNG state restored): each conv's output H, W and whether it feeds a FiLM."""
    order: list[tuple[str, nn.Module]] = []
    shapes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, DualBatchNorm2d, nn.modules.batchnorm._BatchNorm)):
            hooks.append(module.register_forward_pre_hook(lambda mod, inp, name=name: order.append((name, mod))))
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[-2:]))))
    device = model_device(model)
    try:
        with eval_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    traced = {}
    for i, (name, module) in enumerate(order):
        if isinstance(module, nn.Conv2d) and name not in traced:
            norm = next((m for _, m in order[i + 1:] if not isinstance(m, nn.Conv2d)), None)
            traced[name] = (module, shapes[name], isinstance(norm, DualBatchNorm2d) and norm.film is not None)
    return traced


def asic_conv_delays(model: nn.Module, input_size: Sequence[int], *, film_in_features: int = 1,
                     io_bandwidth: int = 16, weight_bits: int = 8, banks: int = 4, multipliers: int = 175,
                     read_ns: float = 9.0, mult_ns: float = 4.0) -> list[dict]:
    """Per-conv delay on a Von-Neumann ASIC: plain (Eq. 7), FLOAT (Eq. 8) and OAT (Eq. 9 of FLOAT), in ns.

    Reads ceil(n / ((B_IO / B_W) N_bank)) * tau_read, multiplies ceil(n / N_mult) * H_o W_o * tau_mult with
    n = k^2 C_i C_o; FLOAT adds one multiply round for the noise; OAT also reads and multiplies the FiLM weights
    2 d C_o + 4 C_o^2 (d = ``film_in_features``; d = 1 is the paper's count) of convs followed by a FiLM. Pass an
    OAT model to find those (ResNet shortcut convs have none); a model without FiLM counts a FiLM after every
    conv. Defaults: the 65 nm values of Sec. 4.3. ``input_size`` is (C, H, W); the model runs once, in eval
    mode, with the RNG state restored.
    """
    for name, value in dict(film_in_features=film_in_features, io_bandwidth=io_bandwidth, weight_bits=weight_bits,
                            banks=banks, multipliers=multipliers).items():
        checks.integer(name, value, low=1)
    if len(input_size) != 3 or min(input_size) < 1:
        raise ValueError(f"input_size must be (channels, height, width) with positive entries, got {tuple(input_size)!r}")
    traced = _trace_convs(model, input_size)
    every_conv = not any(isinstance(m, FiLM) for m in model.modules())

    def read_delay(n: int) -> float:
        return -(-n * weight_bits // (io_bandwidth * banks)) * read_ns

    def mult_rounds(n: int) -> int:
        return -(-n // multipliers)

    rows = []
    for name, (conv, (h, w), feeds_film) in traced.items():
        n, c_out = conv.weight.numel(), conv.out_channels
        film = 2 * film_in_features * c_out + 4 * c_out ** 2 if (feeds_film or every_conv) else 0
        plain = read_delay(n) + mult_rounds(n) * h * w * mult_ns
        float_ns = read_delay(n) + mult_rounds(n) * (1 + h * w) * mult_ns
        oat = read_delay(n + film) + mult_rounds(n) * h * w * mult_ns + mult_rounds(film) * mult_ns
        rows.append({"layer": name, "in_channels": conv.in_channels, "out_channels": c_out,
                     "kernel": tuple(conv.kernel_size), "out_height": h, "out_width": w, "weights": n,
                     "film_weights": film, "conv_ns": plain, "float_ns": float_ns, "oat_ns": oat,
                     "float_ratio": float_ns / plain, "oat_ratio": oat / plain})
    return rows
