"""Counting by subitization (Paper 5, thesis Ch. 2): a shapes dataset, a count regressor, saliency and
second-derivative detection, and the scores that judge them.

The pieces follow the thesis and its official code (benvcutilli/CountingPlusFriendly, ``Counting/``):

- ``make_shapes``: triangles and squares (unit templates, integer rotation 0-359, one integer scale per
  image after Guan and Loew, Sec. 2.2.3), placed at random integer offsets inside the canvas with Shapely
  rejecting overlaps, drawn with Pillow in blue on black; per-type counts uniform in 0..limit.
- ``CountingCNN``: strided convolutions, a linear layer and a ReLU on the outputs, one output per shape
  type (Sec. 2.2), with ReLU, softplus or sigmoid activations (Sec. 2.2.3); MSE on raw counts.
- ``saliency`` (Simonyan et al., Sec. 2.1.5 and 2.2.1): max over channels of ``|d(sum of outputs)/dx|``.
- ``detect_shapes`` (Sec. 2.2.2): from the most salient unassigned pixel, the saliency of its saliency
  (double backprop), thresholded into one shape; repeated round(sum of outputs) times.
- ``detection_scores`` (IoU 0.5, Hungarian matching), ``group_overlap``, ``count_accuracy``,
  ``count_errors_by_true_count``: how well it all worked.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from . import eval_mode
from .train import fit

SHAPE_TYPES: tuple[str, ...] = ("triangle", "square")
ACTIVATIONS: tuple[str, ...] = ("relu", "softplus", "sigmoid")
COUNT_SAMPLING: tuple[str, ...] = ("per_type", "total")

#: The unit templates of the official sampler: triangle (0,0),(1,0),(0,1) and the unit square.
TEMPLATES: dict[str, np.ndarray] = {
    "triangle": np.array([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]),
    "square": np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]),
}

#: The official sampler's canvas (1000 x 1000 pixels) and scale range (integers in [10, 20]).
PAPER_IMAGE_SIZE = 1000
PAPER_SCALE: tuple[int, int] = (10, 20)
#: This book's CPU canvas and a scale range adapted to it (see ``make_shapes``).
BOOK_IMAGE_SIZE = 64
BOOK_SCALE: tuple[int, int] = (6, 10)
#: The official detection threshold on the second-derivative saliency (images on a 0-255 scale there).
OFFICIAL_THRESHOLD = 5e-10
BLUE: tuple[int, int, int] = (0, 0, 255)

#: Convolutions as (out_channels, kernel, stride, padding). The book's net is for 64 x 64 images; the
#: paper's is the official ``ConvolutionalLarge`` (10 convolutions, 80 features for 1000 x 1000 images).
ConvSpec = tuple[int, int, int, int]
BOOK_LAYERS: tuple[ConvSpec, ...] = ((16, 5, 2, 2), (32, 5, 2, 2), (32, 3, 2, 1), (32, 3, 2, 1))
PAPER_LAYERS: tuple[ConvSpec, ...] = (
    (30, 7, 3, 0), (40, 7, 3, 0), (50, 7, 3, 0), (60, 5, 1, 2), (70, 5, 1, 2),
    (60, 5, 1, 2), (50, 5, 2, 0), (40, 5, 2, 0), (30, 3, 1, 0), (20, 3, 1, 0),
)

_MAX_FILL = 0.5  # worst case: all shapes at the largest scale (plus the gap) may cover at most this much canvas
_CANDIDATES = 16  # positions tried at once per shape (the first one that fits is taken, as in sequential rejection)
_MAX_ROUNDS = 200  # rounds of candidates per shape before the image's layout is started again
_MAX_RESTARTS = 20  # layouts per image before giving up


# --------------------------------------------------------------------------------------------
# The dataset


@dataclass(frozen=True, eq=False, repr=False)
class ShapesData:
    """Images ``x`` (float32 (N, 3, H, W) in [0, 1]) and ``counts`` (float32 (N, T), one column per shape type).

    Per image: ``boxes`` (K, 4) pixel boxes (x0, y0, x1, y1), x1 and y1 exclusive, of the drawn shapes,
    ``kinds`` (K,) their types (index into ``shape_types``), and ``instances`` (N, H, W) uint8, 0 for the
    background and k + 1 where shape k was drawn. ``y`` is ``counts`` (so ``(data.x, data.y)`` pairs work).
    """

    x: torch.Tensor
    counts: torch.Tensor
    boxes: list[torch.Tensor]
    kinds: list[torch.Tensor]
    instances: torch.Tensor
    shape_types: tuple[str, ...]
    settings: dict

    def __post_init__(self) -> None:
        n = len(self.x)
        if not (self.x.dim() == 4 and self.counts.shape == (n, len(self.shape_types))
                and len(self.boxes) == len(self.kinds) == len(self.instances) == n):
            raise ValueError(f"inconsistent ShapesData: x {tuple(self.x.shape)}, counts {tuple(self.counts.shape)}, "
                             f"{len(self.boxes)} box lists, {len(self.kinds)} kind lists, "
                             f"instances {tuple(self.instances.shape)}")

    @property
    def y(self) -> torch.Tensor:
        """The counts, under the name training loops look for."""
        return self.counts

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: slice) -> ShapesData:
        if not isinstance(index, slice):
            raise ValueError(f"index must be a slice, got {type(index).__name__}")
        return replace(self, x=self.x[index], counts=self.counts[index], boxes=self.boxes[index],
                       kinds=self.kinds[index], instances=self.instances[index])

    def __repr__(self) -> str:
        return f"ShapesData({self.describe()})"

    def describe(self) -> str:
        """One line for a notebook banner: size, canvas, shape types, limit and scale range."""
        s = self.settings
        scale = "per shape" if s["per_shape_scale"] else "per image"
        return (f"{len(self):,} generated images {self.x.shape[1]}x{s['image_size']}x{s['image_size']}, "
                f"{' and '.join(self.shape_types)} counts 0..{s['limit']} ({s['count_sampling']}), "
                f"scale {s['scale'][0]}-{s['scale'][1]} {scale}, gap {s['min_gap']:g} px")


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_choice(name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(_check_int("seed", seed, 0))


def _vertices(template: np.ndarray, rotation: int, scale: float) -> np.ndarray:
    """The template rotated by ``rotation`` degrees and scaled, each about its bounding-box centre.

    The same numbers as ``shapely.affinity.scale(shapely.affinity.rotate(p, rotation), scale, scale)``.
    """
    angle = math.radians(rotation)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = (template.min(0) + template.max(0)) / 2
    turned = (template - centre) @ rot.T + centre
    centre = (turned.min(0) + turned.max(0)) / 2
    return scale * (turned - centre) + centre


def _count_table(limit: int, types: int, sampling: str) -> np.ndarray:
    """Every count vector allowed: per type 0..limit, or (``total``) vectors whose sum is at most ``limit``."""
    table = np.array(list(itertools.product(range(limit + 1), repeat=types)), dtype=np.int64)
    return table if sampling == "per_type" else table[table.sum(1) <= limit]


def _place(rng: np.random.Generator, outlines: list[np.ndarray], image_size: int,
           min_gap: float) -> list[np.ndarray] | None:
    """Translate each outline to a random integer offset inside the canvas, apart from those placed before.

    Offsets are uniform over those that keep the shape inside (the official sampler draws 0..size and rejects);
    a candidate is rejected when it lies within ``min_gap`` of a placed polygon (touching counts). None when a
    shape found no place in ``_MAX_ROUNDS`` rounds.
    """
    import shapely

    placed: list[np.ndarray] = []
    polygons: list = []
    for outline in outlines:
        low = np.maximum(0, np.ceil(-outline.min(0))).astype(np.int64)
        high = np.minimum(image_size, np.ceil(image_size - outline.max(0)).astype(np.int64) - 1)
        for _ in range(_MAX_ROUNDS):
            offsets = rng.integers(low, high + 1, size=(_CANDIDATES, 2))
            candidates = shapely.polygons(outline[None] + offsets[:, None])
            if not polygons:
                chosen = 0
                break
            free = np.flatnonzero(~shapely.dwithin(np.array(polygons)[:, None], candidates[None], min_gap).any(0))
            if len(free):
                chosen = int(free[0])
                break
        else:
            return None
        placed.append(outline + offsets[chosen])
        polygons.append(candidates[chosen])
    return placed


def _draw(outlines: list[np.ndarray], image_size: int) -> np.ndarray:
    """The (H, W) uint8 instance map: shape k filled and outlined with value k + 1 by Pillow."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (image_size, image_size))
    pen = ImageDraw.Draw(canvas)
    for k, outline in enumerate(outlines):
        pen.polygon([tuple(p) for p in outline], fill=k + 1, outline=k + 1)
    return np.asarray(canvas)


