"""Chapter 5's notebooks refuse a bad parameter by its notebook name, before any data is loaded or model trained."""
from __future__ import annotations

import pytest

from helpers import results
from notebook_params import open_run

CHAPTER = "ch5_representation"

# notebook, parameter, bad value, what the message says is allowed
BAD = [
    ("counting", "TRAIN_N", 0, "an int >= 1 (or None)"),
    ("counting", "TEST_N", -5, "an int >= 1 (or None)"),
    ("counting", "EPOCHS", 0, "an int >= 1"),
    ("counting", "COMPARE_EPOCHS", -1, "an int >= 1"),
    ("counting", "DETECT_N", 0, "an int >= 1"),
    ("defences", "DATASET", "imagenet", "one of 'mnist', 'fashion-mnist'"),
    ("defences", "TRAIN_N", -5, "an int >= 1 (or None)"),
    ("defences", "EPOCHS", 0, "an int >= 1"),
    ("defences", "PATIENCE", 0, "an int >= 1"),
    ("defences", "PD_POOL", 0, "an int in [1, 28]"),
    ("defences", "CHECK_N", 0, "an int >= 1 (or None)"),
]


@pytest.mark.parametrize("notebook, name, value, allowed", BAD, ids=str)
def test_a_bad_parameter_is_refused_by_its_notebook_name(notebook, name, value, allowed):
    with pytest.raises(ValueError) as err:
        open_run(CHAPTER, notebook, **{name: value})
    message = str(err.value)
    assert message.startswith(f"{name} must be ") and allowed in message
    assert message.endswith(f"; got {value!r} (notebook parameter of {notebook}.ipynb)")


@pytest.mark.parametrize("notebook", ["counting", "defences"])
def test_the_default_parameters_open_a_run_at_every_scale(notebook):
    for scale in results.SCALES:
        assert open_run(CHAPTER, notebook, SCALE=scale).scale == scale
