"""Energy-oriented attacks on dynamic networks: ILFO (Haque et al. 2020) and GradAuto (Pan et al. 2022).

One implementation with switches. The attack perturbs an image so that more gates of a dynamic network open
(more blocks, channels or positions are computed), while staying close to the image. It needs no label: it
calls only ``model.forward_with_gates(x) -> (logits, trace)`` and uses the gate probabilities ``trace.probs``
(p > 0.5 executes), the hard decisions ``trace.executed`` and the per-unit costs ``trace.unit_flops``.

* ILFO (the baseline of Table 2): Adam on the objective of Eq. 7,
  ``||x' - x0||_2 + CHW * L_C`` with the complexity loss ``L_C = sum lambda * max(tau - p, 0)`` (Eqs. 6 and 8).
* GradAuto: the same objective, with the complexity gradient rectified before Adam sees it:
  magnitude (RM, Eq. 17: ``g_C <- K * g_C / ||g_C||`` per image) and direction (RD, Eqs. 20-25: the
  component of ``g_C`` that conflicts with the finished gradient ``g_F`` is removed).

The paper's text and its official code (JianhongPan/GradAuto, SkipNet on ImageNet) differ in places; the defaults
follow the text and every official choice is a switch (see :func:`energy_attack`).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
from ..progress import tqdm

from .. import checks, eval_mode
from ..metrics import accuracy, flops_recovery, per_sample_recovery, psnr, recovery, seconds_per_sample
from ..models.dynamic import DynamicResNet, GateTrace, all_gates_on, dense_execution, gate_pass

__all__ = [
    "ENERGY_METHODS", "EnergyAttack", "EnergyAttackResult", "complexity_losses", "energy_attack", "gate_weights",
    "rectify_complexity_gradient", "timed_attack", "attack_summary", "inference_seconds", "obtuse_share",
    "gate_closings", "gradient_spikiness", "recovery_milestones", "budgeted_flops", "pooled_recovery",
    "recovery_gap", "flops_arms",
]

ENERGY_METHODS = ("ilfo", "gradauto")
PARAMETERISATIONS = ("cw", "literal")
DISTORTIONS = ("l2", "squared")
ORDERS = ("paper", "official")
WEIGHTINGS = ("flops", "uniform")
_ATANH_SHRINK = 1 - 1e-6  # keeps atanh finite at pixels that are exactly 0 or 1


# --------------------------------------------------------------------------------------------
# Pieces: gate weights, losses, rectification, FLOPs of a trace
# --------------------------------------------------------------------------------------------

def _flat_probs(trace: Any) -> torch.Tensor:
    """All gate probabilities of a trace as one (N, G) tensor (units in order, channels within a unit)."""
    return torch.cat([p.reshape(p.shape[0], -1) for p in trace.probs], dim=1)


def gate_weights(trace: Any, weighting: str = "flops") -> torch.Tensor:
    """The weights lambda of the complexity loss, one per gate, shape (G,) (Eq. 6 and Eq. 8 of GradAuto).

    ``"flops"``: lambda = C_l / sum C (the cost of the unit or channel the gate controls, as a share of all gated
    costs; the weights sum to 1). ``"uniform"``: lambda = 1 for every gate (the official code sums the gates).
    """
    checks.choice("weighting", weighting, WEIGHTINGS)
    costs = [torch.full((p[0].numel(),), float(c), dtype=torch.float64) for p, c in zip(trace.probs, trace.unit_flops)]
    costs = torch.cat(costs)
    if weighting == "uniform":
        return torch.ones_like(costs, dtype=torch.float32)
    if costs.sum() <= 0:
        raise ValueError("trace.unit_flops must contain a positive cost for the 'flops' weighting")
    return (costs / costs.sum()).float()


def complexity_losses(probs: torch.Tensor, weights: torch.Tensor, tau: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image complexity loss L_C (Eq. 6/8) and finished loss L_F (Eq. 20), each of shape (N,).

    ``L_C = sum_g lambda_g max(tau - p_g, 0)`` is positive while closed gates remain (it pushes them open);
    ``L_F = -sum_g lambda_g max(p_g - tau, 0)`` covers the open gates (its gradient keeps them open).
    """
    weights = weights.to(probs.dtype)
    complexity = (weights * torch.clamp(tau - probs, min=0)).sum(dim=1)
    finished = -(weights * torch.clamp(probs - tau, min=0)).sum(dim=1)
    return complexity, finished