def _boxes(instances: np.ndarray, k: int) -> np.ndarray:
    """(k, 4) pixel boxes (x0, y0, x1, y1), exclusive ends, of labels 1..k in an instance map."""
    from scipy import ndimage

    slices = ndimage.find_objects(instances, max_label=k)
    return np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float32).reshape(-1, 4)


def make_shapes(
    n: int,
    *,
    image_size: int = BOOK_IMAGE_SIZE,
    limit: int = 5,
    scale: tuple[int, int] = BOOK_SCALE,
    shape_types: Sequence[str] = SHAPE_TYPES,
    count_sampling: str = "per_type",
    per_shape_scale: bool = False,
    rotate: bool = True,
    min_gap: float = 3.0,
    color: tuple[int, int, int] = BLUE,
    seed: int | np.random.Generator = 0,
) -> ShapesData:
    """``n`` images of triangles and squares with their counts and boxes (thesis Sec. 2.2 and 2.2.3).

    Official sampler facts: unit templates, integer rotation 0-359, integer scale in ``scale`` drawn once per
    image (Guan and Loew's fix; ``per_shape_scale=True`` gives the earlier per-shape sizes, whose average
    lets a net count pixels), offsets resampled until the shape is inside and touches no other, blue on black.
    ``count_sampling="per_type"`` draws each type's count uniformly in 0..``limit`` (the issue's rule);
    ``"total"`` is the official sampler's: uniform over count vectors whose sum is at most ``limit``.

    Scale: the paper's 10-20 pixels are for a 1000 x 1000 canvas (``PAPER_IMAGE_SIZE``, ``PAPER_SCALE``); on
    the book's 64 x 64 canvas that would leave no room, so the default is 6-10 pixels, chosen, as in the thesis,
    so that the worst case (every shape at the largest scale) still fits. ``min_gap`` (pixels) keeps polygons
    apart: the official rule rejects only touching polygons (``min_gap=0``), but polygons under about 2.8 px
    apart can share or touch pixels once drawn, which merges two shapes in the image; 3 px never does.
    A paper-scale set (12 MB an image) is made in chunks: pass one ``np.random.Generator`` to successive calls.
    """
    n = _check_int("n", n, 0)
    image_size = _check_int("image_size", image_size, 8)
    limit = _check_int("limit", limit, 0)
    types = tuple(shape_types)
    if not types or len(set(types)) != len(types) or not set(types) <= set(SHAPE_TYPES):
        raise ValueError(f"shape_types must be distinct names from {SHAPE_TYPES}, at least one, got {shape_types!r}")
    _check_choice("count_sampling", count_sampling, COUNT_SAMPLING)
    if (not isinstance(scale, (tuple, list)) or len(scale) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in scale)
            or not 1 <= scale[0] <= scale[1]):
        raise ValueError(f"scale must be two ints (low, high) with 1 <= low <= high, got {scale!r}")
    if not (isinstance(min_gap, (int, float)) and min_gap >= 0):
        raise ValueError(f"min_gap must be a number >= 0 (pixels), got {min_gap!r}")
    if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color) or not any(color):
        raise ValueError(f"color must be three ints in [0, 255], not all 0 (shapes on a black canvas), got {color!r}")
    most = limit * (len(types) if count_sampling == "per_type" else 1)
    if most > 255:
        raise ValueError(f"limit must allow at most 255 shapes per image (uint8 instance map), got limit={limit}")
    if scale[1] * math.sqrt(2) >= image_size or most * (scale[1] + min_gap) ** 2 > _MAX_FILL * image_size ** 2:
        raise ValueError(
            f"scale {tuple(scale)} is too large for {most} shapes on a {image_size} px canvas with min_gap "
            f"{min_gap:g}: the worst case must satisfy shapes * (high + min_gap)^2 <= {_MAX_FILL} * image_size^2 "
            f"(high <= {math.isqrt(int(_MAX_FILL * image_size ** 2 / max(most, 1))) - math.ceil(min_gap)} here); "
            "lower scale, limit or min_gap, or enlarge the canvas")
    rng = _rng(seed)
    table = _count_table(limit, len(types), count_sampling)
    counts = table[rng.integers(0, len(table), size=n)]
    instances = np.zeros((n, image_size, image_size), dtype=np.uint8)
    boxes, kinds = [], []
    for i in range(n):
        bag = np.repeat(np.arange(len(types)), counts[i])
        rng.shuffle(bag)
        image_scale = int(rng.integers(scale[0], scale[1] + 1))
        outlines = []
        for kind in bag:
            rotation = int(rng.integers(0, 360)) if rotate else 0
            size = int(rng.integers(scale[0], scale[1] + 1)) if per_shape_scale else image_scale
            outlines.append(_vertices(TEMPLATES[types[kind]], rotation, size))
        for _ in range(_MAX_RESTARTS):
            placed = _place(rng, outlines, image_size, float(min_gap))
            if placed is not None:
                break
        else:
            raise RuntimeError(f"could not place {len(outlines)} shapes of scale {tuple(scale)} on a {image_size} px "
                               f"canvas in {_MAX_RESTARTS} layouts; lower scale, limit or min_gap")
        instances[i] = _draw(placed, image_size)
        boxes.append(torch.from_numpy(_boxes(instances[i], len(placed))))
        kinds.append(torch.from_numpy(bag.astype(np.int64)))
    mask = torch.from_numpy(instances > 0).unsqueeze(1)
    x = mask * (torch.tensor(color, dtype=torch.float32) / 255).view(1, 3, 1, 1)
    settings = {"image_size": image_size, "limit": limit, "scale": tuple(int(s) for s in scale),
                "count_sampling": count_sampling, "per_shape_scale": per_shape_scale, "rotate": rotate,
                "min_gap": float(min_gap), "color": tuple(int(c) for c in color)}
    return ShapesData(x=x, counts=torch.from_numpy(counts).float(), boxes=boxes, kinds=kinds,
                      instances=torch.from_numpy(instances), shape_types=types, settings=settings)


