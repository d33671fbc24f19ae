"""helpers.features: usefulness against a direct NumPy computation, robust usefulness against the exact
infimum of a linear feature map and against one PGD per feature, and argument checks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from helpers.attacks import Attack, pgd
from helpers.data import ImageData
from helpers.features import (ABLATION_FORMAT, KINDS, RANKINGS, FeatureStats, ablation_effect, ablation_groups,
                              ablation_table, collect_features, feature_stats, normalise, prune_features,
                              pruning_curves, pruning_table, refit_head, robust_at_fewest, robust_counts,
                              robust_feature_count, robust_measures, robust_usefulness, usefulness, usefulness_counts,
                              usefulness_measures, usefulness_spearman, usefulness_summary, pruning_summary, seed_measures)
from helpers import claims
from helpers.models import BinaryFeatureCNN
from helpers.verdicts.features import feature_judgements, share_interval
from helpers.train import evaluate


@pytest.fixture
def binary_cnn() -> BinaryFeatureCNN:
    torch.manual_seed(1)  # 5 live features and 1 dead (constant 0) one on binary_images
    return BinaryFeatureCNN(n_features=6, c1=2, c2=4, image_size=12).eval()


@pytest.fixture
def binary_images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(12, 1, 12, 12, generator=g), torch.randint(0, 2, (12,), generator=g)


class LinearFeatures(nn.Module):
    """f(x) = A x + c: each feature is linear in the pixels, so the infimum over the eps-ball is exact."""

    def __init__(self, d: int = 5, pixels: int = 16) -> None:
        super().__init__()
        self.map = nn.Linear(pixels, d)
        self.head = nn.Linear(d, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


def numpy_usefulness(f: np.ndarray, y: np.ndarray, w: np.ndarray | None, kind: str) -> np.ndarray:
    """The paper's formulas written out directly with NumPy."""
    f = f.astype(np.float64)
    normed = (f - f.mean(0)) / f.std(0)
    z = normed * (1.0 if w is None else w)
    g = z if kind == "ilyas" else 2 / (1 + np.exp(-z)) - 1
    return ((2 * y - 1)[:, None] * g).mean(0)


@pytest.mark.parametrize("kind", ["sigmoid", "ilyas"])
@pytest.mark.parametrize("with_weights", [False, True])
def test_usefulness_matches_numpy(binary_cnn, binary_images, kind, with_weights):
    x, y = binary_images
    f = collect_features(binary_cnn, x) + 0.01 * torch.arange(6.0)  # no feature exactly constant
    f = f + 0.1 * torch.rand(f.shape, generator=torch.Generator().manual_seed(0))
    w = binary_cnn.head.weight.detach()[0] * 5 if with_weights else None
    ours = usefulness(f, y, weights=w, kind=kind)
    ref = numpy_usefulness(f.numpy(), y.numpy(), None if w is None else w.numpy(), kind)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_usefulness_is_invariant_to_shift_and_positive_scale():
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(50, 4, generator=g), torch.randint(0, 2, (50,), generator=g)
    for kind in ("sigmoid", "ilyas"):
        assert torch.allclose(usefulness(f, y, kind=kind), usefulness(3 * f + 7, y, kind=kind), atol=1e-5)
        # -f is useful exactly when f is negatively useful (the paper's sign alignment)
        assert torch.allclose(usefulness(-f, y, kind=kind), -usefulness(f, y, kind=kind), atol=1e-6)
        assert torch.allclose(usefulness(f, y, weights=-torch.ones(4), kind=kind), -usefulness(f, y, kind=kind))


def test_ilyas_usefulness_is_correlation_with_label():
    # E[ỹ f̂] is the Pearson correlation of f with ỹ when f̂ is standardised (population statistics)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (200,), generator=g)
    f = (2 * y - 1).float()[:, None] * torch.tensor([1.0, 0.0, -0.5]) + torch.randn(200, 3, generator=g)
    ref = [np.corrcoef(f[:, i].numpy(), (2 * y - 1).numpy())[0, 1] for i in range(3)]
    np.testing.assert_allclose(usefulness(f, y, kind="ilyas").numpy(), ref, rtol=1e-4, atol=1e-6)


