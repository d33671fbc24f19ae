"""Saliency and second-derivative detection (Paper 5, thesis Sec. 2.1.5, 2.2.1 and 2.2.2), and their scores.

- ``saliency`` (Simonyan et al.): max over channels of ``|d(sum of outputs)/dx|``.
- ``detect_shapes``: from the most salient unassigned pixel, the saliency of its saliency (double backprop),
  thresholded into one shape; repeated round(sum of outputs) times (the official code's procedure).
- ``detection_scores`` (IoU 0.5, Hungarian matching) and ``group_overlap``: how well it worked.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from scipy import ndimage

from . import batch_slices, eval_mode, model_device

__all__ = ["OFFICIAL_THRESHOLD", "saliency", "saliency_image", "second_derivative_saliency", "Detection",
           "detect_shapes", "group_overlap", "match_boxes", "detection_scores", "shape_regions", "saliency_by_region",
           "second_derivative_summary", "score_detection", "detection_settings", "detection_table",
           "channel_saliency_by_region", "region_density_per_image", "region_density_by_seed", "detection_per_image",
           "detection_counts_by_seed", "later_to_first_size", "share_arms", "second_derivative_check"]

#: The official detection threshold on the second-derivative saliency (images on a 0-255 scale there).
OFFICIAL_THRESHOLD = 5e-10

# --------------------------------------------------------------------------------------------
# Saliency and second-derivative detection


def _channel_max(gradient: torch.Tensor) -> torch.Tensor:
    """Simonyan et al.'s merge of a (N, C, H, W) gradient: max over channels of its magnitude, (N, H, W)."""
    return gradient.abs().amax(dim=1)


def _saliency_graph(model: nn.Module, x: torch.Tensor,
                    create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image with grad, outputs, saliency map); with ``create_graph`` the map can be differentiated again."""
    image = x.detach().to(model_device(model)).requires_grad_(True)
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
        for part in batch_slices(len(x), batch_size):
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




# --------------------------------------------------------------------------------------------
# Where the saliency falls, and how the detection did, in the notebook's terms

_CROSS = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], dtype=bool)  # 4-connectivity, per image


def shape_regions(instances: torch.Tensor) -> dict[str, np.ndarray]:
    """Boolean masks (N, H, W) of the regions the thesis talks about (Sec. 2.2.1): a one-pixel ``edge band``
    on both sides of every outline, the ``interior``, the ``corners`` (outline pixels with at most 36% of their
    5 x 5 neighbourhood on a shape) and the ``far background`` (more than 3 px from any shape)."""
    mask = instances.numpy() > 0
    eroded = ndimage.binary_erosion(mask, _CROSS)
    dilated = ndimage.binary_dilation(mask, _CROSS)
    inner = mask & ~eroded
    shape_share = ndimage.uniform_filter(mask.astype(float), size=(1, 5, 5), mode="constant")
    return {"edge band": dilated & ~eroded, "interior": eroded, "corners": inner & (shape_share <= 0.36),
            "far background": ~ndimage.binary_dilation(mask, _CROSS, iterations=3)}


def saliency_by_region(maps: dict[str, np.ndarray], regions: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per net and region: its share of the saliency mass and of the area (over edge band and interior), and
    its saliency per pixel relative to the interior's. ``maps`` holds one (N, H, W) saliency array per net."""
    shape_area = regions["edge band"] | regions["interior"]
    rows = []
    for name, smap in maps.items():
        interior_density = smap[regions["interior"]].mean()
        for region, where in regions.items():
            inside = region != "far background"
            rows.append({"activation": name, "region": region,
                         "share of saliency mass (band ∪ interior)":
                             smap[where].sum() / smap[shape_area].sum() if inside else float("nan"),
                         "share of area (band ∪ interior)": where.sum() / shape_area.sum() if inside else float("nan"),
                         "saliency per pixel / interior's": smap[where].mean() / interior_density})
    return pd.DataFrame(rows).set_index(["activation", "region"])


