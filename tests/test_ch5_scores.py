"""Chapter 5's per-example scores for helpers.claims: count scores per image, saliency per region per image,
detection counts per image, FGSM correctness per image, and the lead-over-the-best statistic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import claims
from helpers.models.counting import CountingCNN
from helpers.models.defences import pooled_defence_network
from helpers.saliency import (Detection, detect_shapes, detection_per_image, region_density_by_seed,
                              region_density_per_image, saliency_by_region, score_detection, shape_regions)
from helpers.shapes import make_shapes
from helpers.train.counting import (count_accuracy, count_errors_by_true_count, count_range_summary, count_scores,
                                    input_channel_change, training_table)
from helpers.train.defences import fgsm_accuracies, lead_over_best


def test_count_scores_average_to_count_accuracy():
    true = torch.tensor([[0.0, 1.0], [2.0, 3.0], [1.0, 1.0]])
    predicted = torch.tensor([[0.2, 1.6], [2.4, 2.6], [0.4, 1.0]])
    per_image = count_scores(predicted, true, ("triangle", "square"))
    overall = count_accuracy(predicted, true, ("triangle", "square"))
    assert per_image["exact_triangle"].tolist() == [1.0, 1.0, 0.0]
    assert per_image["exact_square"].tolist() == [0.0, 1.0, 1.0]
    assert per_image["exact_all"].tolist() == [0.0, 1.0, 0.0]
    assert per_image["exact_triangle"].mean() == pytest.approx(overall["triangle"])
    assert per_image["abs_error"] == pytest.approx([0.4, 0.4, 0.3])
    assert per_image["abs_error"].mean() == pytest.approx((overall["mae_triangle"] + overall["mae_square"]) / 2)
    with pytest.raises(ValueError, match="shape_types"):
        count_scores(predicted, true, ("triangle",))


def test_region_density_per_image_matches_the_pooled_table_for_equal_areas():
    data = make_shapes(10, image_size=32, limit=2, scale=(4, 6), seed=3)
    regions = shape_regions(data.instances)
    smap = np.random.default_rng(0).random(data.instances.shape)
    dens = region_density_per_image(smap, regions)
    assert set(dens) == set(regions) and all(v.shape == (10,) for v in dens.values())
    some = next(i for i in range(10) if regions["interior"][i].any())
    assert dens["interior"][some] == pytest.approx(smap[some][regions["interior"][some]].mean())
    empty = [i for i in range(10) if not regions["interior"][i].any()]
    assert all(np.isnan(dens["interior"][i]) for i in empty)
    uniform = region_density_per_image(np.ones_like(smap), regions)
    assert all(np.allclose(v[~np.isnan(v)], 1.0) for v in uniform.values())
    # the pooled table's ratio and the per-image ratio agree on a uniform map
    table = saliency_by_region({"u": np.ones_like(smap)}, regions)
    assert table.loc[("u", "edge band"), "saliency per pixel / interior's"] == pytest.approx(1.0)


def test_detection_per_image_counts_coverage_and_seeds_between_shapes():
    instances = torch.zeros(1, 12, 12, dtype=torch.long)
    instances[0, 2:5, 2:5] = 1      # 9 px shape
    instances[0, 2:5, 8:11] = 2     # 9 px shape
    masks = torch.zeros(3, 12, 12, dtype=torch.bool)
    masks[0, 2:5, 2:4] = True       # 6 of shape 1's 9 px
    masks[1, 3, 6] = True           # a background pixel between the shapes
    masks[2, 11, 0] = True          # a background pixel far from both
    seeds = torch.tensor([[2, 2], [3, 6], [11, 0]])
    det = Detection(boxes=torch.zeros(3, 4), seeds=seeds, masks=masks, count=3.0)
    out = detection_per_image([det], instances, near=3)
    assert out["groups_on_shape"].tolist() == [1.0]
    assert out["coverage_sum"] == pytest.approx([6 / 9])
    assert (out["seeds"][0], out["seeds_on_background"][0], out["seeds_between"][0]) == (3, 2, 1)
    pooled = score_detection([det], instances, [torch.tensor([[2.0, 2, 5, 5], [8, 2, 11, 5]])], near=3)
    assert pooled["seeds between two shapes"] == pytest.approx(out["seeds_between"].sum() / out["seeds"].sum())
    with pytest.raises(ValueError, match="same images"):
        detection_per_image([det, det], instances, near=3)


def test_detection_per_image_on_a_real_detection_is_consistent():
    data = make_shapes(4, image_size=32, limit=2, scale=(4, 6), seed=1)
    torch.manual_seed(0)
    net = CountingCNN("softplus", image_size=32, layers=((8, 5, 2, 2), (8, 3, 2, 1))).eval()
    found = detect_shapes(net, data.x, threshold=0.1, relative=True)
    out = detection_per_image(found, data.instances, near=6)
    assert out["seeds"].tolist() == [float(len(d.seeds)) for d in found]
    assert (out["seeds_between"] <= out["seeds_on_background"]).all()
    assert (out["seeds_on_background"] <= out["seeds"]).all()


def test_lead_over_best_is_the_gap_to_the_best_other_arm_and_bootstraps():
    a = np.full((2, 4), 0.6)
    b, c = np.full((2, 4), 0.5), np.full((2, 4), 0.7)
    assert lead_over_best(a[None], b[None], c[None]) == pytest.approx([-0.1])
    assert lead_over_best(c[None], a[None], b[None]) == pytest.approx([0.1])
    i = claims.bootstrap(lead_over_best, a, b, c, resamples=200)
    assert i.estimate == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="other arm"):
        lead_over_best(a[None])


def test_fgsm_accuracies_per_example_are_the_accuracies_image_by_image():
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(20, 1, 28, 28, generator=g), torch.randint(0, 10, (20,), generator=g))
    torch.manual_seed(0)
    nets, source = {"S": pooled_defence_network("S").eval()}, pooled_defence_network("S").eval()
    out = fgsm_accuracies(nets, data, eps=0.3, small_eps=0.04, source=source, batch_size=10, seed=0,
                          per_example=True)
    correct = out["S"]["correct"]
    assert set(correct) == {"clean", "white", "black", "white_small"}
    for key, values in correct.items():
        assert values.shape == (20,) and values.mean() == pytest.approx(out["S"][key])


def test_region_density_by_seed_stacks_seeds_on_images_with_every_region():
    data = make_shapes(12, image_size=32, limit=2, scale=(4, 6), seed=5)
    regions = shape_regions(data.instances)
    rng = np.random.default_rng(1)
    maps = [rng.random(data.instances.shape) for _ in range(3)]
    stacked, usable = region_density_by_seed(maps, regions)
    need = ("edge band", "interior", "corners", "far background")
    assert usable.tolist() == [all(regions[r][i].any() for r in need) for i in range(12)]
    assert all(v.shape == (3, int(usable.sum())) for v in stacked.values())
    one = region_density_per_image(maps[2], regions)
    assert stacked["edge band"][2] == pytest.approx(one["edge band"][usable])
    assert np.isfinite(stacked["interior"]).all()
    with pytest.raises(ValueError, match="at least one"):
        region_density_by_seed([], regions)


def test_count_range_summary_weights_by_images_and_reads_the_top_count():
    true = torch.tensor([[0.0, 1.0], [5.0, 6.0], [6.0, 2.0], [1.0, 0.0]])
    predicted = torch.tensor([[0.1, 1.2], [4.6, 5.2], [5.4, 2.0], [1.0, 0.4]])
    by_count = count_errors_by_true_count(predicted, true, ("triangle", "square"))
    r = count_range_summary(by_count, split=4)
    # counts <= 4: (0,1), (1,0), (2) -> 5 entries, all exact; > 4: 5 -> 4.6 exact, 6 -> 5.2 and 5.4 not exact
    assert r["accuracy_low"] == pytest.approx(1.0)
    assert r["accuracy_high"] == pytest.approx(1 / 3)
    assert r["top"] == 6 and r["top_error"] == pytest.approx((-0.8 - 0.6) / 2)
    assert r["mae_high"] == pytest.approx((0.4 + 0.8 + 0.6) / 3)
    assert np.isnan(count_range_summary(by_count, split=6)["accuracy_high"])


def test_input_channel_change_is_zero_for_an_untrained_net_and_sees_a_moved_channel():
    layers = ((4, 5, 2, 2), (4, 3, 2, 1))
    torch.manual_seed(7)
    net = CountingCNN("softplus", image_size=32, layers=layers, batch_norm=True)
    assert input_channel_change(net, seed=7, layers=layers, image_size=32, batch_norm=True).tolist() == [0, 0, 0]
    with torch.no_grad():
        net.body[0].weight[:, 2] += 0.5
    moved = input_channel_change(net, seed=7, layers=layers, image_size=32, batch_norm=True)
    assert moved[:2].tolist() == [0, 0] and moved[2] == pytest.approx(0.5)


def test_training_table_has_one_row_per_net():
    histories = {("softplus", 0): [{"loss": 2.0, "seconds": 1.0}, {"loss": 1.0, "seconds": 1.5}],
                 ("relu", 0): [], ("softplus", 1): [{"loss": 0.5, "seconds": 2.0}]}
    table = training_table(histories, ["softplus"])
    assert table["epochs"].tolist() == [2, 0, 1]
    assert table["training s"].tolist() == [2.5, 0, 2.0]
    assert table["batch norm"].tolist() == [True, False, True]
    assert np.isnan(table["final training loss (MSE)"].iloc[1])