def _per_image_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1) * b.flatten(1)).sum(dim=1)


def _per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def rectify_complexity_gradient(
    g_complexity: torch.Tensor,
    g_finished: torch.Tensor | None,
    *,
    rectify_direction: bool,
    rectify_magnitude: bool,
    K: float = 1.0,
    order: str = "paper",
    eps: float = 1e-20,
) -> torch.Tensor:
    """GradAuto's rectified complexity gradient, per image (Eq. 17 magnitude, Eqs. 23-25 direction).

    Direction (RD): with d = g_F / ||g_F||, the projection <g_C, d> d is removed only when <g_C, g_F> < 0 (it
    would close open gates); otherwise g_C passes unchanged. Magnitude (RM): g_C <- K g_C / ||g_C||.
    ``order="paper"``: RM then RD (Eq. 17 defines the rectified loss whose gradient Eq. 22 projects; norm <= K);
    ``order="official"``: RD then RM (the official code normalises after projecting; norm exactly K).
    An image whose gradient is zero (no closed gate, or saturated gates) keeps a zero gradient.
    """
    checks.choice("order", order, ORDERS)
    if rectify_magnitude:
        checks.number("K", K, low=0, low_open=True)
    if rectify_direction and g_finished is None:
        raise ValueError("g_finished is required when rectify_direction=True")
    g = g_complexity

    def magnitude(v: torch.Tensor) -> torch.Tensor:
        norm = v.flatten(1).norm(dim=1)
        return K * v / _per_image(norm + eps, v)

    def direction(v: torch.Tensor) -> torch.Tensor:
        norm_f = g_finished.flatten(1).norm(dim=1)
        unit = g_finished / _per_image(norm_f + eps, g_finished)
        projection = _per_image_dot(v, unit).clamp(max=0)  # keep only the conflicting (negative) part, Eq. 25
        return v - _per_image(projection, v) * unit

    if rectify_magnitude and order == "paper":
        g = magnitude(g)
    if rectify_direction:
        g = direction(g)
    if rectify_magnitude and order == "official":
        g = magnitude(g)
    return g


# --------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------

@dataclass
class EnergyAttackResult:
    """What :func:`energy_attack` returns.

    ``x_adv`` (N, C, H, W) in [0, 1]; ``flops``/``clean_flops`` (N,) dynamic FLOPs of the attacked/clean images
    and ``static_flops`` (all gates on); ``iterations`` (N,) Adam steps each image received; ``history`` (with
    ``record=True``): per-iteration tensors of shape (T, N) — ``flops``, ``mse`` (distortion per pixel),
    ``grad_norm_finished`` / ``grad_norm_complexity`` (||g_F||, ||g_C|| before rectification),
    ``grad_norm_update`` (||CHW * rectified g_C||, what Adam receives from the complexity term), ``angle`` (degrees
    between g_F and g_C; NaN when either is zero), ``open_gates`` — and ``gates`` (T, S, G), the gate probabilities
    of the first S images. Images that stopped early carry NaN after their last iteration.
    """

    x_adv: torch.Tensor
    flops: torch.Tensor
    clean_flops: torch.Tensor
    static_flops: float
    iterations: torch.Tensor
    settings: dict
    history: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def recovery(self) -> float:
        """Share of the clean images' saved FLOPs that the attack recovered, FLOP-weighted over the batch:
        (mean adv - mean clean) / (static - mean clean) (:func:`helpers.metrics.recovery`); NaN if nothing is saved."""
        return recovery(self.clean_flops, self.flops, self.static_flops)

    def recovery_curve(self) -> torch.Tensor:
        """(T,) the batch's recovery (:meth:`recovery`) after each iteration, from the recorded per-image FLOPs
        (needs ``record=True``); NaN at an iteration where an image had already stopped."""
        if self.history is None:
            raise ValueError("recovery_curve needs the history: run the attack with record=True")
        return torch.tensor([recovery(self.clean_flops, flops, self.static_flops) for flops in self.history["flops"]],
                            dtype=torch.float64)


