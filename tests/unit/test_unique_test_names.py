"""pytest imports test files by their basename (rootdir mode): two test files with one name in
different folders stop the whole run at collection. Catch that here, with a clear message."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_has_a_name_of_its_own():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
