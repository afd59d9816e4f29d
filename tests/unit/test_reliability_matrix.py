"""docs/reliability.md names, for every row of its matrix, the tests that hold it: each
name must exist, so the column cannot drift from the suite as tests are renamed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "docs" / "reliability.md"
ROW = re.compile(r"^\| ([A-Z]\d+) \|")
NAMED = re.compile(r"`([\w/]+\.py)::([\w:]+)")
BENCHMARK = re.compile(r"benchmark `(benchmarks\.\w+)")


def rows() -> dict[str, str]:
    found = {}
    for line in MATRIX.read_text().splitlines():
        match = ROW.match(line)
        if match:
            found[match.group(1)] = line.rstrip().rstrip("|").rsplit("|", 1)[1].strip()
    return found


def test_the_matrix_has_its_sixty_six_rows() -> None:
    ids = rows()
    assert len(ids) == 66, sorted(ids)


@pytest.mark.parametrize("row", sorted(rows()))
def test_every_row_names_tests_or_benchmarks_that_exist(row: str) -> None:
    cell = rows()[row]
    named = NAMED.findall(cell)
    benchmarks = BENCHMARK.findall(cell)
    assert named or benchmarks, f"{row} names no test that holds it: {cell!r}"
    for path, name in named:
        source = (ROOT / "tests" / path).read_text()
        for part in name.split("::"):
            assert re.search(rf"^\s*(def|class) {part}\b", source, re.M), (
                f"{row}: tests/{path} has no {part}"
            )
    for module in benchmarks:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{row}: no {module}"
