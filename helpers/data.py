"""Image datasets as in-memory tensors, loaded through torchvision's own dataset classes.

A dataset is looked for in this order: files already under the data root (``$BOOK_DATA``, default
``<repo>/data``); a download, when allowed and the host answers within seconds; an offline source
for Fashion-MNIST, Debian's ``dataset-fashion-mnist``: the installed copy, else (downloads allowed)
the package fetched from Debian's archive with ``apt-get download``, which needs no root, since a
machine without internet may still reach its package registry (those sources: :mod:`helpers.data_sources`).
When the requested dataset cannot be had,
a substitute (see ``SUBSTITUTES``) is used with a warning, and ``ImageData.name`` says which one.

Loaded datasets are cached in this process and share their tensors with every caller: treat
``ImageData.x`` and ``ImageData.y`` as read-only (``x.clone()`` before any in-place change).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from . import checks, data_sources
from .data_sources import SourceUnavailable, digits_arrays, downloads_off, offline, open_torchvision
from .paths import data_root, dry_run, shown_in

__all__ = ["DATASETS", "SUBSTITUTES", "SPLITS", "DATASET_NAMES", "DatasetSubstitutedWarning", "ImageData", "batches",
           "clear_cache", "display_name", "load_dataset", "load_quietly", "main", "offline", "provision"]

T = TypeVar("T")
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "digits")
SUBSTITUTES: dict[str, str] = {"mnist": "fashion-mnist", "cifar10": "fashion-mnist"}
#: In a dry run of the paper rows (``BOOK_DRY_RUN=1``) a missing dataset is replaced by a synthetic one of its shape and
#: number of classes (torchvision's ``FakeData``), so the paper's input shapes run: {dataset: stand-in}.
DRY_RUN_STAND_INS: dict[str, str] = {"cifar10": "synthetic-cifar10"}
#: The stand-ins' sizes per split (smaller than the real dataset's: a dry run caps every loop anyway).
STAND_IN_SIZES = {"train": 10_000, "test": 2_000}
SPLITS: tuple[str, ...] = ("train", "test")
#: How datasets are named in prose and captions.
DATASET_NAMES = {
    "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "fashion_mnist": "Fashion-MNIST",
    "fashionmnist": "Fashion-MNIST", "kmnist": "KMNIST", "emnist": "EMNIST", "digits": "scikit-learn digits (8x8)",
    "cifar10": "CIFAR-10", "cifar-10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar-100": "CIFAR-100",
    "svhn": "SVHN", "imagenet": "ImageNet", "tiny-imagenet": "Tiny ImageNet",
    "synthetic-cifar10": "synthetic CIFAR-10-shaped noise (FakeData, 3x32x32, 10 classes)",
}


def display_name(name: str) -> str:
    """The name of a dataset as the text writes it: ``display_name("fashion-mnist") == "Fashion-MNIST"``."""
    return DATASET_NAMES.get(str(name).lower(), str(name))


#: Debian's package of Fashion-MNIST, and where it puts the four IDX ``.gz`` files.


class DatasetSubstitutedWarning(UserWarning):
    """Warned when ``load_dataset`` returns a substitute for the requested dataset."""



# --------------------------------------------------------------------------------------------
# The in-memory dataset and its batches


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches ``(x[idx], y[idx])`` by slicing in-memory tensors (no per-sample DataLoader).

    ``shuffle`` draws ``torch.randperm(N, generator=generator)``; unshuffled batches are views of ``x``.
    """
    checks.integer("batch_size", batch_size, low=1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    n = len(x)
    stop = n - n % batch_size if drop_last else n
    order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None

    def _iterate() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, stop, batch_size):
            if order is None:
                yield x[start : start + batch_size], y[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                yield x.index_select(0, idx), y.index_select(0, idx.to(y.device))

    return _iterate()


@dataclass(frozen=True, eq=False, repr=False)
class ImageData:
    """Images ``x`` (float32, (N, C, H, W), in [0, 1]) and labels ``y`` (int64, (N,)) of one split.

    ``name`` is the dataset actually used, ``requested`` the one asked for; ``reason`` says why they differ.
    """

    x: torch.Tensor
    y: torch.Tensor
    name: str
    requested: str
    split: str
    classes: tuple[str, ...]
    reason: str = ""

    def __post_init__(self) -> None:
        if self.x.dim() != 4 or len(self.x) != len(self.y):
            raise ValueError(f"x must be (N, C, H, W) and y (N,), got {tuple(self.x.shape)} and {tuple(self.y.shape)}")

    @property
    def substituted(self) -> bool:
        """True when this is a substitute for the requested dataset."""
        return self.name != self.requested

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are 0..num_classes-1)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"ImageData({self.describe()})"

    def _replace(self, x: torch.Tensor, y: torch.Tensor, **changes) -> ImageData:
        return dataclasses.replace(self, x=x, y=y, **changes)

    def subset(self, n: int | None, seed: int = 0) -> ImageData:
        """``n`` samples drawn without replacement (``torch.Generator`` seeded with ``seed``), in dataset order.

        ``None`` or ``n >= len(self)`` returns ``self``.
        """
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int or None, got {n!r}")
        if n >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=generator)[:n].sort().values.to(self.x.device)
        return self._replace(self.x.index_select(0, idx), self.y.index_select(0, idx.to(self.y.device)))

    def select_classes(self, labels: Sequence[int]) -> ImageData:
        """Keep the samples whose label is in ``labels`` and relabel them 0..len(labels)-1 in that order.

        ``classes`` follows, e.g. ``select_classes([3, 5])`` on CIFAR-10 gives ``("cat", "dog")``.
        """
        labels = [int(label) for label in labels]
        if not labels or len(set(labels)) != len(labels) or not all(0 <= l < self.num_classes for l in labels):
            raise ValueError(
                f"labels must be distinct labels in [0, {self.num_classes - 1}], at least one, got {labels!r}"
            )
        new_label = torch.full((self.num_classes,), -1, dtype=torch.int64, device=self.y.device)
        new_label[torch.tensor(labels, device=self.y.device)] = torch.arange(len(labels), device=self.y.device)
        mapped = new_label[self.y]
        keep = torch.nonzero(mapped >= 0).squeeze(1)
        return self._replace(
            self.x.index_select(0, keep.to(self.x.device)),
            mapped.index_select(0, keep),
            classes=tuple(self.classes[l] for l in labels),
        )

    def to(self, device: torch.device | str) -> ImageData:
        """The same data on ``device`` (``self``'s tensors when they are there already).

        Moving a large training set to the accelerator once avoids a copy per batch.
        """
        return self._replace(self.x.to(device), self.y.to(device))

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches ``(x, y)`` of this dataset; see :func:`batches`.

        Pass a seeded ``torch.Generator`` for a reproducible shuffle.
        """
        return batches(self.x, self.y, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)

    def describe(self) -> str:
        """One line: dataset used, split, size, image shape, classes, and the substitution if any.

        For the banner of a notebook.
        """
        c, h, w = self.x.shape[1:]
        line = f"{self.name} {self.split}: {len(self):,} images {c}x{h}x{w}, {self.num_classes} classes"
        if self.substituted:
            line += f" (substitute for {self.requested}: {self.reason or 'unavailable'})"
        return line


# --------------------------------------------------------------------------------------------
# Resolution: files under the root, download, offline source


def _dataset_key(name: str) -> str:
    """``name`` as :data:`DATASETS` spells it (case and ``_``/``-`` do not matter), or a ``ValueError``."""
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    return checks.choice("name", key, DATASETS)


def _resolve_root(root: str | Path | None) -> Path:
    return Path(root).expanduser().resolve() if root is not None else data_root()


@functools.lru_cache(maxsize=6)
def _load_exact(name: str, split: str, root: str, downloads_off: str | None) -> ImageData:
    """The dataset ``name`` itself (no substitution), cached per (name, split, root); raises ``SourceUnavailable``."""
    if name == "digits":
        x, y, classes = digits_arrays(split)
        return ImageData(x=x, y=y, name=name, requested=name, split=split, classes=classes)
    if name in DRY_RUN_STAND_INS.values():
        return _stand_in(name, split)
    dataset = open_torchvision(name, split, Path(root), downloads_off)
    if name == "cifar10":
        x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).to(torch.float32).div_(255).contiguous()
        y = torch.as_tensor(dataset.targets, dtype=torch.int64)
    else:
        x = dataset.data.unsqueeze(1).to(torch.float32).div_(255)
        y = dataset.targets.to(torch.int64)
    return ImageData(x=x, y=y, name=name, requested=name, split=split, classes=tuple(dataset.classes))


def _stand_in(name: str, split: str) -> ImageData:
    """A synthetic dataset of the shape of the one it stands in for (``FakeData``: a fixed noise image per index)."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    n = STAND_IN_SIZES[split]
    fake = FakeData(size=n, image_size=(3, 32, 32), num_classes=10, random_offset=0 if split == "train" else n)
    images, labels = zip(*(fake[i] for i in range(n)))
    x = torch.stack([pil_to_tensor(image) for image in images]).to(torch.float32).div_(255)
    y = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    return ImageData(x=x, y=y, name=name, requested=name, split=split, classes=tuple(f"class {i}" for i in range(10)))


