"""How `make test` splits the suite over its two pytest-xdist workers (tests/conftest.py): the
ray and gpu tiers are one unit of work, in file order, and the e2e tier another; each Ray-tier
module that starts its own Rays (OWN_RAY) is a unit that the e2e tier's worker takes next; the
unit tier goes module by module to whichever worker is free, and the SECOND_RAY modules, collected
last, after it. Checked on the real scheduler with two fake workers."""

from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def root_conftest(pytestconfig):
    # the plugin pytest loaded from tests/conftest.py: `import conftest` may find the e2e tier's
    return next(p for p in pytestconfig.pluginmanager.get_plugins()
                if getattr(p, "__file__", None) == str(ROOT / "tests" / "conftest.py"))


def scheduler(pytestconfig):
    conftest = root_conftest(pytestconfig)
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


COLLECTION = ["tests/e2e/test_job_submit.py::test_a", "tests/e2e/test_job_submit.py::test_a2",
              "tests/e2e/test_job_submit.py::test_a3", "tests/gpu/test_varlen_cuda.py::test_b",
              "tests/ray/test_faults.py::test_c", "tests/ray/test_sweep.py::test_d[x]",
              "tests/ray/test_trlm_smollm2.py::test_h", "tests/ray/test_trlm_smollm2.py::test_i",
              "tests/ray/test_zoo.py::test_j",
              "tests/unit/test_schema.py::test_e", "tests/unit/test_schema.py::test_f",
              "tests/unit/test_stats.py::test_g",
              "tests/ray/test_new_kind.py::test_k"]  # SECOND_RAY: collected last (pytest_collection_modifyitems)
E2E, RAY, OWN, UNIT, SECOND = (COLLECTION[:3], COLLECTION[3:6] + COLLECTION[8:9], COLLECTION[6:8], COLLECTION[9:12],
                               COLLECTION[12:])


def test_the_ray_tier_runs_on_one_worker_the_e2e_tier_and_then_the_unit_tier_on_the_other(pytestconfig):
    pytest.importorskip("xdist")
    sched = scheduler(pytestconfig)
    workers = [FakeWorker("gw0"), FakeWorker("gw1")]
    for w in workers:
        sched.add_node(w)
        sched.add_node_collection(w, COLLECTION)
    sched.schedule()
    # the e2e tier's unit on one worker; the Ray tier's whole unit, in collection order (its
    # tests after the SmolLM2 module's included), at once on the other
    assert [COLLECTION[i] for i in workers[0].sent] == E2E
    assert [COLLECTION[i] for i in workers[1].sent] == RAY

    def finish(worker, n):
        for i in list(worker.sent[:n]):
            sched.mark_test_complete(worker, i)

    # with the e2e tier nearly done, its worker takes the SmolLM2 module (its own Ray in a
    # subprocess), not the next unit module: the other worker is still busy with Ray
    finish(workers[0], 1)
    assert [COLLECTION[i] for i in workers[0].sent] == E2E + OWN
    # the unit tier follows it there, a whole module at a time, and the SECOND_RAY module last
    finish(workers[0], len(workers[0].sent))
    assert [COLLECTION[i] for i in workers[0].sent] == E2E + OWN + UNIT
    finish(workers[0], len(workers[0].sent))
    assert [COLLECTION[i] for i in workers[0].sent] == E2E + OWN + UNIT + SECOND
    assert [COLLECTION[i] for i in workers[1].sent] == RAY


def test_the_second_ray_modules_are_collected_last_and_the_rest_keep_their_order(pytestconfig):
    conftest = root_conftest(pytestconfig)
    assert conftest.SECOND_RAY and not conftest.SECOND_RAY & conftest.OWN_RAY
    collected = [COLLECTION[i] for i in (12, 0, 3, 4, 6, 9, 11)]  # the SECOND_RAY module's test first
    items = [SimpleNamespace(nodeid=n, fspath=n.split("::")[0], add_marker=lambda mark: None) for n in collected]
    conftest.pytest_collection_modifyitems(pytestconfig, items)
    assert [i.nodeid for i in items] == collected[1:] + collected[:1]
    for module in conftest.SECOND_RAY:  # a real module, one that asks for a session Ray of its own
        assert "ray_local" in (ROOT / module).read_text(), module


def test_no_module_run_beside_the_ray_tier_uses_the_sessions_ray(pytestconfig):
    """A module in OWN_RAY that asked for `ray_local` would start a second local Ray in the
    other worker's process, as two Ray tiers side by side did (slower, README)."""
    own = root_conftest(pytestconfig).OWN_RAY
    assert own
    for module in own:
        text = (ROOT / module).read_text()
        assert "ray_local" not in text and "jobs/curriculum.py" in text, module


def test_the_makefile_runs_the_suite_on_two_workers():
    recipe = (ROOT / "Makefile").read_text().split("\ntest: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest -q -n 2 tests" in recipe
    assert "pytest-xdist" in (ROOT / "pyproject.toml").read_text()
