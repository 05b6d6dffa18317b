"""conform ``--full`` catches every deviating service of tests/drifts.py too.

Not collected by ``make test`` (the name does not start with ``test_``): each run takes every
phase against a service (a minute of CPU for all of them on two cores). ``make contract-drift``
runs it, and CI (.ci/run) calls that target.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.conform import EXIT_DEVIATIONS, EXIT_OK

from .conform_support import Servers, run_conform
from .drifts import BLIND, DRIFTS, Blind, Drift

FULL = ("--full", "--max-examples", "10")


@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


def test_the_faithful_emulator_passes_the_full_profile(
    servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_conform(servers.start(), *FULL, capture=lambda: capsys.readouterr().out)
    assert code == EXIT_OK, out


@pytest.mark.parametrize("drift", DRIFTS, ids=[d.name for d in DRIFTS])
def test_the_full_profile_names_each_deviation(
    drift: Drift, servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_conform(
        servers.serve(drift.build()), *FULL, *drift.args, capture=lambda: capsys.readouterr().out
    )
    assert code == EXIT_DEVIATIONS, out
    named = [
        line.strip()
        for line in out.splitlines()
        if line.startswith(f"  - [{drift.check}] ") and drift.text in line
    ]
    assert named, f"{drift.check}: {drift.text!r} not reported:\n{out}"


@pytest.mark.parametrize("service", BLIND, ids=[b.name for b in BLIND])
def test_the_full_profile_never_passes_a_service_it_cannot_judge(
    service: Blind, servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_conform(
        servers.serve(service.build()),
        *FULL,
        *service.args,
        capture=lambda: capsys.readouterr().out,
    )
    assert code == service.exit, out
    assert service.text in " ".join(out.split()), out
    assert "no deviations" not in out, out
