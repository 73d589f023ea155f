"""The package's shape: no import cycle between files and no file over 400 lines.

The import graph is read from the source with :mod:`ast`, so nothing is imported and every import
counts, the ones inside functions included: a cycle hidden in a function body is still a cycle
between two files that cannot be understood (or tested, or moved) one without the other.

How an import becomes edges (one node per file; a package's ``__init__.py`` is the package's node):

- ``import mcmi.a.b`` and ``from mcmi.a.b import name`` depend on ``mcmi/a/b.py``;
  ``from mcmi.a import b`` depends on ``mcmi/a/b.py`` when ``b`` is a submodule, else on
  ``mcmi/a/__init__.py``; relative imports are resolved against the importing file's package.
- Importing ``mcmi.a.b`` runs ``mcmi/a/__init__.py`` first, and with it everything that package
  imports, so it also depends on every enclosing package's ``__init__.py``, except the packages
  that enclose the importing file itself (those are already running when it runs). Naming such a
  package outright still counts: ``import mcmi.a`` or ``from mcmi.a import name`` inside
  ``mcmi/a/b.py`` depends on ``mcmi/a/__init__.py``, which usually imports ``b``, a cycle. A
  submodule imports its siblings, never its own package's ``__init__``.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mcmi"
MAX_LINES = 400

# --------------------------------------------------------------------------- graph building


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (a package is its
    ``__init__.py``)."""
    out: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """The dotted name of every ``import`` anywhere in ``tree``, function bodies included, relative
    ones made absolute; ``from x import y`` gives ``x.y``, which :func:`_resolve` maps to the
    submodule ``x.y`` or, when ``y`` is a name defined in ``x``, to ``x``."""
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            for alias in node.names:
                yield f"{base}.{alias.name}" if alias.name != "*" else base


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module ``name`` loads: itself, or its longest prefix that is a module of the package
    (``x.y`` where ``y`` is a function of ``x`` resolves to ``x``); None outside the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _encloses(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """File-level import graph: module -> the modules its imports run (see the module docstring)."""
    modules = module_files(src, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imported_modules(tree, module, _is_package(path)):
            target = _resolve(name, modules)
            if target is None:
                continue
            if target != module:
                graph[module].add(target)  # named outright: even its own package's __init__
            # the packages around the target that are not already running around `module`
            parts = target.split(".")
            for i in range(1, len(parts)):
                dep = ".".join(parts[:i])
                if dep in modules and not _encloses(dep, module):
                    graph[module].add(dep)
    return graph


# --------------------------------------------------------------------------- cycle finding


def strongly_connected_components(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative, so deep graphs cannot hit the recursion limit): every
    strongly connected component, each in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component[::-1])
    return components


def shortest_cycle_through(graph: Mapping[str, Iterable[str]], start: str,
                           within: set[str]) -> list[str] | None:
    """A shortest closed path ``[start, ..., start]`` staying inside ``within`` (breadth-first
    search), or None when there is none."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = parent[node]
                    return [start, *path[:0:-1], start]
                if child in within and child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    return None


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Cycles as closed paths ``[a, b, ..., a]``: for each strongly connected component, a shortest
    cycle through each of its members not already on a reported one, so every file caught in a
    cycle appears in at least one readable chain (and the list is empty exactly when the graph
    is acyclic)."""
    cycles = []
    for component in strongly_connected_components(graph):
        members = set(component)
        covered: set[str] = set()
        for start in sorted(component):
            if start in covered:
                continue
            cycle = shortest_cycle_through(graph, start, members)
            if cycle is not None:
                cycles.append(cycle)
                covered.update(cycle)
    return cycles


def _file_of(module: str, modules: Mapping[str, Path], src: Path = SRC) -> str:
    return modules[module].relative_to(src).as_posix()


def test_cycle_finder_on_a_hand_made_graph():
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},  # a -> b -> c -> a
        "d": {"e"},
        "e": {"d"},  # d <-> e
        "f": {"f"},  # self-loop
        "g": {"a"},  # reaches a cycle but is in none
        "h": set(),
    }
    sccs = {tuple(sorted(c)) for c in strongly_connected_components(graph)}
    assert sccs == {("a", "b", "c"), ("d", "e"), ("f",), ("g",), ("h",)}
    cycles = sorted(find_cycles(graph))
    assert cycles == [["a", "b", "c", "a"], ["d", "e", "d"], ["f", "f"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_cycle_finder_gives_short_cycles_covering_every_member():
    # a -> b -> c -> d -> a and a -> d -> a: the two-step one is reported for a; b and c are on
    # no reported cycle yet, so a shortest one through b follows
    graph = {"a": {"b", "d"}, "b": {"c"}, "c": {"d"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "d", "a"], ["b", "c", "d", "a", "b"]]
    # two cycles sharing only x: both reported
    graph = {"x": {"p", "q"}, "p": {"x"}, "q": {"x"}}
    assert find_cycles(graph) == [["p", "x", "p"], ["q", "x", "q"]]


def test_import_graph_resolution(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "leaf.py": "import os\n",
        "user.py": "def f():\n    from pkg.sub import mod, helper\n    from . import leaf\n",
        "sub/__init__.py": "from .mod import helper\n",
        "sub/mod.py": "from ..leaf import x\nfrom pkg.sub import mod\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.user"] == {"pkg.sub", "pkg.sub.mod", "pkg.leaf"}  # function-local ones too
    assert graph["pkg.sub"] == {"pkg.sub.mod"}
    assert graph["pkg.sub.mod"] == {"pkg.leaf"}  # the package around it is already running
    assert graph["pkg.leaf"] == set()
    # but naming its own package's __init__ outright is an edge (and here a cycle)
    (pkg / "sub/mod.py").write_text("def f():\n    import pkg.sub\n")
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.sub", "pkg.sub.mod", "pkg.sub"]]
    # importing a submodule of another package runs that package's __init__ too
    (pkg / "sub/mod.py").write_text("from ..leaf import x\n")
    (pkg / "other.py").write_text("from pkg.sub.mod import helper\n")
    (pkg / "leaf.py").write_text("import pkg.other\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.other"] == {"pkg.sub", "pkg.sub.mod"}
    assert find_cycles(graph) == [["pkg.leaf", "pkg.other", "pkg.sub.mod", "pkg.leaf"],
                                  ["pkg.sub", "pkg.sub.mod", "pkg.leaf", "pkg.other", "pkg.sub"]]


def _file_graph() -> dict[str, set[str]]:
    """The import graph of src/mcmi with files (``mcmi/a/b.py``) as nodes."""
    modules = module_files()
    return {_file_of(m, modules): {_file_of(d, modules) for d in deps}
            for m, deps in import_graph().items()}


def test_no_import_cycles():
    graph = _file_graph()
    cycles = [" -> ".join(cycle) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles (function-local imports included):\n" + "\n".join(cycles)


def test_files_are_short():
    long = []
    for path in module_files().values():
        name = path.relative_to(SRC).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long.append(f"{name}: {lines} lines")
    assert not long, f"files over {MAX_LINES} lines (split them by concern):\n" + "\n".join(long)
