"""Code run in a fresh interpreter (what a module imports, or does at import, is only seen
in a process that has not imported it yet)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fresh_python(code: str) -> str:
    """``code``'s standard output, run by ``python -c`` from the checkout; fails on an error."""
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return res.stdout
