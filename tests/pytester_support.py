"""Running a downstream project's tests with the pytest plugin, by pytester in a subprocess:
what the plugin's test modules (tests/test_pytest_plugin.py, tests/test_plugin_*.py) share."""

from __future__ import annotations

import pytest

#: A downstream project has neither schemathesis nor hypothesis: their plugins are most of a
#: subprocess session's start-up here (~3 s of ~3.5), paid by every run below.
NO_HEAVY_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run ``source`` as the downstream project's test module, in a subprocess."""
    pytester.makepyfile(test_downstream=source)
    return pytester.runpytest_subprocess(*NO_HEAVY_PLUGINS, *args)
