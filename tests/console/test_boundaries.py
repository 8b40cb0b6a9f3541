"""The console's boundary: no broker, no monitor, no terminal, no credentials."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("fxnb.broker", "fxnb.monitor", "MetaTrader5", "mt5linux", "rpyc")
CONSOLE_SOURCES = [*sorted((ROOT / "fxnb" / "widgets").glob("*.py")), ROOT / "fxnb" / "api.py"]
APPS = sorted((ROOT / "voila_apps").rglob("*.ipynb"))


def test_console_modules_do_not_import_the_broker_layer_transitively() -> None:
    code = (
        "import sys, json\n"
        "import fxnb.widgets, fxnb.api\n"
        "from fxnb.widgets import Dashboard\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("__import__", "import_module"):
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


@pytest.mark.parametrize("path", CONSOLE_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_console_source_has_no_forbidden_import_or_credentials(path: Path) -> None:
    source = path.read_text()
    bad = sorted(n for n in _imports(ast.parse(source)) if n.startswith(FORBIDDEN) or n == "fxnb.credentials")
    assert bad == []
    assert ".credentials" not in source and "load_credentials" not in source


def test_there_is_a_dashboard_app() -> None:
    assert ROOT / "voila_apps" / "dashboard.ipynb" in APPS


@pytest.mark.parametrize("path", APPS, ids=lambda p: p.name)
def test_voila_apps_code_cells_stay_thin_and_clean(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = [("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in nb["cells"] if c["cell_type"] == "code"]
    assert 1 <= len(code) <= 2, "a Voila app holds no logic: import, build, display, start"
    for cell in code:
        tree = ast.parse(cell)
        bad = sorted(n for n in _imports(tree) if n.startswith(FORBIDDEN) or n == "fxnb.credentials")
        assert bad == [], f"{path.name} imports {bad}"
        assert ".credentials" not in cell
        assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef | ast.For | ast.While) for n in ast.walk(tree))
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), "apps are stored clean"
