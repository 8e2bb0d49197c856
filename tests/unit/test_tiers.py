"""How `make test` splits the suite over its two pytest-xdist workers (tests/conftest.py):
every test that starts Ray is one unit of work, in file order; the unit tier goes module by
module to whichever worker is free. Checked on the real scheduler with two fake workers."""

from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def scheduler():
    import conftest

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


def test_every_ray_test_is_sent_to_one_worker_in_file_order_and_the_unit_tier_to_the_other():
    pytest.importorskip("xdist")
    sched = scheduler()
    workers = [FakeWorker("gw0"), FakeWorker("gw1")]
    for w in workers:
        sched.add_node(w)
        sched.add_node_collection(w, COLLECTION)
    sched.schedule()
    ray = [COLLECTION[i] for i in workers[0].sent]
    assert ray == COLLECTION[:4]  # the Ray tier's whole unit first, in collection order
    # the other worker starts on the unit tier at once, a whole module at a time, and takes
    # the rest of it while the first is still busy with Ray
    assert [COLLECTION[i] for i in workers[1].sent] == COLLECTION[4:]


def test_the_makefile_runs_the_suite_on_two_workers():
    recipe = (ROOT / "Makefile").read_text().split("\ntest: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest -q -n 2 tests" in recipe
    assert "pytest-xdist" in (ROOT / "pyproject.toml").read_text()