def second_derivative_summary(nets: dict[str, nn.Module], x: torch.Tensor
                              ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], pd.DataFrame]:
    """The saliency of each image's most salient pixel's saliency, per net (Sec. 2.2.2; zero for ReLU nets).

    Returns ``({net: (seed pixels (N, 2), h (N, H, W), alive (N,))}, table)``: ``alive`` marks the images whose
    outputs the output ReLU does not clamp at 0 (their saliency is not identically 0)."""
    second = {}
    for name, net in nets.items():
        first = saliency(net, x)
        seeds = torch.stack([torch.tensor(divmod(int(s.flatten().argmax()), s.shape[-1])) for s in first])
        h = second_derivative_saliency(net, x, seeds).detach().cpu()
        second[name] = (seeds, h, first.flatten(1).amax(1).cpu() > 0)
    table = pd.DataFrame([{"activation": a, "images": len(h), "outputs clamped at 0 (saliency ≡ 0)": int((~alive).sum()),
                           "max |h|": float(h.max()),
                           "other images with h ≡ 0": int(((h.flatten(1).amax(1) == 0) & alive).sum()),
                           "share of pixels with h ≠ 0 (other images)": float((h[alive] != 0).float().mean())
                           if alive.any() else float("nan")}
                          for a, (_, h, alive) in second.items()]).set_index("activation")
    return second, table


def _between_shapes(instances: torch.Tensor, row: int, col: int, radius: int) -> bool:
    window = instances[max(row - radius, 0):row + radius + 1, max(col - radius, 0):col + radius + 1]
    return len(set(window[window > 0].tolist())) >= 2


def score_detection(found: Sequence[Detection], instances: torch.Tensor, boxes: Sequence[torch.Tensor],
                    near: int) -> dict[str, float]:
    """How a detection went, over images: box precision, recall and F1 at IoU 0.5, group sizes, how much of
    its shape a group covers, and how often a seed or a group pixel falls on the background (``near``: the
    radius within which two shapes make a background seed count as "between two shapes")."""
    coverage, background, seed_on_background, seed_between, sizes = [], [], [], [], []
    for det, image_instances in zip(found, instances):
        overlap = group_overlap(det.masks, image_instances)
        coverage += overlap["coverage"][overlap["shape"] >= 0].tolist()
        background += overlap["background"].tolist()
        sizes += det.masks.flatten(1).sum(1).tolist()
        for row, col in det.seeds.tolist():
            on_background = int(image_instances[row, col]) == 0
            seed_on_background.append(on_background)
            seed_between.append(on_background and _between_shapes(image_instances, row, col, near))
    scores = detection_scores([d.boxes for d in found], boxes)

    def median(values):
        return float(np.median(values)) if values else float("nan")

    def mean(values):
        return float(np.mean(values)) if values else float("nan")

    return {"precision": scores["precision"], "recall": scores["recall"],
            "F1": 2 * scores["true_positives"] / max(scores["predicted"] + scores["true"], 1),
            "boxes": scores["predicted"], "true boxes": scores["true"],
            "median group size (px)": median(sizes), "median coverage": median(coverage),
            "groups on a shape": len(coverage) / max(len(background), 1),
            "group pixels on background": mean(background), "seeds on background": mean(seed_on_background),
            "seeds between two shapes": mean(seed_between)}


def detection_settings(relative_thresholds: Sequence[float]) -> list[tuple[str, float, bool]]:
    """``(label, threshold, relative)`` of every detection setting: the official threshold (its 5e-10 is for
    images on a 0-255 scale, so ours, in [0, 1], use 5e-10 * 255^2) and each relative threshold."""
    return ([("official", OFFICIAL_THRESHOLD * 255 ** 2, False)]
            + [(f"relative {r:g}", r, True) for r in relative_thresholds])


def detection_table(nets: dict[str, nn.Module], x: torch.Tensor, instances: torch.Tensor,
                    boxes: Sequence[torch.Tensor], settings: Sequence[tuple[str, float, bool]], *, main: str,
                    others: Sequence[str] = ("official", "relative 0.1"), near: int
                    ) -> tuple[dict[tuple[str, str], list[Detection]], pd.DataFrame]:
    """Run :func:`detect_shapes` with every setting on the ``main`` net and with the ``others`` settings on the
    other nets; score each with :func:`score_detection`. Returns ``({(net, label): detections}, table)``, the
    table indexed by (activation, threshold) with the seconds each detection took."""
    detections, rows = {}, []
    for activation, net in nets.items():
        for label, threshold, relative in settings:
            if activation != main and label not in others:
                continue
            started = time.perf_counter()
            found = detect_shapes(net, x, threshold=threshold, relative=relative)
            detections[activation, label] = found
            rows.append({"activation": activation, "threshold": label,
                         **score_detection(found, instances, boxes, near), "s": time.perf_counter() - started})
    return detections, pd.DataFrame(rows).set_index(["activation", "threshold"])


