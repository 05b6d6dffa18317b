"""The benchmark's own verdicts: a target is PASS only when the run measured what it claims.

These check the arithmetic and the honesty of ``make bench``'s report (benchmarks/report.py)
and how benchmarks/redis_monitor.py reads what Redis's MONITOR shows; the speed itself is
measured by the benchmarks, never here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from benchmarks import redis_capacity_report, redis_monitor, redis_replay, report, servers


def _cell(rps: float, statuses: dict[str, int] | None = None) -> dict[str, Any]:
    """One 16-connection cell of one run; ``statuses``: its non-2xx answers by code."""
    errors = sum((statuses or {}).values())
    per = {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "errors": errors, "runs_rps": [rps]}
    return {"16": per | {"statuses": statuses or {}}}


def _run(emulator: float, wiremock: float, ceiling: float, wiremock_journal: int) -> dict[str, Any]:
    """A run of the HTTP part with one 16-connection run per server and workload."""
    cell = _cell

    return {
        "quick": False,
        "date": "2026-11-29 12:00:00 UTC",
        "http": {
            "servers": {"emulator": "emulator", "wiremock": "WireMock (journal on)"},
            "contract": "contracts/image-tasks.openapi.yaml",
            "runs": 1,
            "seconds_per_run": 5.0,
            "journal_entries_after": {"emulator": 1000, "wiremock": wiremock_journal},
            "connections": [16],
            "results": {
                "emulator": {"submit": cell(emulator), "poll": cell(emulator)},
                "wiremock": {"submit": cell(wiremock), "poll": cell(wiremock)},
                "ceiling": {"submit": cell(ceiling), "poll": cell(ceiling)},
            },
        },
    }


def _verdicts(results: dict[str, Any]) -> dict[str, str]:
    return {t["target"]: t["status"] for t in report.targets(results)}


def test_targets_are_judged_against_their_bounds() -> None:
    verdicts = _verdicts(_run(emulator=700, wiremock=600, ceiling=1000, wiremock_journal=1000))
    assert verdicts["poll @16 ÷ Starlette ceiling"] == "PASS"  # 0.70x, bound 0.7x
    assert verdicts["submit @16 ÷ WireMock (journal on)"] == "PASS"  # 1.17x, bound 1.0x
    assert verdicts["poll @16 ÷ WireMock (journal on)"] == "MISS"  # 1.17x, bound 1.2x
    verdicts = _verdicts(_run(emulator=690, wiremock=600, ceiling=1000, wiremock_journal=1000))
    assert verdicts["poll @16 ÷ Starlette ceiling"] == "MISS"


def test_a_wiremock_whose_journal_recorded_nothing_is_never_a_pass() -> None:
    results = _run(emulator=5000, wiremock=1000, ceiling=6000, wiremock_journal=0)
    verdicts = _verdicts(results)
    assert verdicts["submit @16 ÷ WireMock (journal on)"] == "UNKNOWN"
    assert verdicts["poll @16 ÷ WireMock (journal on)"] == "UNKNOWN"
    assert "**UNKNOWN**" in report.markdown(results | {"targets": report.targets(results)})


def test_a_poll_rate_made_of_error_answers_is_invalid_and_its_targets_unknown() -> None:
    # The emulator answered 404 to most polls (the ids had been evicted): cheaper than a poll.
    results = _run(emulator=4500, wiremock=3000, ceiling=6000, wiremock_journal=1000)
    results["http"]["results"]["emulator"]["poll"] = _cell(4500, {"404": 65_170})
    verdicts = _verdicts(results)
    assert verdicts["poll @16 ÷ WireMock (journal on)"] == "UNKNOWN"
    assert verdicts["poll @16 ÷ Starlette ceiling"] == "UNKNOWN"
    # The submissions were measured on answers that succeeded: still judged.
    assert verdicts["submit @16 ÷ WireMock (journal on)"] == "PASS"
    polls = [t for t in report.targets(results) if t["target"].startswith("poll")]
    assert all(t["value"] is None and "404" in t["note"] for t in polls)


def test_errors_of_the_server_compared_with_make_the_comparison_unknown() -> None:
    results = _run(emulator=4500, wiremock=3000, ceiling=6000, wiremock_journal=1000)
    results["http"]["results"]["ceiling"]["submit"] = _cell(6000, {"socket read": 3})
    verdicts = _verdicts(results)
    assert verdicts["submit @16 ÷ Starlette ceiling"] == "UNKNOWN"
    assert verdicts["submit @16 ÷ WireMock (journal on)"] == "PASS"


def test_the_table_marks_an_invalid_cell_and_says_which_errors_it_had() -> None:
    results = _run(emulator=4500, wiremock=3000, ceiling=6000, wiremock_journal=1000)
    results["http"]["results"]["emulator"]["poll"] = _cell(4500, {"404": 65_170, "503": 2})
    text = report.markdown(results | {"targets": report.targets(results)})
    poll_rows = [line for line in text.splitlines() if line.startswith("| poll | 16 |")]
    ours = next(line for line in poll_rows if "| emulator |" in line)
    assert "404: 65,170; 503: 2" in ours and "INVALID" in ours
    theirs = [line for line in poll_rows if "| emulator |" not in line]
    # No ratio is computed against an invalid cell: every comparison row says so instead.
    assert theirs and all("INVALID" in line and "x |" not in line for line in theirs)


def test_four_workers_not_run_on_two_cores_is_unknown_not_a_pass() -> None:
    rows = [
        {"store": "memory", "workers": 1, "polls_per_s": 4000.0},
        {"store": "redis", "workers": 1, "polls_per_s": 1000.0},
        {"store": "redis", "workers": 2, "polls_per_s": 1020.0},
    ]
    verdicts = _verdicts({"quick": False, "scaling": {"results": {"cores": 2, "rows": rows}}})
    assert verdicts["polls, 1 worker on Redis ÷ 1 in memory"] == "MISS"  # 0.25x
    assert verdicts["polls, 2 workers on Redis ÷ 1 (adds throughput)"] == "MISS"  # 2 % is noise
    assert verdicts["polls, 4 workers on Redis ÷ 2"] == "UNKNOWN"


def test_monitor_lines_are_read_with_redis_escapes() -> None:
    line = r'+1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "ab" "0" "{\"a\":1}" "\xff\n" ""'
    assert redis_monitor.parse_monitor_line(line) == (
        "127.0.0.1:5555",
        [b"EVALSHA", b"ab", b"0", b'{"a":1}', b"\xff\n", b""],
    )
    assert redis_monitor.parse_monitor_line('+1700000000.1 [0 lua] "HMGET" "k"') == (
        "lua",
        [b"HMGET", b"k"],
    )
    assert redis_monitor.parse_monitor_line("+OK") is None


def test_a_replayed_write_runs_later_and_a_replayed_submission_makes_a_new_task() -> None:
    captured_at = 1_700_000_000.0
    task = "task_" + "ab" * 16
    call = redis_monitor.Call(
        [b"EVALSHA", b"sha", b"0", b"p:", str(captured_at + 0.5).encode(), b"", task.encode()]
    )
    args = redis_replay.replayable(call, captured_at, fresh_ids=True)
    assert float(args[4]) > captured_at + 365 * 86400  # the deadline, moved far ahead
    assert args[6] == "task_" + "0" * 20 + "__rand_int__"
    assert len(args[6].replace("__rand_int__", "0" * 12)) == len(task)
    kept = redis_replay.replayable(call, captured_at, fresh_ids=False)
    assert kept[6] == task


def test_a_scaling_row_with_errors_makes_its_targets_unknown() -> None:
    rows = [
        {"store": "memory", "workers": 1, "polls_per_s": 4000.0, "errors": 0},
        {"store": "redis", "workers": 1, "polls_per_s": 3000.0, "errors": 12},
        {"store": "redis", "workers": 2, "polls_per_s": 5000.0, "errors": 0},
    ]
    verdicts = _verdicts({"quick": False, "scaling": {"results": {"cores": 2, "rows": rows}}})
    assert verdicts["polls, 1 worker on Redis ÷ 1 in memory"] == "UNKNOWN"
    assert verdicts["polls, 2 workers on Redis ÷ 1 (adds throughput)"] == "UNKNOWN"


def test_the_journal_row_names_its_batch_and_a_request_pays_one_entry_of_it() -> None:
    # The journal is written by one JOURNAL script call per batch: the row says how many
    # entries the replayed call carried, and a request's busy cost takes its share of it.
    batch = redis_monitor.Call([b"EVALSHA", b"sha", b"2", b"p:journal", b"p:seq:journal"])
    batch.args += [b'{"i": 1}', b"500", b'{"i": 2}', b"500", b'{"i": 3}', b"500"]
    assert redis_monitor.journal_entries(batch) == 3
    assert redis_monitor.journal_row(3) == "JOURNAL (one batch call of 3 entries)"
    assert redis_monitor.journal_row(1) == "JOURNAL (one batch call of 1 entry)"
    poll = redis_monitor.Call([b"HMGET", b"p:task:x", b"d"], inner=["HMGET"])
    rows: list[dict[str, Any]] = [
        {"command": "HMGET", "p1": {"redis_cpu_us": 50.0}, "p16": {"redis_cpu_us": 10.0}},
        {
            "command": redis_monitor.journal_row(3),
            "journal_entries": 3,
            "p1": {"redis_cpu_us": 90.0},
            "p16": {"redis_cpu_us": 30.0},
        },
    ]
    assert redis_capacity_report.busy_cost({"poll": [poll]}, rows, "poll") == 60.0


def test_fixture_sessions_cache_bytecode_outside_the_tree_and_keep_no_emulator_variables(
    monkeypatch: Any, tmp_path: Any
) -> None:
    from benchmarks import fixture_timing

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("EMULATOR_SEED", "5")
    cached = fixture_timing._env(tmp_path)
    assert "PYTHONDONTWRITEBYTECODE" not in cached and "EMULATOR_SEED" not in cached
    assert cached["PYTHONPYCACHEPREFIX"] == str(tmp_path)
    as_is = fixture_timing._env(None)
    assert as_is["PYTHONDONTWRITEBYTECODE"] == "1" and "PYTHONPYCACHEPREFIX" not in as_is


def test_the_fixture_table_says_bytecode_was_cached_and_what_start_up_costs_without() -> None:
    session = {"median_test_ms": 2.0, "p90_test_ms": 3.0, "median_call_ms": 1.5}
    fixture = {
        "plugin_import_ms": 1.0,
        "sessions": 1,
        "tests_per_session": 100,
        "in_process": session | {"startup_ms": 95.0, "startup_uncached_ms": 140.0},
        "live": session | {"startup_ms": 150.0},
    }
    text = report.markdown({"quick": False, "date": "2026-11-30 00:00:00 UTC", "fixture": fixture})
    assert "bytecode cached" in text
    assert "the in-process start-up took 140 ms" in text
    assert _verdicts({"fixture": fixture})["fixture start-up, in-process"] == "PASS"


def test_instruction_counts_are_read_from_valgrind_and_a_broken_pair_is_an_error() -> None:
    from benchmarks import instructions

    output = "==12== Events    : Ir\n==12== Collected : 123456789\n==12==\n==12== I   refs: 1\n"
    assert instructions.collected(output) == 123456789
    assert instructions.per_request(1_000, 3_000, 10) == 200.0
    with pytest.raises(RuntimeError, match="broken"):
        instructions.per_request(3_000, 3_000, 10)
    with pytest.raises(RuntimeError, match="Collected"):
        instructions.collected("valgrind: not run")


@pytest.mark.parametrize("kind", ["submit", "poll"])
def test_the_instruction_count_child_serves_its_requests_and_names_its_tree(kind: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks import instructions

    child = [sys.executable, instructions.__file__, "--child", kind, "3"]
    done = subprocess.run(child, capture_output=True, text=True, timeout=120, check=True)
    assert Path(done.stdout.strip()) == Path(instructions.ROOT)


def test_the_report_states_the_machine_speed_measured_before_and_after() -> None:
    machine = {"cpus": 2, "python": "3.11", "cpu_speed_before_s": 1.345, "cpu_speed_after_s": 0.8}
    text = report.markdown({"quick": False, "date": "2026-11-30 00:00:00 UTC", "machine": machine})
    assert "10 million steps of a Python loop took 1.34 s before and 0.80 s after" in text


def test_the_machine_speed_is_a_loop_timed_in_seconds_per_ten_million_steps() -> None:
    from benchmarks import run

    # A loop of a million steps takes milliseconds: scaled to ten million it must be well
    # above the time of the short loop itself and far below a minute.
    seconds = run.cpu_speed(steps=100_000, rounds=2)
    assert 0.05 < seconds < 60


def test_the_table_gives_each_server_its_cpu_per_request() -> None:
    results = _run(emulator=4500, wiremock=3000, ceiling=6000, wiremock_journal=1000)
    results["http"]["results"]["wiremock"]["submit"]["16"]["cpu_us"] = 512.4
    text = report.markdown(results | {"targets": report.targets(results)})
    row = next(line for line in text.splitlines() if line.startswith("| submit | 16 | WireMock"))
    assert "| 512 |" in row
    ours = next(line for line in text.splitlines() if line.startswith("| submit | 16 | emulator"))
    assert "| - |" in ours  # not measured: said so, never a number


CHILD = """
import sys, time
began = time.process_time()
while time.process_time() - began < 0.3:
    pass
print("spun", flush=True)
time.sleep(60)
"""
PARENT = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', sys.argv[1]]); time.sleep(60)"
)


def test_a_servers_cpu_counts_every_process_of_its_session() -> None:
    # Prism's node runs as a child of npx, the process the benchmark starts: a parent that
    # only sleeps and a child that spins 0.3 s of CPU must count 0.3 s, not the parent's.
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == b"spun\n"  # the child has spun (at most 60 s)
        assert servers.group_cpu_seconds(parent.pid) >= 0.3
        assert servers.process_cpu_seconds(parent.pid) < 0.3
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)