# --------------------------------------------------------------------------------------------
# The count regressor


def _activation(name: str) -> nn.Module:
    layers = {"relu": nn.ReLU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid}
    return layers[_check_choice("activation", name, ACTIVATIONS)]()


class CountingCNN(nn.Module):
    """Strided convolutions with ``activation``, then a linear layer and a ReLU: one count per shape type.

    The thesis's network (Sec. 2.2: "no other layers besides activation functions and a linear layer", a
    ReLU on the outputs; Sec. 2.2.3: ReLU, softplus, sigmoid). ``layers`` lists (out_channels, kernel, stride,
    padding); ``PAPER_LAYERS`` with ``image_size=1000`` is the official ``ConvolutionalLarge``. ``batch_norm``
    puts a BatchNorm2d after each convolution, standing in for the Batch Renormalization the thesis needed to
    train the sigmoid net (in eval mode both are one affine map per channel, so saliency is unaffected).
    The head's bias starts at ``output_bias``: with PyTorch's default start an output's ReLU is often dead
    on every image, and a dead output never learns.
    """

    def __init__(
        self,
        activation: str = "relu",
        num_outputs: int = len(SHAPE_TYPES),
        layers: Sequence[ConvSpec] = BOOK_LAYERS,
        image_size: int = BOOK_IMAGE_SIZE,
        in_channels: int = 3,
        batch_norm: bool = False,
        output_bias: float = 1.0,
    ):
        super().__init__()
        _check_choice("activation", activation, ACTIVATIONS)
        _check_int("num_outputs", num_outputs, 1)
        _check_int("in_channels", in_channels, 1)
        side, channels, body = _check_int("image_size", image_size, 1), in_channels, []
        for out_channels, kernel, stride, padding in layers:
            body.append(nn.Conv2d(channels, out_channels, kernel, stride, padding))
            if batch_norm:
                body.append(nn.BatchNorm2d(out_channels))
            body.append(_activation(activation))
            side, channels = (side + 2 * padding - kernel) // stride + 1, out_channels
            if side < 1:
                raise ValueError(f"layers shrink a {image_size} px image to nothing; give a larger image_size")
        self.activation = activation
        self.body = nn.Sequential(*body, nn.Flatten())
        self.head = nn.Linear(channels * side * side, num_outputs)
        nn.init.constant_(self.head.bias, output_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.head(self.body(x)))


