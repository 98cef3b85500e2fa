"""The gateway's entry points run as processes (``python -m bridge``), from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_module(
    *argv: str, cwd: Path | None = None, ns: str | None = None, exe: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m bridge *argv`` (or ``exe *argv``) as a process, optionally in netns ``ns``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = (exe or [sys.executable, "-m", "bridge"]) + list(argv)
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, cwd=cwd or ROOT, env=env, check=False
    )
