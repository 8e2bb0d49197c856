"""The package's import graph, read from source with `ast` (nothing is imported).

Two uses: tests that hold the design's rules (no import circles, a reason on each
deferred import of a heavy library, no private name used outside its module), and
`provenance.code_fingerprint`, which hashes a stage's module together with every
package module it can execute.

Edges are what runs, not what is written: `import a.b.c` executes `a/__init__.py`
and `a/b/__init__.py` too, so it adds an edge to each; imports inside functions
count (they run, only later); imports under `if TYPE_CHECKING:` never run and do
not count.
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path


class ImportGraphError(ValueError):
    """A module name the graph does not know (a typo, or the wrong package_dir)."""


@dataclass(frozen=True)
class _Import:
    """One imported module path as written, resolved to absolute, with where it sits."""

    lineno: int
    module: str  # the absolute module the statement names (`a.b` for `from a.b import c`)
    names: tuple[str, ...]  # for `from m import x, y`: ("x", "y"); empty for `import m`
    bindings: tuple[tuple[str, str], ...]  # (local name, the dotted name it stands for)
    in_function: bool
    end_lineno: int


# --------------------------------------------------------------------------- reading modules


def package_modules(package_dir: Path, package: str = "tinyreason") -> dict[str, Path]:
    """Every module of the package by dotted name; `pkg/__init__.py` is named `pkg`."""
    package_dir = Path(package_dir)
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    # In a package's __init__, `from . import x` means the package itself; elsewhere its parent.
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


class _ImportCollector(ast.NodeVisitor):
    """Collects every import statement that can run, noting whether it sits in a function."""

    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.imports: list[_Import] = []
        self._depth = 0

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the `else:` of a TYPE_CHECKING test does run
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            # `import a.b` binds `a` (the top package); `import a.b as x` binds x to a.b.
            if alias.asname:
                binding = (alias.asname, alias.name)
            else:
                binding = (alias.name.split(".")[0],) * 2
            self._add(node, alias.name, (), (binding,))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            module = _resolve_relative(self.module, self.is_package, node.level, node.module)
        names = tuple(a.name for a in node.names)
        bindings = tuple((a.asname or a.name, f"{module}.{a.name}") for a in node.names if a.name != "*")
        self._add(node, module, names, bindings)

    def _add(self, node: ast.stmt, module: str, names: tuple, bindings: tuple) -> None:
        self.imports.append(
            _Import(node.lineno, module, names, bindings, self._depth > 0, node.end_lineno or node.lineno)
        )


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(module: str, path: Path) -> list[_Import]:
    collector = _ImportCollector(module, path.name == "__init__.py")
    collector.visit(_parse(path))
    return collector.imports


# --------------------------------------------------------------------------- the graph


def _targets(imp: _Import, known: set[str]) -> set[str]:
    """Package modules that executing this import runs: each ancestor package, the module,
    and for `from m import x` the submodule `m.x` when there is one."""
    parts = imp.module.split(".")
    found = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    found |= {f"{imp.module}.{name}" for name in imp.names if name != "*"}
    return found & known


def import_graph(package_dir: Path, package: str = "tinyreason", deferred: bool = True) -> dict[str, set[str]]:
    """For every module of the package, the package modules it imports (directly).

    `deferred=False` leaves out imports inside functions: the graph of what runs at
    import time, where a cycle can fail with a partly initialised module.
    A module never gets an edge to itself: a package's `__init__` importing its own
    submodule implies the package, which is already executing, not a second run.
    """
    modules = package_modules(package_dir, package)
    known = set(modules)
    graph = {}
    for module, path in modules.items():
        edges = set()
        for imp in _imports(module, path):
            if deferred or not imp.in_function:
                edges |= _targets(imp, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, and self-loops; each sorted,
    the list sorted by its first module, so two runs over the same source agree."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    # Tarjan's algorithm, iterative: the real graph is small, but a recursive walk of a
    # long import chain would meet Python's recursion limit first.
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    found.append(_pop_component(node, stack, on_stack))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    loops = [c for c in found if len(c) > 1 or c[0] in graph.get(c[0], ())]
    return sorted(loops)


def _pop_component(node: str, stack: list[str], on_stack: set[str]) -> list[str]:
    component = []
    while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
            return sorted(component)


def _check_known(graph: dict[str, set[str]], module: str) -> None:
    if module not in graph:
        close = difflib.get_close_matches(module, list(graph), n=3)
        raise ImportGraphError(
            f"module {module!r} is not in the package graph; "
            f"use a dotted name such as {close or sorted(graph)[:3]}"
        )


def dependencies(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every package module that importing `module` can execute, `module` excluded."""
    _check_known(graph, module)
    seen: set[str] = set()
    todo = [module]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    seen.discard(module)
    return seen