def test_constant_feature_has_zero_usefulness():
    g = torch.Generator().manual_seed(2)
    f, y = torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g)
    f[:, 1] = 2.5
    for kind in ("ilyas", "sigmoid"):
        u = usefulness(f, y, kind=kind)
        assert u[1] == 0
        assert torch.isfinite(u).all() and (u[[0, 2]] != 0).all()


def test_normalise_gives_mean_zero_variance_one():
    f = torch.rand(30, 5, generator=torch.Generator().manual_seed(4)) * 10
    normed = normalise(f, feature_stats(f))
    assert torch.allclose(normed.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(normed.std(0, unbiased=False), torch.ones(5), atol=1e-5)


def exact_linear_infimum(model: LinearFeatures, x, y, eps, stats, kind, weights):
    """The exact infimum of ỹ g(w_i f̂_i(x + δ)) for a linear feature map, δ in the eps-ball and x + δ in [0, 1]:
    each pixel goes to the end of its interval that lowers ỹ w_i a_i · x (g is increasing)."""
    a = model.map.weight.detach()  # (d, pixels)
    flat = x.flatten(1)
    lo, hi = (flat - eps).clamp(0, 1), (flat + eps).clamp(0, 1)
    ys = (2 * y - 1).float()
    out = []
    for i in range(a.shape[0]):
        direction = ys[:, None] * weights[i] * a[i][None, :]  # the objective grows with direction · x
        worst_x = torch.where(direction > 0, lo, hi)
        f_i = worst_x @ a[i] + model.map.bias.detach()[i]
        z = weights[i] * (f_i - stats.mean[i]) / stats.std[i]
        g = z if kind == "ilyas" else 2 * torch.sigmoid(z) - 1
        out.append((ys * g).mean())
    return torch.stack(out)


@pytest.mark.parametrize("kind", ["sigmoid", "ilyas"])
@pytest.mark.parametrize("random_start", [False, True])
def test_robust_usefulness_finds_exact_infimum_of_linear_features(kind, random_start):
    torch.manual_seed(0)
    model = LinearFeatures().eval()
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(20, 1, 4, 4, generator=g), torch.randint(0, 2, (20,), generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0])
    eps = 0.1
    stats = feature_stats(collect_features(model, x))
    # 3 sign steps of 0.1 from any start in the ball reach the ball's corner for a linear objective
    robust = robust_usefulness(model, x, y, eps=eps, alpha=0.1, steps=3, kind=kind, weights=w, stats=stats,
                               random_start=random_start, chunk_size=7, generator=torch.Generator().manual_seed(0))
    exact = exact_linear_infimum(model, x, y, eps, stats, kind, w)
    clean = usefulness(collect_features(model, x), y, weights=w, kind=kind, stats=stats)
    torch.testing.assert_close(robust, exact, atol=1e-5, rtol=1e-5)
    assert (robust < clean - 1e-3).all()


