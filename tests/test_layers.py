"""The package's layers, as the README's Layout draws them: each module imports only from
its own layer or the layers below, no two modules import each other (directly or around a
circle, imports inside functions included), and no module takes another's private names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "py" / "covkb"
# bottom to top
LAYERS = ["input", "engine", "results", "api", "fhir", "analysis", "surfaces", "__main__"]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        found["covkb." + ".".join(parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every covkb import, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("covkb"):
            for alias in node.names:
                whole = f"{node.module}.{alias.name}"
                if whole in MODULES:  # from covkb.pkg import module
                    out.append((whole, [], node.lineno))
                elif node.module in MODULES:
                    out.append((node.module, [alias.name], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name in MODULES]
    return out


GRAPH = {module: {imported for imported, _, _ in _imports(path)} - {module}
         for module, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert all(module.split(".")[1] in LAYERS for module in MODULES), sorted(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_from_its_layer_or_below(module):
    above = sorted(imported for imported in GRAPH[module] if _layer(imported) > _layer(module))
    assert above == [], f"{module} imports from a higher layer: {above}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_takes_another_modules_private_names(module):
    private = [(imported, name, line) for imported, names, line in _imports(MODULES[module])
               for name in names if name.startswith("_") and not name.startswith("__")]
    assert private == []


def test_no_import_circle():
    done, on_path = set(), []

    def visit(module):
        if module in on_path:
            raise AssertionError("import circle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        for imported in sorted(GRAPH[module]):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in sorted(GRAPH):
        visit(module)


def test_the_check_fails_on_a_circle_and_on_an_import_from_above():
    """The three checks above can fail: a planted circle and an upward import are found."""
    graph = dict(GRAPH)
    graph["covkb.input.case"] = GRAPH["covkb.input.case"] | {"covkb.surfaces.cli"}
    assert _layer("covkb.surfaces.cli") > _layer("covkb.input.case")  # the layer check names it
    assert "covkb.input.case" in _reach(graph, "covkb.input.case")  # a circle through it
    assert "covkb.input.case" not in _reach(GRAPH, "covkb.input.case")


def _reach(graph, start):
    seen, stack = set(), [start]
    while stack:
        for nxt in graph[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_kb_atoms_are_read_by_the_engine_alone():
    """kb/'s atoms are read through covkb.engine: the shown vocabulary (Shown, Policy) and the
    internals the analysis commands read (INTERNAL). No module elsewhere shows one of them on
    a clingo control of its own (issue 28, item 4); a search program's own atoms it may."""
    import re

    from covkb.engine.vocabulary import INTERNAL, SHOWN

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "engine":
            continue
        for name, arity in re.findall(r"#show (\w+)/(\d+)\.", path.read_text()):
            if (SHOWN.get(name) == int(arity)) or (INTERNAL.get(name) == int(arity)):
                found.append(f"{path.relative_to(PACKAGE)}: #show {name}/{arity}")
    assert found == []
