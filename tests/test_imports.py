"""Every module of bridge/ imports on its own, first, in a fresh interpreter, and the modules'
import-time imports form no cycle.

A cycle that happens to work in today's import order breaks as soon as some entry point imports
another module first (``ImportError: ... partially initialized module``), so a cycle fails the
test even when the import succeeds. The child interpreter wraps ``builtins.__import__`` and
records an edge for every import made while the importing bridge module is still initializing
(module-level imports, and imports of functions run at import time; lazy imports inside
functions called later are no edges, and ``TYPE_CHECKING`` imports never run).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import ROOT

#: Run as ``python -c PROBE <module> <package prefix>``: prints {"edges": ..., "cycle": ...}.
PROBE = r"""
import builtins, importlib, importlib.util, json, sys

module, prefix = sys.argv[1], sys.argv[2]
edges = {}
real_import = builtins.__import__


def _ours(name):
    return name == prefix or name.startswith(prefix + ".")


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    result = real_import(name, globals, locals, fromlist, level)
    g = globals or {}
    importer, spec = g.get("__name__", ""), g.get("__spec__")
    if not _ours(importer) or not getattr(spec, "_initializing", False):
        return result
    target = name
    if level:
        target = importlib.util.resolve_name("." * level + name, g.get("__package__"))
    subs = [f"{target}.{f}" for f in fromlist or ()]
    targets = [s if s in sys.modules else target for s in subs]
    for t in targets or [target]:
        if _ours(t) and t != importer:
            edges.setdefault(importer, set()).add(t)
    return result


builtins.__import__ = _import
importlib.import_module(module)
builtins.__import__ = real_import


def find_cycle():
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


print(json.dumps({"edges": {k: sorted(v) for k, v in edges.items()}, "cycle": find_cycle()}))
"""


def modules(package: Path) -> list[str]:
    """Every module of the package, from its files (nothing imported to find them).
    ``__main__`` is left out: importing it runs the command."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def probe(module: str, prefix: str, cwd: Path) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, module, prefix],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert res.returncode == 0, f"importing {module} first failed:\n{res.stderr}"
    result: dict[str, object] = json.loads(res.stdout.splitlines()[-1])
    return result


BRIDGE = modules(ROOT / "bridge")


def test_every_module_is_found() -> None:
    assert "bridge" in BRIDGE and "bridge.app" in BRIDGE and "bridge.mdns.wire" in BRIDGE
    assert len(BRIDGE) >= 25, BRIDGE


@pytest.mark.parametrize("module", BRIDGE)
def test_imports_first_without_a_cycle(module: str) -> None:
    cycle = probe(module, "bridge", ROOT)["cycle"]
    assert cycle is None, f"import cycle: {cycle}"


def test_the_probe_records_edges() -> None:
    """Without edges (a Python release that stops marking modules as initializing) the cycle
    check would pass vacuously."""
    edges = probe("bridge.app", "bridge", ROOT)["edges"]
    assert isinstance(edges, dict)
    assert "bridge.config" in edges["bridge.app"], edges


def test_the_probe_finds_a_cycle_that_imports_fine(tmp_path: Path) -> None:
    """a -> b -> a works when a is imported first (b only takes the module): still a cycle."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n\nVALUE = 1\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text("import cyc.b\n")
    (pkg / "d.py").write_text("def later():\n    from cyc import a\n\n    return a\n")
    assert probe("cyc.a", "cyc", tmp_path)["cycle"] == ["cyc.a", "cyc.b", "cyc.a"]
    assert probe("cyc.c", "cyc", tmp_path)["cycle"] == ["cyc.a", "cyc.b", "cyc.a"]
    assert probe("cyc.d", "cyc", tmp_path) == {"edges": {}, "cycle": None}


def imported_names(path: Path) -> set[str]:
    """Absolute names of the modules a file imports anywhere (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_harness_never_imports_tests() -> None:
    """loadtest/ and netlab/ run without the test tree; the gateway does too."""
    for top in ("bridge", "netlab", "loadtest"):
        for path in sorted((ROOT / top).rglob("*.py")):
            wrong = {n for n in imported_names(path) if n == "tests" or n.startswith("tests.")}
            assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_test_modules_never_import_each_other() -> None:
    """What several test modules share lives in tests/support/ or a conftest.py fixture."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        wrong = {
            n
            for n in imported_names(path)
            if n.startswith("tests.") and n.rsplit(".", 1)[-1].startswith(("test_", "conftest"))
        }
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_lab_tests_live_under_tests_integration() -> None:
    """The unit suite (--ignore=tests/integration) needs neither root nor namespaces."""
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if "integration" in path.relative_to(ROOT).parts:
            continue
        assert "netlab.lab" not in imported_names(path), f"{path.relative_to(ROOT)} uses the lab"
        marks = [
            node
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Attribute)
            and node.attr == "lab"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark"
        ]
        assert not marks, f"{path.relative_to(ROOT)} has a lab mark (line {marks[0].lineno})"
