"""The thesis's synthetic counting data (Paper 5, thesis Ch. 2): triangles and squares and their counts.

``make_shapes`` follows the official sampler (benvcutilli/CountingPlusFriendly, ``Counting/``): unit templates,
integer rotation 0-359, one integer scale per image after Guan and Loew (Sec. 2.2.3), placed at random integer
offsets inside the canvas with Shapely rejecting overlaps, drawn with Pillow in blue on black; per-type counts
uniform in 0..limit. The count regressor is :class:`helpers.models.CountingCNN`, its training
:mod:`helpers.train.counting`, saliency and detection :mod:`helpers.saliency`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from . import checks

__all__ = ["SHAPE_TYPES", "COUNT_SAMPLING", "TEMPLATES", "PAPER_IMAGE_SIZE", "PAPER_SCALE", "BOOK_IMAGE_SIZE",
           "BOOK_SCALE", "BLUE", "ShapesData", "make_shapes", "polygon_vertices", "place_polygons",
           "pixel_count_shortcut"]

SHAPE_TYPES: tuple[str, ...] = ("triangle", "square")
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


def _integer(name: str, value, low: int) -> int:
    """``checks.integer`` that also takes NumPy integers (counts and sizes often come from arrays)."""
    return checks.integer(name, int(value) if isinstance(value, np.integer) else value, low=low)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(_integer("seed", seed, 0))


def polygon_vertices(template: np.ndarray, rotation: int, scale: float) -> np.ndarray:
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


def place_polygons(rng: np.random.Generator, outlines: list[np.ndarray], image_size: int,
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
    n = _integer("n", n, 0)
    image_size = _integer("image_size", image_size, 8)
    limit = _integer("limit", limit, 0)
    types = tuple(shape_types)
    if not types or len(set(types)) != len(types) or not set(types) <= set(SHAPE_TYPES):
        raise ValueError(f"shape_types must be distinct names from {SHAPE_TYPES}, at least one, got {shape_types!r}")
    checks.choice("count_sampling", count_sampling, COUNT_SAMPLING)
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
            outlines.append(polygon_vertices(TEMPLATES[types[kind]], rotation, size))
        for _ in range(_MAX_RESTARTS):
            placed = place_polygons(rng, outlines, image_size, float(min_gap))
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




def pixel_count_shortcut(n: int, *, seed: int, per_shape_scale: bool, **settings
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Can counting lit pixels count the shapes? (Guan and Loew's argument, thesis Sec. 2.2.3.)

    Fits ``total shapes ~ lit pixels`` by least squares on ``n`` images made with ``make_shapes(**settings)``
    and tests it on ``max(n // 2, 10)`` more. With one scale per shape the pixel count averages out; with one
    scale per image (the official sampler) it should not count. Returns ``(pixels, totals, scores)``, the
    first two per split, ``scores``: exact total count, MAE of the total and R² on the test images.
    """
    data = {split: make_shapes(n if split == "train" else max(n // 2, 10), **settings,
                               per_shape_scale=per_shape_scale,
                               seed=np.random.default_rng([seed, 2 + k + 2 * per_shape_scale]))
            for k, split in enumerate(("train", "test"))}
    pixels = {s: (d.instances > 0).flatten(1).sum(1).double().numpy() for s, d in data.items()}
    totals = {s: d.counts.sum(1).double().numpy() for s, d in data.items()}
    slope, intercept = np.polyfit(pixels["train"], totals["train"], 1)
    guess = slope * pixels["test"] + intercept
    return pixels, totals, {"exact total count": float((np.round(guess) == totals["test"]).mean()),
                            "MAE of total": float(np.abs(guess - totals["test"]).mean()),
                            "R² (test)": float(1 - ((guess - totals["test"]) ** 2).sum()
                                               / ((totals["test"] - totals["test"].mean()) ** 2).sum())}
