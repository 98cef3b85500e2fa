"""The gateway as a router runs it: its hot-path modules compiled (build_ext.py), in a
separate directory, so the checkout's sources are never shadowed by stale binaries.

``build()`` installs a compiled copy into ``build/compiled/<hash of the sources>`` (cached:
the ~40 s compile happens once per source change); ``launch()`` gives the command line and
environment that run the gateway from it (``python -P``: the working directory, the
checkout, does not come first on ``sys.path``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_site: Path | None = None  # set by use(): gateways started by the benchmark run from here


def build(root: Path = REPO_ROOT) -> Path:
    digest = hashlib.sha256()
    for path in sorted(
        [
            *(root / "bridge").rglob("*.py"),
            *(root / "bridge").rglob("*.pyx"),
            root / "build_ext.py",
            root / "setup.py",
            root / "pyproject.toml",
        ]
    ):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    target = root / "build" / "compiled" / digest.hexdigest()[:16]
    if (target / "bridge").is_dir():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    env = dict(os.environ, MDNS_GATEWAY_COMPILE="1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(tmp),
            str(root),
        ],
        env=env,
        check=True,
        cwd=root,
    )
    tmp.rename(target)
    return target


def use(site: Path | None) -> None:
    """Run the benchmark's gateways from ``site`` (None: from the checkout, pure Python)."""
    global _site
    _site = site


def launch(log_level: str) -> tuple[list[str], dict[str, str]]:
    """(argv with a ``{config}`` placeholder, extra environment) for one gateway process."""
    argv = [
        sys.executable,
        "-P",
        "-m",
        "bridge",
        "run",
        "--config",
        "{config}",
        "--log-level",
        log_level,
    ]
    return argv, ({"PYTHONPATH": str(_site)} if _site is not None else {})


def describe() -> str:
    return "compiled (build_ext.py)" if _site is not None else "pure Python"
