"""Put the book's JavaScript under ``_offline/vendor/`` (the site's ``_static/vendor/``) so the built site reads
offline: MathJax 3 (the math) and the ipywidgets HTML manager with require.js (the explorers). `make book` runs it
before Jupyter Book; `_config.yml` points Sphinx (``mathjax_path``) and MyST-NB (``nb_ipywidgets_js``) at these files
instead of a CDN.

The packages come from the npm registry through ``npm pack`` (the ordinary client; nothing else is reached), are
checked against the sha512 integrity pinned below, and only the files a page loads are kept (about 16 MB).
Run again, it does nothing while ``_offline/vendor/VERSIONS`` matches the pins. (Not ``_static/``: Jupyter Book
would then add every ``.js`` file under the static paths to every page.)

    python tools/offline_assets.py [--dest _offline/vendor]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (package, version, npm's sha512 integrity, folder under the destination, the package files to keep).
PACKAGES = [
    ("mathjax", "3.2.2",
     "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
     "mathjax", ("es5/tex-mml-chtml.js", "es5/input/", "es5/output/chtml", "es5/a11y/", "es5/sre/", "es5/ui/",
                 "es5/adaptors/", "LICENSE")),
    ("@jupyter-widgets/html-manager", "1.0.6",
     "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
     "html-manager", ("dist/",)),
    ("requirejs", "2.3.4",
     "sha512-qPD5gRrj6kGQ0ZySAJgqbArkaDqPMbQIT0zSZDkIv1mfA17w/tR2Faq5l2qqRf2CdQx6FWln9nUrgd2UDzb19A==",
     "requirejs", ("require.js",)),
]

#: Files of the kept folders that no page loads (html-manager's non-AMD build and its AMD library twin: ~7 MB).
DROP = {"dist/embed.js", "dist/libembed-amd.js"}


def versions_text() -> str:
    return "".join(f"{name}@{version}\n" for name, version, *_ in PACKAGES)


def _keep(member: str, keep: tuple[str, ...]) -> bool:
    rel = member.removeprefix("package/")
    if rel.endswith(".map") or rel in DROP:
        return False
    return any(rel == k or rel.startswith(k) for k in keep)


def fetch(name: str, version: str, integrity: str, workdir: Path) -> bytes:
    """The package's tarball from the npm registry (``npm pack``), checked against ``integrity``."""
    if shutil.which("npm") is None:
        raise SystemExit("offline_assets: `npm` is needed to fetch MathJax and the widget manager "
                         "(apt-get install npm); or copy a built _offline/vendor/ from another clone")
    out = subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"offline_assets: npm pack {name}@{version} failed: {out.stderr.strip()[-500:]}")
    tarball = workdir / out.stdout.strip().splitlines()[-1]
    data = tarball.read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity:
        raise SystemExit(f"offline_assets: {name}@{version}: integrity {digest} is not the pinned {integrity}")
    return data


def provision(dest: Path) -> bool:
    """Fill ``dest`` with the pinned packages' files; return False when it already held them."""
    stamp = dest / "VERSIONS"
    if stamp.is_file() and stamp.read_text() == versions_text():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "vendor"
        for name, version, integrity, folder, keep in PACKAGES:
            data = fetch(name, version, integrity, Path(tmp))
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = [m for m in tar.getmembers() if m.isfile() and _keep(m.name, keep)]
                for member in members:
                    target = staging / folder / member.name.removeprefix("package/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
            print(f"offline_assets: {name}@{version}: {len(members)} files")
        (staging / "VERSIONS").write_text(versions_text())
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(dest))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/offline_assets.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / "_offline" / "vendor")
    args = parser.parse_args(argv)
    changed = provision(args.dest)
    print(f"offline_assets: {'provisioned' if changed else 'up to date:'} {args.dest.resolve().relative_to(ROOT) if args.dest.resolve().is_relative_to(ROOT) else args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
