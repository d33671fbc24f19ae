"""Chapter 4's notebook parameters: every bad value is refused by results.start, naming the notebook parameter, the
value and what is allowed, before any data is loaded or any model trained (issue 13, point 4).

The notebooks' own SCALES and RULES are read by executing their hidden imports cell (the one that defines RULES);
the chapter's shared rows come from book/ch4_float/scales.yml, as in the notebooks.
"""
from __future__ import annotations


import pytest

from helpers import results
from notebook_params import notebook_setup, open_run

NOTEBOOKS = ("attacks", "float_vs_oat", "sparsity")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("scale", ["smoke", "book", "paper"])
def test_every_row_of_every_scale_passes_its_rules(notebook, scale):
    run = open_run("ch4_float", notebook, SCALE=scale)
    assert run.scale == scale
    assert {"ARCH", "WIDTH", "EPOCHS", "LR", "TEST_N"} <= set(run.config)  # the chapter's shared rows are merged


def test_attacks_keeps_its_own_test_size_over_the_chapters():
    # the chapter's book row evaluates on 100 images, attacks' Figs 9 on 64 (300 and 150 before three seeds had to fit)
    assert open_run("ch4_float", "attacks", SCALE="book").config["TEST_N"] == 64
    assert open_run("ch4_float", "float_vs_oat", SCALE="book").config["TEST_N"] == 100


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebook_replicates_over_seeds_at_book_scale(notebook):
    assert open_run("ch4_float", notebook, SCALE="smoke").config["SEEDS"] == 1
    assert open_run("ch4_float", notebook, SCALE="book").config["SEEDS"] >= 3
    assert open_run("ch4_float", notebook, SCALE="paper").config["SEEDS"] == 5


CASES = [  # (notebook, parameter, bad value, what the message must say)
    ("float_vs_oat", "EPOCHS", 0, "EPOCHS must be an int >= 1; got 0"),          # zero epochs: no training at all
    ("attacks", "EPOCHS", -1, "EPOCHS must be an int >= 1; got -1"),
    ("float_vs_oat", "EPOCHS", "two", "EPOCHS must be an int"),                  # a string for a number
    ("sparsity", "TRAIN_N", -5, "TRAIN_N must be an int >= 1 (or None); got -5"),  # sizes
    ("attacks", "TEST_N", 0, "TEST_N must be an int >= 1"),
    ("attacks", "AA_N", 0, "AA_N must be an int >= 1; got 0"),
    ("attacks", "CHECK_N", 2.5, "CHECK_N must be an int >= 1; got 2.5"),
    ("float_vs_oat", "WIDTH", 0, "WIDTH must be an int >= 1; got 0"),
    ("sparsity", "DENSITY_I", 1.5, "DENSITY_I must be a number in (0, 1]; got 1.5"),  # densities
    ("sparsity", "DENSITY_C", 0, "DENSITY_C must be a number in (0, 1]; got 0"),
    ("sparsity", "DENSITY_SLIM", -0.1, "DENSITY_SLIM must be a number in (0, 1]"),
    ("attacks", "DATASET", "imagenet", "DATASET must be one of 'mnist', 'fashion-mnist', 'cifar10'"),  # names
    ("sparsity", "SEED", -1, "SEED must be an int >= 0; got -1"),
    ("float_vs_oat", "SCALE", "huge", "SCALE must be one of smoke, book, paper; got 'huge'"),
]


@pytest.mark.parametrize("notebook, name, value, message", CASES, ids=[f"{c[0]}-{c[1]}={c[2]}" for c in CASES])
def test_a_bad_parameter_is_refused_by_name(notebook, name, value, message, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS", str(tmp_path))
    with pytest.raises(ValueError) as error:
        open_run("ch4_float", notebook, **{"SCALE": "smoke", name: value})
    assert message in str(error.value)
    if name != "SCALE":
        assert f"notebook parameter of {notebook}.ipynb" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bad_setting_of_the_chapter_table_is_refused_naming_the_table(monkeypatch):
    """A row value that breaks its rule (here FLOATS slim's width, which must leave a channel at width 0.5)."""
    params, scales, rules = notebook_setup("ch4_float", "sparsity")
    shared = results.chapter_scales("ch4_float")
    broken = {scale: {**row, "WIDTH": 1} for scale, row in shared.items()}
    monkeypatch.setattr(results, "chapter_scales", lambda chapter, book_dir=None: broken)
    with pytest.raises(ValueError, match=r"WIDTH must be an int >= 2; got 1 \(SCALES\['smoke'\]"):
        results.start("ch4_float", "sparsity", scales, {**params, "SCALE": "smoke"}, rules=rules, threads=None)