@pytest.mark.parametrize("kind", ["sigmoid", "ilyas"])
def test_robust_usefulness_equals_one_pgd_per_feature(binary_cnn, binary_images, kind):
    """The expanded (features x images) batch gives each feature its own perturbation: the same numbers as
    running pgd separately for each feature, whatever the chunking."""
    x, y = binary_images
    stats = feature_stats(collect_features(binary_cnn, x))
    eps, alpha, steps = 0.3, 0.05, 4
    reference = []
    ys = (2 * y - 1).float()
    for i in range(6):
        def loss_fn(f, target, i=i):
            z = normalise(f, stats)[:, i]
            return -target * (z if kind == "ilyas" else 2 * torch.sigmoid(z) - 1)

        class OneFeature(nn.Module):
            def forward(self, inputs):
                return binary_cnn.features(inputs)

        adv = pgd(OneFeature(), x, ys, eps, alpha, steps, random_start=False, loss_fn=loss_fn)
        reference.append(-loss_fn(collect_features(binary_cnn, adv), ys).mean())
    reference = torch.stack(reference)
    for chunk in (12, 1000):
        ours = robust_usefulness(binary_cnn, x, y, eps, alpha, steps, kind=kind, stats=stats,
                                 random_start=False, chunk_size=chunk)
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["sigmoid", "ilyas"])
def test_robust_usefulness_is_at_most_clean_usefulness(binary_cnn, binary_images, kind):
    x, y = binary_images
    clean_features = collect_features(binary_cnn, x)
    stats = feature_stats(clean_features)
    clean = usefulness(clean_features, y, kind=kind, stats=stats)
    # no perturbation allowed: the clean usefulness itself
    torch.testing.assert_close(robust_usefulness(binary_cnn, x, y, 0.0, 0.01, 3, kind=kind, stats=stats), clean)
    torch.testing.assert_close(robust_usefulness(binary_cnn, x, y, 0.3, 0.01, 0, kind=kind, stats=stats,
                                                 random_start=False), clean)
    # PGD from x without random start lowers every live feature's usefulness
    robust = robust_usefulness(binary_cnn, x, y, 0.1, 0.02, 5, kind=kind, stats=stats, random_start=False)
    live = stats.std > 0
    assert live.sum() == 5
    assert (robust[live] < clean[live]).all()
    assert (robust[~live] == 0).all()
    # a larger ball is at least as bad (same start, same steps, more room)
    wider = robust_usefulness(binary_cnn, x, y, 0.3, 0.06, 5, kind=kind, stats=stats, random_start=False)
    assert (wider[live] <= robust[live] + 1e-6).all()


def test_robust_usefulness_is_reproducible_with_a_generator(binary_cnn, binary_images):
    x, y = binary_images
    runs = [robust_usefulness(binary_cnn, x, y, 0.3, 0.01, 3, generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


def test_bad_arguments_raise_value_error(binary_cnn, binary_images):
    x, y = binary_images
    f = collect_features(binary_cnn, x)
    with pytest.raises(ValueError, match="kind"):
        usefulness(f, y, kind="softmax")
    with pytest.raises(ValueError, match="kind"):
        robust_usefulness(binary_cnn, x, y, 0.3, 0.01, 3, kind="softmax")
    with pytest.raises(ValueError, match="binary"):
        usefulness(f, y + 1)
    with pytest.raises(ValueError, match="same length"):
        usefulness(f, y[:-1])
    with pytest.raises(ValueError, match="weights"):
        usefulness(f, y, weights=torch.ones(3))
    with pytest.raises(ValueError, match="features"):
        usefulness(f[0], y)
    with pytest.raises(ValueError, match="eps"):
        robust_usefulness(binary_cnn, x, y, -0.1, 0.01, 3)
    with pytest.raises(ValueError, match="steps"):
        robust_usefulness(binary_cnn, x, y, 0.3, 0.01, -1)
    with pytest.raises(ValueError, match="chunk_size"):
        robust_usefulness(binary_cnn, x, y, 0.3, 0.01, 3, chunk_size=0)
    with pytest.raises(ValueError, match="stats"):
        robust_usefulness(binary_cnn, x, y, 0.3, 0.01, 3, stats=FeatureStats(torch.zeros(2), torch.ones(2)))
    with pytest.raises(ValueError, match="std"):
        FeatureStats(torch.zeros(2), -torch.ones(2))


def test_prune_features_zeroes_the_removed_features_only(binary_cnn, binary_images):
    x, _ = binary_images
    keep = torch.tensor([True, False, True, True, False, True])
    pruned = prune_features(binary_cnn, keep)
    f = collect_features(binary_cnn, x)
    w, b = binary_cnn.head.weight.detach()[0], binary_cnn.head.bias.detach()[0]
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), f[:, keep] @ w[keep] + b)
        torch.testing.assert_close(prune_features(binary_cnn, torch.ones(6, dtype=torch.bool))(x), binary_cnn(x))
    assert binary_cnn.head.weight.detach()[0, 1] != 0  # the original is untouched
    with pytest.raises(ValueError, match="keep"):
        prune_features(binary_cnn, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="keep"):
        prune_features(binary_cnn, torch.ones(6))


