"""conform catches every deviating service of tests/drifts.py in the careful profile that a user
runs against the paid service (``--allow-generation --max-examples 10``, at most 3 tasks), and
names it in one line; the faithful emulator behind the same middleware passes. One deviation
(an explicit task_type ignored) needs a 4th task, and its drift says so (``--max-tasks 4``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.conform import EXIT_DEVIATIONS, EXIT_OK

from .conform_support import CAREFUL, Servers, run_conform
from .drifts import BLIND, DRIFTS, Blind, Drift


@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


def _deviation_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith("  - [")]


def test_the_faithful_emulator_passes_the_careful_profile(
    servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_conform(servers.start(), *CAREFUL, capture=lambda: capsys.readouterr().out)
    assert code == EXIT_OK, out
    assert "no deviations" in out and "3 task(s) created" in out


@pytest.mark.parametrize("drift", DRIFTS, ids=[d.name for d in DRIFTS])
def test_the_careful_profile_names_each_deviation(
    drift: Drift, servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_conform(
        servers.serve(drift.build()), *CAREFUL, *drift.args, capture=lambda: capsys.readouterr().out
    )
    assert code == EXIT_DEVIATIONS, out
    named = [line for line in _deviation_lines(out) if line.startswith(f"- [{drift.check}] ")]
    assert named, f"{drift.check} not reported:\n{out}"
    assert any(drift.text in line for line in named), f"{drift.text!r} not in {named}\n{out}"
    created = int(out.split(" task(s) created")[0].rsplit("(", 1)[-1].rsplit(", ", 1)[-1])
    args = list(drift.args)
    budget = int(args[args.index("--max-tasks") + 1]) if "--max-tasks" in args else 3
    assert created <= budget, out


def test_the_docs_count_the_deviating_services_there_are() -> None:
    """A number of drifts written in the docs is len(DRIFTS) (the README once said 46 of 48)."""
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    counts = [
        (doc.name, int(found))
        for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        for found in re.findall(
            r"(\d+) (?:deviating services|services, each the emulator)",
            " ".join(doc.read_text("utf-8").split()),
        )
    ]
    assert counts, "docs/contract.md counts them"
    assert all(count == len(DRIFTS) for _, count in counts), counts


@pytest.mark.parametrize("service", BLIND, ids=[b.name for b in BLIND])
def test_a_service_that_cannot_be_judged_is_never_a_pass(
    service: Blind, servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 429, no credit, a failed task or a route that may not be there is not evidence: the
    run says it could not check (exit 1) or could not run (exit 2), why, and judges nothing."""
    code, out = run_conform(
        servers.serve(service.build()),
        *CAREFUL,
        *service.args,
        capture=lambda: capsys.readouterr().out,
    )
    assert code == service.exit, out
    assert service.text in " ".join(out.split()), out
    assert "no deviations" not in out and not _deviation_lines(out), out
