"""helpers.io, helpers.cache and helpers.checks: checkpoints fail clearly, run identities are stable, and every
validation message names the parameter, the value and what is allowed."""
from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import torch

from helpers import cache, checks
from helpers.io import (CheckpointError, atomic_torch_save, checksum_path, clean_stale_temporaries,
                        load_checkpoint)
from helpers.train import checkpoint_path


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model-abc.pt"
    atomic_torch_save({"model": {"w": torch.arange(1000.0)}, "settings": {"lr": 0.1}}, path)
    return path


def test_checkpoint_round_trip_writes_a_checksum(saved):
    assert checksum_path(saved).read_text().strip() == hashlib.sha256(saved.read_bytes()).hexdigest()
    state = load_checkpoint(saved, keys=("model", "settings"))
    assert torch.equal(state["model"]["w"], torch.arange(1000.0))


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(os.urandom(len(data)))
    elif how == "flipped bit":
        i = data.rfind(torch.arange(1000.0)[500].numpy().tobytes())  # inside the stored weights
        path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])


@pytest.mark.parametrize("how, why", [("truncated", "checksum"), ("empty", "empty"), ("random", "checksum"),
                                      ("flipped bit", "checksum")])
def test_a_damaged_checkpoint_fails_naming_the_file(saved, how, why):
    _corrupt(saved, how)
    with pytest.raises(CheckpointError, match=why) as info:
        load_checkpoint(saved)
    message = str(info.value)
    assert str(saved) in message and "delete it" in message and "weights_only" not in message


@pytest.mark.parametrize("how", ["truncated", "random"])
def test_a_damaged_checkpoint_without_checksum_still_fails_clearly(saved, how):
    checksum_path(saved).unlink()
    _corrupt(saved, how)
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint") as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value) and "weights_only" not in str(info.value)


def test_a_flipped_bit_without_checksum_would_load_so_checksums_are_written_on_first_load(saved):
    checksum_path(saved).unlink()
    load_checkpoint(saved)  # an older checkpoint: loaded, and given its checksum
    assert checksum_path(saved).is_file()
    _corrupt(saved, "flipped bit")
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(saved)


def test_other_keys_and_pickled_objects_are_refused(saved, tmp_path):
    with pytest.raises(CheckpointError, match="lacks history.*holds model, settings"):
        load_checkpoint(saved, keys=("model", "history"))
    odd = tmp_path / "odd.pt"
    torch.save({"f": print}, odd)  # not loadable with weights_only=True
    with pytest.raises(CheckpointError, match="objects other than tensors") as info:
        load_checkpoint(odd)
    assert "weights_only" not in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_stale_temporaries_of_a_killed_write_are_cleaned(saved):
    stale = saved.parent / f".{saved.name}.x1y2.tmp"
    fresh = saved.parent / f".{saved.name}.z3.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert clean_stale_temporaries(saved) == [stale]
    assert fresh.exists()
    os.utime(fresh, (old, old))
    atomic_torch_save({"model": {}}, saved)  # every save cleans first
    assert not fresh.exists()


def test_fit_names_a_damaged_resume_checkpoint(tmp_path):
    from helpers.train import fit

    model = torch.nn.Linear(4, 2)
    data = (torch.randn(16, 4), torch.randint(0, 2, (16,)))
    path = tmp_path / "fit.pt"
    fit(model, data, epochs=1, lr=0.1, batch_size=8, checkpoint=path, progress=False)
    _corrupt(path, "truncated")
    with pytest.raises(CheckpointError, match="fit.pt"):
        fit(model, data, epochs=2, lr=0.1, batch_size=8, checkpoint=path, progress=False)


def test_fit_refuses_zero_epochs_and_empty_data():
    from helpers.train import fit

    model = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="epochs must be an int >= 1; got 0"):
        fit(model, (torch.randn(4, 4), torch.zeros(4, dtype=torch.long)), epochs=0, lr=0.1)
    with pytest.raises(ValueError, match="data is empty"):
        fit(model, (torch.randn(0, 4), torch.zeros(0, dtype=torch.long)), epochs=1, lr=0.1)