def count_loss(output: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Squared error on the raw counts, averaged over shape types: one value per image (thesis Sec. 2.2).

    Its mean over a batch is the official ``mean_squared_error``.
    """
    return (output - counts).pow(2).mean(dim=1)


def train_counter(model: CountingCNN, data: ShapesData, *, epochs: int, lr: float, batch_size: int = 20,
                  optimizer: str = "adam", momentum: float = 0.9, seed: int = 0, checkpoint: str | Path | None = None,
                  progress: bool = True, desc: str | None = None) -> list[dict]:
    """Train ``model`` on ``data`` with ``count_loss`` through ``helpers.train.fit`` (Sec. 2.2: MSE, small batches).

    The official script defaults to batches of 20 and plain SGD at lr 0.07 (momentum 0.85 as an option).
    Returns fit's records (epoch, loss, seconds); checkpoint and resume are fit's.
    """
    return fit(model, (data.x, data.counts), epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
               momentum=momentum, loss_fn=count_loss, seed=seed, checkpoint=checkpoint, progress=progress,
               desc=desc or "counting")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _chunks(n: int, batch_size: int) -> Iterator[slice]:
    _check_int("batch_size", batch_size, 1)
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


@torch.no_grad()
def predict_counts(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The model's raw count outputs (N, T) on the CPU, in eval mode, ``batch_size`` images at a time.

    Round them for a count (``count_accuracy``); their sum is the total the detection uses (Sec. 2.2.2).
    """
    with eval_mode(model):
        return torch.cat([model(x[part].to(_device(model))).cpu() for part in _chunks(len(x), batch_size)])


# --------------------------------------------------------------------------------------------
# Saliency and second-derivative detection


def _channel_max(gradient: torch.Tensor) -> torch.Tensor:
    """Simonyan et al.'s merge of a (N, C, H, W) gradient: max over channels of its magnitude, (N, H, W)."""
    return gradient.abs().amax(dim=1)


def _saliency_graph(model: nn.Module, x: torch.Tensor,
                    create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image with grad, outputs, saliency map); with ``create_graph`` the map can be differentiated again."""
    image = x.detach().to(_device(model)).requires_grad_(True)
    output = model(image)
    (gradient,) = torch.autograd.grad(output.sum(), image, create_graph=create_graph)
    return image, output, _channel_max(gradient)


def saliency(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Saliency (N, H, W): max over channels of ``|d(sum of outputs)/dx|`` per image (Sec. 2.1.5 and 2.2.1).

    The model runs in eval mode, so each image's map is its own.
    """
    with eval_mode(model):
        return _saliency_graph(model, x, create_graph=False)[2]


def saliency_image(saliency_map: torch.Tensor, power: float = 0.1) -> torch.Tensor:
    """``saliency ** power`` scaled to [0, 1] per image, for display (Sec. 2.2.2: the 10th root, normalised).

    Works on one (H, W) map or a stack (..., H, W); an all-zero map stays zero.
    """
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power!r}")
    shown = saliency_map.detach().clamp_min(0).pow(power)
    top = shown.flatten(-2).amax(-1).clamp_min(torch.finfo(shown.dtype).tiny)
    return shown / top[..., None, None]


