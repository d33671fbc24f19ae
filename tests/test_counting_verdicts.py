"""The counting claims as the thesis states them (helpers.verdicts.counting) and the detection loop's group sizes
(helpers.saliency.detection_per_image, later_to_first_size)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import claims
from helpers.saliency import Detection, detection_per_image, later_to_first_size
from helpers.verdicts.counting import counting_judgements


def _detection(sizes: list[int]) -> Detection:
    masks = torch.zeros(len(sizes), 8, 8, dtype=torch.bool)
    for k, size in enumerate(sizes):
        masks[k].view(-1)[8 * k:8 * k + size] = True  # group k: `size` pixels from row k on
    seeds = torch.tensor([[k, 0] for k in range(len(sizes))], dtype=torch.int64).reshape(-1, 2)
    return Detection(boxes=torch.zeros(len(sizes), 4), seeds=seeds, masks=masks, count=float(len(sizes)))


def test_group_sizes_in_loop_order_and_their_ratio():
    found = [_detection([8, 4, 2]), _detection([6]), _detection([])]
    instances = torch.zeros(3, 8, 8, dtype=torch.uint8)
    out = detection_per_image(found, instances, near=2)
    sizes = [det.masks.flatten(1).sum(1).tolist() for det in found]
    assert out["first_size"].tolist() == [sizes[0][0], sizes[1][0], 0.0]
    assert out["first_groups"].tolist() == [1.0, 1.0, 0.0]
    assert out["later_size_sum"].tolist() == [sizes[0][1] + sizes[0][2], 0.0, 0.0]
    assert out["later_groups"].tolist() == [2.0, 0.0, 0.0]
    arms = [out[k][None] for k in ("later_size_sum", "later_groups", "first_size", "first_groups")]
    expected = ((sizes[0][1] + sizes[0][2]) / 2) / ((sizes[0][0] + sizes[1][0]) / 2)
    assert float(later_to_first_size(*arms)) == pytest.approx(expected)
    assert later_to_first_size(*[np.stack([a[0], a[0]])[None] for a in arms]).shape == (1,)  # [resamples, seeds, images]


def _inputs(seeds: int = 2, n: int = 300, learned: bool = True, groups: bool = True):
    rng = np.random.default_rng(0)
    exact = lambda p: (rng.random(n) < p).astype(float)
    per_image = [{"exact_triangle": exact(0.9 if learned else 0.2), "exact_square": exact(0.9 if learned else 0.2),
                  "exact_all": exact(0.85 if learned else 0.1), "abs_error": rng.random(n) * 0.4} for _ in range(seeds)]
    base = {"exact_triangle": exact(0.2), "exact_square": exact(0.2), "exact_all": exact(0.05)}
    regions = {r: claims.scores([rng.random(n) + shift for _ in range(seeds)])
               for r, shift in (("edge band", 1.0), ("corners", 1.5), ("interior", 0.0), ("far background", 0.2))}
    count = lambda scale: [{"groups_on_shape": np.full(n, 2.0), "coverage_sum": np.full(n, 0.8),
                            "seeds": np.full(n, 3.0), "seeds_between": np.full(n, 1.0),
                            "first_size": np.full(n, 40.0), "first_groups": np.ones(n),
                            "later_size_sum": np.full(n, 8.0 * scale), "later_groups": np.full(n, 2.0 * scale)}
                           for _ in range(seeds)]
    detected = {"official": count(1 if groups else 0), "relative 0.1": count(1 if groups else 0)}
    second = pd.DataFrame({"max |h|": [0.3, 0.0, 0.2], "images with h ≡ 0, outputs clamped": [0, 0, 0],
                           "images with h ≡ 0, other": [0, 10, 0]}, index=["softplus", "relu", "sigmoid"])
    sigmoid = {"far background": claims.scores([rng.random(n) + 1.0]), "interior": claims.scores([rng.random(n)])}
    return per_image, base, regions, detected, second, sigmoid


def test_counting_judgements_judge_every_claim_as_the_thesis_states_it(monkeypatch):
    import helpers.verdicts.counting as module

    monkeypatch.setattr(module, "second_derivative_check", lambda table: (True, "checked by hand"))
    per_image, base, regions, detected, second, sigmoid = _inputs()
    out = counting_judgements(per_image, base, regions, detected, second, types=("triangle", "square"),
                              sigmoid_density=sigmoid, sigmoid_exact_all=np.full(300, 0.9))
    assert set(out) == {"learns_to_count", "saliency_on_edges_corners", "sigmoid_saliency_blank_space",
                        "detection_partial", "detection_between_shapes", "detection_groups_shrink",
                        "fixed_size_shapes", "relu_second_derivative_zero"}
    assert out["learns_to_count"].verdict == "reproduced"
    assert [p.name for p in out["saliency_on_edges_corners"].parts] == [
        "saliency per pixel, edge band / interior", "saliency per pixel, corners / interior"]
    assert out["detection_between_shapes"].parts[0].interval.estimate == pytest.approx(1 / 3)  # not "on background"
    assert out["detection_groups_shrink"].parts[0].interval.estimate == pytest.approx(0.1)  # 4 px after 40 px
    assert out["detection_groups_shrink"].verdict == "reproduced"
    assert out["sigmoid_saliency_blank_space"].verdict == "reproduced"
    assert out["fixed_size_shapes"].verdict == "not run at this scale"
    rng = np.random.default_rng(1)
    fixed = {"fixed": (rng.random(300) < 0.97).astype(float), "relu": (rng.random(300) < 0.6).astype(float),
             "fixed_baseline": np.zeros(300)}
    judged = counting_judgements(per_image, base, regions, detected, second, types=("triangle", "square"),
                                 sigmoid_density=sigmoid, sigmoid_exact_all=np.full(300, 0.9), fixed=fixed)
    assert judged["fixed_size_shapes"].verdict == "reproduced"
    assert judged["fixed_size_shapes"].parts[1].interval.estimate == pytest.approx(fixed["fixed"].mean() - fixed["relu"].mean())
    weak = counting_judgements(per_image, base, regions, detected, second, types=("triangle", "square"),
                               sigmoid_density=sigmoid, sigmoid_exact_all=np.full(300, 0.9),
                               fixed=dict(fixed, fixed=np.zeros(300)))
    assert weak["fixed_size_shapes"].verdict == "not run at this scale"  # it did not learn: its own guard
    assert out["relu_second_derivative_zero"].verdict == "checked"
    sigmoid_undertrained = counting_judgements(per_image, base, regions, detected, second, types=("triangle", "square"),
                                               sigmoid_density=sigmoid, sigmoid_exact_all=np.zeros(300))
    assert sigmoid_undertrained["sigmoid_saliency_blank_space"].verdict == "not run at this scale"
    assert sigmoid_undertrained["learns_to_count"].verdict == "reproduced"  # the main net's guard is its own


def test_an_undertrained_main_net_or_a_single_group_is_not_judged(monkeypatch):
    import helpers.verdicts.counting as module

    monkeypatch.setattr(module, "second_derivative_check", lambda table: (True, "checked by hand"))
    per_image, base, regions, detected, second, sigmoid = _inputs(learned=False, groups=False)
    out = counting_judgements(per_image, base, regions, detected, second, types=("triangle", "square"),
                              sigmoid_density=sigmoid, sigmoid_exact_all=np.full(300, 0.9))
    assert all(out[c].verdict == "not run at this scale" for c in
               ("learns_to_count", "saliency_on_edges_corners", "detection_partial", "detection_groups_shrink"))
    assert "no second group" in out["detection_groups_shrink"].reason
