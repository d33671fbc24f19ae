"""Chapters 3 and 4 as units (issue 15, item 2): a unit trains the very model the notebooks' old loops trained (same
checkpoint name, same weights, same history) and the notebook's load afterwards finds it; a local Ray instance (2 CPUs)
gives the local executor's results for one Chapter 3 and one Chapter 4 unit."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from helpers import units
from helpers.attacks import Attack
from helpers.data import load_dataset
from helpers.models import FLOAT_EVAL_LAMBDAS, WIDTHS
from helpers.train import dynamic as recipes
from helpers.train import once_for_all
from test_units import data_root_with_images as data_root  # Fashion-MNIST linked into a fresh data root

try:
    import ray
except ImportError:  # the 'cluster' extra
    ray = None

DATASET = "fashion-mnist"
#: Chapter 3's smoke recipe, smaller: 48 images, width 2, the shallowest depths the rules allow.
RECIPE = dict(TRAIN_N=48, EPOCHS=1, BATCH_SIZE=16, TRAIN_LR=0.003, OPTIMIZER="adam", WEIGHT_DECAY=0.0,
              LR_SCHEDULE=None, AUGMENT=None, WIDTH=2, LAYERS_DEPTH=8, LAYERS_ACT=14, LAYERS_WIDTH=8,
              PENALTY_DEPTH=0.5, PENALTY_ACT=0.5, PENALTY_WIDTH=0.4, HRL_EPOCHS=1, HRL_LR=0.001, HRL_OPTIMIZER="adam",
              HRL_WEIGHT_DECAY=0.0)
#: Chapter 4's smoke row, smaller: 24 images, ResNet-20 at width 2, PGD-2.
TRAINING = dict(ARCH="resnet20", WIDTH=2, EPOCHS=1, LR=0.05, BATCH_SIZE=12, WEIGHT_DECAY=0.0005, LR_SCHEDULE="cosine",
                AUGMENT=None, TRAIN_N=24)
ATTACK = Attack("pgd", eps=8 / 255, alpha=4 / 255, steps=2)
VARIANTS = {"FLOAT": dict(method="float"), "OAT": dict(method="oat", lambda_choices=tuple(FLOAT_EVAL_LAMBDAS)),
            "PGD-AT λ=1": dict(method="pgd-at", lam=1.0), "FLOATS-i": dict(method="floats-i", density=0.5),
            "FLOATS-c": dict(method="floats-c", density=0.5),
            "FLOATS slim": dict(method="floats-slim", widths=WIDTHS, density=0.5)}


def train_split(n: int | None = None, seed: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(DATASET, "train")
    return data.subset(n, seed=seed) if n else data


def checkpoints(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "checkpoints").glob("*.pt"))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def ch4_units(names, seed: int = 0) -> list[dict]:
    return once_for_all.once_for_all_units(DATASET, VARIANTS, [(name, seed) for name in names], TRAINING,
                                           attack=ATTACK, train_n=TRAINING["TRAIN_N"], subset_seed=0)


# -- the units train what the old loops trained ---------------------------------------------------------------------

def test_chapter3_units_train_the_old_loops_nets(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(data_root(tmp_path / "old")))
    train = train_split()
    old = {kind: recipes.recipe_net(kind, train, RECIPE, seed=1, progress=False) for kind in recipes.DYNAMIC_KINDS}
    old_sp = recipes.recipe_net("depth", train, RECIPE, seed=1, hrl=False, progress=False)

    monkeypatch.setenv("BOOK_DATA", str(data_root(tmp_path / "new")))
    settings = recipes.recipe_units(DATASET, {**RECIPE, "UNIT_RESOURCES": {"num_cpus": 1}}, [1])
    assert [(u["kind"], u["seed"]) for u in settings] == [(k, 1) for k in recipes.DYNAMIC_KINDS]
    assert all(set(u["recipe"]) == set(recipes.RECIPE_RULES) for u in settings)  # the recipe's keys only
    done = units.map_units(recipes.recipe_unit, settings, executor="local", progress=False)
    assert checkpoints(tmp_path / "new") == checkpoints(tmp_path / "old")  # the same cache keys, SP's precise BN too
    for row, (kind, net) in zip(done, old.items()):
        loaded = recipes.recipe_net(kind, train, RECIPE, seed=1, progress=False)  # the notebook's load
        assert same_weights(loaded, net) and untimed(row["history"]) == untimed(net.history)
        assert loaded.checkpoint.name == net.checkpoint.name and row["kind"] == kind
    assert same_weights(recipes.recipe_net("depth", train, RECIPE, seed=1, hrl=False, progress=False), old_sp)
    with pytest.raises(ValueError, match="recipe is missing HRL_EPOCHS"):
        recipes.recipe_units(DATASET, {k: v for k, v in RECIPE.items() if k != "HRL_EPOCHS"}, [0])


def test_chapter4_units_train_the_old_loops_models(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(data_root(tmp_path / "old")))
    train = train_split(TRAINING["TRAIN_N"])
    old = {}
    for name, variant in VARIANTS.items():  # the notebooks' old loop body
        kwargs = {k: v for k, v in variant.items() if k != "method"}
        old[name] = once_for_all.train_once_for_all(variant["method"], train, progress=False, **kwargs,
                                                    **once_for_all.training_settings(TRAINING, attack=ATTACK, seed=0))

    monkeypatch.setenv("BOOK_DATA", str(data_root(tmp_path / "new")))
    settings = ch4_units(VARIANTS)
    done = units.map_units(once_for_all.once_for_all_unit, settings, executor="local", progress=False)
    assert checkpoints(tmp_path / "new") == checkpoints(tmp_path / "old")  # the same cache keys
    for unit, row in zip(settings, done):
        model, history = old[unit["name"]]
        loaded, loaded_history = once_for_all.once_for_all_model(unit, train, progress=False)
        assert same_weights(loaded, model), unit["name"]
        assert row["history"] == loaded_history and untimed(row["history"]) == untimed(history)
    with pytest.raises(ValueError, match="runs names variant 'PNI'"):
        ch4_units(["PNI"])
    with pytest.raises(ValueError, match=r"variants\['X'\] has eps"):
        once_for_all.once_for_all_units(DATASET, {"X": dict(method="float", eps=1)}, [("X", 0)], TRAINING,
                                        attack=ATTACK, train_n=None, subset_seed=0)


# -- the real engine ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(ray is None, reason="ray is not installed (pip install -e '.[cluster]')")
def test_ray_gives_the_local_results_for_a_chapter3_and_a_chapter4_unit(tmp_path_factory, tmp_path, monkeypatch):
    ch3 = recipes.recipe_units(DATASET, RECIPE, [0], kinds=("width",))
    ch4 = ch4_units(["FLOAT"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     _temp_dir=str(tmp_path_factory.mktemp("ray")))
    try:
        monkeypatch.setenv("BOOK_DATA", str(data_root(tmp_path / "ray")))
        on_ray = units.map_units(recipes.recipe_unit, ch3, executor="ray", progress=False)
        on_ray += units.map_units(once_for_all.once_for_all_unit, ch4, executor="ray", progress=False)
    finally:
        if started:
            ray.shutdown()
    assert len(checkpoints(tmp_path / "ray")) == 3  # written by the workers (the width net, its precise BN, FLOAT)
    monkeypatch.setenv("BOOK_DATA", str(data_root(tmp_path / "local")))
    local = units.map_units(recipes.recipe_unit, ch3, executor="local", progress=False)
    local += units.map_units(once_for_all.once_for_all_unit, ch4, executor="local", progress=False)
    assert checkpoints(tmp_path / "local") == checkpoints(tmp_path / "ray")
    assert [untimed(r["history"]) for r in on_ray] == [untimed(r["history"]) for r in local]
    net = recipes.recipe_net("width", train_split(), RECIPE, seed=0, progress=False)
    model, _ = once_for_all.once_for_all_model(ch4[0], train_split(TRAINING["TRAIN_N"]), progress=False)
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "ray"))  # the workers' models, loaded here
    assert same_weights(recipes.recipe_net("width", train_split(), RECIPE, seed=0, progress=False), net)
    assert same_weights(once_for_all.once_for_all_model(ch4[0], train_split(TRAINING["TRAIN_N"]), progress=False)[0],
                        model)
