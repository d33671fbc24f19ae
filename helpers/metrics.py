"""Measures: accuracy, FLOPs (static, dynamic, reduced), the recovery of a saving, PSNR, and timing."""
from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import batch_slices, checks, eval_mode


def predictions(output: torch.Tensor) -> torch.Tensor:
    """Class predictions: arg-max of (N, K) logits, or ``logit > 0`` for a single logit (N,)."""
    return (output > 0).long() if output.dim() == 1 else output.argmax(dim=1)


def correct(output: torch.Tensor, y: torch.Tensor) -> int:
    """How many predictions equal the labels."""
    return int((predictions(output) == y).sum())


def accuracy(output: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions, in [0, 1]."""
    checks.nonempty("y", len(y))
    return correct(output, y) / len(y)


# --------------------------------------------------------------------------------------------
# FLOPs, reduced FLOPs, recovery of a saving, PSNR
#
# FLOPs convention: one FLOP = one multiply-add (MAC) of a convolution or a linear layer, bias excluded;
# batch norm, ReLU, pooling, additions and gathers are not counted. This is what SkipNet/ILFO/GradAuto report as
# "FLOPs" (and fvcore's convention); ``torch.utils.flop_counter``, our cross-check, counts 2 per MAC.

def _macs_per_sample(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """Multiply-adds one sample costs in a Conv2d (k_h k_w C_in/groups per output element) or Linear (in x out)."""
    if isinstance(module, torch.nn.Conv2d):
        kh, kw = module.kernel_size
        return int(output[0].numel()) * kh * kw * (module.in_channels // module.groups)
    return int(output[0].numel()) * module.in_features


def module_flops(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per-sample multiply-adds of every ``nn.Conv2d`` / ``nn.Linear`` that ``model(x)`` runs, keyed by module name.

    Measured with forward hooks on one forward pass (no gradient); a module that does not run is absent.
    Per sample = the first sample's cost (every sample takes the same path in a static network).
    """
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch, got shape {tuple(x.shape)}")
    costs: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            def hook(mod, inputs, output, name=name):
                costs[name] = costs.get(name, 0) + _macs_per_sample(mod, inputs, output)
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return costs


class _WithGates(torch.nn.Module):
    """Logits and every gate probability of a dynamic net, as a tuple (for tracing)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple:
        logits, trace = self.model.forward_with_gates(x)
        return (logits, *trace.probs)


def static_flops_reference(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Per-sample multiply-adds of conv and linear layers as ``torch.utils.flop_counter`` counts them (the
    independent cross-check of :func:`module_flops`' hooks).

    ``input_shape`` is (C, H, W). The counter counts 2 FLOPs per multiply-add of convolutions and matrix
    products and nothing for batch norm, pooling or activations, so half its total is this module's convention.
    A dynamic net (one with ``forward_with_gates``) should be passed with all its gates forced on
    (``helpers.models.all_gates_on``); its gating networks are counted too. One forward pass runs first,
    uncounted, so that work a model does once on its first call is not counted.
    """
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
    param = next(model.parameters())
    x = torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device)
    counted = _WithGates(model) if hasattr(model, "forward_with_gates") else model
    with eval_mode(model), torch.no_grad():
        counted(x)
        with FlopCounterMode(display=False) as counter:
            counted(x)
    total = counter.get_total_flops()
    if total % 2:
        raise RuntimeError(f"torch.utils.flop_counter counted an odd number of FLOPs ({total}) for {type(model).__name__}")
    return total // 2


def flops_reduction(dynamic: torch.Tensor, static: int | float) -> float:
    """Share of the static FLOPs a dynamic net saves on average: 1 - mean(dynamic) / static, in [0, 1].

    ``dynamic`` holds per-sample FLOPs (e.g. ``model.dynamic_flops(x)``), ``static`` the all-gates-on cost.
    GradAuto (Sec. 5.1) quotes SkipNet's 15.08% (SP) and 29.94% (+HRL): skipped blocks of its ResNet-101 on ImageNet.
    """
    dynamic = torch.as_tensor(dynamic, dtype=torch.float64)
    checks.nonempty("dynamic", dynamic.numel())
    checks.number("static", static, low=0, low_open=True)
    return float(1.0 - dynamic.mean() / float(static))


def recovery(clean_cost: torch.Tensor, adv_cost: torch.Tensor, full_cost: int | float) -> float:
    """Share of the saving that an attack takes back: (saving_clean - saving_adv) / saving_clean.

    saving = full_cost - mean(cost) over the samples (ratio of means, as the official GradAuto code's running
    totals); costs in any unit (FLOPs, executed units). 1.0 = the attacked net is as costly as the static one.
    NaN when the clean inputs save nothing.
    """
    clean_cost = torch.as_tensor(clean_cost, dtype=torch.float64)
    adv_cost = torch.as_tensor(adv_cost, dtype=torch.float64)
    checks.nonempty("clean_cost", clean_cost.numel())
    checks.nonempty("adv_cost", adv_cost.numel())
    saving_clean = float(full_cost) - float(clean_cost.mean())
    saving_adv = float(full_cost) - float(adv_cost.mean())
    if saving_clean <= 0:
        return float("nan")
    return (saving_clean - saving_adv) / saving_clean


RECOVERY_WEIGHTS = ("flops", "count")


