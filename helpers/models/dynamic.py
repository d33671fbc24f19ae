"""Dynamic networks of Chapter 3 (GradAuto): depth (SkipNet), adaptive computation time (SACT), width (ManiDP).

All three are built on the CIFAR ResNet family of :mod:`helpers.models.resnet` (its ``BasicBlock`` and
``cifar_resnet``) and share one interface, the one GradAuto's attacks use:

    logits, trace = model.forward_with_gates(x)    # trace.probs[l]: (N, k_l) gate probabilities, p > 0.5 <=> run
    model.static_flops(); model.dynamic_flops(x)   # multiply-adds per sample (helpers.metrics convention)

- ``SkipResNet`` (kind "depth", Wang et al. 2018): every residual block but the first has a gate on its input
  (global average pool -> BatchNorm1d -> Linear(C, 10) -> ReLU -> Linear(10, 1) -> sigmoid); the block runs when
  p > 0.5, else x_{l+1} = shortcut(x_l) (Eq. 1 of GradAuto). Training: supervised pre-training (SkipNet+SP) with
  hard gates, a straight-through gradient and a computation penalty (the FLOP-weighted expected share of the gated
  blocks that run), then optionally SkipNet's hybrid-RL stage (SkipNet+HRL): the gates become Bernoulli policies
  trained by REINFORCE with a skipping reward (:func:`helpers.train.dynamic.hybrid_rl_loss`, ``hrl=`` of
  :func:`helpers.train.dynamic.trained_dynamic_net`).
- ``ACTResNet`` (kind "act", Figurnov et al. 2017): ACT over the residual units of each stage *per image*:
  halting score h_l = sigmoid(Linear(pool(x_l))) after unit l (h = 1 after the last unit), a stage stops after
  the first unit N with cumulative score >= 1 - eps (eps = 0.01); the stage output is sum_{l<N} h_l x_l + R x_N
  with remainder R = 1 - sum_{l<N} h_l; ponder cost rho = N + R summed over stages. SACT makes the same decision
  per spatial position (a halting map, units evaluated only at the running positions); we halt whole images,
  which is SACT's "ACT" baseline: a coarser decision, but one that a CPU can really skip without sparse convs.
- ``GatedWidthResNet`` (kind "width", Tang et al. 2021): in each block a gate (pool -> BN -> Linear(C, C/4) -> ReLU ->
  Linear(C/4, planes) -> sigmoid) switches the channels of the first convolution per sample; a switched-off
  channel costs nothing in conv1 nor in conv2's input. Training: straight-through hard gates plus a
  FLOP-weighted sparsity penalty. ManiDP's manifold regulariser (the instance-similarity term) is not used.

In eval mode the skipped blocks / channels are really not computed (``sparse_inference=True``, the default):
the depth and ACT nets gather the samples that run a block; the width net convolves each sample with the
slices of the weights for its own channels. ``sparse_inference=False`` computes densely and masks, which gives
the same outputs (tested) and is faster for the attack's many small steps in the width net.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import batch_slices, checks
from ..metrics import module_flops
from .resnet import BasicBlock, ResNet, cifar_resnet

__all__ = ["DYNAMIC_KINDS", "GateTrace", "DynamicResNet", "SkipResNet", "ACTResNet", "GatedWidthResNet",
           "dynamic_resnet", "gate_pass", "all_gates_on", "dense_execution", "ACT_EPS", "policy_sampling", "GATE_DESIGNS",
           "run_block_on"]

DYNAMIC_KINDS: tuple[str, ...] = ("depth", "act", "width")
ACT_EPS = 0.01  # SACT's epsilon: a stage halts when the cumulative halting score reaches 1 - eps


@dataclass
class GateTrace:
    """What the gates of one forward pass decided (the attack's view of a dynamic net).

    ``probs[l]``: (N, k_l) differentiable gate probabilities, p > 0.5 <=> unit executed; ``executed[l]``: the
    hard decisions used; ``unit_flops[l]``: multiply-adds one sample spends on one executed element of unit l
    (a block, or one channel for the width net); ``base_flops``: what every sample spends regardless (stem,
    always-on blocks, gating nets, classifier). ``ponder`` (ACT only): per-sample ponder cost N + R.
    """

    probs: list[Tensor]
    executed: list[Tensor]
    unit_flops: list[int]
    base_flops: int
    ponder: Tensor | None = None
    kind: str = ""
    log_probs: list[Tensor] | None = None  # SkipNet+HRL policy sampling only: log pi(a_l), (N, 1) per gate

    @property
    def static_flops(self) -> int:
        """Per-sample FLOPs with every gate on."""
        return self.base_flops + sum(f * p.shape[1] for f, p in zip(self.unit_flops, self.probs))

    def dynamic_flops(self) -> Tensor:
        """(N,) exact per-sample FLOPs of this pass (int64)."""
        n = self.probs[0].shape[0] if self.probs else 0
        total = torch.full((n,), self.base_flops, dtype=torch.int64)
        for f, e in zip(self.unit_flops, self.executed):
            total += f * e.detach().to("cpu", torch.int64).sum(1)
        return total

    def executed_units(self) -> Tensor:
        """(N,) number of executed gated units (blocks; channels for the width net) per sample."""
        return torch.stack([e.detach().cpu().sum(1) for e in self.executed], 1).sum(1)

    def total_units(self) -> int:
        """Number of gated units (the maximum of :meth:`executed_units`)."""
        return sum(p.shape[1] for p in self.probs)

    def flat_probs(self) -> Tensor:
        """All gate probabilities as one (N, G) tensor (units in order, channels within a unit)."""
        return torch.cat([p.reshape(p.shape[0], -1) for p in self.probs], dim=1)

    @staticmethod
    def cat(traces: list["GateTrace"]) -> "GateTrace":
        """The traces of consecutive chunks of one batch as one trace (same net, so same costs)."""
        if not traces:
            raise ValueError("traces must hold at least one GateTrace")
        first = traces[0]

        def joined(parts: list[list[Tensor] | None]) -> list[Tensor] | None:
            return None if parts[0] is None else [torch.cat(units) for units in zip(*parts)]

        ponder = None if first.ponder is None else torch.cat([t.ponder for t in traces])
        return GateTrace(joined([t.probs for t in traces]), joined([t.executed for t in traces]), first.unit_flops,
                         first.base_flops, ponder, first.kind, joined([t.log_probs for t in traces]))


def _straight_through(p: Tensor) -> Tensor:
    """Hard gate 1[p > 0.5] in the forward pass, gradient of p in the backward pass (Bengio et al. 2013)."""
    hard = (p > 0.5).to(p.dtype)
    return hard + p - p.detach()


GATE_DESIGNS = ("bn_mlp", "mlp")


class _Gate(nn.Module):
    """A gating network: features (N, C, H, W) -> probabilities (N, out), SkipNet's feed-forward gate on a pool.

    ``"bn_mlp"`` (default): global average pool -> BatchNorm1d(C) -> Linear(C, hidden) -> ReLU -> Linear(hidden, out)
    -> sigmoid. ``"mlp"``: the same without the BatchNorm. The BatchNorm matters: without it the pooled features of a
    ReLU net vary little from image to image, the computation penalty drives most gates to an input-independent
    bias, and no input can open them again (dynamic_networks.ipynb measures this).
    """

    def __init__(self, channels: int, hidden: int, out: int, init_bias: float, design: str = "bn_mlp") -> None:
        super().__init__()
        checks.choice("gate", design, GATE_DESIGNS)
        self.norm = nn.BatchNorm1d(channels) if design == "bn_mlp" else nn.Identity()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, out)
        nn.init.constant_(self.fc2.bias, init_bias)  # start with the gates open: the net is trained as a ResNet first

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(self.norm(x.mean((2, 3)))))))


class DynamicResNet(nn.Module):
    """Common part of the three dynamic ResNets: the backbone, FLOPs profile, traces and the dense/sparse switch."""

    kind: str = ""

    def __init__(self, depth: int = 14, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 image_size: int = 32) -> None:
        super().__init__()
        checks.integer("image_size", image_size, low=4)
        self.net: ResNet = cifar_resnet(depth, num_classes, in_channels, width)
        self.depth, self.width, self.image_size, self.in_channels = depth, width, image_size, in_channels
        self.num_classes = num_classes
        self.blocks: list[BasicBlock] = [b for stage in self.net.layers for b in stage]
        self.stage_of: list[int] = [s for s, stage in enumerate(self.net.layers) for _ in stage]
        self.sparse_inference = True
        self._force_on = False
        self._profile: dict[str, int] | None = None

    # ---- FLOPs ---------------------------------------------------------------------------------------------
    def _flops_profile(self) -> dict[str, int]:
        """Per-sample multiply-adds of every conv/linear module with all gates on (measured once, cached)."""
        if self._profile is None:
            self._profile = {}  # placeholder while the profiling pass runs (its own trace is discarded)
            p = next(self.parameters())
            x = torch.zeros(1, self.in_channels, self.image_size, self.image_size, dtype=p.dtype, device=p.device)
            was = self.training
            self.eval()
            try:
                with all_gates_on(self), dense_execution(self):
                    self._profile = module_flops(self, x)
            except BaseException:
                self._profile = None
                raise
            finally:
                self.train(was)
        return self._profile

    def _flops_of(self, prefix: str) -> int:
        return sum(v for k, v in self._flops_profile().items() if k == prefix or k.startswith(prefix + "."))

    def static_flops(self) -> int:
        """Per-sample multiply-adds with every gate on (the static counterpart plus the gating nets)."""
        return sum(self._flops_profile().values())

    def backbone_flops(self) -> int:
        """Per-sample multiply-adds of the plain ResNet without any gating network (what torch.utils.flop_counter counts on it, halved)."""
        return self._flops_of("net")

    def unit_flops(self) -> list[int]:
        """FLOPs of one executed element of each gated unit (see :class:`GateTrace`)."""
        raise NotImplementedError

    def base_flops(self) -> int:
        """FLOPs every sample spends whatever the gates decide."""
        return self.static_flops() - sum(f * k for f, k in zip(self.unit_flops(), self.unit_sizes()))

    def unit_sizes(self) -> list[int]:
        """k_l: 1 per gated block, the number of channels per gated layer of the width net."""
        raise NotImplementedError

    def _trace(self, probs: list[Tensor], executed: list[Tensor], ponder: Tensor | None = None,
               log_probs: list[Tensor] | None = None) -> GateTrace:
        return GateTrace(probs, executed, self.unit_flops(), self.base_flops(), ponder, self.kind, log_probs)

    def dynamic_flops(self, x: Tensor) -> Tensor:
        """(N,) exact per-sample multiply-adds of the eval-mode pass on ``x`` (no gradient).

        Counted from the gate decisions of a dense pass (same decisions as the sparse path, tested; faster).
        """
        was = self.training
        self.eval()
        try:
            with torch.no_grad(), dense_execution(self):
                _, trace = self.forward_with_gates(x)
        finally:
            self.train(was)
        return trace.dynamic_flops()

    # ---- forward -------------------------------------------------------------------------------------------
    def _decide(self, run: Tensor) -> Tensor:
        return torch.ones_like(run) if self._force_on else run

    def _sparse(self) -> bool:
        return (not self.training) and self.sparse_inference

    def forward_with_gates(self, x: Tensor) -> tuple[Tensor, GateTrace]:
        """Logits and the :class:`GateTrace` of this pass."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_gates(x)[0]

    def _block_name(self, i: int) -> str:
        s = self.stage_of[i]
        return f"net.layers.{s}.{i - self.stage_of.index(s)}"

    def _stem(self, x: Tensor) -> Tensor:
        shape = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must be (N, {shape[0]}, {shape[1]}, {shape[2]}) as the net was built, "
                             f"got {tuple(x.shape)}")
        return F.relu(self.net.bn1(self.net.conv1(x)))

    def _head(self, x: Tensor) -> Tensor:
        return self.net.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def gating_penalty(self, trace: GateTrace) -> Tensor:
        """Training cost of computation: the FLOP-weighted expected share of gated FLOPs that run (depth, width),
        sum_l lambda_l p_l with lambda_l = C_l / static FLOPs, averaged over the batch; ACT returns its ponder cost."""
        static = float(trace.static_flops)
        total = sum((p * (f / static)).sum(1) for f, p in zip(trace.unit_flops, trace.probs))
        return total.mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, depth={self.depth}, width={self.width}, image_size={self.image_size}"


