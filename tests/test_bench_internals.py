"""benchmarks/internals.py: the emulator's internal names the benchmarks use are where it looks.

When a module moves (as the restructure on p2-layers moves them), these fail loudly here,
rather than a benchmark failing after minutes of a run, or naming nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from pathlib import Path

import pytest

from benchmarks import internals


def test_the_submission_class_is_found_with_the_fields_memory_py_fills() -> None:
    fields = [f.name for f in dataclasses.fields(internals.submission_type())]
    assert fields == ["prompt", "task_type", "plan", "references", "picture", "urls"]


def test_the_renderer_renders_a_picture_and_caches_it() -> None:
    found = internals.renderer()
    spec = found.RenderSpec(
        width=64,
        height=48,
        fmt="png",
        model="gpt-image-2",
        prompt="a red cube",
        task_id="task_" + "0a" * 16,
        index=0,
        count=1,
        seed=7,
    )
    data = found.render(spec)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    cache = found.RenderCache(1 << 20)
    cache.put(("task", 0), data)
    assert cache.get(("task", 0)) == data


def test_the_redis_scripts_are_found_by_the_names_the_capacity_tables_use() -> None:
    found = {name: v for module in internals.redis_scripts() for name, v in vars(module).items()}
    for name in ("SNAPSHOT", "INSERT_HELD", "SETTLE", "ADVANCE", "EXPIRE", "JOURNAL"):
        assert "redis.call" in found[name], name


def test_every_script_the_redis_store_sends_has_a_name_in_the_capacity_tables() -> None:
    # The scripts a store registers at construction (nothing is sent: the URL is never
    # dialled), against the names redis_monitor.py gives what MONITOR shows: a script moved
    # to a module the benchmarks do not look in would show as "script <sha>".
    from benchmarks.redis_monitor import script_names
    from emulator.stores.redis import RedisStore
    from emulator.stores.redis.support import JournalWriter, Script

    store = RedisStore("redis://127.0.0.1:9/0", "naming")
    (writer,) = [p for p in vars(store).values() if isinstance(p, JournalWriter)]
    scripts = [p for p in vars(store).values() if isinstance(p, Script)] + [writer._script]
    asyncio.run(store.close())
    names = script_names()
    unnamed = [s.script.script[:60] for s in scripts if s.script.sha not in names]
    assert len(scripts) >= 15 and not unnamed, unnamed
    named = {names[s.script.sha] for s in scripts}
    assert {"JOURNAL", "JOURNAL_PAGE", "PAGE", "SNAPSHOT", "INSERT_HELD"} <= named


def test_the_plugin_is_found_through_its_entry_point() -> None:
    module = importlib.import_module(internals.plugin_module())
    # image_emulator itself is a fixture of an object the plugin registers per config.
    assert hasattr(module, "image_emulator_live") and hasattr(module, "pytest_configure")


def test_a_module_at_neither_home_is_an_error_naming_both() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"emulator\.nowhere, emulator\.neither"):
        internals.first_module("emulator.nowhere", "emulator.neither")


def test_a_failing_import_inside_an_existing_module_is_not_hidden_by_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The new home exists but one of its own imports is missing: that is an error to see,
    # not a reason to measure the old module instead.
    (tmp_path / "bench_new_home.py").write_text("import bench_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="bench_absent_dependency"):
        internals.first_module("bench_new_home", "json")
