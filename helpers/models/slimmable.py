"""Slimmable layers: one set of weights run at several widths, with a BatchNorm per width (FLOATS slim).

Yu et al. 2019 (Slimmable neural networks; official JiahuiYu/slimmable_networks): at width ``w`` a layer
uses the first ``int(C * w)`` input and output channels of its full weight, ``weight[:C_o', :C_i']``, so
the narrow network is a shared-weight sub-network of the wide one; each width has its own BatchNorm
(running statistics differ between widths). FLOAT's FLOATS slim (Sec. 3.2, Fig. 4b, Table 1) trains
widths 1.0 and 0.5 together and adds irregular sparsity with sparse momentum on the shared full weights:
the layers are ``nn.Conv2d`` / ``nn.Linear`` subclasses, so the book's masks apply to them unchanged.
The first layer's input and the classifier's output keep their full size (``slim_in`` / ``slim_out``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .. import checks

__all__ = ["WIDTHS", "active_channels", "SlimmableConv2d", "SlimmableLinear", "SwitchableBatchNorm2d", "set_width"]

#: The two slimming factors of FLOAT's Table 1 / Fig. 8.
WIDTHS: tuple[float, ...] = (1.0, 0.5)


def active_channels(channels: int, width: float) -> int:
    """Channels in use at ``width``: ``int(channels * width)``, the official slimmable-networks rule.

    Yu et al. 2019 (``int(c * width_mult)`` in the official models); at least 1, else ValueError.
    """
    count = int(channels * width)
    if count < 1:
        raise ValueError(f"width {width!r} leaves no channel of {channels}; use a width >= {1 / channels:g}")
    return count


_WIDTHS_RULE = checks.ListOf(checks.Number(0, 1, low_open=True))


def _valid_widths(widths: Sequence[float], channels: Sequence[int]) -> tuple[float, ...]:
    """``widths`` as distinct slimming factors in (0, 1] that leave every one of ``channels`` at least one channel."""
    _WIDTHS_RULE("widths", widths)
    if len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct slimming factors, got {widths!r}")
    for width in widths:
        for count in channels:
            active_channels(count, width)
    return tuple(float(w) for w in widths)


class _Slimmable:
    """Shared slicing of a slimmable Conv2d / Linear: ``weight[:out, :in]`` and ``bias[:out]`` at ``self.width``."""

    weight: Tensor
    bias: Tensor | None

    def _init_slim(self, full_out: int, full_in: int, widths: Sequence[float], slim_in: bool, slim_out: bool) -> None:
        self.widths = _valid_widths(widths, [c for c, slim in ((full_in, slim_in), (full_out, slim_out)) if slim])
        self.width = max(self.widths)
        self.slim_in, self.slim_out, self._full = bool(slim_in), bool(slim_out), (full_out, full_in)

    def active_shape(self) -> tuple[int, int]:
        """``(out, in)`` channels used at the current width (first ``int(C * w)`` of each slimmed side).

        Yu et al. 2019, slimmable layer: ``weight[:out, :in]``.
        """
        full_out, full_in = self._full
        return (
            active_channels(full_out, self.width) if self.slim_out else full_out,
            active_channels(full_in, self.width) if self.slim_in else full_in,
        )

    def _active_parameters(self) -> tuple[Tensor, Tensor | None]:
        out_active, in_active = self.active_shape()
        bias = self.bias[:out_active] if self.bias is not None else None
        return self.weight[:out_active, :in_active], bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, widths={self.widths}, slim_in={self.slim_in}, slim_out={self.slim_out}"


class SlimmableConv2d(_Slimmable, nn.Conv2d):
    """A Conv2d that, at width ``w``, convolves the first ``int(C_i w)`` input with ``int(C_o w)`` filters.

    Yu et al. 2019 ``SlimmableConv2d`` (groups = 1); FLOATS slim's shared-weight convolution (FLOAT Fig. 4b).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, *, widths: Sequence[float] = WIDTHS, slim_in: bool = True,
                 slim_out: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         bias=bias)
        self._init_slim(out_channels, in_channels, widths, slim_in, slim_out)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._active_parameters()
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)


class SlimmableLinear(_Slimmable, nn.Linear):
    """A Linear layer on the first ``int(in w)`` features; the output stays full by default (a classifier).

    Yu et al. 2019 ``SlimmableLinear``; FLOATS slim's classifier (FLOAT Sec. 3.2).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, widths: Sequence[float] = WIDTHS,
                 slim_in: bool = True, slim_out: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._init_slim(out_features, in_features, widths, slim_in, slim_out)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._active_parameters()
        return F.linear(x, weight, bias)


class SwitchableBatchNorm2d(nn.Module):
    """One BatchNorm per width (``int(C w)`` features each); the forward pass uses the current width's.

    Yu et al. 2019 switchable batch normalisation; FLOAT Fig. 4b ("BNs for each SF").

    ``make_bn(num_features)`` builds each width's norm layer (default ``nn.BatchNorm2d``), so a chapter can
    put a dual (clean / adversarial) BN under each width.
    """

    def __init__(self, num_features: int, *, widths: Sequence[float] = WIDTHS,
                 make_bn: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.widths = _valid_widths(widths, [num_features])
        self.width = max(self.widths)
        self.bn = nn.ModuleList([make_bn(active_channels(num_features, w)) for w in self.widths])

    def forward(self, x: Tensor) -> Tensor:
        return self.bn[self.widths.index(self.width)](x)


SLIMMABLE_TYPES = (SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d)


def set_width(model: nn.Module, width: float) -> None:
    """Switch every slimmable layer of ``model`` to ``width`` (a width each of them was built with).

    Yu et al. 2019 (``model.apply(lambda m: setattr(m, 'width_mult', w))``); FLOAT's slimming factor SF.
    """
    layers = [m for m in model.modules() if isinstance(m, SLIMMABLE_TYPES)]
    if not layers:
        raise ValueError("model has no slimmable layer (SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d)")
    for layer in layers:
        if width not in layer.widths:
            raise ValueError(f"width must be one of {layer.widths} (the widths the layers were built with), "
                             f"got {width!r}")
    for layer in layers:
        layer.width = float(width)