@dataclass(frozen=True)
class EnergyAttack:
    """One energy-attack setting (ILFO or GradAuto; Eqs. 3, 6-8, 17, 20-25 of GradAuto): the only place its switches
    and defaults live. Calling it runs :func:`energy_attack`; ``describe()`` gives the label used in tables
    (ILFO / RD / RM / GradAuto (RD+RM)).

    ``method``: "ilfo" (Adam on the complexity gradient) or "gradauto" (rectified; ``rectify_direction`` /
    ``rectify_magnitude`` default to True and give the ablation of Table 2; ``K`` is the Lipschitz constant of
    Eq. 17). ``steps`` Adam iterations at ``lr`` on delta (the paper: 300 at 0.01, delta initialised to 0).
    Switches (default = the paper's text; the official code's choice in brackets):
    ``parameterisation``: ``"cw"`` w0 = atanh(2 x0 - 1), Carlini & Wagner's change of variables that Eq. 3 cites,
    so delta = 0 is the clean image; ``"literal"`` w0 = x0 exactly as Eq. 3 is printed (delta = 0 is then the
    contrast-squashed (tanh(x0) + 1) / 2; the official tanh_rescale has the same property).
    ``distortion``: ``"l2"`` the norm ||x' - x0||_2 of Eq. 7 [``"squared"``: sum of squares].
    ``order``: ``"paper"`` RM then RD [``"official"``: RD then RM]. ``weighting``: ``"flops"`` lambda_l = C_l / sum C
    (Eqs. 6, 8) [``"uniform"``: every gate weight 1]. ``tau``: the gate threshold.
    ``init_std`` > 0 draws delta ~ N(0, init_std^2) from the run's generator (default 0: deterministic).
    ``target_recovery``: an image stops (keeps its current x') once its own recovery of the saved FLOPs
    (:func:`helpers.metrics.per_sample_recovery`) reaches the target (images that save nothing stop at once).
    """

    method: str = "gradauto"
    rectify_direction: bool | None = None
    rectify_magnitude: bool | None = None
    K: float = 1.0
    steps: int = 300
    lr: float = 0.01
    tau: float = 0.5
    parameterisation: str = "cw"
    distortion: str = "l2"
    order: str = "paper"
    weighting: str = "flops"
    init_std: float = 0.0
    target_recovery: float | None = None

    def __post_init__(self) -> None:
        _resolve_switches(self.method, self.rectify_direction, self.rectify_magnitude)
        checks.choice("parameterisation", self.parameterisation, PARAMETERISATIONS)
        checks.choice("distortion", self.distortion, DISTORTIONS)
        checks.choice("order", self.order, ORDERS)
        checks.choice("weighting", self.weighting, WEIGHTINGS)
        checks.integer("steps", self.steps, low=0)
        checks.number("lr", self.lr, low=0, low_open=True)
        checks.number("K", self.K, low=0, low_open=True)
        checks.number("tau", self.tau, 0, 1, low_open=True, high_open=True)
        checks.number("init_std", self.init_std, low=0)
        if self.target_recovery is not None:
            checks.number("target_recovery", self.target_recovery, 0, 1, low_open=True)

    def switches(self) -> tuple[bool, bool]:
        """(rectify_direction, rectify_magnitude) after applying the method's defaults."""
        return _resolve_switches(self.method, self.rectify_direction, self.rectify_magnitude)

    def describe(self) -> str:
        rd, rm = self.switches()
        if not (rd or rm):
            return "ILFO (baseline)"
        name = {(True, False): "RD", (False, True): "RM", (True, True): "GradAuto (RD+RM)"}[(rd, rm)]
        return f"{name}, K={self.K:g}" if rm else name

    def as_dict(self) -> dict:
        return asdict(self)

    def settings(self) -> dict:
        """The settings with the method's switches resolved (what :attr:`EnergyAttackResult.settings` holds)."""
        rd, rm = self.switches()
        return {**self.as_dict(), "rectify_direction": rd, "rectify_magnitude": rm}

    def __call__(self, model: nn.Module, x: torch.Tensor, **options) -> EnergyAttackResult:
        """Run this attack on ``x``; ``options`` are :func:`energy_attack`'s (batch_size, record, ...)."""
        return energy_attack(model, x, self, **options)


