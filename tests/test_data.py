"""Tests of helpers.data: offline resolution, substitution, shapes, and the batch/subset/class helpers.

Offline, Fashion-MNIST comes from Debian's ``dataset-fashion-mnist``; MNIST and CIFAR-10 are not on
the machine, so requesting them exercises the substitution path.
"""
from __future__ import annotations

import gzip
import os
import struct
import time
from pathlib import Path

import pytest
import torch

import helpers
from helpers import data as hd
from helpers import data_sources as sources
from helpers.data import DatasetSubstitutedWarning, ImageData, batches, load_dataset

HAVE_DEBIAN_FASHION = sources.has_idx_files(sources.DEBIAN_FASHION_MNIST)
needs_fashion = pytest.mark.skipif(
    not HAVE_DEBIAN_FASHION, reason=f"needs Debian's dataset-fashion-mnist in {sources.DEBIAN_FASHION_MNIST}"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("BOOK_OFFLINE", "1")


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> Path:
    """A data root shared by the tests, so Debian's files are decompressed once."""
    return tmp_path_factory.mktemp("book_data")


@pytest.fixture
def digits() -> ImageData:
    return load_dataset("digits", "train")


def _write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as a gzipped IDX file (the MNIST format)."""
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.numpy().tobytes())


# ----------------------------------------------------------------------------------------------
# Shapes, dtypes, ranges


@needs_fashion
def test_fashion_mnist_both_splits_have_the_expected_shapes_dtypes_and_ranges(fashion_root):
    for split, n in (("train", 60_000), ("test", 10_000)):
        d = load_dataset("fashion-mnist", split, root=fashion_root)
        assert (d.name, d.requested, d.split, d.substituted) == ("fashion-mnist", "fashion-mnist", split, False)
        assert d.x.shape == (n, 1, 28, 28) and d.x.dtype == torch.float32
        assert d.y.shape == (n,) and d.y.dtype == torch.int64
        assert 0.0 <= d.x.min().item() and d.x.max().item() == 1.0
        assert d.num_classes == 10 and d.classes[0] == "T-shirt/top"
        assert torch.equal(d.y.bincount(), torch.full((10,), n // 10))  # Fashion-MNIST is balanced
    assert d.describe() == "fashion-mnist test: 10,000 images 1x28x28, 10 classes"


def test_digits_split_is_stratified_deterministic_and_in_unit_range():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.x.min().item() == 0.0 and train.x.max().item() == 1.0
    assert test.y.bincount().min() >= 35 and test.y.bincount().max() <= 37  # stratified 20 %
    assert train.classes == tuple("0123456789") and not train.substituted
    hd.clear_cache()
    again = load_dataset("digits", "test")
    assert again is not test and torch.equal(again.x, test.x) and torch.equal(again.y, test.y)


def test_loaded_datasets_are_cached_per_name_split_and_root(digits):
    assert load_dataset("digits", "train") is digits
    assert load_dataset("DIGITS", "train") is digits  # names are case-insensitive


# ----------------------------------------------------------------------------------------------
# Resolution and substitution


def test_offline_source_is_decompressed_atomically_into_the_root(tmp_path, monkeypatch):
    source = tmp_path / "debian"
    source.mkdir()
    gen = torch.Generator().manual_seed(0)
    images = {"train": torch.randint(0, 256, (12, 28, 28), generator=gen, dtype=torch.uint8),
              "t10k": torch.randint(0, 256, (5, 28, 28), generator=gen, dtype=torch.uint8)}
    labels = {"train": torch.arange(12, dtype=torch.uint8) % 10, "t10k": torch.arange(5, dtype=torch.uint8)}
    for prefix in ("train", "t10k"):
        _write_idx(source / f"{prefix}-images-idx3-ubyte.gz", images[prefix])
        _write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", labels[prefix])
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", source)
    root = tmp_path / "root"

    d = load_dataset("fashion-mnist", "test", root=root)

    assert torch.equal(d.x, images["t10k"].unsqueeze(1).float() / 255)
    assert torch.equal(d.y, labels["t10k"].long())
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(sources.IDX_FILES)  # no temp files left over
    assert all(os.stat(p).st_mode & 0o044 for p in raw.iterdir())  # readable by others, unlike mkstemp's 0o600
    # Now the files are under the root: found there without the offline source.
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "gone")
    hd.clear_cache()
    assert len(load_dataset("fashion-mnist", "train", root=root)) == 12


def _fake_tools(bin_dir: Path, **scripts: str) -> None:
    """Shell scripts named after the keywords (``apt_get`` -> ``apt-get``) in ``bin_dir``, which goes first on PATH."""
    bin_dir.mkdir()
    for name, body in scripts.items():
        tool = bin_dir / name.replace("_", "-")
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)


@pytest.fixture
def not_installed(tmp_path, monkeypatch) -> Path:
    """No installed Debian copy, unreachable download hosts, and a ``bin`` folder first on PATH for fake tools."""
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    monkeypatch.setattr(sources, "unreachable_reasons", lambda targets: ["unreachable (test)"] * len(targets))
    return tmp_path / "bin"


def test_debian_package_is_fetched_and_unpacked_when_not_installed(tmp_path, not_installed):
    source = tmp_path / "idx"
    source.mkdir()
    images = torch.randint(0, 256, (3, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(source / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", torch.arange(3, dtype=torch.uint8))
    unpacked = f'"$3/{sources.PACKAGE_IDX_DIR}"'
    _fake_tools(not_installed, apt_get='[ "$1" = download ] || exit 9\necho deb > "$3_1.0_all.deb"',
                dpkg_deb=f"mkdir -p {unpacked} && cp {source}/*.gz {unpacked}/")
    root = tmp_path / "root"
    with pytest.raises(RuntimeError, match="no offline copy"):  # offline: no fetch is tried
        load_dataset("fashion-mnist", "test", root=root)

    d = load_dataset("fashion-mnist", "test", root=root, download=True)

    assert torch.equal(d.x, images.unsqueeze(1).float() / 255)
    assert sorted(p.name for p in root.iterdir()) == ["FashionMNIST"]  # the unpacked package is cleaned up


def test_failed_package_fetch_says_why(tmp_path, not_installed):
    _fake_tools(not_installed, apt_get="echo 'E: Unable to locate package' >&2\nexit 100", dpkg_deb="exit 0")
    with pytest.raises(RuntimeError, match="apt-get download dataset-fashion-mnist` failed .*Unable to locate"):
        load_dataset("fashion-mnist", root=tmp_path / "root", download=True)


def test_missing_offline_source_raises_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "nothing")
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


@needs_fashion
def test_mnist_offline_is_substituted_by_fashion_mnist_with_a_warning(fashion_root):
    with pytest.warns(DatasetSubstitutedWarning, match="fashion-mnist instead of mnist"):
        d = load_dataset("mnist", "train", root=fashion_root)
    assert (d.name, d.requested, d.substituted) == ("fashion-mnist", "mnist", True)
    assert d.x.shape == (60_000, 1, 28, 28)
    assert "substitute for mnist" in d.describe() and "BOOK_OFFLINE" in d.reason
    # The substitute shares the cached tensors of the dataset it stands for.
    assert d.x is load_dataset("fashion-mnist", "train", root=fashion_root).x


@needs_fashion
def test_cifar10_offline_is_substituted_too(fashion_root):
    with pytest.warns(DatasetSubstitutedWarning, match="instead of cifar10"):
        d = load_dataset("cifar10", "test", root=fashion_root)
    assert (d.name, d.requested, len(d)) == ("fashion-mnist", "cifar10", 10_000)


def test_mnist_without_download_or_substitute_raises_a_helpful_error(tmp_path):
    with pytest.raises(RuntimeError) as info:
        load_dataset("mnist", root=tmp_path, download=False, substitute=False)
    message = str(info.value)
    assert "mnist" in message and str(tmp_path) in message
    assert "BOOK_DATA" in message and "download=False" in message and "substitute=True" in message


def test_offline_resolution_answers_quickly_without_book_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOK_OFFLINE")
    from torchvision.datasets import CIFAR10, MNIST

    if not all(sources.unreachable_reasons([*MNIST.mirrors, CIFAR10.url])):
        pytest.skip("a download host is reachable: this test is for offline machines")
    hd.clear_cache()  # forget the unreachable hosts, so the probes run again
    start = time.perf_counter()
    for name in ("mnist", "cifar10"):
        with pytest.raises(RuntimeError, match="offline: cannot reach"):
            load_dataset(name, root=tmp_path, substitute=False)
    assert time.perf_counter() - start < 10.0


def test_a_hanging_network_costs_at_most_the_probe_timeout(monkeypatch):
    def hang(address, timeout=None, *args, **kwargs):
        time.sleep(2.0)
        raise OSError("never answered")

    monkeypatch.setattr(sources.socket, "create_connection", hang)
    start = time.perf_counter()
    reasons = sources.unreachable_reasons(["https://hang-a.invalid/x", "http://hang-b.invalid/y"], timeout=0.3)
    assert time.perf_counter() - start < 1.5  # both probes in parallel, neither waited for
    assert reasons == ["cannot reach hang-a.invalid (no answer in 0.3 s)", "cannot reach hang-b.invalid (no answer in 0.3 s)"]


@needs_fashion
def test_provision_reports_what_is_used(fashion_root, capsys):
    with pytest.warns(DatasetSubstitutedWarning):
        used = hd.provision(["mnist", "fashion-mnist", "digits"], root=fashion_root)
    assert used == {"mnist": "fashion-mnist", "fashion-mnist": "fashion-mnist", "digits": "digits"}
    assert hd.main(["mnist", "digits", "--root", str(fashion_root)]) == 0
    out = capsys.readouterr().out
    assert "mnist -> fashion-mnist  (substitute)" in out and "digits -> digits" in out


def test_data_root_and_offline_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    assert hd.data_root() == tmp_path.resolve()
    monkeypatch.delenv("BOOK_DATA")
    assert hd.data_root() == Path(helpers.__file__).resolve().parents[1] / "data"
    for value, expected in (("1", True), ("true", True), ("YES", True), ("0", False), ("", False)):
        monkeypatch.setenv("BOOK_OFFLINE", value)
        assert hd.offline() is expected


# ----------------------------------------------------------------------------------------------
# Validation


def test_unknown_name_bad_split_and_bad_batch_size_are_rejected(digits):
    with pytest.raises(ValueError, match=r"name must be one of .*mnist.*got 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"split must be one of .*got 'val'"):
        load_dataset("digits", "val")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1; got "):
            digits.batches(bad)
    with pytest.raises(ValueError, match="n must be a positive int"):
        digits.subset(0)
    with pytest.raises(ValueError, match="labels"):
        digits.select_classes([3, 3])
    with pytest.raises(ValueError, match="labels"):
        digits.select_classes([10])


# ----------------------------------------------------------------------------------------------
# Batches, subsets, classes


def test_shuffled_batches_cover_every_sample_once_and_repeat_with_the_same_seed(digits):
    n = len(digits)
    index = torch.arange(n)
    seen = torch.cat([yb for _, yb in batches(index.view(n, 1, 1, 1).float(), index, 100, shuffle=True,
                                              generator=torch.Generator().manual_seed(1))])
    assert torch.equal(seen.sort().values, index) and not torch.equal(seen, index)

    def run(seed: int) -> list[torch.Tensor]:
        return [yb for _, yb in digits.batches(64, shuffle=True, generator=torch.Generator().manual_seed(seed))]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert [len(yb) for yb in first] == [64] * (n // 64) + [n % 64]
    assert torch.equal(torch.cat(first).bincount(), digits.y.bincount())


def test_unshuffled_batches_are_in_order_and_drop_last_drops_the_remainder(digits):
    xs, ys = zip(*digits.batches(500))
    assert torch.equal(torch.cat(xs), digits.x) and torch.equal(torch.cat(ys), digits.y)
    assert [len(y) for y in ys] == [500, 500, 437]
    assert [len(y) for _, y in digits.batches(500, shuffle=True, drop_last=True)] == [500, 500]


def test_select_classes_keeps_those_labels_and_relabels_them_in_the_given_order(digits):
    picked = digits.select_classes([5, 3])
    assert picked.classes == ("5", "3") and picked.num_classes == 2
    assert len(picked) == int(((digits.y == 5) | (digits.y == 3)).sum())
    assert torch.equal(picked.x[picked.y == 0], digits.x[digits.y == 5])
    assert torch.equal(picked.x[picked.y == 1], digits.x[digits.y == 3])
    assert picked.name == digits.name and picked.split == digits.split


def test_subset_is_deterministic_per_seed_and_without_replacement(digits):
    a, b, c = digits.subset(100, seed=0), digits.subset(100, seed=0), digits.subset(100, seed=1)
    assert len(a) == 100 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    numbered = ImageData(x=torch.arange(50.0).view(50, 1, 1, 1), y=torch.arange(50), name="digits",
                         requested="digits", split="train", classes=tuple(map(str, range(50))))
    picked = numbered.subset(20, seed=3).y
    assert len(picked.unique()) == 20 and torch.equal(picked, picked.sort().values)  # distinct, in dataset order
    assert digits.subset(None) is digits and digits.subset(len(digits)) is digits


def test_to_and_describe(digits):
    moved = digits.to("cpu")
    assert moved.x.device.type == "cpu" and moved.name == "digits" and len(moved) == len(digits)
    assert digits.describe() == "digits train: 1,437 images 1x8x8, 10 classes"
    assert repr(digits) == "ImageData(digits train: 1,437 images 1x8x8, 10 classes)"


@pytest.mark.filterwarnings("ignore::helpers.data.DatasetSubstitutedWarning")
def test_a_dry_run_replaces_a_missing_cifar10_by_fakedata_of_its_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    with pytest.warns(DatasetSubstitutedWarning, match="synthetic-cifar10 instead of cifar10"):
        train = load_dataset("cifar10", "train", root=tmp_path)
    test = load_dataset("cifar10", "test", root=tmp_path)
    assert train.name == "synthetic-cifar10" and train.requested == "cifar10" and train.substituted
    assert tuple(train.x.shape) == (hd.STAND_IN_SIZES["train"], 3, 32, 32) and train.num_classes == 10
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1 and set(train.y.tolist()) <= set(range(10))
    assert not torch.equal(train.x[: len(test)], test.x)  # the two splits are different images
    hd.clear_cache()
    assert torch.equal(load_dataset("cifar10", "train", root=tmp_path).x[:8], train.x[:8])  # the same every time
    monkeypatch.delenv("BOOK_DRY_RUN")
    hd.clear_cache()
    assert load_dataset("cifar10", "test", root=tmp_path).name != "synthetic-cifar10"  # only a dry run uses it
