"""The shape of the package, checked with the standard library's ``ast``: stages import downwards only, no import
cycle (lazy imports inside functions included), SDKs only in adapters, no module too long to read in one sitting.

docs/architecture.md describes the same layers; a test here keeps the two honest.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "responder"
MAX_LINES = 500

# Lowest first. A module may import modules of its own layer or of a lower one, never a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("responder.errors", "responder.config", "responder.startup"),
    ("responder.intake",),
    ("responder.ports",),
    ("responder.adapters",),
    ("responder.investigation",),
    ("responder.containment",),
    ("responder.policy",),
    ("responder.report",),
    ("responder.event",),
    ("responder.coverage",),
    ("responder.service",),
    ("responder.bootstrap",),
    ("responder.handler", "responder.aftercare"),
    ("responder.cli",),
    ("responder.__main__", "responder"),
]
# The stages' own code talks to the outside only through ports; only the composition root and the operator commands
# (which build adapters from settings) may import an adapter.
MAY_IMPORT_ADAPTERS = ("responder.adapters", "responder.bootstrap", "responder.aftercare", "responder.cli")
SDKS = ("google", "kubernetes", "grpc", "proto", "urllib3", "requests")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every imported module name (absolute), at module level or inside functions."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:  # `from responder.x import y` may import the module responder.x.y
                yield f"{node.module}.{alias.name}", node.lineno


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, _ in _imports(path):
            if imported in modules and imported != name:
                graph[name].add(imported)
    return graph


def _layer(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS and to docs/architecture.md"
    return best[0]


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_stages_import_only_downwards() -> None:
    wrong = []
    for name, path in _modules().items():
        for imported, line in _imports(path):
            if imported in _modules() and _layer(imported) > _layer(name):
                wrong.append(f"{path.relative_to(ROOT)}:{line} {name} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_only_adapters_import_sdks_and_only_the_composition_root_imports_adapters() -> None:
    wrong = []
    for name, path in _modules().items():
        for imported, line in _imports(path):
            top = imported.split(".")[0]
            if top in SDKS and not name.startswith("responder.adapters"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports the SDK {imported}")
            if imported.startswith("responder.adapters") and not name.startswith(MAY_IMPORT_ADAPTERS):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports the adapter {imported}")
    assert not wrong, "\n".join(wrong)


def test_every_stage_package_says_what_it_owns() -> None:
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, f"{package.name}/__init__.py needs a docstring: what it owns, what it may import"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_too_long_to_read(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by concept"


def test_the_architecture_page_names_every_package() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        assert f"responder/{package.name}/" in page, f"docs/architecture.md does not mention responder/{package.name}/"


# The local cluster and the bench are code a newcomer changes too: the same length limit, and no function longer
# than a screen (tools/kubeenv.py's `up` once had 310 lines).
SCRIPT_DIRS = (ROOT / "tools", ROOT / "bench")
MAX_FUNCTION_LINES = 60


def _script_modules() -> list[Path]:
    return sorted(p for directory in SCRIPT_DIRS for p in directory.rglob("*.py"))


@pytest.mark.parametrize("path", _script_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_tool_or_bench_module_is_too_long_to_read(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by concept"


@pytest.mark.parametrize("path", _script_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_tool_or_bench_function_is_too_long_to_read(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: over {MAX_FUNCTION_LINES} lines, split into phases: {long}"


def test_every_model_builds_its_schema_on_first_use() -> None:
    """A pydantic model's schema costs CPU when it is built; built at import, every model would be paid for on a cold
    instance before the isolating writes, whether they need it or not (docs/performance.md, the cold path). So every
    model defers it (``defer_build``) to its first use; only Settings, read first thing, does not."""
    import pkgutil
    from importlib import import_module

    from pydantic import BaseModel

    import responder

    for info in pkgutil.walk_packages(responder.__path__, "responder."):
        if not info.name.endswith("__main__"):  # runs the command line
            import_module(info.name)

    def models(cls: type[BaseModel]) -> Iterator[type[BaseModel]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from models(sub)

    ours = {m for m in models(BaseModel) if m.__module__.startswith("responder.") and m.__name__ != "Settings"}
    assert len(ours) > 40
    eager = sorted(f"{m.__module__}.{m.__qualname__}" for m in ours if not m.model_config.get("defer_build"))
    assert eager == []