def _resolve_switches(method: str, rectify_direction: bool | None, rectify_magnitude: bool | None) -> tuple[bool, bool]:
    checks.choice("method", method, ENERGY_METHODS)
    if method == "ilfo":
        if rectify_direction or rectify_magnitude:
            raise ValueError("method='ilfo' has no rectification; for the ablation use method='gradauto' with "
                             f"rectify_direction/rectify_magnitude, got {rectify_direction!r}, {rectify_magnitude!r}")
        return False, False
    rd = True if rectify_direction is None else bool(rectify_direction)
    rm = True if rectify_magnitude is None else bool(rectify_magnitude)
    return rd, rm


def energy_attack(model: nn.Module, x: torch.Tensor, attack: EnergyAttack = EnergyAttack(), *,
                  batch_size: int | None = None, record: bool = False, record_samples: int = 4,
                  generator: torch.Generator | None = None, progress: bool = False) -> EnergyAttackResult:
    """Run the energy ``attack`` (ILFO or GradAuto, :class:`EnergyAttack`) on a batch of images in [0, 1]; no label.

    The image is ``x' = (tanh(w0 + delta) + 1) / 2`` (Eq. 3 of GradAuto); each Adam iteration receives
    ``grad ||x' - x0|| + CHW * g``, Eq. 7, where g is the complexity gradient (ILFO) or its rectified version
    (Eqs. 17, 20-25); model in eval mode. Images are independent (per-image losses, norms and Adam coordinates),
    so ``batch_size`` (chunks of ``x``) does not change the result. ``record`` keeps the per-iteration history for
    Figs 1-2 (see :class:`EnergyAttackResult`) with the gates of the first ``record_samples`` images;
    ``generator`` draws the random start when ``attack.init_std`` > 0.
    """
    if not isinstance(attack, EnergyAttack):
        raise ValueError(f"attack must be an EnergyAttack, got {type(attack).__name__}")
    if batch_size is not None:
        checks.integer("batch_size", batch_size, low=1)
    checks.integer("record_samples", record_samples, low=0)
    if not torch.is_tensor(x) or x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty (N, ...) tensor of images, got {type(x).__name__}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"x must be in [0, 1], got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    if not hasattr(model, "forward_with_gates"):
        raise ValueError("model must have forward_with_gates(x) -> (logits, trace); got "
                         f"{type(model).__name__}")

    settings = attack.settings()
    rd, rm = settings["rectify_direction"], settings["rectify_magnitude"]
    method, steps = attack.method, attack.steps
    chunk = batch_size or len(x)
    starts = range(0, len(x), chunk)
    parts = []
    bar = None
    if progress:
        bar = tqdm(total=len(starts) * steps, desc=f"{method} {'RD' if rd else ''}{'+' if rd and rm else ''}"
                   f"{'RM' if rm else ''}".strip(), leave=False)
    with eval_mode(model):
        for start in starts:
            parts.append(_attack_chunk(model, x[start:start + chunk].detach(), rd, rm, settings,
                                       record=record, record_samples=max(0, record_samples - start),
                                       generator=generator, bar=bar))
    if bar is not None:
        bar.close()
    history = _merge_histories([p["history"] for p in parts]) if record else None
    return EnergyAttackResult(
        x_adv=torch.cat([p["x_adv"] for p in parts]), flops=torch.cat([p["flops"] for p in parts]),
        clean_flops=torch.cat([p["clean_flops"] for p in parts]), static_flops=parts[0]["static_flops"],
        iterations=torch.cat([p["iterations"] for p in parts]), settings=settings, history=history)


def _trace_flops(trace: Any, device: torch.device) -> torch.Tensor:
    """(N,) FLOPs of a gate trace as float64 on ``device`` (:meth:`GateTrace.dynamic_flops` owns the count)."""
    return trace.dynamic_flops().to(device, torch.float64)


def _static_flops(model: nn.Module) -> float:
    if hasattr(model, "static_flops"):
        return float(model.static_flops())
    raise ValueError(f"model must have static_flops(); {type(model).__name__} has not")


