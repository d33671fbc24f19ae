"""Image datasets as in-memory tensors, loaded through torchvision's own dataset classes.

A dataset is looked for in this order: files already under the data root (``$BOOK_DATA``, default
``<repo>/data``); a download, when allowed and the host answers within seconds; an offline source
for Fashion-MNIST, Debian's ``dataset-fashion-mnist``: the installed copy, else (downloads allowed)
the package fetched from Debian's archive with ``apt-get download``, which needs no root, since a
machine without internet may still reach its package registry. When the requested dataset cannot be had,
a substitute (see ``SUBSTITUTES``) is used with a warning, and ``ImageData.name`` says which one.

Loaded datasets are cached in this process and share their tensors with every caller: treat
``ImageData.x`` and ``ImageData.y`` as read-only (``x.clone()`` before any in-place change).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlsplit

import torch


from .io import atomic_write_bytes
from .paths import data_root

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "digits")
SUBSTITUTES: dict[str, str] = {"mnist": "fashion-mnist", "cifar10": "fashion-mnist"}
SPLITS: tuple[str, ...] = ("train", "test")
#: How datasets are named in prose and captions.
DATASET_NAMES = {
    "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "fashion_mnist": "Fashion-MNIST",
    "fashionmnist": "Fashion-MNIST", "kmnist": "KMNIST", "emnist": "EMNIST", "digits": "scikit-learn digits (8x8)",
    "cifar10": "CIFAR-10", "cifar-10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar-100": "CIFAR-100",
    "svhn": "SVHN", "imagenet": "ImageNet", "tiny-imagenet": "Tiny ImageNet",
}


def display_name(name: str) -> str:
    """The name of a dataset as the text writes it: ``display_name("fashion-mnist") == "Fashion-MNIST"``."""
    return DATASET_NAMES.get(str(name).lower(), str(name))


#: Debian's package of Fashion-MNIST, and where it puts the four IDX ``.gz`` files.
DEBIAN_PACKAGE = "dataset-fashion-mnist"
_PACKAGE_IDX_DIR = "usr/share/datasets/fashion-mnist"
DEBIAN_FASHION_MNIST = Path("/") / _PACKAGE_IDX_DIR
APT_TIMEOUT = 300.0  # seconds for `apt-get download` (31 MB) and unpacking
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

T = TypeVar("T")
PROBE_TIMEOUT = 3.0  # seconds to wait for a download host to accept a connection
DOWNLOAD_TIMEOUT = 30.0  # socket timeout during a download, so a stalled transfer fails instead of hanging
_UNREACHABLE_MEMO_SECONDS = 300.0  # an unreachable host is not probed again for this long
_unreachable: dict[tuple[str, int], tuple[float, str]] = {}


class DatasetSubstitutedWarning(UserWarning):
    """Warned when ``load_dataset`` returns a substitute for the requested dataset."""


class _Unavailable(Exception):
    """The dataset cannot be had; the message says why (internal)."""


def offline() -> bool:
    """True when ``$BOOK_OFFLINE`` is "1", "true" or "yes" (case-insensitive).

    Offline, ``load_dataset`` never tries a download unless called with ``download=True``.
    """
    return os.environ.get("BOOK_OFFLINE", "").strip().lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------------------------
# The in-memory dataset and its batches


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


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
    _check_batch_size(batch_size)
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


def _check_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    return key


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _resolve_root(root: str | Path | None) -> Path:
    return Path(root).expanduser().resolve() if root is not None else data_root()


def _torchvision_class(name: str) -> type:
    from torchvision import datasets

    return {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]


def _download_urls(cls: type) -> list[str]:
    if hasattr(cls, "mirrors"):
        return list(cls.mirrors)
    return [cls.url]


def _probe_target(url: str) -> tuple[str, int]:
    """The (host, port) a download of ``url`` connects to first: the proxy when one applies."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return proxy_parts.hostname or "", proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _unreachable_reasons(urls: Sequence[str], timeout: float = PROBE_TIMEOUT) -> list[str | None]:
    """For each URL, None when its host accepts a TCP connection within ``timeout`` seconds, else why not.

    The probes run in parallel daemon threads, so even hanging DNS lookups cost at most ``timeout`` in all.
    """
    targets = [_probe_target(url) for url in urls]
    now = time.monotonic()
    outcomes: dict[tuple[str, int], str | None] = {}
    threads = []

    def probe(target: tuple[str, int]) -> None:
        try:
            socket.create_connection(target, timeout=timeout).close()
            outcomes[target] = None
        except OSError as error:
            outcomes[target] = error.strerror or str(error) or type(error).__name__

    for target in dict.fromkeys(targets):
        memo = _unreachable.get(target)
        if memo and now - memo[0] < _UNREACHABLE_MEMO_SECONDS:
            continue
        thread = threading.Thread(target=probe, args=(target,), name=f"probe-{target[0]}", daemon=True)
        thread.start()
        threads.append((target, thread))
    deadline = now + timeout + 0.5
    for target, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if target in outcomes and outcomes[target] is None:
            _unreachable.pop(target, None)
        else:
            error = outcomes.get(target) or f"no answer in {timeout:g} s"
            _unreachable[target] = (time.monotonic(), f"cannot reach {target[0]} ({error})")
    return [None if target in outcomes and outcomes[target] is None else _unreachable[target][1] for target in targets]