def gate_pass(model: nn.Module, x: Tensor, batch_size: int = 100) -> tuple[Tensor, GateTrace]:
    """Logits and :class:`GateTrace` of ``model.forward_with_gates`` on ``x`` in chunks of ``batch_size``, without
    gradient, the model in the mode it is in (eval: sparse inference, skipped units not computed)."""
    checks.integer("batch_size", batch_size, low=1)
    checks.nonempty("x", len(x))
    logits, traces = [], []
    with torch.no_grad():
        for part in batch_slices(len(x), batch_size):
            out, trace = model.forward_with_gates(x[part])
            logits.append(out)
            traces.append(trace)
    return torch.cat(logits), GateTrace.cat(traces)


def run_block_on(block: BasicBlock, x: Tensor, run: Tensor) -> Tensor:
    """``block`` on the samples where ``run`` is True, ``block.shortcut`` (the skip path) on the others.

    Only the running samples enter the block's convolutions; the result is assembled with a differentiable
    ``index_copy`` so gradients reach x through both paths.
    """
    skip = block.shortcut(x)
    idx = run.nonzero().flatten()
    if len(idx) == 0:
        return skip
    if len(idx) == len(x):
        return block(x)
    return skip.index_copy(0, idx, block(x.index_select(0, idx)))


class SkipResNet(DynamicResNet):
    """SkipNet-style dynamic depth (Wang et al. 2018): a gate on the input of every block but the first, Eq. 1."""

    kind = "depth"

    def __init__(self, depth: int = 14, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 image_size: int = 32, gate_hidden: int = 10, gate_bias: float = 2.0, gate: str = "bn_mlp") -> None:
        super().__init__(depth, num_classes, in_channels, width, image_size)
        if len(self.blocks) < 2:
            raise ValueError(f"depth={depth} leaves no gated block")
        self.gates = nn.ModuleList(_Gate(b.conv1.in_channels, gate_hidden, 1, gate_bias, gate) for b in self.blocks[1:])
        self.sample_policy = False  # set by policy_sampling() for the hybrid-RL stage

    def unit_sizes(self) -> list[int]:
        return [1] * len(self.gates)

    def unit_flops(self) -> list[int]:
        return [self._flops_of(self._block_name(i)) for i in range(1, len(self.blocks))]

    def forward_with_gates(self, x: Tensor) -> tuple[Tensor, GateTrace]:
        out = self.blocks[0](self._stem(x))
        probs, executed = [], []
        sampling = self.training and self.sample_policy
        log_probs: list[Tensor] | None = [] if sampling else None
        for block, gate in zip(self.blocks[1:], self.gates):
            p = gate(out)
            if sampling:  # SkipNet+HRL: the gate is a Bernoulli policy; the block runs on the sampled action
                action = torch.bernoulli(p.detach())  # the global RNG, which fit() checkpoints
                q = p.clamp(1e-6, 1 - 1e-6)
                log_probs.append(action * torch.log(q) + (1 - action) * torch.log1p(-q))
                run = self._decide(action > 0.5)
            else:
                run = self._decide(p > 0.5)
            probs.append(p)
            executed.append(run)
            if self._sparse():
                out = run_block_on(block, out, run.squeeze(1))
            else:
                if sampling or not self.training:
                    g = run.to(p.dtype)
                else:
                    g = _straight_through(p)
                if self._force_on:
                    g = torch.ones_like(p)
                g = g[:, :, None, None]
                out = g * block(out) + (1 - g) * block.shortcut(out)
        return self._head(out), self._trace(probs, executed, log_probs=log_probs)