def _attack_chunk(model: nn.Module, x0: torch.Tensor, rd: bool, rm: bool, s: dict, *, record: bool,
                  record_samples: int, generator: torch.Generator | None, bar) -> dict:
    n = len(x0)
    chw = x0[0].numel()  # Eq. 7's 3HW: the number of input values of one image
    with torch.no_grad():
        _, clean_trace = model.forward_with_gates(x0)
    static = _static_flops(model)
    clean_flops = _trace_flops(clean_trace, x0.device)
    weights = gate_weights(clean_trace, s["weighting"]).to(x0.device)

    if s["parameterisation"] == "cw":
        w0 = torch.atanh((2 * x0 - 1) * _ATANH_SHRINK)
    else:
        w0 = x0.clone()
    delta = torch.zeros_like(x0)
    if s["init_std"] > 0:
        delta = s["init_std"] * torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    delta.requires_grad_(True)
    optimizer = torch.optim.Adam([delta], lr=s["lr"])
    active = torch.ones(n, dtype=torch.bool, device=x0.device)
    iterations = torch.zeros(n, dtype=torch.long)
    need_finished = rd or record
    target = s["target_recovery"]
    hist: dict[str, list] = {k: [] for k in ("flops", "mse", "grad_norm_finished", "grad_norm_complexity",
                                             "grad_norm_update", "angle", "open_gates", "gates")}

    def image(d: torch.Tensor) -> torch.Tensor:
        return 0.5 * (torch.tanh(w0 + d) + 1)

    x_adv = image(delta.detach())
    for _ in range(s["steps"]):
        with torch.enable_grad():
            x_adv = image(delta)
            _, trace = model.forward_with_gates(x_adv)
            probs = _flat_probs(trace)
            loss_c, loss_f = complexity_losses(probs, weights, s["tau"])
            residual = (x_adv - x0).flatten(1)
            if s["distortion"] == "l2":
                dist = torch.sqrt((residual ** 2).sum(dim=1) + 1e-24)  # Eq. 7's norm; finite gradient at 0
            else:
                dist = (residual ** 2).sum(dim=1)
            (g_c,) = torch.autograd.grad(loss_c.sum(), delta, retain_graph=True, allow_unused=True)
            g_f = None
            if need_finished:
                (g_f,) = torch.autograd.grad(loss_f.sum(), delta, retain_graph=True, allow_unused=True)
                g_f = torch.zeros_like(delta) if g_f is None else g_f
            (g_d,) = torch.autograd.grad(dist.sum(), delta)
        g_c = torch.zeros_like(delta) if g_c is None else g_c
        with torch.no_grad():
            flops = _trace_flops(trace, x0.device)
            was_active = active.clone()
            if target is not None:
                reached = ~(per_sample_recovery(clean_flops, flops, static) < target)  # NaN (nothing saved): stop
                active = active & ~reached
            update = rectify_complexity_gradient(g_c, g_f, rectify_direction=rd, rectify_magnitude=rm, K=s["K"],
                                                 order=s["order"]) if (rd or rm) else g_c
            update = chw * update
            if record:
                _record(hist, was_active.cpu(), flops, residual.detach(), g_f, g_c, update, probs.detach(),
                        s["tau"], record_samples)
            if not bool(active.any()):
                break
            mask = _per_image(active.to(delta.dtype), delta)
            delta.grad = (g_d + update) * mask
            iterations += active.cpu().long()
        # Adam with a zero gradient still moves a coordinate that has momentum: freeze stopped images exactly.
        frozen = delta.detach().clone()
        optimizer.step()
        with torch.no_grad():
            delta.copy_(torch.where(_per_image(active, delta), delta, frozen))
        if bar is not None:
            bar.update(1)
    with torch.no_grad():
        x_adv = image(delta.detach()).clamp(0, 1)
        _, final_trace = model.forward_with_gates(x_adv)
        final_flops = _trace_flops(final_trace, x0.device)
    history = None
    if record:
        history = {k: torch.stack(v) for k, v in hist.items() if v}
    return dict(x_adv=x_adv.detach(), flops=final_flops, clean_flops=clean_flops, static_flops=static,
                iterations=iterations, history=history)