def _cache_key(name: str, split: str, root: Path, downloads_off: str | None) -> tuple[str, str, str, str | None]:
    # digits ship with scikit-learn: one cache entry whatever the root or download setting
    return (name, split, "", None) if name == "digits" else (name, split, str(root), downloads_off)


def _help(name: str, root: Path) -> str:
    return (
        f"To get {name}: put torchvision's files for it in a folder and set BOOK_DATA to that folder "
        f"(now {root}), or run `python -m helpers.data {name}` once on a machine that is online"
        + ("; or `apt-get install dataset-fashion-mnist`." if name in ("fashion-mnist", *SUBSTITUTES) else ".")
    )


def _with_substitute(name: str, split: str, root: Path, substitute: bool, attempt: Callable[[str], T]) -> tuple[T, str, str]:
    """``attempt(name)``, else ``attempt(SUBSTITUTES[name])`` with a warning: (result, name used, reason).

    Raises ``RuntimeError`` with the reasons and how to get the data when neither can be had.
    """
    try:
        return attempt(name), name, ""
    except SourceUnavailable as error:
        reason = str(error)
    used = (DRY_RUN_STAND_INS.get(name) if dry_run() else None) or SUBSTITUTES.get(name)
    if not substitute or used is None:
        hint = f" (substitute=True would use {used})" if used else ""
        raise RuntimeError(f"{name} ({split}) is not available: {reason}{hint}. {_help(name, root)}")
    try:
        result = attempt(used)
    except SourceUnavailable as error:
        raise RuntimeError(
            f"{name} ({split}) is not available: {reason}; nor is its substitute {used}: {error}. {_help(name, root)}"
        ) from None
    reason = shown_in(reason)  # it goes into banners and results files: no absolute path of this machine
    warnings.warn(
        f"Using {used} instead of {name}, which is not available: {reason}. Results are for {used}, not {name}.",
        DatasetSubstitutedWarning,
        stacklevel=3,
    )
    return result, used, reason


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    download: bool | None = None,
    substitute: bool = True,
) -> ImageData:
    """Load one split of an image dataset (``DATASETS``) as in-memory tensors; see the module docstring.

    ``download`` defaults to ``not offline()``; ``substitute`` allows ``SUBSTITUTES`` with a warning.
    """
    requested, split, root_path = _dataset_key(name), checks.choice("split", split, SPLITS), _resolve_root(root)
    off = downloads_off(download)
    data, used, reason = _with_substitute(
        requested, split, root_path, substitute, lambda n: _load_exact(*_cache_key(n, split, root_path, off))
    )
    return data if used == requested else dataclasses.replace(data, requested=requested, reason=reason)


