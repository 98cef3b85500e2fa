"""Code run in a fresh interpreter (what a module imports, or does at import, is only seen
in a process that has not imported it yet)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fresh_python(code: str, env: Mapping[str, str] | None = None) -> str:
    """``code``'s standard output, run by ``python -c`` from the checkout (with ``env`` added to
    this process's environment); fails on an error."""
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **env} if env else None,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout
