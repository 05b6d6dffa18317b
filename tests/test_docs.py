"""Docs examples run as tests: every python block of docs/pytest.md, in a downstream project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .pytester_support import NO_HEAVY_PLUGINS

pytest_plugins = ["pytester"]

DOC = Path(__file__).parent.parent / "docs" / "pytest.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_docs_example_passes(pytester: pytest.Pytester, index: int) -> None:
    pytester.makepyfile(**{f"test_doc_{index}": BLOCKS[index]})
    result = pytester.runpytest_subprocess(*NO_HEAVY_PLUGINS)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1, result.stdout.str()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
