"""pytest imports test modules by basename (rootdir, no packages): two test files of one name in
different tiers stop the whole run at collection, as CI once did. Every tier's names are unique."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_basename():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
