"""How `make test` splits the suite over its two pytest-xdist workers (tests/conftest.py): the
ray and gpu tiers are one unit of work, in file order, and the e2e tier another; the unit tier
goes module by module to whichever worker is free. Checked on the real scheduler with two fake
workers."""

from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def scheduler(pytestconfig):
    # the plugin pytest loaded from tests/conftest.py: `import conftest` may find the e2e tier's
    conftest = next(p for p in pytestconfig.pluginmanager.get_plugins()
                    if getattr(p, "__file__", None) == str(ROOT / "tests" / "conftest.py"))
    config = SimpleNamespace(option=SimpleNamespace(loadscopereorder=True, maxschedchunk=None),
                             getvalue={"tx": ["2*popen"]}.get)  # what `-n 2` sets
    return conftest.pytest_xdist_make_scheduler(config, None)


class FakeWorker:
    def __init__(self, gateway: str):
        self.gateway, self.sent, self.shutting_down = SimpleNamespace(id=gateway), [], False

    def send_runtest_some(self, indices):
        self.sent.extend(indices)

    def shutdown(self):
        self.shutting_down = True


COLLECTION = ["tests/e2e/test_job_submit.py::test_a", "tests/gpu/test_varlen_cuda.py::test_b",
              "tests/ray/test_faults.py::test_c", "tests/ray/test_sweep.py::test_d[x]",
              "tests/unit/test_schema.py::test_e", "tests/unit/test_schema.py::test_f",
              "tests/unit/test_stats.py::test_g"]


def test_the_ray_tier_runs_on_one_worker_the_e2e_tier_and_then_the_unit_tier_on_the_other(pytestconfig):
    pytest.importorskip("xdist")
    sched = scheduler(pytestconfig)
    workers = [FakeWorker("gw0"), FakeWorker("gw1")]
    for w in workers:
        sched.add_node(w)
        sched.add_node_collection(w, COLLECTION)
    sched.schedule()
    # the e2e tier's unit first on one worker; the Ray tier's whole unit, in collection order, at
    # once on the other
    assert [COLLECTION[i] for i in workers[1].sent] == COLLECTION[1:4]
    assert [COLLECTION[i] for i in workers[0].sent][:2] == COLLECTION[:1] + COLLECTION[4:5]
    # the unit tier follows the e2e tier on its worker, a whole module at a time, while the
    # other is still busy with Ray
    for i in list(workers[0].sent):
        sched.mark_test_complete(workers[0], i)
    assert [COLLECTION[i] for i in workers[0].sent] == COLLECTION[:1] + COLLECTION[4:]
    assert [COLLECTION[i] for i in workers[1].sent] == COLLECTION[1:4]


def test_the_makefile_runs_the_suite_on_two_workers():
    recipe = (ROOT / "Makefile").read_text().split("\ntest: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest -q -n 2 tests" in recipe
    assert "pytest-xdist" in (ROOT / "pyproject.toml").read_text()
