"""The package's shape, as README "Architecture" states it: layers and what each may import,
no import cycle, no module over 700 lines, thin facades, the benchmark kept apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lateinteract_pg

PACKAGE = Path(lateinteract_pg.__file__).parent
MAX_LINES = 700
MAX_FACADE_LINES = 400

# README "Architecture": each module's layer, and the layers each layer may import
LAYERS = {
    "foundation": {
        "errors", "types", "limits", "validation", "maxsim", "matrices", "pooling",
        "documents", "copy_rows", "fde",
    },
    "server": {
        "connections", "migrate", "sql_functions", "session", "catalog", "embedded",
        "embedded_files",
    },
    "engine": {"search", "writer", "indexes", "reads", "footprint"},
    "facades": {"collection", "store", "pool"},
    "models": {"encoders"},
    "applications": {"cli", "demo", "doctor", "tables", "corpus", "jsonl", "bench", "__main__"},
}  # fmt: skip
MAY_IMPORT = {
    "foundation": {"foundation"},
    "server": {"foundation", "server"},
    "engine": {"foundation", "server", "engine"},
    "facades": {"foundation", "server", "engine", "facades"},
    "models": {"foundation", "models"},
    "applications": set(LAYERS),
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def _name(path: Path) -> str:
    """``search.late`` for lateinteract_pg/search/late.py; ``search`` for its __init__."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _name(p): p for p in sorted(PACKAGE.rglob("*.py")) if not p.name.startswith("_") or p.name
    == "__init__.py"
}
MODULES.pop("", None)  # the package's own __init__: it re-exports the public names


def _imports(name: str, top_level_only: bool) -> set[str]:
    """The modules of the package that module ``name`` imports (lazily too, unless
    ``top_level_only``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif (node.module or "").startswith("lateinteract_pg."):
                target = (node.module or "").split(".")[1:]
            else:
                continue
            candidates = [".".join([*target, a.name]) for a in node.names]
            found.update(c if c in MODULES else ".".join(target) for c in candidates)
            found.add(".".join(target))  # "from . import x" runs the package's __init__ too
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("lateinteract_pg.")
                for a in node.names
                if a.name.startswith("lateinteract_pg.")
            )
    return {m for m in found if m and m != name and m in MODULES}


def test_every_module_has_a_layer() -> None:
    unknown = sorted({m.split(".")[0] for m in MODULES} - set(LAYER_OF))
    assert not unknown, f"modules missing from README's Architecture table: {unknown}"


def test_modules_import_only_from_their_own_or_lower_layers() -> None:
    wrong = []
    for name in MODULES:
        layer = LAYER_OF[name.split(".")[0]]
        for target in _imports(name, top_level_only=False):
            target_layer = LAYER_OF[target.split(".")[0]]
            if target_layer not in MAY_IMPORT[layer]:
                wrong.append(f"{name} ({layer}) imports {target} ({target_layer})")
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_imports_the_benchmark() -> None:
    importers = sorted(
        name
        for name in MODULES
        if not name.startswith("bench")
        and any(t.startswith("bench") for t in _imports(name, top_level_only=False))
    )
    assert importers == ["cli.runs"], importers  # its bench, scaling and load commands
    assert not any(t.startswith("bench") for t in _imports("cli.runs", top_level_only=True))


def test_no_import_cycle() -> None:
    graph = {name: _imports(name, top_level_only=True) for name in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dependency in sorted(graph[module]):
            visit(dependency, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    limit = MAX_FACADE_LINES if name in ("collection", "store") else MAX_LINES
    assert lines <= limit, f"{MODULES[name]} has {lines} lines, at most {limit}"


def test_the_checks_see_real_imports() -> None:
    """The parser above must find what we know is there, or every check passes vacuously."""
    assert {"search.late", "validation", "writer", "session"} <= set(MODULES)
    assert "search.planner" in _imports("search.late", top_level_only=True)
    assert "catalog" in _imports("writer", top_level_only=True)
    assert "collection" in _imports("store", top_level_only=True)
    assert "embedded" in _imports("store", top_level_only=False)
    assert "embedded" not in _imports("store", top_level_only=True)  # a lazy import