def channel_saliency_by_region(model: nn.Module, x: torch.Tensor, regions: dict[str, np.ndarray],
                               channel: int) -> dict[str, float]:
    """Saliency per pixel of one input ``channel`` alone (``|d(sum of outputs)/dx_c|``) in each region,
    relative to the interior's: where the net looks in the one channel the shapes are drawn in."""
    image = x.detach().to(model_device(model)).requires_grad_(True)
    with eval_mode(model):
        (gradient,) = torch.autograd.grad(model(image).sum(), image)
    values = gradient[:, channel].abs().cpu().numpy()
    interior = values[regions["interior"]].mean()
    return {region: float(values[where].mean() / interior) for region, where in regions.items()}


# --------------------------------------------------------------------------------------------
# Per-image scores, for intervals over seeds and images (helpers.claims.bootstrap)


def region_density_per_image(saliency_map: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mean saliency per pixel of each region, image by image: ``{region: (N,)}`` from an (N, H, W) map and the
    (N, H, W) masks of :func:`shape_regions`; NaN where an image has no pixel of the region. The ratio of two
    regions' means over images (``claims.ratio``) is the "saliency per pixel relative to the interior's" of
    :func:`saliency_by_region`, with images as the unit a bootstrap resamples."""
    saliency_map = np.asarray(saliency_map, dtype=float)
    out = {}
    for region, where in regions.items():
        if where.shape != saliency_map.shape:
            raise ValueError(f"region {region!r} is {where.shape}, the saliency map {saliency_map.shape}")
        area = where.reshape(len(where), -1).sum(1)
        mass = (saliency_map * where).reshape(len(where), -1).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[region] = np.where(area > 0, mass / np.maximum(area, 1), np.nan)
    return out


def region_density_by_seed(maps: Sequence[np.ndarray], regions: dict[str, np.ndarray],
                           need: Sequence[str] = ("edge band", "interior", "corners", "far background")
                           ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`region_density_per_image` for one (N, H, W) saliency map per seed, kept on the images that have every
    region of ``need`` (the masks are the same for every seed). Returns ``({region: [seeds, usable images]},
    usable (N,) bool)``: the arms of a bootstrap over seeds and images (e.g. ``claims.ratio`` of a region and
    the interior)."""
    if not len(maps):
        raise ValueError("region_density_by_seed needs at least one saliency map")
    density = [region_density_per_image(m, regions) for m in maps]
    usable = np.all([np.isfinite(density[0][r]) for r in need], axis=0)
    return {r: np.stack([d[r][usable] for d in density]) for r in density[0]}, usable


def detection_per_image(found: Sequence[Detection], instances: torch.Tensor, near: int) -> dict[str, np.ndarray]:
    """Per image, the counts behind the thesis's two detection statements (Sec. 2.2.2), as (N,) float arrays:
    ``groups_on_shape`` and ``coverage_sum`` (groups whose pixels are mostly on one shape, and the sum of the
    share of that shape each covers: their ratio over images is the mean coverage), ``seeds``,
    ``seeds_on_background`` and ``seeds_between`` (background seeds with two different shapes within ``near`` px:
    "between two shapes"), and the loop's group sizes in pixels: ``first_size`` and ``first_groups`` (the first
    group's, 0/1), ``later_size_sum`` and ``later_groups`` (the groups after it: "as the loop continued ... many of
    the points were extremely local"). Sums over images divided by each other give shares with images as the unit."""
    if len(found) != len(instances):
        raise ValueError(f"found and instances must cover the same images, got {len(found)} and {len(instances)}")
    keys = ("groups_on_shape", "coverage_sum", "seeds", "seeds_on_background", "seeds_between", "first_size",
            "first_groups", "later_size_sum", "later_groups")
    out = {k: np.zeros(len(found)) for k in keys}
    for i, (det, image_instances) in enumerate(zip(found, instances)):
        overlap = group_overlap(det.masks, image_instances)
        on_shape = overlap["shape"] >= 0
        out["groups_on_shape"][i] = float(on_shape.sum())
        out["coverage_sum"][i] = float(overlap["coverage"][on_shape].sum())
        sizes = det.masks.flatten(1).sum(1).double() if len(det.masks) else torch.zeros(0, dtype=torch.float64)
        if len(sizes):
            out["first_size"][i], out["first_groups"][i] = float(sizes[0]), 1.0
            out["later_size_sum"][i], out["later_groups"][i] = float(sizes[1:].sum()), float(len(sizes) - 1)
        for row, col in det.seeds.tolist():
            background = int(image_instances[row, col]) == 0
            out["seeds"][i] += 1
            out["seeds_on_background"][i] += background
            out["seeds_between"][i] += background and _between_shapes(image_instances, row, col, near)
    return out


def detection_counts_by_seed(nets: Sequence[nn.Module], x: torch.Tensor, instances: torch.Tensor,
                             settings: Sequence[tuple[str, float, bool]], near: int,
                             done: dict[str, list[Detection]] | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
    """:func:`detection_per_image` for every net (one per seed) and every ``(label, threshold, relative)`` setting:
    ``{label: [per-image counts of net 0, net 1, ...]}``. ``done[label]`` holds detections already made by the first
    net (e.g. by :func:`detection_table`), which are reused rather than recomputed."""
    done = done or {}
    out = {}
    for label, threshold, relative in settings:
        found = [done[label]] if label in done else []
        found += [detect_shapes(net, x, threshold=threshold, relative=relative) for net in nets[len(found):]]
        out[label] = [detection_per_image(f, instances, near) for f in found]
    return out


def later_to_first_size(later_sum: np.ndarray, later_groups: np.ndarray, first_sum: np.ndarray,
                        first_groups: np.ndarray) -> np.ndarray:
    """The mean size of the loop's later groups over the mean size of its first groups, from
    :func:`detection_per_image`'s sums as ``[..., seeds, images]`` arms (a vectorized statistic for
    ``helpers.claims.bootstrap``): below 1 when the groups shrink as the loop continues."""
    def mean(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=float).mean(axis=(-2, -1))

    with np.errstate(divide="ignore", invalid="ignore"):
        return (mean(later_sum) / mean(later_groups)) / (mean(first_sum) / mean(first_groups))


def share_arms(counts: dict[str, list[dict[str, np.ndarray]]], numerator: str,
               denominator: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{label: (numerator [seeds, images], denominator [seeds, images])}`` from :func:`detection_counts_by_seed`'s
    counts: the two arms whose ratio of means is a share over seeds and images (e.g. seeds between two shapes /
    seeds), for ``helpers.claims.bootstrap(claims.ratio, *arms)``."""
    return {label: (np.stack([c[numerator] for c in per]), np.stack([c[denominator] for c in per]))
            for label, per in counts.items()}


def second_derivative_check(table: pd.DataFrame, smooth: Sequence[str] = ("softplus", "sigmoid")) -> tuple[bool, str]:
    """The arithmetic check of :func:`second_derivative_summary`'s table: the ReLU net's ``h`` is exactly zero on every
    image and each ``smooth`` net's is non-zero on every image its output ReLU does not clamp at zero. Returns
    ``(passed, detail)``."""
    relu_zero = table.loc["relu", "max |h|"] == 0
    smooth_nonzero = [table.loc[a, "other images with h ≡ 0"] == 0
                      and table.loc[a, "outputs clamped at 0 (saliency ≡ 0)"] < table.loc[a, "images"] for a in smooth]
    detail = ("max |h|: " + ", ".join(f"{a} {table.loc[a, 'max |h|']:.3g}" for a in table.index)
              + f" over {int(table['images'].iloc[0])} images; images with h ≡ 0 whose outputs are not clamped: "
              + ", ".join(f"{a} {int(table.loc[a, 'other images with h ≡ 0'])}" for a in smooth))
    return bool(relu_zero and all(smooth_nonzero)), detail
