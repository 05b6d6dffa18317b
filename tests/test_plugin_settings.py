"""The plugin's settings (marker, ``image_emulator_settings``) and what outlives a test, run by
pytester in a subprocess as a downstream project would."""

from __future__ import annotations

import pytest

from .pytester_support import run

pytest_plugins = ["pytester"]


def test_a_setting_is_refused_whatever_test_ran_before(pytester: pytest.Pytester) -> None:
    # 1 == True and hash alike: validated settings remembered by value alone let a refused
    # always_list_results=1 through after a test that had always_list_results=True.
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.image_emulator(always_list_results=True)
        def test_1_true(image_emulator):
            assert image_emulator.emulator.settings.always_list_results is True

        @pytest.mark.image_emulator(always_list_results=1)
        def test_2_one(image_emulator):
            pass

        @pytest.mark.image_emulator(failure_rate=1)
        def test_3_one(image_emulator):
            assert image_emulator.emulator.settings.failure_rate == 1.0

        @pytest.mark.image_emulator(failure_rate=True)
        def test_4_true(image_emulator_live):
            pass

        @pytest.mark.image_emulator(failure_rate=True)
        def test_5_true(image_emulator):
            pass

        @pytest.mark.image_emulator(enabled_models=("NanoBanana",))
        def test_6_tuple(image_emulator):
            pass

        @pytest.mark.image_emulator(enabled_models=(1,))
        def test_7_tuple_of_a_number(image_emulator):
            pass

        @pytest.mark.image_emulator(enabled_models=["NanoBanana"])
        def test_8_list(image_emulator):
            assert image_emulator.emulator.settings.enabled_models == ("NanoBanana",)
        """,
    )
    result.assert_outcomes(passed=4, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_2_one*",
            "image_emulator: setting 'always_list_results' (from the image_emulator marker) "
            "must be true or false, got 1",
            "*ERROR at setup of test_4_true*",
            "*setting 'failure_rate' (from the image_emulator marker) must be a number*",
            "*ERROR at setup of test_5_true*",
            "*setting 'failure_rate' (from the image_emulator marker) must be a number*",
            "*ERROR at setup of test_7_tuple_of_a_number*",
            "*must be a list of strings*",
        ]
    )


def test_bad_settings_fail_the_setup_saying_where_they_came_from(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def image_emulator_settings(request):
            return getattr(request.module, "SETTINGS", {})
        """
    )
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.image_emulator(envelop="bare")
        def test_misspelt(image_emulator):
            pass

        @pytest.mark.image_emulator(failure_rate=2.0)
        def test_out_of_range_live(image_emulator_live):
            pass

        @pytest.mark.image_emulator("bare")
        def test_positional(image_emulator):
            pass

        @pytest.mark.image_emulator(port=1234)
        def test_port(image_emulator):
            pass

        @pytest.mark.image_emulator(host="0.0.0.0")
        def test_host_live(image_emulator_live):
            pass
        """,
    )
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_misspelt*",
            "image_emulator: unknown setting 'envelop' (from the image_emulator marker); "
            "did you mean 'envelope'?",
            "*ERROR at setup of test_out_of_range_live*",
            "image_emulator: failure_rate must be between 0 and 1, got 2.0 "
            "(from the image_emulator marker)",
            "*ERROR at setup of test_positional*",
            "image_emulator: the image_emulator marker takes keyword settings only, got ('bare',)",
            "*ERROR at setup of test_port*",
            "image_emulator: setting 'port' (from the image_emulator marker) is the fixtures' "
            "own: image_emulator_live serves on a free port*",
            "*ERROR at setup of test_host_live*",
            "image_emulator: setting 'host' (from the image_emulator marker) is the fixtures' "
            "own: image_emulator_live serves on 127.0.0.1*",
        ]
    )
    # The message alone: no traceback through the plugin, no "(from arguments)".
    assert "plugin.py" not in result.stdout.str()
    assert "from arguments" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("returned", "named"),
    [
        ("None", "NoneType"),
        ("[('envelope', 'bare')]", "list"),
        ("{'envelop': 'bare'}", None),
        ("{'failure_rate': -1}", None),
        ("{'port': 80}", None),
    ],
)
def test_a_bad_settings_fixture_is_named(
    pytester: pytest.Pytester, returned: str, named: str | None
) -> None:
    result = run(
        pytester,
        f"""
        import pytest

        @pytest.fixture
        def image_emulator_settings():
            return {returned}

        def test_in_process(image_emulator):
            pass

        def test_live(image_emulator_live):
            pass
        """,
    )
    result.assert_outcomes(errors=2)
    if named is not None:
        line = f"image_emulator: the image_emulator_settings fixture returned {named}; it must "
        result.stdout.fnmatch_lines([f"{line}*", f"{line}*"])
    else:
        result.stdout.fnmatch_lines(["*(from the image_emulator_settings fixture)*"] * 2)
    assert "Traceback" not in result.stdout.str()


def test_a_marker_no_fixture_reads_is_a_warning_naming_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        pytestmark = pytest.mark.image_emulator(envelope="bare")  # every test: no warning

        @pytest.mark.image_emulator(envelope="bare")
        def test_unused():
            pass

        @pytest.mark.image_emulator(envelope="bare")
        def test_used(image_emulator):
            pass

        @pytest.mark.image_emulator(envelope="bare")
        def test_asks_while_it_runs(request):
            request.getfixturevalue("image_emulator")

        def test_module_marker_only():
            pass

        @pytest.mark.parametrize("n", [pytest.param(1, marks=pytest.mark.image_emulator(seed=1))])
        def test_param_marked(n):
            pass
        """,
    )
    result.assert_outcomes(passed=5, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*ImageEmulatorMarkWarning: test_downstream.py::test_unused is marked image_emulator "
            "but uses neither image_emulator nor image_emulator_live*",
            "*ImageEmulatorMarkWarning: test_downstream.py::test_param_marked[[]1[]] is marked*",
        ]
    )
    assert "test_used is marked" not in result.stdout.str()
    assert "test_asks_while_it_runs is marked" not in result.stdout.str()
    assert "test_module_marker_only is marked" not in result.stdout.str()


