"""The import graph is read from source: synthetic packages written into tmp_path pin each rule."""

import textwrap
from pathlib import Path

import pytest

from tinyreason.imports import (
    ImportGraphError,
    cycles,
    dependencies,
    deferred_imports,
    import_graph,
    private_uses,
)

REAL_PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "tinyreason"


def write_package(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (path relative to the package dir -> source) as package `demo`."""
    package_dir = root / "demo"
    for rel, source in files.items():
        path = package_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package_dir


@pytest.fixture
def demo(tmp_path):
    return write_package(tmp_path, {
        "__init__.py": "",
        "a.py": """
            from demo.sub import y          # y is a submodule: resolved to demo.sub.y
            def _hidden():
                return 1
        """,
        "sub/__init__.py": "from demo.sub.x import X\n",
        "sub/x.py": """
            from typing import TYPE_CHECKING
            from . import y                 # relative: demo.sub.y
            from .. import a                # relative, two levels: demo.a
            if TYPE_CHECKING:
                from demo.c import C        # never runs
            else:
                from demo import d          # does run
            X = 1
        """,
        "sub/y.py": "",
        "c.py": """
            def load():
                import demo.d               # runs when load() does
                return demo.d
        """,
        "d.py": "",
        "unrelated.py": "import json\n",
    })


def graph(package_dir):
    return import_graph(package_dir, package="demo")


def test_edges_cover_submodules_relative_imports_and_parent_packages(demo):
    g = graph(demo)
    assert set(g) == {"demo", "demo.a", "demo.sub", "demo.sub.x", "demo.sub.y", "demo.c", "demo.d", "demo.unrelated"}
    # `from demo.sub import y` executes demo/__init__, demo/sub/__init__ and demo/sub/y.
    assert g["demo.a"] == {"demo", "demo.sub", "demo.sub.y"}
    assert g["demo.sub.x"] == {"demo", "demo.sub", "demo.sub.y", "demo.a", "demo.d"}
    assert g["demo.unrelated"] == set()


def test_type_checking_imports_are_not_edges(demo):
    assert "demo.c" not in graph(demo)["demo.sub.x"]


def test_function_level_imports_count_unless_asked_for_import_time_only(demo):
    assert graph(demo)["demo.c"] == {"demo", "demo.d"}
    assert import_graph(demo, package="demo", deferred=False)["demo.c"] == set()


def test_a_cycle_through_a_package_init_is_found(demo):
    # demo/sub/__init__ imports demo.sub.x, whose `from . import y` executes demo.sub again.
    assert cycles(graph(demo)) == [["demo.a", "demo.sub", "demo.sub.x"]]


def test_cycles_are_deterministic_and_include_self_loops():
    g = {"b": {"c"}, "c": {"b"}, "a": {"a"}, "z": {"y"}, "y": set()}
    assert cycles(g) == [["a"], ["b", "c"]]
    assert cycles(dict(reversed(list(g.items())))) == [["a"], ["b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_dependencies_are_transitive(demo):
    g = graph(demo)
    assert dependencies(g, "demo.c") == {"demo", "demo.d"}
    assert "demo.d" in dependencies(g, "demo.a")  # a -> sub -> sub.x -> d
    assert dependencies(g, "demo.unrelated") == set()
    with pytest.raises(ImportGraphError, match="demo.unrelated"):
        dependencies(g, "demo.unrelatd")


def test_deferred_imports_carry_their_reason_comment(tmp_path):
    package_dir = write_package(tmp_path, {
        "__init__.py": "import os\n",
        "m.py": """
            def f():
                import torch  # deferred: 2 s of start-up the config check does not need
                return torch

            def g():
                # deferred: transformers costs 3 s at import
                from transformers import AutoTokenizer
                from transformers import AutoModel
                return AutoTokenizer, AutoModel

            def h():
                import json

                # a comment about the next line, after a blank: not the import's
                x = 1
                from . import other
                return json, other, x
        """,
        "other.py": "",
    })
    found = deferred_imports(package_dir, package="demo")
    assert found == [
        ("demo.m", 3, "torch", "deferred: 2 s of start-up the config check does not need"),
        ("demo.m", 8, "transformers", "deferred: transformers costs 3 s at import"),
        ("demo.m", 9, "transformers", "deferred: transformers costs 3 s at import"),
        ("demo.m", 13, "json", None),
        ("demo.m", 17, "demo", None),
    ]


def test_private_uses_across_modules_and_into_libraries(tmp_path):
    package_dir = write_package(tmp_path, {
        "__init__.py": "",
        "owner.py": """
            class Box:
                def __init__(self):
                    self._secret = 1       # its own private: fine
            def _helper():
                return Box()._secret       # its own module: fine
        """,
        "sub/__init__.py": "",
        "sub/_impl.py": "VALUE = 1\n",
        "sub/user.py": "from demo.sub._impl import VALUE\n",  # its own package's private module: fine
        "thief.py": """
            import ray
            import demo.owner as owner
            from demo.owner import _helper
            from demo.sub._impl import VALUE
            from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback

            def run(trainer):
                owner._helper()
                trainer._prepare_dataset()
                getattr(owner, "_helper")
                vars(owner)
                ray._private.worker.global_worker
                return owner.__dict__, owner.Box()._replace
        """,
    })
    found = private_uses(package_dir, package="demo")
    assert found == [
        ("demo.thief", 4, "demo.owner._helper"),
        ("demo.thief", 5, "demo.sub._impl"),
        ("demo.thief", 6, "ray.train.v2._internal.execution.callback"),
        ("demo.thief", 9, "demo.owner._helper"),
        ("demo.thief", 10, "trainer._prepare_dataset"),
        ("demo.thief", 11, "demo.owner._helper"),
        ("demo.thief", 12, "demo.owner.__dict__"),
        ("demo.thief", 13, "ray._private"),
        ("demo.thief", 14, "demo.owner.__dict__"),
    ]


def test_the_real_package_reads():
    # The rules the real package keeps are in test_architecture.py; here only the reader's shape.
    g = import_graph(REAL_PACKAGE)
    assert "tinyreason.curriculum" in g
    assert "tinyreason.stage" in dependencies(g, "tinyreason.tune.sweep")
    assert all(isinstance(c, list) for c in cycles(g))
    assert all(module in g for module, *_ in deferred_imports(REAL_PACKAGE))
    assert all(module in g for module, *_ in private_uses(REAL_PACKAGE))