def _has_idx_files(folder: Path) -> bool:
    return all((folder / f"{stem}.gz").is_file() for stem in _IDX_FILES)


def _install_debian_fashion_mnist(root: Path, source: Path) -> None:
    """Decompress Debian's Fashion-MNIST ``.gz`` files from ``source`` into ``<root>/FashionMNIST/raw`` (atomically).

    torchvision reads the decompressed IDX files; the ``.gz`` themselves differ from its checksums.
    """
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in _IDX_FILES:
        target = raw / stem
        if target.is_file():
            continue
        with gzip.open(source / f"{stem}.gz", "rb") as src:
            atomic_write_bytes(target, src.read())


def _unpack_debian_package(workdir: Path) -> Path:
    """Fetch Debian's ``dataset-fashion-mnist`` with ``apt-get download`` (no root needed) and unpack it in ``workdir``.

    Returns the folder that holds the ``.gz`` files. Raises ``_Unavailable`` saying why it could not.
    """
    tools = {tool: shutil.which(tool) for tool in ("apt-get", "dpkg-deb")}
    if not all(tools.values()):
        raise _Unavailable(f"no {' or '.join(t for t, path in tools.items() if not path)} to fetch {DEBIAN_PACKAGE}")
    step = f"apt-get download {DEBIAN_PACKAGE}"
    try:
        subprocess.run([tools["apt-get"], "download", "-q", DEBIAN_PACKAGE], cwd=workdir, check=True,
                       capture_output=True, text=True, timeout=APT_TIMEOUT)
        (package,) = workdir.glob(f"{DEBIAN_PACKAGE}_*.deb")
        step = f"dpkg-deb -x {package.name}"
        subprocess.run([tools["dpkg-deb"], "-x", str(package), str(workdir / "unpacked")], check=True,
                       capture_output=True, text=True, timeout=APT_TIMEOUT)
    except subprocess.CalledProcessError as error:
        raise _Unavailable(f"`{step}` failed ({error.stderr.strip()[-200:]})") from None
    except (subprocess.TimeoutExpired, ValueError, OSError) as error:
        raise _Unavailable(f"`{step}` failed ({type(error).__name__}: {error})") from None
    source = workdir / "unpacked" / _PACKAGE_IDX_DIR
    if not _has_idx_files(source):
        raise _Unavailable(f"{DEBIAN_PACKAGE} holds no IDX files under /{_PACKAGE_IDX_DIR}")
    return source


def _offline_fashion_mnist(root: Path, downloads_off: str | None) -> None:
    """Put Fashion-MNIST under ``root`` from Debian's package: the installed copy, else (downloads allowed) a fetched one.

    Raises ``_Unavailable`` with the reasons when neither works.
    """
    try:
        if _has_idx_files(DEBIAN_FASHION_MNIST):
            _install_debian_fashion_mnist(root, DEBIAN_FASHION_MNIST)
            return
        if downloads_off:
            raise _Unavailable(f"no offline copy in {DEBIAN_FASHION_MNIST}")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".debian-") as workdir:
            _install_debian_fashion_mnist(root, _unpack_debian_package(Path(workdir)))
    except _Unavailable:
        raise
    except Exception as error:  # unwritable root, damaged source files
        raise _Unavailable(f"copying {DEBIAN_PACKAGE}'s files failed ({type(error).__name__}: {error})") from None


def _downloads_off(download: bool | None) -> str | None:
    """None when downloads are allowed (``download``, else not ``offline()``), else why they are not."""
    if download is None:
        return "downloads off (BOOK_OFFLINE=1)" if offline() else None
    return None if download else "downloads off (download=False)"