class ACTResNet(DynamicResNet):
    """SACT-style adaptive computation time per image (Figurnov et al. 2017) over the units of each stage.

    Gated units are the blocks after the first of each stage. Unit l runs iff the stage's cumulative halting
    score before it, H_{l-1}, is < 1 - eps. Its "still running" probability (the attack's gate value) is
    p_l = clamp(1 - H_{l-1} / (2 (1 - eps)), 0, 1): differentiable in x, linear in H (no sigmoid saturation),
    and p_l > 0.5 <=> H_{l-1} < 1 - eps <=> unit l runs. After a stage halts H stays frozen, so every later unit
    of the stage has the p of the first skipped one.
    """

    kind = "act"

    def __init__(self, depth: int = 14, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 image_size: int = 32, eps: float = ACT_EPS, halting_bias: float = -1.0,
                 halting_scale: float = 1.0) -> None:
        super().__init__(depth, num_classes, in_channels, width, image_size)
        checks.number("eps", eps, 0, 1, low_open=True, high_open=True)
        per_stage = [len(stage) for stage in self.net.layers]
        if min(per_stage) < 2:
            raise ValueError(f"ACT needs >= 2 blocks per stage (depth >= 14), got depth={depth}")
        checks.number("halting_scale", halting_scale, low=0, low_open=True)
        self.eps, self.halting_scale = eps, halting_scale
        # one halting unit after every block but the last of its stage (the last one has h = 1)
        self.halting = nn.ModuleList()
        for stage in self.net.layers:
            for b in list(stage)[:-1]:
                lin = nn.Linear(b.conv2.out_channels, 1)
                nn.init.constant_(lin.bias, halting_bias)  # start slow to halt: every unit runs at first
                self.halting.append(lin)

    def _units(self) -> Iterator[tuple[int, int, BasicBlock, int | None]]:
        """(stage, index in stage, block, index of its halting unit or None for a stage's last block)."""
        h = 0
        for s, stage in enumerate(self.net.layers):
            for i, b in enumerate(stage):
                last = i == len(stage) - 1
                yield s, i, b, (None if last else h)
                if not last:
                    h += 1

    def unit_sizes(self) -> list[int]:
        return [1] * sum(len(stage) - 1 for stage in self.net.layers)

    def unit_flops(self) -> list[int]:
        return [self._flops_of(f"net.layers.{s}.{i}") + (self._flops_of(f"halting.{h}") if h is not None else 0)
                for s, i, b, h in self._units() if i > 0]

    def forward_with_gates(self, x: Tensor) -> tuple[Tensor, GateTrace]:
        out = self._stem(x)
        n = len(x)
        threshold = 1.0 - self.eps
        probs, executed, ponder = [], [], torch.zeros(n, dtype=out.dtype, device=out.device)
        sparse = self._sparse()
        for s, stage in enumerate(self.net.layers):
            blocks = list(stage)
            cum = torch.zeros(n, dtype=out.dtype, device=out.device)  # H_{l-1}, frozen after the stage halts
            count = torch.zeros(n, dtype=out.dtype, device=out.device)  # units run (N)
            weight_done = torch.zeros(n, dtype=out.dtype, device=out.device)  # sum of weights given out so far
            running = torch.ones(n, dtype=torch.bool, device=out.device)
            acc = None  # stage output sum_l w_l x_l
            cur = out  # input of the next unit (all samples in the dense path, running ones in the sparse path)
            idx = torch.arange(n, device=out.device)  # samples in `cur` (sparse path)
            first_h = sum(len(st) - 1 for st in list(self.net.layers)[:s])
            for i, block in enumerate(blocks):
                if i > 0:
                    p = (1.0 - cum / (2.0 * threshold)).clamp(0.0, 1.0).unsqueeze(1)
                    run = self._decide(cum < threshold)
                    probs.append(p)
                    executed.append(run.unsqueeze(1))
                    running = run
                if sparse:
                    keep = running.index_select(0, idx)
                    idx, cur = idx[keep], cur[keep]
                    if len(idx) == 0:
                        continue  # every sample of the batch has halted: nothing left to compute here
                    y = block(cur)
                else:
                    y = block(cur)
                last = i == len(blocks) - 1
                if last:
                    h = torch.ones(n, dtype=out.dtype, device=out.device)
                else:
                    h = torch.sigmoid(self.halting_scale
                                      * self.halting[first_h + i](F.adaptive_avg_pool2d(y, 1).flatten(1))).squeeze(1)
                    if sparse:
                        h = torch.zeros(n, dtype=out.dtype, device=out.device).index_copy(0, idx, h)
                r = running.to(out.dtype)
                new_cum = cum + h * r
                halts = (new_cum >= threshold) & running
                if self._force_on:
                    halts = torch.zeros_like(halts) if not last else running
                    w = torch.where(halts, 1.0 - weight_done, h * r)
                else:
                    # weight of this unit: h_l while the stage keeps running, the remainder R when it halts here
                    w = torch.where(halts, 1.0 - cum, h) * r
                count = count + r
                ponder = ponder + torch.where(halts, 1.0 - cum + count, torch.zeros_like(cum))
                if sparse:
                    wy = w.index_select(0, idx)[:, None, None, None] * y
                    acc = (torch.zeros((n,) + y.shape[1:], dtype=y.dtype, device=y.device) if acc is None
                           else acc).index_add(0, idx, wy)
                else:
                    wy = w[:, None, None, None] * y
                    acc = wy if acc is None else acc + wy
                weight_done = weight_done + w
                cum = torch.where(running, new_cum, cum)
                running = running & ~halts
                cur = y
            out = acc
        return self._head(out), self._trace(probs, executed, ponder)

    def gating_penalty(self, trace: GateTrace) -> Tensor:
        """SACT's ponder cost rho = sum over stages of (N + R) (Figurnov et al. 2017), averaged over the batch."""
        if trace.ponder is None:
            raise ValueError("trace has no ponder cost: pass the trace of an ACTResNet")
        return trace.ponder.mean()


