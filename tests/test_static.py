"""Static checks run as tests: mypy --strict (config in pyproject.toml), the core's stub
against the compiled module (mypy.stubtest), ruff (lint and format), and the layers."""

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "tests" / "stubtest_allowlist.txt"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("mypy",), id="mypy"),
        pytest.param(
            ("mypy.stubtest", "fanwire._core", "--allowlist", str(ALLOWLIST)), id="stubtest"
        ),
        pytest.param(("ruff", "check", "python", "tests", "examples", "bench"), id="ruff"),
        pytest.param(
            ("ruff", "format", "--check", "python", "tests", "examples", "bench"), id="ruff-format"
        ),
    ],
)
def test_static_check_passes(command):
    result = run(*command)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


# -- the layers (docs/architecture.md) ------------------------------------------------------
PACKAGE = ROOT / "python" / "fanwire"
# Names of uvicorn's transport/protocol internals that only server/_uvicorn.py may touch.
UVICORN_INTERNALS = (r"__self__", r"get_extra_info", r"get_write_buffer_size", r"\.transport\b")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in [*PACKAGE.rglob("*.py"), PACKAGE / "_core.pyi"]:  # _core: the compiled one
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """The fanwire modules ``name`` imports at run time (not under TYPE_CHECKING)."""
    import ast

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                if base.startswith("fanwire"):
                    # ``from .. import _core`` imports the submodule, not the package's code
                    names = {f"{base}.{alias.name}" for alias in child.names}
                    submodules = names & set(_modules())
                    found.update(submodules or {base})
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("fanwire"))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_lower_layers_never_import_the_server():
    """The facade (Broker, Subscription), the Log backends and the core never depend on
    the HTTP surfaces; only the package's re-exports and ``python -m fanwire`` do."""
    modules = _modules()
    allowed = {"fanwire", "fanwire.__main__"}
    bad = {
        name: sorted(i for i in _imports(name, path) if i.startswith("fanwire.server"))
        for name, path in modules.items()
        if not name.startswith(("fanwire.server", "fanwire.testing")) and name not in allowed
    }
    assert not {k: v for k, v in bad.items() if v}


def test_no_import_cycle():
    modules = _modules()
    graph = {n: {i for i in _imports(n, p) if i in modules and i != n} for n, p in modules.items()}
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            # A package importing its own submodule (re-exports) is no cycle of code.
            if not all(
                b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(cycle)
            ):
                raise AssertionError(" -> ".join(cycle))
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            walk(nxt, [*path, node])
        done.add(node)

    for name in sorted(graph):
        walk(name, [])


def test_only_one_module_touches_uvicorn_internals():
    offenders = {
        str(path.relative_to(ROOT)): [
            word for word in UVICORN_INTERNALS if re.search(word, path.read_text())
        ]
        for name, path in _modules().items()
        if name != "fanwire.server._uvicorn" and not name.startswith("fanwire.testing")
    }
    assert not {k: v for k, v in offenders.items() if v}
