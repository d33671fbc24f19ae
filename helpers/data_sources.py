"""Where dataset files come from: torchvision's classes and downloads, a quick reachability probe, Debian's
Fashion-MNIST package, and scikit-learn's digits. :mod:`helpers.data` turns them into tensors.

Downloads are tried only when allowed (``BOOK_OFFLINE`` unset, or ``download=True``) and only after a probe
of the host answers within :data:`PROBE_TIMEOUT` seconds, so an offline machine never hangs on a network call.
"""
from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import torch

from .io import atomic_write_bytes

__all__ = ["DEBIAN_PACKAGE", "DEBIAN_FASHION_MNIST", "IDX_FILES", "PACKAGE_IDX_DIR", "PROBE_TIMEOUT", "DOWNLOAD_TIMEOUT",
           "SourceUnavailable", "offline", "downloads_off", "unreachable_reasons", "has_idx_files", "open_torchvision",
           "digits_arrays", "forget_unreachable"]

DEBIAN_PACKAGE = "dataset-fashion-mnist"
PACKAGE_IDX_DIR = "usr/share/datasets/fashion-mnist"
DEBIAN_FASHION_MNIST = Path("/") / PACKAGE_IDX_DIR
APT_TIMEOUT = 300.0  # seconds for `apt-get download` (31 MB) and unpacking
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

PROBE_TIMEOUT = 3.0  # seconds to wait for a download host to accept a connection
DOWNLOAD_TIMEOUT = 30.0  # socket timeout during a download, so a stalled transfer fails instead of hanging
_UNREACHABLE_MEMO_SECONDS = 300.0  # an unreachable host is not probed again for this long
_unreachable: dict[tuple[str, int], tuple[float, str]] = {}


class SourceUnavailable(Exception):
    """The dataset cannot be had from any source; the message says why."""


def offline() -> bool:
    """True when ``$BOOK_OFFLINE`` is "1", "true" or "yes" (case-insensitive).

    Offline, ``load_dataset`` never tries a download unless called with ``download=True``.
    """
    return os.environ.get("BOOK_OFFLINE", "").strip().lower() in ("1", "true", "yes")


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


def unreachable_reasons(urls: Sequence[str], timeout: float = PROBE_TIMEOUT) -> list[str | None]:
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


def has_idx_files(folder: Path) -> bool:
    return all((folder / f"{stem}.gz").is_file() for stem in IDX_FILES)


def _install_debian_fashion_mnist(root: Path, source: Path) -> None:
    """Decompress Debian's Fashion-MNIST ``.gz`` files from ``source`` into ``<root>/FashionMNIST/raw`` (atomically).

    torchvision reads the decompressed IDX files; the ``.gz`` themselves differ from its checksums.
    """
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES:
        target = raw / stem
        if target.is_file():
            continue
        with gzip.open(source / f"{stem}.gz", "rb") as src:
            atomic_write_bytes(target, src.read())


def _unpack_debian_package(workdir: Path) -> Path:
    """Fetch Debian's ``dataset-fashion-mnist`` with ``apt-get download`` (no root needed) and unpack it in ``workdir``.

    Returns the folder that holds the ``.gz`` files. Raises ``SourceUnavailable`` saying why it could not.
    """
    tools = {tool: shutil.which(tool) for tool in ("apt-get", "dpkg-deb")}
    if not all(tools.values()):
        raise SourceUnavailable(f"no {' or '.join(t for t, path in tools.items() if not path)} to fetch {DEBIAN_PACKAGE}")
    step = f"apt-get download {DEBIAN_PACKAGE}"
    try:
        subprocess.run([tools["apt-get"], "download", "-q", DEBIAN_PACKAGE], cwd=workdir, check=True,
                       capture_output=True, text=True, timeout=APT_TIMEOUT)
        (package,) = workdir.glob(f"{DEBIAN_PACKAGE}_*.deb")
        step = f"dpkg-deb -x {package.name}"
        subprocess.run([tools["dpkg-deb"], "-x", str(package), str(workdir / "unpacked")], check=True,
                       capture_output=True, text=True, timeout=APT_TIMEOUT)
    except subprocess.CalledProcessError as error:
        raise SourceUnavailable(f"`{step}` failed ({error.stderr.strip()[-200:]})") from None
    except (subprocess.TimeoutExpired, ValueError, OSError) as error:
        raise SourceUnavailable(f"`{step}` failed ({type(error).__name__}: {error})") from None
    source = workdir / "unpacked" / PACKAGE_IDX_DIR
    if not has_idx_files(source):
        raise SourceUnavailable(f"{DEBIAN_PACKAGE} holds no IDX files under /{PACKAGE_IDX_DIR}")
    return source


def _offline_fashion_mnist(root: Path, downloads_off: str | None) -> None:
    """Put Fashion-MNIST under ``root`` from Debian's package: the installed copy, else (downloads allowed) a fetched one.

    Raises ``SourceUnavailable`` with the reasons when neither works.
    """
    try:
        if has_idx_files(DEBIAN_FASHION_MNIST):
            _install_debian_fashion_mnist(root, DEBIAN_FASHION_MNIST)
            return
        if downloads_off:
            raise SourceUnavailable(f"no offline copy in {DEBIAN_FASHION_MNIST}")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".debian-") as workdir:
            _install_debian_fashion_mnist(root, _unpack_debian_package(Path(workdir)))
    except SourceUnavailable:
        raise
    except Exception as error:  # unwritable root, damaged source files
        raise SourceUnavailable(f"copying {DEBIAN_PACKAGE}'s files failed ({type(error).__name__}: {error})") from None


def downloads_off(download: bool | None) -> str | None:
    """None when downloads are allowed (``download``, else not ``offline()``), else why they are not."""
    if download is None:
        return "downloads off (BOOK_OFFLINE=1)" if offline() else None
    return None if download else "downloads off (download=False)"


def open_torchvision(name: str, split: str, root: Path, downloads_off: str | None):
    """The torchvision dataset object (uint8 data) for one split, found in the documented order.

    ``downloads_off`` is None when a download may be tried. Raises ``SourceUnavailable`` with every reason.
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
        unreachable = unreachable_reasons(_download_urls(cls))
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
        except SourceUnavailable as error:
            reasons.append(str(error))
    raise SourceUnavailable("; ".join(reasons))


def digits_arrays(split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = torch.arange(len(digits.target)).numpy()
    train_index, test_index = train_test_split(index, test_size=0.2, random_state=0, stratify=digits.target)
    chosen = train_index if split == "train" else test_index
    x = torch.from_numpy(digits.images[chosen] / 16.0).to(torch.float32).unsqueeze(1)
    y = torch.from_numpy(digits.target[chosen]).to(torch.int64)
    return x, y, tuple(str(label) for label in range(10))


def forget_unreachable() -> None:
    """Forget the hosts found unreachable, so that the next download attempt probes them again."""
    _unreachable.clear()
