"""Every repository path a doc or a comment names exists.

Docs and comments point the reader at files (``responder/containment/capture.py``, ``docs/operations.md``), at
modules (``responder.policy.rules``) and at names in them (``responder.startup.ImportGate``). When code moves, nothing
else fails on a pointer left behind, so this test reads them all: README.md, docs/*.md, terraform/README.md,
tests/README.md; the comments of deploy/kubernetes/*.yaml, terraform/*.tf, policy.yaml, the Makefile, mk/*.mk,
.ci/run, pyproject.toml and tests/fixtures; the docstrings and comments of every Python file in responder/, tools/,
bench/, tests/ and main.py. A failure names the file and line of each pointer that leads nowhere.

What counts as a pointer, so that nothing else does (URLs, API paths like ``pods/exec``, label keys like
``responder.rsr.dev/quarantine`` and placeholders like ``responder.x`` are not files):

- a path whose first part is one of the repository's top folders (``responder/``, ``tests/``, ...): it must exist
  from the repository root or the naming file's folder; a glob (``mk/*.mk``) must match something; ``x/y`` may
  stand for the module ``x/y.py``, and ``x/y.name`` for a name in it;
- a file path whose first part is a folder under ``responder/`` or ``tests/`` (``containment/undo.py``, as
  architecture.md writes it): from there;
- a Markdown link that is not a URL, from the naming file's folder (its ``#anchor`` dropped);
- a bare source file name (``rbac.yaml``, ``isolate.py``): some file in the repository has that name;
- a dotted name under ``responder``, ``tests``, ``tools`` or ``bench``: its longest module prefix exists, and the
  first name after it is defined in that module;
- in a package's docstring (``responder/*/__init__.py``), a lowercase name in double backticks: a module of that
  package or of ``responder`` (that is how those docstrings list their modules).

Paths that .gitignore lists (``bench/results.json``, ``.testenv/...``) are what a run makes: they count as existing.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import io
import os
import re
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".testenv", ".testenv-bench", "__pycache__", ".pytest_cache", ".mypy_cache"}
TOP = ("responder", "docs", "tests", "deploy", "terraform", "tools", "bench", "mk", ".ci")
INNER = (ROOT / "responder", ROOT / "tests")  # their folders start paths too: `containment/undo.py`
SOURCE = "py|md|ya?ml|tf|mk|toml|go"  # a bare name with one of these is the repository's; `OUT.json` is a placeholder
FILE = rf"{SOURCE}|mod|sum|json|txt|sh|tfvars"

_PART = r"[A-Za-z0-9_*][\w.*-]*"
PATH = re.compile(rf"(?<![\w./:@$-])(\.{{1,2}}/)?({_PART}(?:/{_PART})+/?|{_PART}/)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
BARE = re.compile(rf"(?<![\w./:@$-])([\w-]+\.(?:{SOURCE}))(?![\w/-]|\.\w)")
DOTTED = re.compile(r"(?<![\w./:@-])((?:responder|tests|tools|bench)(?:\.[A-Za-z_]\w*)+)")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+|\bwww\.\S+")
NOT_MODULES = re.compile(rf"^responder\.rsr\.dev\b|\.(?:{FILE})$|^\w+(?:\.[a-z])+$")
PACKAGE_MODULE = re.compile(r"``([a-z_][a-z0-9_]*)``")


def _files() -> Iterator[Path]:
    yield from (ROOT / name for name in ("README.md", "Makefile", ".ci/run", "policy.yaml", "pyproject.toml"))
    yield from (ROOT / "terraform" / "README.md", ROOT / "main.py")
    yield from sorted(p for p in (ROOT / "tests").glob("README.md"))
    for folder, pattern in (("docs", "*.md"), ("deploy/kubernetes", "*.yaml"), ("terraform", "*.tf"), ("mk", "*.mk")):
        yield from sorted((ROOT / folder).glob(pattern))
    yield from sorted((ROOT / "tests" / "fixtures").rglob("*.yaml"))
    for folder in ("responder", "tools", "bench", "tests"):
        yield from sorted(p for p in (ROOT / folder).rglob("*.py") if p != Path(__file__).resolve())


def _python_lines(text: str) -> Iterator[tuple[int, str]]:
    """The comments and docstrings of a Python source, as (line number, text)."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    lines = text.splitlines()
    for first in _docstrings(ast.parse(text)):
        for number in range(first.lineno, (first.end_lineno or first.lineno) + 1):
            yield number, lines[number - 1]