class GatedWidthResNet(DynamicResNet):
    """ManiDP-style dynamic width (Tang et al. 2021): per-sample gates on the channels of each block's conv1.

    A channel c of block l that is off is zero after conv1-BN-ReLU, so neither conv1's filter c nor conv2's
    input slice c is computed: one channel costs 9 H W (C_in + C_out) multiply-adds.
    """

    kind = "width"

    def __init__(self, depth: int = 14, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 image_size: int = 32, gate_reduction: int = 4, gate_bias: float = 2.0, gate: str = "bn_mlp") -> None:
        super().__init__(depth, num_classes, in_channels, width, image_size)
        checks.integer("gate_reduction", gate_reduction, low=1)
        self.gates = nn.ModuleList(
            _Gate(b.conv1.in_channels, max(b.conv1.in_channels // gate_reduction, 4), b.conv1.out_channels, gate_bias,
                  gate) for b in self.blocks)

    def unit_sizes(self) -> list[int]:
        return [b.conv1.out_channels for b in self.blocks]

    def unit_flops(self) -> list[int]:
        prefix = [self._block_name(i) for i in range(len(self.blocks))]
        return [(self._flops_of(p + ".conv1") + self._flops_of(p + ".conv2")) // b.conv1.out_channels
                for p, b in zip(prefix, self.blocks)]

    @staticmethod
    def _block_sparse(block: BasicBlock, x: Tensor, run: Tensor) -> Tensor:
        """One block, each sample with only its own conv1 channels (weights sliced per sample)."""
        outs = []
        c1, c2, bn1, bn2 = block.conv1, block.conv2, block.bn1, block.bn2
        for n in range(len(x)):
            xn = x[n:n + 1]
            ch = run[n].nonzero().flatten()
            skip = block.shortcut(xn)
            if len(ch) == 0:  # no channel runs: the residual branch is BN2 of zeros, a constant per channel
                r = F.batch_norm(torch.zeros_like(skip), bn2.running_mean, bn2.running_var, bn2.weight, bn2.bias,
                                 False, 0.0, bn2.eps)
            else:
                h = F.conv2d(xn, c1.weight.index_select(0, ch), None, c1.stride, c1.padding)
                h = F.relu(F.batch_norm(h, bn1.running_mean[ch], bn1.running_var[ch], bn1.weight[ch], bn1.bias[ch],
                                        False, 0.0, bn1.eps))
                r = F.conv2d(h, c2.weight.index_select(1, ch), None, c2.stride, c2.padding)
                r = F.batch_norm(r, bn2.running_mean, bn2.running_var, bn2.weight, bn2.bias, False, 0.0, bn2.eps)
            outs.append(F.relu(r + skip))
        return torch.cat(outs, 0)

    def forward_with_gates(self, x: Tensor) -> tuple[Tensor, GateTrace]:
        out = self._stem(x)
        probs, executed = [], []
        for block, gate in zip(self.blocks, self.gates):
            p = gate(out)
            run = self._decide(p > 0.5)
            probs.append(p)
            executed.append(run)
            if self._sparse():
                out = self._block_sparse(block, out, run)
                continue
            g = _straight_through(p) if self.training else run.to(p.dtype)
            if self._force_on:
                g = torch.ones_like(p)
            h = F.relu(block.bn1(block.conv1(out))) * g[:, :, None, None]
            out = F.relu(block.bn2(block.conv2(h)) + block.shortcut(out))
        return self._head(out), self._trace(probs, executed)


_KINDS = {"depth": SkipResNet, "act": ACTResNet, "width": GatedWidthResNet}


def dynamic_resnet(kind: str, depth: int = 14, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                   image_size: int = 32, **options) -> DynamicResNet:
    """A dynamic CIFAR ResNet of ``kind`` "depth" (SkipNet), "act" (SACT, per image) or "width" (ManiDP)."""
    checks.choice("kind", kind, DYNAMIC_KINDS)
    return _KINDS[kind](depth, num_classes, in_channels, width, image_size, **options)


@contextmanager
def _attribute(model: DynamicResNet, name: str, value: object) -> Iterator[DynamicResNet]:
    old = getattr(model, name)
    setattr(model, name, value)
    try:
        yield model
    finally:
        setattr(model, name, old)


def all_gates_on(model: DynamicResNet):
    """Context manager: within it every gate of ``model`` is forced on (the static counterpart; FLOPs checks)."""
    return _attribute(model, "_force_on", True)


def policy_sampling(model: SkipResNet):
    """Context manager: within it a ``SkipResNet`` in train mode samples its gates a_l ~ Bernoulli(p_l) from the
    global RNG (SkipNet+HRL; :func:`helpers.train.fit` checkpoints that RNG, so a resumed stage is exact); eval
    passes still threshold p > 0.5."""
    if not isinstance(model, SkipResNet):
        raise ValueError(f"policy sampling (SkipNet+HRL) needs a SkipResNet, got {type(model).__name__}")
    return _attribute(model, "sample_policy", True)


def dense_execution(model: DynamicResNet):
    """Context manager: within it eval passes compute densely and mask (same outputs as the sparse path)."""
    return _attribute(model, "sparse_inference", False)