def _second_derivative(image: torch.Tensor, first: torch.Tensor, seeds: torch.Tensor,
                       active: torch.Tensor) -> torch.Tensor:
    """max over channels of |d first[n, seed_n] / d image_n| for each image n (zero where not ``active``).

    One backward pass serves the batch: image n's saliency depends only on image n.
    """
    picked = first.flatten(1).gather(1, seeds[:, None]).squeeze(1)
    if not picked.requires_grad:  # nothing differentiable left between saliency and image
        return torch.zeros_like(first)
    (gradient,) = torch.autograd.grad((picked * active).sum(), image, retain_graph=True, allow_unused=True)
    return torch.zeros_like(first) if gradient is None else _channel_max(gradient)


def second_derivative_saliency(model: nn.Module, x: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """The saliency of one saliency pixel per image: ``max_c |d s_n[pixel_n] / d x_n|``, (N, H, W) (Sec. 2.2.1).

    ``pixels`` is (N, 2) (row, column). Zero everywhere for a net whose activations all have a zero second
    derivative (ReLU); not so for softplus or sigmoid.
    """
    if pixels.shape != (len(x), 2):
        raise ValueError(f"pixels must be (N, 2) rows and columns, one per image, got {tuple(pixels.shape)}")
    with eval_mode(model):
        image, _, first = _saliency_graph(model, x, create_graph=True)
        seeds = (pixels[:, 0] * first.shape[-1] + pixels[:, 1]).to(first.device).long()
        return _second_derivative(image, first, seeds, torch.ones(len(x), device=first.device))


@dataclass(frozen=True, eq=False)
class Detection:
    """The shapes ``detect_shapes`` found in one image (Sec. 2.2.2): ``boxes`` (K, 4) (x0, y0, x1, y1).

    Box ends are exclusive; ``seeds`` (K, 2) are the seed pixels (row, column), ``masks`` (K, H, W) the pixel
    groups, ``maps`` (K, H, W) the second-derivative saliencies when asked for; ``count`` is the sum of the
    outputs, whose rounding bounds K.
    """

    boxes: torch.Tensor
    seeds: torch.Tensor
    masks: torch.Tensor
    count: float
    maps: torch.Tensor | None = None


def _group_box(group: torch.Tensor) -> list[float]:
    rows = torch.nonzero(group.any(1)).squeeze(1)
    cols = torch.nonzero(group.any(0)).squeeze(1)
    return [float(cols[0]), float(rows[0]), float(cols[-1]) + 1, float(rows[-1]) + 1]


def detect_shapes(
    model: nn.Module,
    x: torch.Tensor,
    *,
    threshold: float = OFFICIAL_THRESHOLD,
    relative: bool = False,
    keep_maps: bool = False,
    batch_size: int = 32,
) -> list[Detection]:
    """Second-derivative detection (thesis Sec. 2.2.2), one ``Detection`` per image.

    Repeat round(sum of outputs) times, or until every pixel is assigned: take the most salient unassigned
    pixel, compute the saliency of its saliency (double backprop), keep the unassigned pixels at or above
    ``threshold`` (with ``relative``, that fraction of the map's maximum) plus the seed as one shape, box
    them, and mark them assigned. The official threshold 5e-10 was set for images on a 0-255 scale; for
    images in [0, 1] the same net's second derivatives are 255^2 times larger.
    """
    if not threshold > 0 or (relative and threshold > 1):
        raise ValueError(f"threshold must be > 0 (and <= 1 when relative), got {threshold!r}")
    found: list[Detection] = []
    with eval_mode(model):
        for part in _chunks(len(x), batch_size):
            found += _detect_batch(model, x[part], threshold, relative, keep_maps)
    return found


def _detect_batch(model: nn.Module, x: torch.Tensor, threshold: float, relative: bool,
                  keep_maps: bool) -> list[Detection]:
    image, output, first = _saliency_graph(model, x, create_graph=True)
    n, height, width = first.shape
    totals = output.detach().sum(1)
    wanted = totals.round().clamp_min(0).long()
    assigned = torch.zeros_like(first, dtype=torch.bool)
    seeds, groups, maps = [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)]
    for step in range(int(wanted.max()) if n else 0):
        active = (step < wanted) & ~assigned.flatten(1).all(1)
        if not active.any():
            break
        seed = first.detach().masked_fill(assigned, -1.0).flatten(1).argmax(1)
        importance = _second_derivative(image, first, seed, active.float())
        cut = threshold * importance.flatten(1).amax(1)[:, None, None] if relative else threshold
        group = (importance >= cut) & (importance > 0) & ~assigned
        group.view(n, -1)[torch.arange(n), seed] = True
        group &= active[:, None, None]
        assigned |= group
        for i in torch.nonzero(active).squeeze(1).tolist():
            seeds[i].append(divmod(int(seed[i]), width))
            groups[i].append(group[i].cpu())
            if keep_maps:
                maps[i].append(importance[i].detach().cpu())
    results = []
    for i in range(n):
        masks = torch.stack(groups[i]) if groups[i] else torch.zeros(0, height, width, dtype=torch.bool)
        results.append(Detection(
            boxes=torch.tensor([_group_box(m) for m in masks], dtype=torch.float32).reshape(-1, 4),
            seeds=torch.tensor(seeds[i], dtype=torch.int64).reshape(-1, 2),
            masks=masks,
            count=float(totals[i]),
            maps=(torch.stack(maps[i]) if maps[i] else torch.zeros(0, height, width)) if keep_maps else None,
        ))
    return results


