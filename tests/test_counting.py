"""The thesis's counting pieces: helpers.shapes (the generator), helpers.models.CountingCNN, helpers.train.counting
(training, count scores) and helpers.saliency (saliency, second-derivative detection, detection scores)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import shapely.affinity
import torch
from scipy import ndimage

from helpers.models.counting import ACTIVATIONS, PAPER_LAYERS, CountingCNN
from helpers.saliency import (channel_saliency_by_region, detect_shapes, detection_scores, detection_settings,
                              detection_table, group_overlap, match_boxes, saliency, saliency_by_region, saliency_image,
                              score_detection, second_derivative_saliency, second_derivative_summary, shape_regions)
from helpers.shapes import (PAPER_IMAGE_SIZE, TEMPLATES, ShapesData, make_shapes, pixel_count_shortcut, place_polygons,
                            polygon_vertices)
from helpers.train.counting import (count_accuracy, count_accuracy_table, count_errors_by_true_count, predict_counts,
                                    train_counter, train_counting_nets)

EIGHT = np.ones((3, 3), dtype=int)  # 8-connectivity: a rotated triangle's tip joins its body only diagonally




@pytest.fixture(scope="module")
def shapes() -> ShapesData:
    """120 crowded 48 x 48 images (up to 8 shapes each)."""
    return make_shapes(120, image_size=48, limit=4, scale=(5, 8), seed=0)


@pytest.fixture(scope="module")
def small() -> ShapesData:
    """A few 32 x 32 images for the networks."""
    return make_shapes(6, image_size=32, limit=2, scale=(4, 6), seed=1)


def net(activation: str, seed: int = 0) -> CountingCNN:
    torch.manual_seed(seed)
    return CountingCNN(activation, image_size=32, layers=((8, 5, 2, 2), (8, 3, 2, 1))).eval()


# --------------------------------------------------------------------------------------------
# The generator


def test_drawn_shapes_match_counts_kinds_and_boxes(shapes):
    assert shapes.x.shape == (120, 3, 48, 48) and shapes.x.dtype == torch.float32
    assert shapes.counts.shape == (120, 2) and shapes.counts.dtype == torch.float32
    assert shapes.x.min() == 0 and shapes.x.max() == 1
    assert shapes.x[:, :2].abs().sum() == 0  # blue on black
    for i in range(len(shapes)):
        k = int(shapes.counts[i].sum())
        instances = shapes.instances[i].numpy()
        foreground = shapes.x[i, 2].numpy() > 0
        assert np.array_equal(foreground, instances > 0)
        assert set(np.unique(instances)) == set(range(k + 1))  # every shape drawn, none overwritten away
        # the drawn shapes neither overlap nor touch: exactly one 8-connected blob per shape
        assert ndimage.label(foreground, structure=EIGHT)[1] == k
        for label in range(1, k + 1):
            assert ndimage.label(instances == label, structure=EIGHT)[1] == 1
        assert torch.equal(torch.bincount(shapes.kinds[i], minlength=2).float(), shapes.counts[i])
        rows, cols = np.nonzero(instances)
        expected = [[cols[instances[rows, cols] == j].min(), rows[instances[rows, cols] == j].min(),
                     cols[instances[rows, cols] == j].max() + 1, rows[instances[rows, cols] == j].max() + 1]
                    for j in range(1, k + 1)]
        assert torch.equal(shapes.boxes[i], torch.tensor(expected, dtype=torch.float32).reshape(-1, 4))


@pytest.mark.parametrize("min_gap", [0.0, 3.0])
def test_placed_polygons_stay_inside_and_apart(min_gap):
    rng = np.random.default_rng(0)
    for _ in range(30):
        outlines = [polygon_vertices(TEMPLATES[kind], int(rng.integers(0, 360)), 7)
                    for kind in ("triangle", "square") * 4]
        placed = place_polygons(rng, outlines, 48, min_gap)
        polygons = [shapely.Polygon(p) for p in placed]
        for p in placed:
            assert p.min() >= 0 and p.max() < 48
        for a in range(len(polygons)):
            for b in range(a + 1, len(polygons)):
                assert not polygons[a].intersects(polygons[b])
                assert polygons[a].distance(polygons[b]) > min_gap


def test_vertices_are_shapely_rotate_then_scale():
    for kind, template in TEMPLATES.items():
        polygon = shapely.Polygon(template)
        for rotation in (0, 45, 137, 359):
            expected = shapely.affinity.scale(shapely.affinity.rotate(polygon, rotation), 13, 13)
            ours = polygon_vertices(template, rotation, 13)
            assert np.allclose(np.asarray(expected.exterior.coords)[:-1], ours, atol=1e-9), (kind, rotation)


@pytest.mark.parametrize("sampling, allowed", [("per_type", 9), ("total", 6)])
def test_count_sampling_covers_exactly_the_allowed_counts(sampling, allowed):
    data = make_shapes(200, image_size=32, limit=2, scale=(4, 5), count_sampling=sampling, seed=3)
    pairs = {tuple(int(c) for c in row) for row in data.counts}
    assert len(pairs) == allowed
    assert all(0 <= a <= 2 and 0 <= b <= 2 for a, b in pairs)
    if sampling == "total":
        assert all(a + b <= 2 for a, b in pairs)


def test_one_scale_per_image_unless_per_shape():
    def square_sides(data):
        return [{float(b[2] - b[0]) for b, kind in zip(boxes, kinds) if kind == 1}
                for boxes, kinds in zip(data.boxes, data.kinds)]

    common = dict(image_size=48, limit=4, scale=(4, 8), shape_types=("triangle", "square"), rotate=False, seed=4)
    assert all(len(sides) <= 1 for sides in square_sides(make_shapes(30, **common)))
    assert any(len(sides) > 1 for sides in square_sides(make_shapes(30, per_shape_scale=True, **common)))


def test_same_seed_same_data_and_a_shared_generator_continues():
    a = make_shapes(5, image_size=32, limit=2, scale=(4, 6), seed=7)
    b = make_shapes(5, image_size=32, limit=2, scale=(4, 6), seed=7)
    assert torch.equal(a.x, b.x) and torch.equal(a.counts, b.counts)
    assert all(torch.equal(p, q) for p, q in zip(a.boxes, b.boxes))
    rng = np.random.default_rng(7)
    first = make_shapes(5, image_size=32, limit=2, scale=(4, 6), seed=rng)
    second = make_shapes(5, image_size=32, limit=2, scale=(4, 6), seed=rng)
    assert torch.equal(first.x, a.x) and not torch.equal(first.x, second.x)


def test_single_shape_type_and_slicing(small):
    data = make_shapes(4, image_size=32, limit=2, scale=(4, 6), shape_types=("square",), seed=2)
    assert data.counts.shape == (4, 1) and all(bool((k == 0).all()) for k in data.kinds)
    part = small[1:3]
    assert len(part) == 2 and torch.equal(part.x, small.x[1:3]) and part.boxes == small.boxes[1:3]
    assert part.y is part.counts and "32x32" in part.describe()


@pytest.mark.parametrize("kwargs, names", [
    ({"n": -1}, "n must"),
    ({"image_size": 4}, "image_size must"),
    ({"limit": -1}, "limit must"),
    ({"limit": 2.5}, "limit must"),
    ({"scale": (0, 5)}, "scale must"),
    ({"scale": (8, 4)}, "scale must"),
    ({"scale": 6}, "scale must"),
    ({"shape_types": ("circle",)}, "shape_types must.*'triangle', 'square'"),
    ({"shape_types": ()}, "shape_types must"),
    ({"count_sampling": "joint"}, "count_sampling must be one of 'per_type', 'total'"),
    ({"min_gap": -1}, "min_gap must"),
    ({"color": (0, 0, 0)}, "color must"),
    ({"scale": (30, 30)}, "scale .* too large"),
    ({"limit": 200}, "limit must allow"),
    ({"seed": -3}, "seed must"),
])
def test_generator_rejects_bad_arguments(kwargs, names):
    arguments = {"n": 2, "image_size": 48, "limit": 3, "scale": (5, 8)} | kwargs
    with pytest.raises(ValueError, match=names):
        make_shapes(**arguments)


# --------------------------------------------------------------------------------------------
# The regressor, saliency and detection


def test_model_outputs_one_nonnegative_count_per_type(small):
    for activation in ACTIVATIONS:
        out = net(activation)(small.x)
        assert out.shape == (6, 2) and (out >= 0).all()
    assert CountingCNN(layers=PAPER_LAYERS, image_size=PAPER_IMAGE_SIZE).head.in_features == 80
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'softplus', 'sigmoid'"):
        CountingCNN("tanh")
    with pytest.raises(ValueError, match="image_size"):
        CountingCNN(layers=PAPER_LAYERS, image_size=64)


def test_saliency_is_a_nonnegative_map_per_image_matching_autograd(small):
    model = net("softplus")
    maps = saliency(model, small.x)
    assert maps.shape == (6, 32, 32) and (maps >= 0).all() and maps.sum() > 0
    image = small.x[2:3].clone().requires_grad_(True)
    model(image).sum().backward()
    assert torch.allclose(maps[2], image.grad.abs().amax(1)[0])
    shown = saliency_image(maps)
    assert shown.shape == maps.shape and torch.allclose(shown.flatten(1).amax(1), torch.ones(6))
    assert torch.equal(saliency_image(torch.zeros(4, 4)), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="power must"):
        saliency_image(maps, power=0)


def test_second_derivative_is_zero_for_relu_and_not_for_smooth_activations(small):
    pixels = torch.tensor([[16, 16]] * len(small))
    assert torch.count_nonzero(second_derivative_saliency(net("relu"), small.x, pixels)) == 0
    for activation in ("softplus", "sigmoid"):
        maps = second_derivative_saliency(net(activation), small.x, pixels)
        assert maps.shape == (6, 32, 32) and (maps > 0).any(dim=(1, 2)).all(), activation


def test_second_derivative_of_a_batch_equals_image_by_image(small):
    model = net("softplus")
    pixels = torch.tensor([[3, 4], [10, 20], [31, 0]])
    together = second_derivative_saliency(model, small.x[:3], pixels)
    for i in range(3):
        image = small.x[i:i + 1].clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(image).sum(), image, create_graph=True)
        (second,) = torch.autograd.grad(gradient.abs().amax(1)[0, pixels[i, 0], pixels[i, 1]], image)
        assert torch.allclose(together[i], second.abs().amax(1)[0], atol=1e-12)


def test_detection_groups_are_disjoint_seeded_boxed_and_as_many_as_the_count(small):
    for activation in ACTIVATIONS:
        model = net(activation)
        found = detect_shapes(model, small.x, threshold=0.2, relative=True, keep_maps=True)
        assert len(found) == len(small)
        for detection in found:
            k = len(detection.boxes)
            assert k <= max(round(detection.count), 0) and detection.masks.shape == (k, 32, 32)
            assert detection.maps.shape == (k, 32, 32) and detection.seeds.shape == (k, 2)
            assert int(detection.masks.sum(0).max()) <= 1  # no pixel in two groups
            for box, seed, mask in zip(detection.boxes, detection.seeds, detection.masks):
                assert mask[seed[0], seed[1]]
                rows, cols = torch.nonzero(mask, as_tuple=True)
                assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
                if activation == "relu":  # zero second derivative: the seed alone
                    assert int(mask.sum()) == 1
    one_by_one = detect_shapes(net("softplus"), small.x, batch_size=1)
    batched = detect_shapes(net("softplus"), small.x, batch_size=6)
    assert all(torch.equal(a.boxes, b.boxes) for a, b in zip(one_by_one, batched))
    with pytest.raises(ValueError, match="threshold must"):
        detect_shapes(net("relu"), small.x, threshold=0.0)


def test_train_counter_runs_fit_on_counts_deterministically(small):
    runs = []
    for _ in range(2):
        model = net("relu").train()
        history = train_counter(model, small, epochs=2, lr=1e-3, batch_size=3, seed=5, progress=False)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert [sorted(r) for r in history] == [["epoch", "loss", "seconds"]] * 2
    assert all(math.isfinite(r["loss"]) for r in history)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert predict_counts(model, small.x, batch_size=4).shape == (6, 2)


# --------------------------------------------------------------------------------------------
# Scores


def test_iou_matching_is_one_to_one_and_optimal():
    true = torch.tensor([[0, 0, 10, 10], [4, 0, 14, 10]], dtype=torch.float32)
    # the first prediction overlaps both (IoU 2/3 each); a greedy match would take the first truth and strand
    # the second prediction (IoU 0.43 with the second truth)
    predicted = torch.tensor([[2, 0, 12, 10], [0, 0, 10, 10]], dtype=torch.float32)
    matches = match_boxes(predicted, true)
    assert sorted((p, t) for p, t, _ in matches) == [(0, 1), (1, 0)]
    assert sorted(round(iou, 4) for _, _, iou in matches) == [0.6667, 1.0]
    assert match_boxes(predicted, true[:0]) == []
    with pytest.raises(ValueError, match="iou_threshold must"):
        match_boxes(predicted, true, iou_threshold=0)


def test_precision_and_recall_on_hand_made_boxes():
    true = [torch.tensor([[0, 0, 10, 10], [22, 20, 32, 30]], dtype=torch.float32), torch.zeros(0, 4),
            torch.tensor([[0, 0, 10, 10]], dtype=torch.float32)]
    predicted = [torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=torch.float32),
                 torch.tensor([[1, 1, 5, 5]], dtype=torch.float32),
                 torch.tensor([[6, 0, 16, 10]], dtype=torch.float32)]  # IoU 0.25: a miss
    scores = detection_scores(predicted, true)
    assert scores["true_positives"] == 2 and scores["predicted"] == 5 and scores["true"] == 3
    assert scores["precision"] == pytest.approx(2 / 5) and scores["recall"] == pytest.approx(2 / 3)
    none = detection_scores([torch.zeros(0, 4)], [true[0]])
    assert math.isnan(none["precision"]) and none["recall"] == 0
    with pytest.raises(ValueError, match="same images"):
        detection_scores(predicted, true[:2])


def test_group_overlap_measures_purity_coverage_and_background():
    instances = torch.zeros(6, 6, dtype=torch.uint8)
    instances[0:2, 0:2] = 1  # shape 0: 4 pixels
    instances[4:6, 4:6] = 2  # shape 1: 4 pixels
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0, 0, 0:2] = True  # half of shape 0
    masks[1, 4:6, 4:6] = True
    masks[1, 3, 3] = True  # all of shape 1 plus one background pixel
    masks[2, 3, 0] = True  # background only
    result = group_overlap(masks, instances)
    assert result["shape"].tolist() == [0, 1, -1]
    assert torch.allclose(result["coverage"], torch.tensor([0.5, 1.0, 0.0]))
    assert torch.allclose(result["purity"], torch.tensor([1.0, 0.8, 0.0]))
    assert torch.allclose(result["background"], torch.tensor([0.0, 0.2, 1.0]))


def test_count_accuracy_and_errors_by_true_count():
    true = torch.tensor([[0.0, 1.0], [2.0, 1.0], [2.0, 3.0]])
    predicted = torch.tensor([[0.4, 1.6], [1.6, 1.2], [2.4, 3.0]])
    scores = count_accuracy(predicted, true)
    assert scores["triangle"] == pytest.approx(1.0) and scores["square"] == pytest.approx(2 / 3)
    assert scores["all"] == pytest.approx(2 / 3)
    assert scores["mae_triangle"] == pytest.approx(0.4) and scores["mae_square"] == pytest.approx(0.8 / 3)
    table = count_errors_by_true_count(predicted, true).set_index(["shape", "true_count"])
    assert table.loc[("triangle", 2), "n"] == 2
    assert table.loc[("triangle", 2), "mean_error"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc[("triangle", 2), "mean_abs_error"] == pytest.approx(0.4)
    assert table.loc[("square", 1), "accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="predicted and true"):
        count_accuracy(predicted[:2], true)


# --------------------------------------------------------------------------------------------
# The notebook's summaries


def test_regions_partition_as_described(shapes):
    regions = shape_regions(shapes.instances[:10])
    on_shape = shapes.instances[:10].numpy() > 0
    assert not (regions["interior"] & ~on_shape).any()
    assert not (regions["far background"] & on_shape).any()
    assert not (regions["edge band"] & regions["interior"]).any()
    assert (regions["corners"] <= (on_shape & ~regions["interior"])).all()


def test_saliency_by_region_of_a_uniform_map_is_one_everywhere(shapes):
    regions = shape_regions(shapes.instances[:10])
    table = saliency_by_region({"flat": np.ones(shapes.instances[:10].shape)}, regions)
    assert np.allclose(table["saliency per pixel / interior's"], 1.0)
    band_and_interior = table.loc[("flat", "edge band")] + table.loc[("flat", "interior")]
    assert band_and_interior["share of saliency mass (band ∪ interior)"] == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_channel_saliency_of_a_channel_blind_net_is_nan_or_zero(small):
    model = net("softplus")
    with torch.no_grad():
        model.body[0].weight[:, 2] = 0  # the net ignores the blue channel
    out = channel_saliency_by_region(model, small.x, shape_regions(small.instances), channel=2)
    assert all(math.isnan(v) or v == 0 for v in out.values())


def test_second_derivative_summary_sets_relu_apart(small):
    second, table = second_derivative_summary({"relu": net("relu"), "softplus": net("softplus")}, small.x)
    assert table.loc["relu", "max |h|"] == 0 and table.loc["softplus", "max |h|"] > 0
    seeds, h, alive = second["softplus"]
    assert seeds.shape == (len(small), 2) and h.shape == small.instances.shape and alive.dtype == torch.bool


def test_detection_table_runs_every_setting_on_main_only(small):
    nets = {"softplus": net("softplus"), "relu": net("relu")}
    settings = detection_settings([0.1, 0.3])
    assert [s[0] for s in settings] == ["official", "relative 0.1", "relative 0.3"]
    found, table = detection_table(nets, small.x, small.instances, small.boxes, settings, main="softplus", near=6)
    assert set(found) == {("softplus", "official"), ("softplus", "relative 0.1"), ("softplus", "relative 0.3"),
                          ("relu", "official"), ("relu", "relative 0.1")}
    assert list(table.index.names) == ["activation", "threshold"]
    row = score_detection(found["softplus", "relative 0.1"], small.instances, small.boxes, near=6)
    assert row["true boxes"] == sum(len(b) for b in small.boxes)
    assert 0 <= row["F1"] <= 1


def test_pixel_shortcut_counts_when_each_shape_has_its_own_scale():
    settings = dict(image_size=48, limit=3, scale=(5, 8))
    per_image = pixel_count_shortcut(60, seed=0, per_shape_scale=False, **settings)[2]
    per_shape = pixel_count_shortcut(60, seed=0, per_shape_scale=True, **settings)[2]
    assert per_shape["R² (test)"] > per_image["R² (test)"]


def test_count_accuracy_table_has_a_row_per_model(small):
    table = count_accuracy_table({"perfect": small.counts, "zero": torch.zeros_like(small.counts)}, small.counts)
    assert table.loc["perfect", "exact both"] == 1.0 and table.loc["perfect", "MAE triangle"] == 0.0


def test_train_counting_nets_trains_each_activation_from_the_same_seed(small, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    kwargs = dict(main="softplus", epochs=1, compare_epochs=1, layers=((8, 5, 2, 2), (8, 3, 2, 1)), image_size=32,
                  batch_norm=["sigmoid"], lr=1e-3, batch_size=3, optimizer="adam", seed=0, progress=False)
    nets, histories = train_counting_nets(small, ["softplus", "sigmoid"], **kwargs)
    assert set(nets) == {"softplus", "sigmoid"} and not nets["sigmoid"].training
    assert len(list((tmp_path / "checkpoints").glob("counting-*.pt"))) == 2
    again, _ = train_counting_nets(small, ["softplus", "sigmoid"], **kwargs)  # loaded from the checkpoints
    assert torch.equal(again["softplus"].head.weight, nets["softplus"].head.weight)
    with pytest.raises(ValueError, match="compare_epochs must be an int >= 1; got 0"):
        train_counting_nets(small, ["softplus"], **{**kwargs, "compare_epochs": 0})


def test_the_examples_figure_shows_every_image_of_a_set_smaller_than_asked(monkeypatch):
    # found by the dry run of the paper row (8 test images, 12 asked for)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.plots.counting import plot_shape_examples

    monkeypatch.setattr(plt, "show", lambda: None)
    data = make_shapes(3, image_size=32, limit=2, scale=(4, 6), seed=np.random.default_rng(0))
    plot_shape_examples(data, 12)
    titled = [ax for ax in plt.gcf().axes if ax.get_title()]
    assert len(titled) == 3
    plt.close("all")