def _docstrings(node: ast.AST) -> Iterator[ast.stmt]:
    """The docstring statements of a module and of the classes and functions in it (statements only: a walk of
    every expression would cost seconds)."""
    body = getattr(node, "body", None)
    if not isinstance(body, list):
        return
    first = body[0] if body else None
    owner = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    constant = first.value if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else None
    if owner and first is not None and constant is not None and isinstance(constant.value, str):
        yield first
    for field in ("body", "orelse", "finalbody", "handlers"):
        for child in getattr(node, field, None) or ():
            if isinstance(child, ast.stmt | ast.ExceptHandler):
                yield from _docstrings(child)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The prose of one file: all of a Markdown file, a Python file's docstrings and comments, else its comments."""
    text = path.read_text()
    if path.suffix == ".py":
        yield from _python_lines(text)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if path.suffix == ".md":
            yield number, line
        elif "#" in line:
            yield number, line[line.index("#") :]


@cache
def _ignored() -> tuple[str, ...]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return tuple(line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#"))


def _generated(relative: str) -> bool:
    """A path .gitignore lists, or one inside a folder it lists: what a run makes, never committed."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in _ignored():
        if "/" in pattern:
            if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def _found(path: str, base: Path) -> bool:
    if any(c in path for c in "*?["):
        return any(base.glob(path))
    if (base / path).exists() or (base / f"{path}.py").exists():
        return True
    module, dot, name = path.rpartition(".")
    if dot and "/" in module and (base / f"{module}.py").is_file():  # tests/support/google_fakes.parse_log_filter
        return _dotted_ok((base / module).resolve().relative_to(ROOT).as_posix().replace("/", ".") + "." + name)
    try:
        return _generated((base / path).resolve().relative_to(ROOT).as_posix())
    except ValueError:
        return False


def _path_ok(dots: str, path: str, here: Path) -> bool | None:
    """Whether the path exists; None when it is not taken for one of this repository's paths."""
    first = path.split("/", 1)[0]
    if dots or first in TOP:
        return any(_found(dots + path.rstrip("/"), base) for base in (ROOT, here))
    inner = [base for base in INNER if (base / first).is_dir()]
    if inner and re.search(rf"\.(?:{FILE})$", path):
        return any(_found(path, base) for base in inner)
    return None


@cache
def _names() -> frozenset[str]:
    """Every file name in the repository."""
    names: set[str] = set()
    for _, folders, files in os.walk(ROOT):
        folders[:] = [f for f in folders if f not in SKIP_DIRS and not f.startswith(".venv")]
        names.update(files)
    return frozenset(names)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _dotted_ok(name: str) -> bool:
    """The longest module prefix exists and defines the first name after it (``a.b.Class.method``: ``Class``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        module = ".".join(parts[:end])
        if _module_exists(module):
            return end == len(parts) or hasattr(importlib.import_module(module), parts[end])
    return False


def _broken_in_line(line: str, here: Path) -> Iterator[str]:
    """The pointers in one line of prose that lead nowhere (``here``: the naming file's folder)."""
    line = URL.sub(" ", line)
    for match in LINK.finditer(line):
        target = match.group(1).split("#", 1)[0]
        if ("/" in target or "." in target) and not (here / target).exists():
            yield target
    for match in PATH.finditer(line):
        dots, path = match.group(1) or "", match.group(2).rstrip(".")
        if _path_ok(dots, path, here) is False:
            yield dots + path
    for match in BARE.finditer(line):
        if match.group(1) not in _names() and not _generated(match.group(1)):
            yield match.group(1)
    for match in DOTTED.finditer(line):
        name = match.group(1).rstrip(".")
        if not NOT_MODULES.search(name) and not _dotted_ok(name):
            yield name


def broken_pointers() -> list[str]:
    """``file:line: pointer`` for every pointer that leads nowhere."""
    broken = []
    for path in _files():
        for number, line in _lines(path):
            for pointer in _broken_in_line(line, path.parent):
                broken.append(f"{path.relative_to(ROOT)}:{number}: {pointer}")
    return broken


def test_every_path_a_doc_or_comment_names_exists() -> None:
    assert broken_pointers() == []


def _package_docstring_misses(package: Path) -> list[str]:
    """The names a package's docstring lists as its modules (lowercase, in double backticks) that are none."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    known = {p.stem for p in package.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    known |= {p.stem for p in (ROOT / "responder").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    return [name for name in PACKAGE_MODULE.findall(doc) if name not in known]


def test_every_module_a_package_docstring_lists_exists() -> None:
    packages = sorted(p.parent for p in (ROOT / "responder").glob("*/__init__.py"))
    missing = {f"{p.relative_to(ROOT)}/__init__.py": _package_docstring_misses(p) for p in packages}
    assert {where: names for where, names in missing.items() if names} == {}


@pytest.mark.parametrize(
    "line",
    [
        # Each as it was once left behind (issue 28): a removed package, a module merged into another.
        "precedence is env > policy file > built-in defaults (see ``policy.py``).",
        "# (responder/actions/capture.py, `process_tree: true` in the policy)",
        "#     of responder/policy.py (PROTECTED_FLOOR), which configuration cannot lower.",
        "Not to be confused with Kubernetes ownerReferences (``responder.investigation.owner_chain``)",
        "the runner (``responder.containment.runner.Missing``), `tests/support/celguard.missing`",
        "see [the tiers](tiers.md#node) and `tests/guard/test_gone.py`, [ops](../docs/gone.md)",
        "a module in `containment/gone.py`; `tools/gone`",
    ],
)
def test_a_stale_pointer_is_found(line: str) -> None:
    assert list(_broken_in_line(line, ROOT / "docs")) != []


def test_a_package_docstring_naming_a_module_that_is_gone_is_found(tmp_path: Path) -> None:
    """As containment's once named ``connect`` after it merged into the runner."""
    (tmp_path / "__init__.py").write_text('"""Reaching the cluster (``connect``) and the ``runner``; ``Finding``."""\n')
    (tmp_path / "runner.py").write_text("")
    assert _package_docstring_misses(tmp_path) == ["connect"]


@pytest.mark.parametrize(
    "line",
    [
        "see https://kubernetes.io/docs/concepts/services-networking/network-policies/ and k8s.io/apiserver",
        "label `responder.rsr.dev/quarantine=true`; exec on pods/exec; networking.k8s.io/v1 and apps/v1",
        "projects/P/locations/L/clusters/C, organizations/1/sources/2/findings/old, /proc/net/tcp",
        "writes bench/results.json; kubeconfigs in .testenv/responder.kubeconfig; terraform/terraform.tfvars",
        "`responder/containment/capture.py`, `containment/undo.py`, `mk/*.mk`, [ops](operations.md#outcomes)",
        "``responder.startup.ImportGate`` and ``responder.policy.rules``; python -m bench.run; see bench.mk",
        "replay FINDING.json > OUT.json; `from responder.x import y`; integration/e2e; ``[title](url)``",
        "tools/kubeenv; tests/support/google_fakes.parse_log_filter; the unit/ and integration/ tiers",
    ],
)
def test_what_is_not_a_stale_pointer_passes(line: str) -> None:
    assert list(_broken_in_line(line, ROOT / "docs")) == []