def _record(hist: dict[str, list], mask: torch.Tensor, flops: torch.Tensor, residual: torch.Tensor, g_f: torch.Tensor,
            g_c: torch.Tensor, update: torch.Tensor, probs: torch.Tensor, tau: float, record_samples: int) -> None:
    """Append one iteration of the history; images that already stopped (``mask`` False) get NaN."""
    def keep(v: torch.Tensor) -> torch.Tensor:
        v = v.double().cpu()
        return torch.where(mask, v, torch.full_like(v, float("nan")))

    norm_f, norm_c = g_f.flatten(1).norm(dim=1), g_c.flatten(1).norm(dim=1)
    cos = _per_image_dot(g_f, g_c) / (norm_f * norm_c)
    angle = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
    angle = torch.where((norm_f > 0) & (norm_c > 0), angle, torch.full_like(angle, float("nan")))
    hist["flops"].append(keep(flops))
    hist["mse"].append(keep((residual ** 2).mean(dim=1)))
    hist["grad_norm_finished"].append(keep(norm_f))
    hist["grad_norm_complexity"].append(keep(norm_c))
    hist["grad_norm_update"].append(keep(update.flatten(1).norm(dim=1)))
    hist["angle"].append(keep(angle))
    hist["open_gates"].append(keep((probs > tau).sum(dim=1)))
    if record_samples:
        hist["gates"].append(probs[:record_samples].cpu())