def flops_recovery(clean, adv, static: int | float | None = None, weights: str = "flops") -> float:
    """Recovery of the reduced FLOPs (GradAuto Sec. 5 / ILFO), FLOP-weighted or counting gated units.

    ``clean`` and ``adv``: per-sample dynamic FLOPs tensors (with ``static``), or ``GateTrace`` objects of the
    clean and attacked inputs. ``weights="flops"``: every unit weighs its FLOPs (lambda_l = C_l / sum C_l, Eq. 6);
    ``weights="count"``: every gated unit (block; channel for width nets) weighs 1, as the official code counts
    executed gated blocks. See :func:`recovery`.
    """
    checks.choice("weights", weights, RECOVERY_WEIGHTS)
    traces = hasattr(clean, "executed") and hasattr(adv, "executed")
    if weights == "count":
        if not traces:
            raise ValueError("weights='count' needs GateTrace objects for clean and adv")
        return recovery(clean.executed_units(), adv.executed_units(), clean.total_units())
    if traces:
        return recovery(clean.dynamic_flops(), adv.dynamic_flops(), clean.static_flops)
    if static is None:
        raise ValueError("static must be given when clean and adv are FLOPs tensors")
    return recovery(clean, adv, static)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(MAX^2 / MSE) in dB (GradAuto Sec. 5, Metric).

    MSE is the mean over all pixels and channels of one image; identical images give +inf. Returns (N,).
    """
    if x.shape != y.shape or x.dim() < 2:
        raise ValueError(f"x and y must be batches of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    checks.number("data_range", data_range, low=0, low_open=True)
    mse = (x.detach().double() - y.detach().double()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(data_range ** 2 / mse)).float()


def per_sample_recovery(clean_cost: torch.Tensor, adv_cost: torch.Tensor, full_cost: int | float) -> torch.Tensor:
    """Per-sample share of the saving an attack takes back, (adv - clean) / (full - clean) (see :func:`recovery`,
    which is the ratio of the batch means); NaN where the clean input saves nothing. Same device as the inputs."""
    clean_cost = torch.as_tensor(clean_cost, dtype=torch.float64)
    adv_cost = torch.as_tensor(adv_cost, dtype=torch.float64)
    saving = float(full_cost) - clean_cost
    share = (adv_cost - clean_cost) / saving.clamp(min=1e-12)
    return torch.where(saving > 0, share, torch.full_like(share, float("nan")))


# --------------------------------------------------------------------------------------------
# Timing (wall clock; on a shared CPU compare candidates timed in the same run, alternated)


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones.

    On a shared CPU, compare candidates timed in the same run (alternate them) rather than across runs.
    """
    checks.integer("repeats", repeats, low=1)
    checks.integer("warmup", warmup, low=0)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency_per_sample(model: torch.nn.Module, x: torch.Tensor, repeats: int = 3, warmup: int = 2) -> torch.Tensor:
    """Wall-clock seconds of ``model`` on each image of ``x`` alone (batch 1, no gradient): (N,), median of ``repeats``.

    The model runs as it is (eval mode is the caller's choice); ``warmup`` untimed passes on the first image come
    first. On a shared CPU the numbers are inflated by other processes: compare within one run.
    """
    checks.nonempty("x", len(x))
    checks.integer("repeats", repeats, low=1)
    checks.integer("warmup", warmup, low=0)
    times = torch.empty(len(x), repeats, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(warmup):
            model(x[:1])
        for i in range(len(x)):
            xi = x[i:i + 1]
            for r in range(repeats):
                start = time.perf_counter()
                model(xi)
                times[i, r] = time.perf_counter() - start
    return times.median(1).values


def paired_latency(model: torch.nn.Module, x: torch.Tensor, variant: Callable[[torch.nn.Module], AbstractContextManager],
                   rounds: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image latency (batch 1) of ``model`` as it is and within ``variant(model)`` (e.g. every gate forced on),
    the two passes alternating over ``rounds`` so that drift of a shared CPU hits both alike: two (N,) medians."""
    checks.integer("rounds", rounds, low=1)
    pairs = []
    for _ in range(rounds):
        plain = latency_per_sample(model, x, repeats=1)
        with variant(model):
            pairs.append((plain, latency_per_sample(model, x, repeats=1)))
    return (torch.stack([p for p, _ in pairs]).median(0).values, torch.stack([v for _, v in pairs]).median(0).values)


def throughput(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 64, repeats: int = 1) -> float:
    """Images per second of ``model`` over ``x`` in batches of ``batch_size`` (no gradient; best of ``repeats``)."""
    checks.nonempty("x", len(x))
    checks.integer("batch_size", batch_size, low=1)
    checks.integer("repeats", repeats, low=1)
    best = float("inf")
    with torch.no_grad():
        model(x[:batch_size])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for part in batch_slices(len(x), batch_size):
                model(x[part])
            best = min(best, time.perf_counter() - start)
    return len(x) / best


def seconds_per_sample(model: torch.nn.Module, x: torch.Tensor, repeats: int = 3, batch_size: int = 100) -> float:
    """Median wall-clock seconds per image of ``model`` over ``x`` in batches of ``batch_size`` (no gradient; one
    untimed pass first), :func:`median_seconds` of ``repeats`` passes divided by ``len(x)``."""
    checks.nonempty("x", len(x))
    checks.integer("batch_size", batch_size, low=1)

    def one_pass() -> None:
        with torch.no_grad():
            for part in batch_slices(len(x), batch_size):
                model(x[part])

    return median_seconds(one_pass, repeats=repeats, warmup=1) / len(x)
