"""The book's structure follows ../shared/CONVENTIONS.md (checked by the shared booklint tool)."""
from __future__ import annotations

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
