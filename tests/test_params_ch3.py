"""Chapter 3's notebook parameters and shared recipe: every bad value is refused by results.start, by name, before any
work; book/ch3_gradauto/scales.yml holds the recipe the helpers table held (so cached checkpoints stay valid)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import results
from notebook_params import open_run
from helpers.train import dynamic as recipes

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "ch3_gradauto"
NOTEBOOKS = ("ablations", "dynamic_networks", "energy_attacks")


@pytest.mark.parametrize("scale", results.SCALES)
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_scale_of_every_notebook_passes_its_rules(notebook, scale):
    run = open_run("ch3_gradauto", notebook, SCALE=scale)
    assert run.scale == scale
    assert set(recipes.RECIPE_RULES) <= set(run.config)  # the chapter's recipe is merged into every notebook
    assert run.config["SEEDS"] == {"smoke": 1, "book": 3, "paper": 5}[scale]  # the same seeds in every notebook


BAD = [
    ("ablations", "STEPS", 0, "an int >= 1"),  # issue 13: recorded nan% recoveries and two verdicts
    ("ablations", "KIND", "bogus", "one of 'depth', 'act', 'width'"),
    ("ablations", "N_IMAGES", 0, "an int >= 1 (or None)"),
    ("ablations", "LR", 0, "a number > 0"),
    ("ablations", "DATASET", "imagenet", "one of"),
    ("dynamic_networks", "EPOCHS", 0, "an int >= 1"),
    ("dynamic_networks", "TRAIN_N", 0, "an int >= 1 (or None)"),
    ("dynamic_networks", "TEST_N", -5, "an int >= 1 (or None)"),
    ("dynamic_networks", "PENALTY_DEPTH", -0.5, "a number >= 0"),
    ("dynamic_networks", "LATENCY_N", 0, "an int >= 1"),
    ("dynamic_networks", "SEED", -1, "an int >= 0"),
    ("dynamic_networks", "SEEDS", 0, "an int >= 1"),
    ("energy_attacks", "SEEDS", 0, "an int >= 1"),
    ("energy_attacks", "K", 0.0, "a number > 0"),
    ("energy_attacks", "STEPS", -1, "an int >= 1"),
    ("energy_attacks", "N_IMAGES", 2.5, "an int >= 1 (or None)"),
]


@pytest.mark.parametrize("notebook, name, value, allowed", BAD, ids=[f"{n}-{p}={v!r}" for n, p, v, _ in BAD])
def test_a_bad_parameter_is_refused_by_name(notebook, name, value, allowed):
    with pytest.raises(ValueError) as err:
        open_run("ch3_gradauto", notebook, SCALE="smoke", **{name: value})
    message = str(err.value)
    assert message.startswith(f"{name} must be {allowed}") and repr(value) in message
    assert f"notebook parameter of {notebook}.ipynb" in message


def test_a_bad_value_in_the_chapter_scales_is_refused_by_name(tmp_path):
    shared = yaml.safe_load((CHAPTER / "scales.yml").read_text(encoding="utf-8"))
    shared["book"]["LAYERS_ACT"] = 8  # ACT needs two blocks per stage: depth 14 or more
    (tmp_path / "ch3_gradauto").mkdir()
    (tmp_path / "ch3_gradauto" / "scales.yml").write_text(yaml.safe_dump(shared), encoding="utf-8")
    with pytest.raises(ValueError, match=r"LAYERS_ACT must be an int 6n \+ 2 >= 14 .*got 8 \(SCALES\['book'\]"):
        open_run("ch3_gradauto", "energy_attacks", book_dir=tmp_path, SCALE="book")
    open_run("ch3_gradauto", "energy_attacks", book_dir=tmp_path, SCALE="smoke")  # the other rows are fine


#: The recipe of the former ``helpers.train.dynamic.DYNAMIC_RECIPES`` as trained_dynamic_net received it (commit
#: b6863f2), but for the book row's training images (4,000 -> 2,000 for three seeds, issue 14): the checkpoint digests
#: of every cached net depend on exactly these values.
FORMER_RECIPES = {
    "smoke": dict(depth=dict(depth=14, act=14, width=14), width=4, epochs=1, lr=3e-3, batch_size=64,
                  penalty=dict(depth=0.5, act=0.5, width=0.4), optimizer="adam", weight_decay=0.0, lr_schedule=None,
                  augment=None, hrl=dict(epochs=1, lr=1e-3, optimizer="adam", weight_decay=0.0), train_n=256),
    "book": dict(depth=dict(depth=14, act=14, width=14), width=16, epochs=3, lr=3e-3, batch_size=64,
                 penalty=dict(depth=0.5, act=0.5, width=0.4), optimizer="adam", weight_decay=0.0, lr_schedule=None,
                 augment=None, hrl=dict(epochs=3, lr=1e-3, optimizer="adam", weight_decay=0.0), train_n=2000),
    "paper": dict(depth=dict(depth=110, act=110, width=56), width=16, epochs=164, lr=0.1, batch_size=128,
                  penalty=dict(depth=0.5, act=0.01, width=0.4), optimizer="sgd", weight_decay=1e-4,
                  lr_schedule="cosine", augment="crop_flip",
                  hrl=dict(epochs=26, lr=1e-4, optimizer="sgd", weight_decay=1e-4), train_n=None),
}


class _Split:
    """A stand-in training split that records the subset recipe_net takes."""

    def subset(self, n, seed):
        return ("subset", n, seed)


@pytest.mark.parametrize("scale", results.SCALES)
def test_the_chapter_scales_hold_the_former_recipe(scale, monkeypatch):
    calls = []
    monkeypatch.setattr(recipes, "trained_dynamic_net", lambda kind, data, **kw: calls.append((kind, data, kw)))
    row = yaml.safe_load((CHAPTER / "scales.yml").read_text(encoding="utf-8"))[scale]
    former = FORMER_RECIPES[scale]
    split = _Split()
    for kind in ("depth", "act", "width"):
        recipes.recipe_net(kind, split, row, seed=3, progress=False)
        _, data, kw = calls[-1]
        assert data == (("subset", former["train_n"], 3) if former["train_n"] else split)
        expected = dict(depth=former["depth"][kind], width=former["width"], epochs=former["epochs"], lr=former["lr"],
                        batch_size=former["batch_size"], penalty=former["penalty"][kind],
                        optimizer=former["optimizer"], weight_decay=former["weight_decay"],
                        lr_schedule=former["lr_schedule"], augment=former["augment"],
                        hrl=former["hrl"] if kind == "depth" else None, seed=3, progress=False)
        assert kw == expected
        for key in ("lr", "penalty", "weight_decay"):  # a float stays a float: 0.0 and 0 are different digests
            assert type(kw[key]) is type(expected[key])
    recipes.recipe_net("depth", split, row, hrl=False, progress=False)
    assert calls[-1][2]["hrl"] is None  # SkipNet's supervised pre-training alone


def test_recipe_net_refuses_an_incomplete_or_bad_recipe():
    row = yaml.safe_load((CHAPTER / "scales.yml").read_text(encoding="utf-8"))["smoke"]
    with pytest.raises(ValueError, match="recipe is missing HRL_EPOCHS"):
        recipes.recipe_net("depth", _Split(), {k: v for k, v in row.items() if k != "HRL_EPOCHS"})
    with pytest.raises(ValueError, match="LAYERS_DEPTH must be an int 6n"):
        recipes.recipe_net("depth", _Split(), {**row, "LAYERS_DEPTH": 15})
    with pytest.raises(ValueError, match="kind must be one of"):
        recipes.recipe_net("deep", _Split(), row)