# -- cache ----------------------------------------------------------------------------------------

def test_digest_is_the_recipe_of_the_first_checkpoints(tmp_path, monkeypatch):
    """Models cached by earlier builds still load: the digest is byte-identical to the original recipe."""
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    settings = {"epochs": 3, "lr": 0.01, "attack": {"kind": "pgd", "eps": 0.3}, "path": tmp_path}
    old = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert cache.digest(settings) == old
    assert checkpoint_path("capacity-pgd", **settings) == tmp_path / "checkpoints" / f"capacity-pgd-{old}.pt"
    assert cache.cache_path("d", {"kind": "x"}, folder="rl", suffix=".json", length=10).name == \
        f"d-{cache.digest({'kind': 'x'}, 10)}.json"


def test_fingerprint_hashes_tensor_bytes_in_order():
    y, x = torch.arange(10), torch.rand(10, 1, 8, 8)
    h = hashlib.sha256(y.numpy().tobytes())
    h.update(x[:, :, ::7, ::7].contiguous().numpy().tobytes())
    assert cache.fingerprint(y, x[:, :, ::7, ::7]) == h.hexdigest()[:16]
    assert cache.fingerprint(y, length=12) == hashlib.sha256(y.numpy().tobytes()).hexdigest()[:12]
    assert cache.fingerprint(y) != cache.fingerprint(y.flip(0))


# -- checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: checks.integer("epochs", 0, low=1), "epochs must be an int >= 1; got 0"),
    (lambda: checks.integer("n", True), "n must be an int; got True"),
    (lambda: checks.integer("n", 2.0), "n must be an int; got 2.0"),
    (lambda: checks.integer("k", 9, 0, 7), r"k must be an int in \[0, 7\]; got 9"),
    (lambda: checks.number("density", 0.0, 0, 1, low_open=True), r"density must be a number in \(0, 1\]; got 0.0"),
    (lambda: checks.number("sparsity", 1.5, 0, 1, high_open=True), r"sparsity must be a number in \[0, 1\); got 1.5"),
    (lambda: checks.number("lr", float("nan"), 0), "lr must be a number >= 0; got nan"),
    (lambda: checks.choice("kind", "wide", ("depth", "act")), "kind must be one of 'depth', 'act'; got 'wide'"),
    (lambda: checks.flag("run_adv", 1), "run_adv must be True or False; got 1"),
    (lambda: checks.nonempty("data", 0), "data is empty"),
])
def test_checks_name_parameter_value_and_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_checks_return_the_value_and_rules_describe_themselves():
    assert checks.integer("n", 3, low=1) == 3 and checks.number("x", 1, 0, 1) == 1.0
    rule = checks.ListOf(checks.Integer(0, 7), optional=True)
    assert rule("CAPACITIES", (0, 3)) == [0, 3] and rule("CAPACITIES", None) is None
    with pytest.raises(ValueError, match=r"CAPACITIES must be a list .* each an int in \[0, 7\] \(or None\); got \[0, 9\]"):
        rule("CAPACITIES", [0, 9])
    assert checks.Choice(["a", "b"]).type_name == "str" and checks.Integer().type_name == "int"


def test_batch_slices_cover_the_range_and_model_device_reads_the_parameters():
    import helpers

    assert [(s.start, s.stop) for s in helpers.batch_slices(5, 2)] == [(0, 2), (2, 4), (4, 6)]
    assert list(helpers.batch_slices(0, 3)) == []
    with pytest.raises(ValueError, match="batch_size must be an int >= 1; got 0"):
        list(helpers.batch_slices(4, 0))
    assert helpers.model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert helpers.model_device(torch.nn.ReLU()) == torch.device("cpu")