def load_quietly(name: str, split: str = "train") -> ImageData:
    """:func:`load_dataset` without the substitution warning: for a unit of work in a worker, whose notebook's banner
    already states any substitution (``ImageData.name`` still says what was used)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetSubstitutedWarning)
        return load_dataset(name, split)


def clear_cache() -> None:
    """Forget the datasets loaded in this process and the download hosts found unreachable.

    The next ``load_dataset`` reads from disk (and probes the network) again.
    """
    _load_exact.cache_clear()
    data_sources.forget_unreachable()


def provision(
    names: Sequence[str] = DATASETS, *, root: str | Path | None = None, download: bool | None = None
) -> dict[str, str]:
    """Make each dataset available under the data root (both splits); return ``{requested: used}``.

    Uses a substitute (with a warning) where the requested dataset cannot be had; raises when neither can.
    """
    checked = [_dataset_key(name) for name in names]
    root_path = _resolve_root(root)
    off = downloads_off(download)

    def make_available(candidate: str, split: str) -> None:
        if candidate != "digits":  # digits ship with scikit-learn
            open_torchvision(candidate, split, root_path, off)

    used: dict[str, str] = {}
    for name in checked:
        for split in SPLITS:
            _, used[name], _ = _with_substitute(name, split, root_path, True, lambda n: make_available(n, split))
    return used


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.data",
        description="Make image datasets available under the data root ($BOOK_DATA, default <repo>/data).",
    )
    parser.add_argument("names", nargs="*", default=list(DATASETS), help=f"datasets to provision, from {DATASETS}")
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $BOOK_DATA or <repo>/data)")
    parser.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=None,
        help="allow downloads (default: unless BOOK_OFFLINE=1)",
    )
    args = parser.parse_args(argv)
    print(f"data root: {_resolve_root(args.root)}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DatasetSubstitutedWarning)
            used = provision(args.names, root=args.root, download=args.download)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}")
        return 1
    for requested, name in used.items():
        print(f"{requested:>14} -> {name}" + ("" if name == requested else "  (substitute)"))
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"note: {message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
