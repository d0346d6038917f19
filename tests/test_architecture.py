"""The architecture as rules a test can check: read dropbox_sync/ with ``ast``, import nothing.

Each concept has one home (docs/design.md §6): these fail when a second one
appears, or when two modules import each other, whether at module level,
inside a function (a lazy import hides a cycle, it does not remove it) or
under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dropbox_sync"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in MODULES.items()}


def imported(name: str) -> Iterator[tuple[str, int]]:
    """(module, line) for every import in module ``name``, wherever it stands; relative ones made absolute."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from dropbox_sync import paths` imports the module dropbox_sync.paths
                yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base), node.lineno


def our_imports(name: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for target, line in imported(name):
        while target and target not in MODULES:  # dropbox_sync.config.Config -> dropbox_sync.config
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)
            # Importing dropbox_sync.config.mapping runs dropbox_sync/config/__init__.py first: a package
            # whose __init__ imports this module back is a cycle too (not for the package's own modules,
            # whose package is always imported before them).
            package = target.rpartition(".")[0]
            while package and package != "dropbox_sync" and not name.startswith(package + "."):
                if package in MODULES and package != name:
                    found.setdefault(package, line)
                package = package.rpartition(".")[0]
    return found


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {name: our_imports(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in MODULES:
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles() -> None:
    problems = []
    for component in cycles():
        edges = [f"{a} -> {b} (line {our_imports(a)[b]})" for a in component for b in our_imports(a) if b in component]
        problems.append("cycle: " + "; ".join(edges))
    assert not problems, "\n".join(problems)


# Which module alone may import a library: the one place that knows how we use it.
ONLY_USER = {
    "httpx": "dropbox_sync.pipeline.client",
    "platformdirs": "dropbox_sync.paths",
    "tomllib": "dropbox_sync.config",  # config.read_toml: the one reader of config.toml
    "truststore": "dropbox_sync.tls",  # tls.client_context: the one TLS context builder
    "smtplib": "dropbox_sync.notify.mail",
}


@pytest.mark.parametrize("library", sorted(ONLY_USER))
def test_a_library_has_one_user(library: str) -> None:
    users = sorted(
        f"{name}:{line}"
        for name in MODULES
        for target, line in imported(name)
        if (target == library or target.startswith(library + ".")) and name != ONLY_USER[library]
    )
    assert not users, f"only {ONLY_USER[library]} may import {library}; also imported by {users}"


def test_only_log_adds_loguru_sinks() -> None:
    adds = sorted(
        f"{name}:{node.lineno}"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "logger"
        and name != "dropbox_sync.log"
    )
    assert not adds, f"logger.add( outside log.py: {adds}"


def exception_names() -> set[str]:
    """Every class errors.py defines, plus the builtin exception names."""
    builtin = {
        name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
    }
    ours = {node.name for node in ast.walk(TREES["dropbox_sync.errors"]) if isinstance(node, ast.ClassDef)}
    return builtin | ours


def test_every_exception_class_is_in_errors_py() -> None:
    known = exception_names()
    strays = []
    for name, tree in TREES.items():
        if name == "dropbox_sync.errors":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases}
            if bases & known or any(base.endswith(("Error", "Exception")) for base in bases):
                strays.append(f"{name}:{node.lineno} {node.name}")
    assert not strays, f"exception classes belong in errors.py: {strays}"


STATE_FILE_NAMES = ("journal.sqlite3", "status.json", "notify.json", "launchd.log", "dropbox-sync_")


def test_state_file_names_are_spelled_once_in_paths_py() -> None:
    # A path is a bare name (no spaces); a message may name the file for a person
    # ("notify.json: rows is a dict, not a list") and docstrings describe them.
    spelled = sorted(
        f"{name}:{node.lineno} {node.value!r}"
        for name, tree in TREES.items()
        if name != "dropbox_sync.paths"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(STATE_FILE_NAMES)
        and not any(c.isspace() for c in node.value)
    )
    assert not spelled, f"state and log file names belong in paths.py: {spelled}"


def test_the_rules_see_what_they_guard() -> None:
    """The rules are only worth something if they find the real uses (no vacuous pass)."""
    assert "dropbox_sync.config" in our_imports("dropbox_sync.cli") or any(
        "dropbox_sync.config" in our_imports(name) for name in MODULES
    )
    assert any(target == "httpx" for target, _ in imported("dropbox_sync.pipeline.client"))
    assert any(target == "tomllib" for target, _ in imported("dropbox_sync.config"))
    assert "dropbox_sync.emulator.handler" in our_imports("dropbox_sync.emulator.server")
    assert module_aliases("dropbox_sync.pipeline.discover")["workdirs"] == "dropbox_sync.pipeline.workdirs"
    sample = ast.parse(
        "from dropbox_sync.pipeline import workdirs\nfrom .archive_names import _cut\nworkdirs._kept_folders(x)\n"
    )
    assert [taken for _, _, taken in private_imports("dropbox_sync.pipeline.claim", sample)] == [
        "dropbox_sync.pipeline.archive_names._cut",
        "dropbox_sync.pipeline.workdirs._kept_folders",
    ]


def import_base(name: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in module ``name`` reads from (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def module_aliases(name: str, tree: ast.AST | None = None) -> dict[str, str]:
    """The local names module ``name`` binds to modules of ours (``from dropbox_sync.pipeline import archive``
    binds ``archive``; ``import dropbox_sync.paths as paths`` binds ``paths``), wherever the import stands."""
    aliases = {}
    for node in ast.walk(tree or TREES[name]):
        if isinstance(node, ast.Import):
            aliases |= {alias.asname: alias.name for alias in node.names if alias.asname and alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = import_base(name, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


def is_private(attribute: str) -> bool:
    return attribute.startswith("_") and not (attribute.startswith("__") and attribute.endswith("__"))


def private_imports(name: str, tree: ast.AST | None = None) -> list[tuple[str, int, str]]:
    """(module, line, ``source._x``) wherever module ``name`` takes a private name from another
    module of ours: ``from source import _x``, or ``source._x`` on a module it imported."""
    found = []
    aliases = module_aliases(name, tree)
    for node in ast.walk(tree or TREES[name]):
        if isinstance(node, ast.ImportFrom):
            source = import_base(name, node)
            if source.startswith("dropbox_sync") and source != name:
                found += [(name, node.lineno, f"{source}.{a.name}") for a in node.names if is_private(a.name)]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id, name) != name
            and is_private(node.attr)
        ):
            found.append((name, node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
    return found


def test_no_module_takes_a_private_name_from_another() -> None:
    """A name starting with ``_`` is its module's own business: a module that needs it asks for
    a public name (with a docstring) in the module that defines it, so the concept has one home."""
    found = [f"{name}:{line} {taken}" for module in MODULES for name, line, taken in private_imports(module)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


MAX_MODULE_LINES = 420  # "modules under about 400 lines" (issue 13), with a little slack


def test_every_module_is_short_enough_to_read() -> None:
    long = sorted(
        f"{name}: {lines} lines"
        for name, path in MODULES.items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    )
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split one by concept): {long}"