# --------------------------------------------------------------------------- deferred imports


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (comment text, whether the line holds nothing but the comment)."""
    found = {}
    lines = source.splitlines()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                line = tok.start[0]
                alone = lines[line - 1][: tok.start[1]].strip() == ""
                found[line] = (tok.string.lstrip("#").strip(), alone)
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse already accepted the file; a tokenizer quirk only costs the comments
    return found


def _reason(imp: _Import, comments: dict, import_lines: set[int]) -> str | None:
    """The comment on the import's own lines, else the comment block just above it (skipping
    over the imports of the same run, so one comment can head a group of imports)."""
    for line in range(imp.lineno, imp.end_lineno + 1):
        if line in comments and not comments[line][1]:
            return comments[line][0]
    line = imp.lineno - 1
    while line in import_lines:
        line -= 1
    block = []
    while line in comments and comments[line][1]:
        block.insert(0, comments[line][0])
        line -= 1
    return " ".join(block) or None


def deferred_imports(package_dir: Path, package: str = "tinyreason") -> list[tuple[str, int, str, str | None]]:
    """Imports inside functions: (module, line, imported module, reason comment or None)."""
    found = []
    for module, path in package_modules(package_dir, package).items():
        imports = _imports(module, path)
        deferred = [imp for imp in imports if imp.in_function]
        if not deferred:
            continue
        comments = _comments(path.read_text(encoding="utf-8"))
        import_lines = {n for imp in imports for n in range(imp.lineno, imp.end_lineno + 1)}
        found += [(module, imp.lineno, imp.module, _reason(imp, comments, import_lines)) for imp in deferred]
    return found


# --------------------------------------------------------------------------- private names

# Underscore names that are public API by their library's own documentation.
_PUBLIC_UNDERSCORE = {"_exit", "_replace", "_asdict", "_fields", "_field_defaults", "_make"}


def _private_part(dotted: str) -> int | None:
    """Index of the first `_name` component (dunders are public: `__future__`, `__version__`)."""
    for i, part in enumerate(dotted.split(".")):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return i
    return None


def _allowed(module: str, dotted: str, modules: set[str]) -> bool:
    """A private module may be used by its own package: `a/_impl.py` from `a/x.py`."""
    if dotted.endswith(".__dict__"):
        return False  # a poke into a module's namespace, whatever the module
    i = _private_part(dotted)
    if i is None:
        return True
    owner = ".".join(dotted.split(".")[: i + 1])
    parent = owner.rpartition(".")[0]
    return owner in modules and module.startswith(parent + ".")


def _defined_names(tree: ast.Module) -> set[str]:
    """Names this module defines itself: its own private names are its to use."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _chain(node: ast.expr) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None when the chain does not start at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    return [node.id, *parts] if isinstance(node, ast.Name) else None


def _attribute_use(node: ast.Attribute, origins: dict[str, str], defined: set[str]) -> str | None:
    """The private name an attribute access reaches into, if it reaches into one."""
    chain = _chain(node.value)
    if chain and any(_private_part(p) is not None for p in chain[1:]):
        return None  # the inner access is the one reported
    if chain and chain[0] in ("self", "cls"):
        return None
    imported = bool(chain) and chain[0] in origins
    if node.attr == "__dict__":
        return ".".join([origins[chain[0]], *chain[1:], "__dict__"]) if imported else None
    if _private_part(node.attr) is None or node.attr in defined or node.attr in _PUBLIC_UNDERSCORE:
        return None
    if imported:
        return ".".join([origins[chain[0]], *chain[1:], node.attr])
    return f"{ast.unparse(node.value)}.{node.attr}"


def _call_use(node: ast.Call, origins: dict[str, str]) -> str | None:
    """`vars(module)` and `getattr(module, "_name")` on an imported name."""
    if not (isinstance(node.func, ast.Name) and node.args and isinstance(node.args[0], ast.Name)):
        return None
    target = origins.get(node.args[0].id)
    if target is None:
        return None
    if node.func.id == "vars" and len(node.args) == 1:
        return f"{target}.__dict__"
    if node.func.id in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) > 1:
        name = node.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str) and _private_part(name.value) == 0:
            return f"{target}.{name.value}"
    return None


def _module_private_uses(module: str, path: Path, modules: set[str]) -> list[tuple[str, int, str]]:
    tree = _parse(path)
    imports = _imports(module, path)
    found = []
    origins = {}  # local name -> the dotted name it was imported as
    for imp in imports:
        origins.update(imp.bindings)
        # A private module path is one use, however many names come out of it.
        private_path = _private_part(imp.module) is not None
        dotted = [imp.module] if private_path else [f"{imp.module}.{n}" for n in imp.names if n != "*"]
        found += [(module, imp.lineno, d) for d in dotted or [imp.module] if not _allowed(module, d, modules)]
    defined = _defined_names(tree)
    for node in ast.walk(tree):
        use = None
        if isinstance(node, ast.Attribute):
            use = _attribute_use(node, origins, defined)
        elif isinstance(node, ast.Call):
            use = _call_use(node, origins)
        if use and not _allowed(module, use, modules):
            found.append((module, node.lineno, use))
    return found


def private_uses(package_dir: Path, package: str = "tinyreason") -> list[tuple[str, int, str]]:
    """(module, line, dotted name) for each reach into another module's private name.

    Flagged: `from pkg.x import _y`, any import path with a `_part` (`ray.train.v2._internal`),
    `x._y` where `_y` is not defined in this module (an imported module's private, or
    `trainer._prepare_dataset` on some library's object), and `__dict__` / `vars()` /
    `getattr(m, "_y")` pokes into imported modules. A private module used inside its own
    package is allowed. Static, so a best effort: a local name that shadows an import,
    or a private attribute defined in this module under the same name, can hide a use.
    """
    modules = package_modules(package_dir, package)
    known = set(modules)
    found = []
    for module, path in modules.items():
        found += _module_private_uses(module, path, known)
    return sorted(set(found))