def test_a_live_handle_kept_from_an_earlier_test_is_closed(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import httpx
        import pytest

        CLOSED = "this emulator is closed: its test is over"
        kept = {}

        def test_keeps_its_handle(image_emulator_live):
            kept["handle"] = image_emulator_live
            kept["rule"] = image_emulator_live.faults.add("drop", endpoint="poll")
            kept["url"] = image_emulator_live.base_url

        def test_the_next_test_is_not_steered_by_it(image_emulator_live):
            assert image_emulator_live.base_url == kept["url"]  # the same server
            with pytest.raises(RuntimeError, match=CLOSED):
                kept["handle"].faults.add({"kind": "http_error", "status": 503}, endpoint="any")
            with pytest.raises(RuntimeError, match=CLOSED):
                kept["handle"].advance(10)
            with pytest.raises(RuntimeError, match=CLOSED):
                kept["rule"].hits
            assert list(image_emulator_live.faults) == []
            assert image_emulator_live.advance(0) == 0.0
            r = image_emulator_live.client().post(
                "/v1/images/tasks", json={"model": "NanoBanana", "prompt": "x"})
            assert r.status_code == 200
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_thread_stuck_in_a_hang_at_teardown_gets_the_closed_error(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import threading
        import time

        CLOSED = "this emulator is closed: its test is over"
        BODY = {"model": "NanoBanana", "prompt": "x"}
        kept = {}

        def test_leaves_a_thread_in_a_hang(image_emulator):
            image_emulator.faults.add("hang", endpoint="submit")
            client = image_emulator.client(timeout=None)
            started = threading.Event()

            def worker():  # code under test: catches what it should, Exception
                started.set()
                try:
                    kept["answer"] = client.post("/v1/images/tasks", json=BODY)
                except Exception as exc:
                    kept["error"] = exc

            kept["thread"] = threading.Thread(target=worker, daemon=True)
            kept["thread"].start()
            started.wait(10)
            # The request is on the emulator's loop (its hang has hit) before the test ends.
            deadline = time.monotonic() + 10
            while not [r for r in image_emulator.faults if r["hits"]]:
                assert time.monotonic() < deadline

        def test_the_thread_got_the_closed_error(image_emulator):
            kept["thread"].join(10)
            assert not kept["thread"].is_alive()
            assert type(kept.get("error")) is RuntimeError, kept
            assert str(kept["error"]) == CLOSED
        """,
    )
    result.assert_outcomes(passed=2)