def test_refit_head_is_l2_logistic_regression_on_the_kept_features(binary_cnn):
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(6)
    f = torch.randn(200, 6, generator=g)
    y = ((f[:, 0] - f[:, 2] + 0.8 * torch.randn(200, generator=g)) > 0).long()
    keep = torch.tensor([True, False, True, True, False, False])
    l2 = 1e-2
    refit = refit_head(binary_cnn, f, y, keep, l2=l2)
    # scikit-learn minimises C * sum(loss) + |w|^2 / 2, i.e. our mean loss + l2/2 |w|^2 with C = 1 / (l2 N)
    ref = sklearn.LogisticRegression(C=1 / (l2 * len(f)), tol=1e-10, max_iter=10_000).fit(f[:, keep].numpy(), y.numpy())
    w = refit.head.weight.detach()[0]
    np.testing.assert_allclose(w[keep].numpy(), ref.coef_[0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(float(refit.head.bias.detach()), ref.intercept_[0], rtol=1e-3, atol=1e-4)
    assert (w[~keep] == 0).all()
    assert binary_cnn.head.weight.detach()[0, 1] != 0  # the original is untouched
    with pytest.raises(ValueError, match="features"):
        refit_head(binary_cnn, f[:, :5], y, keep)
    with pytest.raises(ValueError, match="l2"):
        refit_head(binary_cnn, f, y, keep, l2=-1.0)


# -- measurements of one model and the pruning of features (the notebook's recipes) -----------------------------

def test_usefulness_measures_align_every_feature_and_match_usefulness(binary_cnn, binary_images):
    x, y = binary_images
    m = usefulness_measures(binary_cnn, x, y)
    f = collect_features(binary_cnn, x)
    assert int(m["live"].sum()) == 5  # the fixture's one dead feature
    for kind in KINDS:
        torch.testing.assert_close(m[("raw", kind)], usefulness(f, y, kind=kind))
        assert (m[("aligned", kind)] >= 0).all()
        torch.testing.assert_close(m[("actual", kind)], usefulness(f, y, weights=binary_cnn.head.weight[0], kind=kind))
    counts = usefulness_counts(m)
    assert list(counts.columns) == list(KINDS)
    assert counts.loc["dead features (constant on the test set)"].tolist() == [1, 1]


def test_ablation_effect_of_no_feature_is_zero_and_of_all_features_flips_by_the_logit(binary_cnn, binary_images):
    m = usefulness_measures(binary_cnn, *binary_images)
    none = ablation_effect(m, torch.tensor([], dtype=torch.long))
    assert none["relative logit change"] == 0 and none["predictions changed"] == 0 and none["features"] == 0
    every = ablation_effect(m, torch.arange(6))
    logits = m["features"] @ m["w"] + m["b"]
    assert every["relative logit change"] == pytest.approx(1.0, rel=1e-5)  # every logit moves to its mean
    assert every["predictions changed"] == pytest.approx(float(((logits > 0) != (logits.mean() > 0)).float().mean()))


def test_robust_measures_are_robust_usefulness_of_the_aligned_features(binary_cnn, binary_images):
    x, y = binary_images
    data = ImageData(x, y, "toy", "toy", "test", ("a", "b"))
    m = usefulness_measures(binary_cnn, x, y)
    paper, strong = Attack("pgd", eps=0.3, alpha=0.01, steps=3), Attack("pgd", eps=0.3, alpha=0.03, steps=10)
    r = robust_measures(binary_cnn, m, data, data.subset(4), paper, strong, kinds=("sigmoid",),
                        generator=torch.Generator().manual_seed(0), progress=False)
    common = dict(kind="sigmoid", weights=m[("sign", "sigmoid")], stats=m["stats"])
    g = torch.Generator().manual_seed(0)
    noise = robust_usefulness(binary_cnn, x, y, 0.3, 0.0, 0, generator=g, **common)
    torch.testing.assert_close(r[("noise", "sigmoid")], noise)
    torch.testing.assert_close(r[("paper", "sigmoid")], robust_usefulness(binary_cnn, x, y, 0.3, 0.01, 3, generator=g, **common))
    assert (r["n"], r["n_strong"]) == (12, 4) and r["labels"]["paper"] == "paper's PGD-3, step 0.01"
    table = robust_counts(m, r, ("sigmoid",))
    assert table.loc[("sigmoid", "PGD-10, step 0.03"), "live features"] == 5
    assert table.loc[("sigmoid", "clean"), "features < 0 (of 100)"] == 0  # aligned features are useful on clean data
    with pytest.raises(ValueError, match="paper must be a PGD Attack"):
        robust_measures(binary_cnn, m, data, data, Attack("fgsm", eps=0.3), strong)


def test_pruning_curves_keep_the_top_ranked_features_and_attack_each_model_once(binary_cnn, binary_images):
    x, y = binary_images
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    table, n_models = pruning_curves(binary_cnn, scores, [6, 3, 1], collect_features(binary_cnn, x), y, (x, y),
                                     Attack("fgsm", eps=0.1), progress=False)
    assert len(table) == 2 * 2 * 3 and set(table.ranking) == set(RANKINGS) and set(table["head"]) == {"as trained", "refit"}
    kept_3 = prune_features(binary_cnn, torch.tensor([True, True, True, False, False, False]))
    row = table[(table["head"] == "as trained") & (table.ranking == RANKINGS[0]) & (table.kept == 3)].iloc[0]
    assert row.clean == evaluate(kept_3, (x, y))["clean"]
    assert n_models <= 2 * 2 * 3 - 2  # all six features kept: the same model under both rankings, attacked once
    with pytest.raises(ValueError, match="keep_counts"):
        pruning_curves(binary_cnn, scores, [0], x, y, (x, y), Attack("fgsm", eps=0.1))
    with pytest.raises(ValueError, match="robust_scores"):
        pruning_curves(binary_cnn, scores[:3], [1], x, y, (x, y), Attack("fgsm", eps=0.1))


# -- the notebook's former computations, moved into helpers.features ------------------------------------------------

def test_usefulness_spearman_is_the_notebooks_former_rho(binary_cnn, binary_images):
    m = usefulness_measures(binary_cnn, *binary_images)
    live = m["live"].numpy()
    x_norm, y_act = m[("aligned", "sigmoid")].numpy(), m[("actual", "sigmoid")].numpy()
    rho, rho_live = usefulness_spearman(m)
    assert rho == spearmanr(x_norm, y_act).statistic
    assert rho_live == spearmanr(x_norm[live], y_act[live]).statistic  # the fixture has 5 live features
    few_live = dict(m, live=torch.tensor([True, True, False, False, False, False]))
    assert np.isnan(usefulness_spearman(few_live)[1])
    with pytest.raises(ValueError, match="kind"):
        usefulness_spearman(m, "logit")


def test_ablation_table_ablates_the_notebooks_former_groups(binary_cnn, binary_images):
    m = usefulness_measures(binary_cnn, *binary_images)
    use = m[("aligned", "sigmoid")]
    old_low = torch.nonzero(use < 0.5 * use.max()).squeeze(1)
    old_high = use.argsort(descending=True)[:max(1, len(old_low))]
    low, high = ablation_groups(m)
    assert low.tolist() == old_low.tolist() and high.tolist() == old_high.tolist()
    table, table_low = ablation_table(m)
    assert table_low.tolist() == old_low.tolist()
    assert list(table.index) == ["low usefulness (< half the max)", "as many of the most useful"]
    assert table.iloc[0].to_dict() == pytest.approx(ablation_effect(m, old_low))
    assert table.iloc[1].to_dict() == pytest.approx(ablation_effect(m, old_high))
    assert set(ABLATION_FORMAT) == set(table.columns)


@pytest.fixture
def feature_pruning_table() -> pd.DataFrame:
    g = np.random.default_rng(0)
    return pd.DataFrame([dict(head=head, ranking=ranking, kept=k, clean=g.uniform(), robust=g.uniform())
                         for head in ("as trained", "refit") for ranking in RANKINGS for k in (100, 20, 5)])


def test_pruning_table_is_the_notebooks_former_pivot(feature_pruning_table):
    old = (feature_pruning_table.pivot(index="kept", columns=["head", "ranking"], values=["clean", "robust"])
           .sort_index(ascending=False))
    pd.testing.assert_frame_equal(pruning_table(feature_pruning_table), old)
    with pytest.raises(ValueError, match="table must be the DataFrame of pruning_curves"):
        pruning_table(feature_pruning_table.drop(columns="robust"))


def test_robust_at_fewest_gives_the_notebooks_former_records(feature_pruning_table):
    old = {}
    for (head, name), part in feature_pruning_table[feature_pruning_table.kept == 5].groupby(["head", "ranking"]):
        tag = f"{'refit' if head == 'refit' else 'zeroed'}_{'usefulness' if 'useful' in name else 'weight'}"
        old[f"k5_{tag}"] = float(part.robust.iloc[0])
    assert robust_at_fewest(feature_pruning_table) == old
    assert set(old) == {"k5_zeroed_usefulness", "k5_zeroed_weight", "k5_refit_usefulness", "k5_refit_weight"}


def fake_measures() -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    live = torch.rand(100, generator=g) > 0.3
    m = {"live": live, ("aligned", "ilyas"): torch.rand(100, generator=g) * live,
         ("raw", "sigmoid"): (torch.rand(100, generator=g) - 0.5) * live}
    r = {("strong", "sigmoid"): (torch.rand(100, generator=g) - 0.7) * live}
    return m, r


def test_usefulness_summary_is_the_notebooks_former_paragraph():
    std, _ = fake_measures()
    n_live = int(std["live"].sum())
    live_use = std[("aligned", "ilyas")][std["live"]]
    old = (f"{n_live} of the 100 features are live; {int((~std['live']).sum())} are dead ReLUs (0 on every test image). "
           f"Before alignment, {int((std[('raw', 'sigmoid')] > 0).sum())} features are positively and "
           f"{int((std[('raw', 'sigmoid')] < 0).sum())} negatively useful. Ilyas et al.'s usefulness of a standardised "
           f"feature is its correlation with ỹ: for the live features it ranges from {float(live_use.min()):.2f} to "
           f"{float(live_use.max()):.2f} (median {float(live_use.median()):.2f}).")
    assert usefulness_summary(std) == old


def test_robust_feature_count_is_the_notebooks_former_count():
    m, r = fake_measures()
    old = int(m["live"].sum()) - int((r[("strong", "sigmoid")][m["live"]] < 0).sum())
    assert robust_feature_count(m, r) == old and 0 < old < int(m["live"].sum())


def test_pruning_summary_is_the_notebooks_former_paragraph(feature_pruning_table):
    prune_table, n = feature_pruning_table, 10
    refit_rows = prune_table[prune_table["head"] == "refit"]
    spans = [f"keeping the highest {name}, robust accuracy ranges over {part.robust.min():.0%}–{part.robust.max():.0%} "
             f"(lowest at {int(part.loc[part.robust.idxmin(), 'kept'])} features)" for name, part in refit_rows.groupby("ranking")]
    p_full = float(refit_rows.robust.iloc[0])
    old = (f"With the head refit, {'; '.join(spans)}. Clean accuracy never falls below {prune_table.clean.min():.0%}. "
           f"With {n} images, one standard error of an accuracy near {p_full:.0%} is about "
           f"{(p_full * (1 - p_full) / n) ** 0.5:.0%}: differences of a few points are noise.")
    assert pruning_summary(prune_table, n) == old
    with pytest.raises(ValueError, match="table must be the DataFrame of pruning_curves"):
        pruning_summary(prune_table.drop(columns="robust"), n)


# -- the claims of Sec. IV over live features, several seeds (helpers.features.seed_measures,
#    helpers.verdicts.features.share_interval / feature_judgements) -----------------------------------------------------

def test_robust_usefulness_per_sample_averages_to_the_mean(binary_cnn, binary_images):
    x, y = binary_images
    stats = feature_stats(collect_features(binary_cnn, x))
    common = dict(kind="sigmoid", stats=stats, random_start=False)
    each = robust_usefulness(binary_cnn, x, y, 0.3, 0.05, 3, per_sample=True, chunk_size=5, **common)
    assert each.shape == (12, 6)
    torch.testing.assert_close(each.mean(0), robust_usefulness(binary_cnn, x, y, 0.3, 0.05, 3, **common),
                               atol=1e-6, rtol=1e-5)


def test_seed_measures_keep_live_features_only(binary_cnn, binary_images):
    x, y = binary_images
    data = ImageData(x, y, name="fake", requested="fake", split="test", classes=("a", "b"))
    m = seed_measures(binary_cnn, data, data, Attack("pgd", eps=0.3, alpha=0.01, steps=2), 0.95,
                      torch.Generator().manual_seed(0))
    assert m["n_live"] == 5 and m["actual"].shape == (12, 5) and m["robust"].shape == (12, 5)
    low, _ = ablation_groups(m["m"])
    assert m["n_low_live"] == int(m["m"]["live"][low].sum())
    # the ablation over the live low features: the effect ablation_effect gives for that group
    live_low = low[m["m"]["live"][low]]
    effect = ablation_effect(m["m"], live_low)
    assert m["logit_shift"].mean() / m["logit_spread"].mean() == pytest.approx(effect["relative logit change"])
    assert m["flips"].mean() == pytest.approx(effect["predictions changed"])
    with pytest.raises(ValueError, match="PGD Attack"):
        seed_measures(binary_cnn, data, data, Attack("fgsm", eps=0.3), 0.95)


def test_share_interval_is_the_share_of_features_with_positive_mean():
    g = np.random.default_rng(0)
    seeds = [g.normal([0.5] * 8 + [-0.5] * 2, 1.0, size=(400, 10)) for _ in range(3)]
    i = share_interval(seeds, positive=True)
    assert i.estimate == pytest.approx(0.8) == i.low == i.high and (i.seeds, i.examples) == (3, 400)  # far from 0
    # features whose means straddle 0: the share varies over resamples
    near = share_interval([g.normal(0.02, 1.0, size=(400, 10)) for _ in range(3)], positive=True)
    assert near.low < near.estimate < near.high or near.low < near.high
    assert share_interval(seeds, positive=False).estimate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="same images"):
        share_interval([seeds[0], seeds[1][:10]], positive=True)


def fake_runs(n_live=40, clean=0.98, positive=0.8, robust_negative=1.0, low_shift=0.01, n_low=10, seeds=3, n=300):
    g = np.random.default_rng(1)
    runs = []
    for _ in range(seeds):
        k = int(positive * n_live)
        actual = g.normal(np.r_[np.full(k, 0.3), np.full(n_live - k, -0.3)], 0.5, size=(n, n_live))
        k = int(robust_negative * n_live)
        robust = g.normal(np.r_[np.full(k, -0.3), np.full(n_live - k, 0.3)], 0.5, size=(n, n_live))
        spread = np.abs(g.normal(0, 3.0, size=n))
        runs.append({"clean": clean, "n_live": n_live, "n_low_live": n_low, "actual": actual, "robust": robust,
                     "logit_shift": np.abs(g.normal(0, low_shift * 3.0, size=n)), "logit_spread": spread,
                     "flips": np.zeros(n)})
    return runs


def test_feature_judgements_reproduce_clear_effects_and_refuse_weak_models():
    out = feature_judgements(fake_runs())
    assert {k: j.verdict for k, j in out.items()} == {"usefulness_mostly_positive": claims.REPRODUCED,
                                                      "standard_features_nonrobust": claims.REPRODUCED}
    # a third of the live features robust: the paper's "all non-robust" clearly fails
    assert feature_judgements(fake_runs(robust_negative=0.6))["standard_features_nonrobust"].verdict == \
        claims.NOT_REPRODUCED
    # nothing live to ablate: part (ii) would hold by construction, so the claim is not run
    few = feature_judgements(fake_runs(n_low=1))["usefulness_mostly_positive"]
    assert few.verdict == claims.NOT_RUN and "cannot be tested" in few.reason
    assert [p.verdict for p in few.parts] == [claims.REPRODUCED] and len(few.guards) == 2  # part (i) kept
    # an untrained model (chance accuracy) is never judged
    assert {j.verdict for j in feature_judgements(fake_runs(clean=0.5)).values()} == {claims.NOT_RUN}
    assert {j.verdict for j in feature_judgements(fake_runs(n_live=5)).values()} == {claims.NOT_RUN}