# --------------------------------------------------------------------------------------------
# Scores


def group_overlap(masks: torch.Tensor, instances: torch.Tensor) -> dict[str, torch.Tensor]:
    """How each detected pixel group (K, H, W) sits on the true shapes of its image's ``instances`` map.

    Per group: ``shape`` (index of the shape holding most of its pixels, -1 if none), ``purity`` (share of its
    pixels on that shape), ``coverage`` (share of that shape's pixels in it), ``background`` (share off every
    shape): the thesis's "about half of the shape" and "pixels between two shapes" (Sec. 2.2.2), measured.
    """
    if masks.dim() != 3 or masks.shape[1:] != instances.shape:
        raise ValueError(f"masks must be (K, H, W) on the (H, W) instances map, got {tuple(masks.shape)} and "
                         f"{tuple(instances.shape)}")
    labels = instances.cpu().long().flatten()
    n_labels = max(int(labels.max()) + 1, 2)  # background and at least one shape label
    sizes = torch.bincount(labels, minlength=n_labels).float()
    hits = torch.stack([torch.bincount(labels[group.cpu().flatten()], minlength=n_labels).float() for group in masks]
                       ) if len(masks) else torch.zeros(0, n_labels)
    on_shape, best = hits[:, 1:].max(1)
    total = hits.sum(1).clamp_min(1)
    found = on_shape > 0
    return {"shape": torch.where(found, best, -1),
            "purity": on_shape / total,
            "coverage": torch.where(found, on_shape / sizes[1:][best].clamp_min(1), 0.0),
            "background": hits[:, 0] / total}