def _merge_histories(histories: list[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor]:
    """Concatenate chunk histories along the image axis, NaN-padding chunks that stopped earlier."""
    out: dict[str, torch.Tensor] = {}
    keys = {k for h in histories if h for k in h}
    for key in sorted(keys):
        pieces = [h[key] for h in histories if h and key in h]
        length = max(p.shape[0] for p in pieces)
        padded = []
        for p in pieces:
            if p.shape[0] < length:
                pad = torch.full((length - p.shape[0], *p.shape[1:]), float("nan"), dtype=p.dtype)
                p = torch.cat([p, pad])
            padded.append(p)
        out[key] = torch.cat(padded, dim=1)
    return out


# --------------------------------------------------------------------------------------------
# Running and measuring an attack on a dynamic net: Tables 1-2 and Figs 1-2 of GradAuto
# --------------------------------------------------------------------------------------------

def timed_attack(model: DynamicResNet, x: torch.Tensor, attack: EnergyAttack,
                 **options) -> tuple[EnergyAttackResult, float]:
    """``attack`` (ILFO or GradAuto, Eqs. 3-8, 17, 20-25) on a dynamic net that computes densely and masks meanwhile
    (:func:`helpers.models.dense_execution`: the same gates and gradients as the sparse path, faster for many small
    steps), and the wall-clock seconds it took. ``options`` are :func:`energy_attack`'s."""
    if not isinstance(model, DynamicResNet):
        raise ValueError(f"model must be a DynamicResNet (it computes densely during the attack); got "
                         f"{type(model).__name__}")
    start = time.perf_counter()
    with dense_execution(model):
        result = attack(model, x, **options)
    return result, time.perf_counter() - start


def attack_summary(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, *, y: torch.Tensor | None = None,
                   clean: tuple[torch.Tensor, GateTrace] | None = None,
                   adv: tuple[torch.Tensor, GateTrace] | None = None, batch_size: int = 100) -> dict[str, Any]:
    """One row of GradAuto's Tables 1-2 for attacked images ``x_adv`` of ``x``, from eval passes (:func:`gate_pass`).

    The recovery of the reduced FLOPs, FLOP-weighted (Eq. 6's lambda) and block-count (executed gated units, as the
    official code counts), the share of images back at the static cost, the FLOPs saved before and after, the mean
    PSNR (Sec. 5; identical images left out), the median gate value of the gates closed on the clean images before and
    after, and with labels ``y`` the accuracy on both. ``clean`` / ``adv``: the passes ``gate_pass(model, x)`` /
    ``gate_pass(model, x_adv)`` if at hand.
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    logits_c, trace_c = clean if clean is not None else gate_pass(model, x, batch_size)
    logits_a, trace_a = adv if adv is not None else gate_pass(model, x_adv, batch_size)
    static = trace_c.static_flops
    flops_c, flops_a = trace_c.dynamic_flops().double(), trace_a.dynamic_flops().double()
    probs_c, probs_a = trace_c.flat_probs(), trace_a.flat_probs()
    closed = probs_c <= 0.5
    p = psnr(x_adv, x)
    row = {"recovery, FLOP-weighted": flops_recovery(trace_c, trace_a),
           "recovery, block-count": flops_recovery(trace_c, trace_a, weights="count"),
           "images fully recovered": float((flops_a >= static).double().mean()),
           "FLOPs saved, clean -> attacked": f"{1 - flops_c.mean() / static:.1%} -> {1 - flops_a.mean() / static:.1%}",
           "PSNR (dB, mean)": float(p[torch.isfinite(p)].mean()),
           "closed gates: median p, clean -> attacked": (f"{probs_c[closed].median():.3f} -> "
                                                        f"{probs_a[closed].median():.3f}" if closed.any() else "-")}
    if y is not None:
        row.update({"clean accuracy": accuracy(logits_c, y), "accuracy on attacked": accuracy(logits_a, y)})
    return row


def _history(history: dict[str, torch.Tensor] | None, key: str) -> torch.Tensor:
    if not history or key not in history:
        raise ValueError(f"history must hold {key!r}: run the attack with record=True (and record_samples >= 1 for "
                         "the gates)")
    return history[key]


def obtuse_share(history: dict[str, torch.Tensor]) -> float:
    """Share of the (image, iteration) pairs with both gradients non-zero in which the complexity gradient g_C
    conflicts with the finished gradient g_F (angle > 90 degrees; GradAuto's Fig. 2C and Eq. 23); NaN if none."""
    angle = _history(history, "angle")
    ok = torch.isfinite(angle)
    return float((angle[ok] > 90).double().mean()) if ok.any() else float("nan")


def gate_closings(history: dict[str, torch.Tensor], tau: float = 0.5) -> float:
    """Gate closings per recorded image over an attack: an open gate (p > tau) closed at the next iteration (the
    conflict between gates of GradAuto's Fig. 1C/D), the mean over the recorded images."""
    checks.number("tau", tau, 0, 1, low_open=True, high_open=True)
    open_ = _history(history, "gates") > tau
    return float((open_[:-1] & ~open_[1:]).sum(dim=(0, 2)).double().mean())


def gradient_spikiness(history: dict[str, torch.Tensor]) -> float:
    """How much the raw ||g_C|| jumps over an attack (GradAuto's Fig. 1A/B, the motivation of Eq. 17): per image its
    largest non-zero value over the iterations divided by its median, the median over images; NaN if none."""
    norms, values = _history(history, "grad_norm_complexity"), []
    for i in range(norms.shape[1]):
        v = norms[:, i][torch.isfinite(norms[:, i]) & (norms[:, i] > 0)]
        if len(v) > 1:
            values.append(float(v.max() / v.median()))
    return float(statistics.median(values)) if values else float("nan")


def inference_seconds(model: DynamicResNet, x: torch.Tensor, attacked: Mapping[str, torch.Tensor], repeats: int = 3,
                      batch_size: int = 100) -> dict[str, float]:
    """What an energy attack costs on this machine: seconds per image of the eval-mode dynamic net (sparse inference)
    on the clean images ``x`` (``"clean"``), on each attack's images (``attacked``: name -> images) and on ``x`` with
    every gate on (``"all gates on"``, the static counterpart); :func:`helpers.metrics.seconds_per_sample` each."""
    seconds = {"clean": seconds_per_sample(model, x, repeats, batch_size)}
    for name, images in attacked.items():
        seconds[name] = seconds_per_sample(model, images, repeats, batch_size)
    with all_gates_on(model):
        seconds["all gates on"] = seconds_per_sample(model, x, repeats, batch_size)
    return seconds


def recovery_milestones(curve: torch.Tensor | Any, name: str, threshold: float = 0.95) -> dict[str, str]:
    """How fast an attack (``name``) recovers the saved FLOPs, from its recovery curve (``recovery_curve()``): the
    first iteration at ``threshold`` (or "not reached") and the best recovery with its iteration."""
    curve = torch.as_tensor(curve)
    hit = torch.nonzero(curve >= threshold).flatten()
    return {f"{name}: first iteration at {threshold:.0%}": str(int(hit[0])) if len(hit) else "not reached",
            f"{name}: best recovery (iteration)": f"{float(curve.max()):.1%} ({int(curve.argmax())})"}


# --------------------------------------------------------------------------------------------
# Judging attacks: recovery within a perturbation budget, pooled over seeds and images
# --------------------------------------------------------------------------------------------

def budgeted_flops(result: EnergyAttackResult, x: torch.Tensor, min_psnr: float) -> torch.Tensor:
    """(N,) float64: per image, the most FLOPs among the attack's iterates whose PSNR against ``x`` is at least
    ``min_psnr`` dB: what an attacker who watches the gates and keeps the best image inside the perturbation budget
    gets. The iterates are the recorded ones (``record=True``; iterate 0 is the start, the clean image at delta = 0)
    and the final image; an image none of whose iterates is inside the budget keeps its clean FLOPs (the attacker
    submits the clean image). Comparing attacks this way compares them at equal perturbation size."""
    checks.number("min_psnr", min_psnr)
    flops, mse = _history(result.history, "flops"), _history(result.history, "mse")
    if x.shape != result.x_adv.shape:
        raise ValueError(f"x must be the attacked images, shape {tuple(result.x_adv.shape)}; got {tuple(x.shape)}")
    with np.errstate(divide="ignore"):
        inside = torch.where(torch.isfinite(mse), 10.0 * torch.log10(1.0 / mse), torch.full_like(mse, -np.inf))
    inside = inside >= min_psnr
    best = torch.where(inside, flops, torch.full_like(flops, -np.inf)).max(dim=0).values
    final_inside = psnr(result.x_adv, x.to(result.x_adv.device)).double().cpu() >= min_psnr
    best = torch.where(final_inside, torch.maximum(best, result.flops.double().cpu()), best)
    return torch.maximum(best, result.clean_flops.double().cpu())


def pooled_recovery(adv: np.ndarray, clean: np.ndarray, static: np.ndarray) -> np.ndarray:
    """The recovery of the saved FLOPs pooled over seeds and images, (mean adv - mean clean) / (mean static - mean
    clean), of per-image FLOPs arrays ``[..., seeds, images]`` (``static``: each image's static cost, its seed's
    net's); the ratio of means of :func:`helpers.metrics.recovery`. A statistic for :func:`helpers.claims.bootstrap`."""
    adv, clean, static = (np.asarray(a, dtype=float) for a in (adv, clean, static))
    m_clean = clean.mean(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (adv.mean(axis=(-2, -1)) - m_clean) / (static.mean(axis=(-2, -1)) - m_clean)


def recovery_gap(adv_a: np.ndarray, adv_b: np.ndarray, clean: np.ndarray, static: np.ndarray) -> np.ndarray:
    """:func:`pooled_recovery` of attack A minus that of attack B on the same images (arrays ``[..., seeds, images]``):
    a paired statistic for :func:`helpers.claims.bootstrap`."""
    return pooled_recovery(adv_a, clean, static) - pooled_recovery(adv_b, clean, static)


def flops_arms(results: list[EnergyAttackResult], x: torch.Tensor, min_psnr: float | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-image FLOPs of one attack on the same images ``x``, one result per seed (each on its seed's net), as
    the arms ``(adv, clean, static)`` of :func:`pooled_recovery` / :func:`recovery_gap`: float arrays ``[seeds,
    images]``. ``adv`` is the last iterate's FLOPs, or with ``min_psnr`` the best iterate inside that perturbation
    budget (:func:`budgeted_flops`, needs ``record=True``)."""
    if not results:
        raise ValueError("flops_arms needs one attack result per seed; got none")
    adv = [(r.flops.double().cpu() if min_psnr is None else budgeted_flops(r, x, min_psnr)).numpy() for r in results]
    clean = [r.clean_flops.double().cpu().numpy() for r in results]
    static = [np.full(len(r.flops), float(r.static_flops)) for r in results]
    return np.stack(adv), np.stack(clean), np.stack(static)
