"""The rules of docs/architecture.md, held against the code: read from source with
tinyreason.imports, so a change that breaks one fails here, not in review."""

from pathlib import Path

from tinyreason.imports import cycles, deferred_imports, import_graph, private_uses

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "tinyreason"
MAX_LINES = 400
# The one module allowed a library's private API, each use with a version check (train/compat.py)
COMPAT = "tinyreason.train.compat"


def _without_own_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package facade (stats/__init__.py re-exporting its modules) is imported before its
    modules: drop the edge from a module to its own parent package, which Python runs first
    and which cannot be blocked by the child. Edges into another package's __init__ stay:
    those are the cycles that leave a module half-initialized."""
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_no_import_circle_anywhere_in_the_package():
    graph = _without_own_parents(import_graph(PACKAGE))
    assert cycles(graph) == []


def test_the_layers_point_one_way():
    graph = import_graph(PACKAGE)
    below = {  # a package and what it must never import
        "tinyreason.data": ("tinyreason.eval", "tinyreason.train", "tinyreason.tune", "tinyreason.curriculum"),
        "tinyreason.model": ("tinyreason.data", "tinyreason.eval", "tinyreason.train", "tinyreason.config"),
        "tinyreason.config.sections": ("tinyreason.train", "tinyreason.eval", "tinyreason.config.experiment"),
        "tinyreason.config.evaluation": ("tinyreason.train", "tinyreason.eval", "tinyreason.config.experiment"),
        "tinyreason.eval": ("tinyreason.train", "tinyreason.tune", "tinyreason.curriculum", "tinyreason.stage"),
    }
    wrong = [(m, d) for m, deps in graph.items() for low, banned in below.items()
             if m == low or m.startswith(low + ".") for d in deps if d.startswith(banned)]
    assert wrong == []


def test_every_deferred_import_says_why():
    silent = [(m, line, name) for m, line, name, reason in deferred_imports(PACKAGE) if not reason]
    assert silent == []


def test_no_private_name_crosses_a_module_and_library_internals_stay_in_compat():
    leaks = [(m, line, name) for m, line, name in private_uses(PACKAGE) if m != COMPAT]
    assert leaks == []


def test_no_module_over_400_lines():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
