"""The book's structure follows ../shared/CONVENTIONS.md (checked by the shared booklint tool)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOKLINT = ROOT.parent / "shared" / "tools" / "booklint.py"


@pytest.mark.skipif(not BOOKLINT.exists(), reason="../shared is not beside the project")
def test_booklint_passes():
    result = subprocess.run([sys.executable, str(BOOKLINT), "--root", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not BOOKLINT.exists(), reason="../shared is not beside the project")
def test_the_prose_has_no_unglued_numbers():
    """Every number in the notebooks' Markdown is glued from the run or marked as the paper's (booklint --prose)."""
    result = subprocess.run([sys.executable, str(BOOKLINT), "--root", str(ROOT), "--prose"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def public_modules() -> list[str]:
    """``helpers`` itself and every module of it whose name does not start with an underscore (a subpackage's
    ``__init__`` only gathers its modules' names, so the modules are documented, not the package)."""
    names = ["helpers"]
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            continue
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def test_the_api_reference_documents_every_public_module():
    page = (ROOT / "book" / "helpers_reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. automodule:: (\S+)", page, re.M))
    missing = [name for name in public_modules() if name not in documented]
    assert not missing, f"book/helpers_reference.md lacks: {', '.join(missing)}"
    stale = sorted(documented - set(public_modules()))
    assert not stale, f"book/helpers_reference.md documents modules that do not exist: {', '.join(stale)}"
