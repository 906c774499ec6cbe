"""The suite's own layout: pytest imports test modules by basename (no packages under tests/),
so two test files of the same name in different folders fail collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def test_given_every_test_module_then_each_basename_is_used_once() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))

    assert [name for name, count in names.items() if count > 1] == []