def _open_torchvision(name: str, split: str, root: Path, downloads_off: str | None):
    """The torchvision dataset object (uint8 data) for one split, found in the documented order.

    ``downloads_off`` is None when a download may be tried. Raises ``_Unavailable`` with every reason.
    """
    cls = _torchvision_class(name)
    train = split == "train"
    reasons: list[str] = []
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError as error:
        if "not found" not in str(error):
            reasons.append(f"unreadable under {root} ({error})")
        else:
            reasons.append(f"not under {root}")
    except Exception as error:  # truncated or corrupted files
        reasons.append(f"unreadable under {root} ({type(error).__name__}: {error})")

    if downloads_off:
        reasons.append(downloads_off)
    else:
        unreachable = _unreachable_reasons(_download_urls(cls))
        if all(unreachable):
            reasons.append("offline: " + "; ".join(dict.fromkeys(r for r in unreachable if r)))
        else:
            previous = socket.getdefaulttimeout()
            socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
            try:
                return cls(str(root), train=train, download=True)
            except Exception as error:  # network, checksum, disk: report, then try the offline source
                reasons.append(f"download failed ({type(error).__name__}: {str(error).strip()[:200]})")
            finally:
                socket.setdefaulttimeout(previous)

    if name == "fashion-mnist":
        try:
            _offline_fashion_mnist(root, downloads_off)
            return cls(str(root), train=train, download=False)
        except _Unavailable as error:
            reasons.append(str(error))
    raise _Unavailable("; ".join(reasons))


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = torch.arange(len(digits.target)).numpy()
    train_index, test_index = train_test_split(index, test_size=0.2, random_state=0, stratify=digits.target)
    chosen = train_index if split == "train" else test_index
    x = torch.from_numpy(digits.images[chosen] / 16.0).to(torch.float32).unsqueeze(1)
    y = torch.from_numpy(digits.target[chosen]).to(torch.int64)
    return x, y, tuple(str(label) for label in range(10))


@functools.lru_cache(maxsize=6)
def _load_exact(name: str, split: str, root: str, downloads_off: str | None) -> ImageData:
    """The dataset ``name`` itself (no substitution), cached per (name, split, root); raises ``_Unavailable``."""
    if name == "digits":
        x, y, classes = _digits(split)
        return ImageData(x=x, y=y, name=name, requested=name, split=split, classes=classes)
    dataset = _open_torchvision(name, split, Path(root), downloads_off)
    if name == "cifar10":
        x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).to(torch.float32).div_(255).contiguous()
        y = torch.as_tensor(dataset.targets, dtype=torch.int64)
    else:
        x = dataset.data.unsqueeze(1).to(torch.float32).div_(255)
        y = dataset.targets.to(torch.int64)
    return ImageData(x=x, y=y, name=name, requested=name, split=split, classes=tuple(dataset.classes))


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
    except _Unavailable as error:
        reason = str(error)
    used = SUBSTITUTES.get(name)
    if not substitute or used is None:
        hint = f" (substitute=True would use {used})" if used else ""
        raise RuntimeError(f"{name} ({split}) is not available: {reason}{hint}. {_help(name, root)}")
    try:
        result = attempt(used)
    except _Unavailable as error:
        raise RuntimeError(
            f"{name} ({split}) is not available: {reason}; nor is its substitute {used}: {error}. {_help(name, root)}"
        ) from None
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
    requested, split, root_path = _check_name(name), _check_split(split), _resolve_root(root)
    off = _downloads_off(download)
    data, used, reason = _with_substitute(
        requested, split, root_path, substitute, lambda n: _load_exact(*_cache_key(n, split, root_path, off))
    )
    return data if used == requested else dataclasses.replace(data, requested=requested, reason=reason)


def clear_cache() -> None:
    """Forget the datasets loaded in this process and the download hosts found unreachable.

    The next ``load_dataset`` reads from disk (and probes the network) again.
    """
    _load_exact.cache_clear()
    _unreachable.clear()


def provision(
    names: Sequence[str] = DATASETS, *, root: str | Path | None = None, download: bool | None = None
) -> dict[str, str]:
    """Make each dataset available under the data root (both splits); return ``{requested: used}``.

    Uses a substitute (with a warning) where the requested dataset cannot be had; raises when neither can.
    """
    checked = [_check_name(name) for name in names]
    root_path = _resolve_root(root)
    off = _downloads_off(download)

    def make_available(candidate: str, split: str) -> None:
        if candidate != "digits":  # digits ship with scikit-learn
            _open_torchvision(candidate, split, root_path, off)

    used: dict[str, str] = {}
    for name in checked:
        for split in SPLITS:
            _, used[name], _ = _with_substitute(name, split, root_path, True, lambda n: make_available(n, split))
    return used


def _main(argv: Sequence[str] | None = None) -> int:
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
    raise SystemExit(_main())
