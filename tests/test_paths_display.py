"""No page shows the building machine's absolute paths: helpers.paths.shown / shown_in / ShownPath, the dataset
banners' reasons and Run.save's printed path; and helpers.device warns when a GPU is present but unusable."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

import helpers
from helpers import paths


def test_shown_writes_paths_relative_to_the_repository_or_the_data_root(monkeypatch, tmp_path):
    repo = paths.repo_root()
    monkeypatch.delenv("BOOK_DATA", raising=False)
    assert paths.shown(repo / "results" / "ch1" / "x.json") == "<repo>/results/ch1/x.json"
    assert paths.shown(repo / "data") == "<repo>/data"
    assert paths.shown(repo) == "<repo>"
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "store"))
    assert paths.shown(tmp_path / "store" / "d4rl" / "a.hdf5") == "$BOOK_DATA/d4rl/a.hdf5"
    assert paths.shown("/elsewhere/file") == "/elsewhere/file"  # a path the reader chose stays as it is
    text = f"not under {tmp_path / 'store'}; and {repo}/results"
    assert paths.shown_in(text) == "not under $BOOK_DATA; and <repo>/results"


def test_shown_path_prints_short_and_opens_the_real_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    real = tmp_path / "r" / "x.json"
    real.parent.mkdir()
    real.write_text("{}")
    path = paths.ShownPath(real)
    assert str(path) == "$BOOK_DATA/r/x.json" and f"{path}" == str(path) and str(tmp_path) not in repr(path)
    assert os.fspath(path) == str(real) and path.read_text() == "{}" and path == real and path.parent.is_dir()


def test_run_save_prints_no_machine_path(monkeypatch, tmp_path):
    from helpers import results

    monkeypatch.setattr(results, "results_root", lambda: paths.repo_root() / "runs" / "test-shown")
    run = results.Run("ch1_demo", "nb_shown", "smoke", {s: {"N": 1} for s in results.SCALES},
                      book_dir=tmp_path)
    run.values["x"] = 1
    try:
        saved = run.save()
        assert str(saved) == "<repo>/runs/test-shown/ch1_demo/nb_shown.smoke.json"
        assert json.loads(saved.read_text())["values"] == {"x": 1}
    finally:
        for p in sorted((paths.repo_root() / "runs" / "test-shown").rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (paths.repo_root() / "runs" / "test-shown").rmdir()


def test_substitution_reason_names_no_absolute_path(monkeypatch, tmp_path):
    from helpers import data

    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    monkeypatch.setattr(data, "_load_exact", lambda name, split, root, off: (_ for _ in ()).throw(
        data.SourceUnavailable(f"not under {root}")) if name == "mnist" else name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, used, reason = data._with_substitute("mnist", "train", tmp_path, True,
                                                     lambda n: data._load_exact(n, "train", str(tmp_path), None))
    assert used == "fashion-mnist" and reason == "not under $BOOK_DATA"
    assert str(tmp_path) not in str(caught[0].message)


def test_device_warns_when_a_gpu_is_present_but_unusable(monkeypatch):
    monkeypatch.delenv("BOOK_DEVICE", raising=False)
    monkeypatch.setattr(helpers, "_nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(helpers.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(helpers.torch.backends.mps, "is_available", lambda: False)
    helpers._warn_unusable_gpu_once.cache_clear()
    with pytest.warns(helpers.DeviceWarning, match="present but unusable"):
        assert helpers.device().type == "cpu"
    assert helpers.gpu_unusable_reason()
    monkeypatch.setattr(helpers, "_nvidia_gpu_present", lambda: False)
    assert helpers.gpu_unusable_reason() is None
    helpers._warn_unusable_gpu_once.cache_clear()


def test_paper_scale_on_the_cpu_warns_and_a_dry_run_does_not(monkeypatch, tmp_path):
    from helpers import results

    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    table = {s: {"N": 1} for s in results.SCALES}
    with pytest.warns(helpers.DeviceWarning, match="paper-scale run is starting on the CPU"):
        results.Run("ch1_demo", "nb1", "paper", table, book_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", helpers.DeviceWarning)
        results.Run("ch1_demo", "nb1", "paper", table, book_dir=tmp_path, dry_run=True)
        results.Run("ch1_demo", "nb1", "book", table, book_dir=tmp_path)