def match_boxes(predicted: torch.Tensor, true: torch.Tensor,
                iou_threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches (predicted index, true index, IoU) with IoU >= ``iou_threshold``.

    The assignment maximises the total IoU (Hungarian, ``scipy.optimize.linear_sum_assignment``).
    """
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_iou

    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    if len(predicted) == 0 or len(true) == 0:
        return []
    iou = box_iou(predicted.float().reshape(-1, 4), true.float().reshape(-1, 4)).numpy()
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]


def detection_scores(predicted: Sequence[torch.Tensor], true: Sequence[torch.Tensor],
                     iou_threshold: float = 0.5) -> dict[str, float]:
    """Precision and recall of predicted boxes against true boxes over a set of images, at IoU >= 0.5.

    Counts are pooled over images (``match_boxes`` per image); a ratio with nothing to divide by is NaN.
    Returns precision, recall, true_positives, predicted, true.
    """
    if len(predicted) != len(true):
        raise ValueError(f"predicted and true must list boxes for the same images, "
                         f"got {len(predicted)} and {len(true)}")
    hits = sum(len(match_boxes(p, t, iou_threshold)) for p, t in zip(predicted, true))
    n_predicted, n_true = sum(len(p) for p in predicted), sum(len(t) for t in true)
    return {"precision": hits / n_predicted if n_predicted else math.nan,
            "recall": hits / n_true if n_true else math.nan,
            "true_positives": hits, "predicted": n_predicted, "true": n_true}


def _check_counts(predicted: torch.Tensor, true: torch.Tensor) -> None:
    if predicted.shape != true.shape or predicted.dim() != 2 or len(true) == 0:
        raise ValueError(f"predicted and true must be non-empty (N, T) counts of one shape, "
                         f"got {tuple(predicted.shape)} and {tuple(true.shape)}")


def count_accuracy(predicted: torch.Tensor, true: torch.Tensor,
                   shape_types: Sequence[str] = SHAPE_TYPES) -> dict[str, float]:
    """Fraction of images whose rounded count is exact, per shape type and for all types at once ("all"),
    and the mean absolute error of the raw outputs per type ("mae_<type>")."""
    _check_counts(predicted, true)
    if len(shape_types) != true.shape[1]:
        raise ValueError(f"shape_types must name the {true.shape[1]} count columns, got {tuple(shape_types)}")
    exact = predicted.detach().cpu().round() == true.cpu()
    scores = {name: float(exact[:, j].float().mean()) for j, name in enumerate(shape_types)}
    scores["all"] = float(exact.all(1).float().mean())
    error = (predicted.detach().cpu() - true.cpu()).abs().mean(0)
    scores.update({f"mae_{name}": float(error[j]) for j, name in enumerate(shape_types)})
    return scores


def count_errors_by_true_count(predicted: torch.Tensor, true: torch.Tensor,
                               shape_types: Sequence[str] = SHAPE_TYPES) -> pd.DataFrame:
    """Per shape type and true count: images, rounded accuracy, mean error and mean absolute error of the output.

    The thesis's plot of predictions against truth (Sec. 2.2.3), as a table: one row per (shape, true_count).
    """
    _check_counts(predicted, true)
    if len(shape_types) != true.shape[1]:
        raise ValueError(f"shape_types must name the {true.shape[1]} count columns, got {tuple(shape_types)}")
    out, truth = predicted.detach().cpu().double().numpy(), true.cpu().double().numpy()
    frame = pd.DataFrame({
        "shape": np.repeat(np.array(shape_types), len(truth)),
        "true_count": truth.T.reshape(-1).astype(int),
        "error": (out - truth).T.reshape(-1),
        "exact": (np.round(out) == truth).T.reshape(-1),
    })
    frame["abs_error"] = frame["error"].abs()
    return (frame.groupby(["shape", "true_count"], sort=True)
            .agg(n=("error", "size"), accuracy=("exact", "mean"), mean_error=("error", "mean"),
                 mean_abs_error=("abs_error", "mean"))
            .reset_index())
