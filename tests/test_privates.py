"""Each private API of a dependency the emulator still uses (the ``privates`` modules), checked
to be there and to do what the emulator relies on. An upgrade that changes one fails here,
naming the dependency, its version and the module to revisit, before it breaks a request.
(uvicorn's protocol classes, subclassed in emulator/http/protocols.py, are checked by
tests/test_http_guard.py.)"""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version
from typing import Any

import pytest


def changed(dependency: str, what: str, where: str) -> str:
    return (
        f"{dependency} {version(dependency)} changed {what}, which {where} relies on: "
        "revisit that module (or pin the dependency below this version)"
    )


# -- Starlette ----------------------------------------------------------------------------------
def test_a_prebuilt_response_is_sent_as_starlettes_own() -> None:
    # PrebuiltResponse sets the attributes Starlette's Response.__init__ sets (bar the media
    # type, which only __init__ reads) and skips __init__: if Starlette's __init__ comes to
    # set another one, or __call__ to send differently, this fails before a request does.
    from starlette.responses import Response

    from emulator.http.privates import PrebuiltResponse

    theirs = Response(b'{"a":1}', 201, media_type="application/json")
    ours = PrebuiltResponse(b'{"a":1}', list(theirs.raw_headers), 201)
    where = "emulator/http/privates.py (PrebuiltResponse)"
    assert set(vars(theirs)) - {"media_type"} == set(vars(ours)), changed(
        "starlette", "what Response.__init__ sets", where
    )

    def sent(response: Response) -> list[Any]:
        messages: list[Any] = []

        async def send(message: Any) -> None:
            messages.append(message)

        async def receive() -> Any:
            return {"type": "http.disconnect"}

        asyncio.run(response({"type": "http", "method": "GET"}, receive, send))
        return messages

    assert sent(ours) == sent(theirs), changed("starlette", "Response.__call__", where)


def _request(messages: list[dict[str, Any]]) -> Any:
    from starlette.requests import Request

    async def receive() -> dict[str, Any]:
        if not messages:
            raise AssertionError("read again after the body was read or the client left")
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return Request(scope, receive)


def test_route_regexes_end_in_a_dollar_that_anchor_at_end_makes_the_paths_end() -> None:
    from starlette.routing import Match, Mount, Route

    from emulator.http.privates import anchor_at_end

    async def endpoint(scope: Any, receive: Any, send: Any) -> None: ...

    routes = [Route("/a", endpoint), Route("/b/{x}", endpoint), Mount("/c", app=endpoint)]
    where = "emulator/http/privates.anchor_at_end"
    for route in routes:
        assert route.path_regex.pattern.endswith("$"), changed("starlette", "path_regex", where)
    scope = {"type": "http", "method": "GET", "root_path": ""}
    before = [
        route.matches({**scope, "path": path})[0]
        for route, path in zip(routes, ["/a\n", "/b/y\n", "/c/d\n"], strict=True)
    ]
    assert before == [Match.FULL] * 3, changed("starlette", "route matching", where)
    anchor_at_end(routes)
    after = [
        route.matches({**scope, "path": path})[0]
        for route, path in zip(routes, ["/a\n", "/b/y\n", "/c/d\n"], strict=True)
    ]
    # "/b/y\n": the parameter takes the newline, so that route still matches.
    assert after == [Match.NONE, Match.FULL, Match.NONE], changed("starlette", "path_regex", where)


def test_a_body_read_by_read_body_is_one_starlette_treats_as_consumed() -> None:
    from emulator.http.privates import read_body

    async def run() -> str:
        request = _request([{"type": "http.request", "body": b"{}", "more_body": False}])
        assert await read_body(request, 10) == b"{}"
        try:
            await request.body()
        except RuntimeError as exc:
            return str(exc)
        except AssertionError:  # it asked the server for the body again
            return "read again"
        return "request.body() read again"

    assert asyncio.run(run()) == "Stream consumed", changed(
        "starlette", "Request._stream_consumed", "emulator/http/privates.py (read_body)"
    )


def test_a_client_gone_during_read_body_is_one_starlette_knows_is_disconnected() -> None:
    from starlette.requests import ClientDisconnect

    from emulator.http.privates import read_body

    async def run() -> bool:
        request = _request([{"type": "http.disconnect"}])
        with pytest.raises(ClientDisconnect):
            await read_body(request, 10)
        try:
            disconnected: bool = await request.is_disconnected()
        except AssertionError:
            return False  # it asked the server again instead of remembering
        return disconnected

    assert asyncio.run(run()), changed(
        "starlette", "Request._is_disconnected", "emulator/http/privates.py (read_body)"
    )


# -- uvicorn ------------------------------------------------------------------------------------
@pytest.mark.parametrize("parser", ["h11_impl", "httptools_impl"])
def test_uvicorns_send_still_leads_to_the_transport_and_the_disconnected_flag(parser: str) -> None:
    import importlib

    module = importlib.import_module(f"uvicorn.protocols.http.{parser}")
    cycle = module.RequestResponseCycle
    init = inspect.getsource(cycle.__init__)
    where = "emulator/http/privates.py (abort_connection, a dropped connection)"
    assert inspect.iscoroutinefunction(cycle.send), changed(
        "uvicorn", f"{parser}.RequestResponseCycle.send (the ASGI send)", where
    )
    assert "self.transport = transport" in init, changed(
        "uvicorn", f"{parser}.RequestResponseCycle.transport", where
    )
    assert "self.disconnected = False" in init, changed(
        "uvicorn", f"{parser}.RequestResponseCycle.disconnected", where
    )


def test_abort_connection_leaves_a_send_that_is_not_uvicorns_alone() -> None:
    from emulator.http.privates import abort_connection

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    assert abort_connection(send) is False


# -- Pillow -------------------------------------------------------------------------------------
def test_glyph_masks_paste_ink_through_pillows_core() -> None:
    from PIL import Image, ImageFont

    from emulator.pictures.privates import core, ink_paster

    where = "emulator/pictures/privates.py (the glyph masks of emulator/pictures/fonts.py)"
    mask = ImageFont.load_default(12).getmask2("A", mode="L")[0]
    assert type(mask) is type(core(Image.new("L", (1, 1)))), changed(
        "pillow", "what ImageFont.getmask2 returns (no longer Image.im's core image)", where
    )
    square = Image.new("L", (2, 2), 200)
    line = Image.new("L", (4, 4), 0)
    ink_paster(line)(255, (1, 1, 3, 3), core(square))
    assert line.tobytes() == bytes([0] * 5 + [200, 200, 0, 0, 200, 200] + [0] * 5), changed(
        "pillow", "Image.im.paste(ink, box, mask)", where
    )


def test_coverage_is_copied_into_a_palette_picture_as_indices() -> None:
    from PIL import Image

    from emulator.pictures.privates import paste_indices

    picture = Image.new("P", (3, 1), 0)
    picture.putpalette([0, 0, 0] * 256)  # one colour: only the indices tell them apart
    coverage = Image.new("L", (2, 1), 255)
    paste_indices(picture, coverage, [7] * 255 + [9], (1, 0))
    assert picture.tobytes() == bytes([0, 9, 9]), changed(
        "pillow", "Image.im.point / Image.im.paste", "emulator/pictures/privates.py"
    )


# -- pytest -------------------------------------------------------------------------------------
def test_pytest_remembers_the_names_it_rewrites_where_the_plugin_takes_them_back(
    request: pytest.FixtureRequest,
) -> None:
    # The behaviour (the emulator imported plainly, the user's tests still rewritten) is
    # tests/test_pytest_plugin.py's; this names what changed when it fails.
    from emulator.testing.privates import skip_assertion_rewriting

    hook: Any = request.config.pluginmanager.rewrite_hook
    where = "emulator/testing/privates.py (skip_assertion_rewriting)"
    if type(hook).__name__ == "DummyRewriteHook":
        pytest.skip("this session runs with --assert=plain: pytest rewrites nothing")
    assert isinstance(getattr(hook, "_must_rewrite", None), set), changed(
        "pytest", "AssertionRewritingHook._must_rewrite", where
    )
    assert isinstance(getattr(hook, "_marked_for_rewrite_cache", None), dict), changed(
        "pytest", "AssertionRewritingHook._marked_for_rewrite_cache", where
    )
    hook.mark_rewrite("emulator_probe")
    assert "emulator_probe" in hook._must_rewrite, changed(
        "pytest", "where mark_rewrite keeps the names", where
    )
    hook._marked_for_rewrite_cache["emulator_probe.module"] = True
    skip_assertion_rewriting(request.config, "emulator_probe")
    assert "emulator_probe" not in hook._must_rewrite
    assert "emulator_probe.module" not in hook._marked_for_rewrite_cache


# -- schemathesis -------------------------------------------------------------------------------
def _fields(cls: type) -> set[str]:
    names: set[str] = set()
    for base in cls.__mro__:
        names |= set(inspect.get_annotations(base)) | set(getattr(base, "__slots__", ()))
    return names


def test_schemathesis_engine_hooks_and_binary_are_where_conform_finds_them() -> None:
    where = "emulator/conformance/privates.py"
    try:
        from emulator.conformance import privates
    except ImportError as exc:
        pytest.fail(changed("schemathesis", f"a module conform imports ({exc})", where))
    from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

    assert callable(GLOBAL_HOOK_DISPATCHER.unregister), changed(
        "schemathesis", "GLOBAL_HOOK_DISPATCHER.unregister", where
    )
    assert callable(privates.Binary), changed("schemathesis", "Binary", where)
    from schemathesis.engine.core import EventStream

    assert callable(getattr(EventStream, "stop", None)), changed(
        "schemathesis", "EventStream.stop (privates.stop)", where
    )
    statuses = {"ERROR", "SUCCESS", "SKIP"}
    assert statuses <= set(privates.Status.__members__), changed(
        "schemathesis", "engine.Status", where
    )


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("ScenarioFinished", {"recorder", "phase"}),
        ("FuzzScenarioFinished", {"recorder"}),
        ("NonFatalError", {"value", "phase", "label", "info"}),
        ("FatalError", {"exception"}),
        ("Interrupted", set()),
        ("PhaseStarted", {"phase"}),
        ("PhaseFinished", {"phase", "status"}),
    ],
)
def test_the_engine_events_conform_reads_keep_their_fields(name: str, fields: set[str]) -> None:
    from emulator.conformance.privates import events

    where = "emulator/conformance/engine.py (_execute)"
    event = getattr(events, name, None)
    assert event is not None, changed("schemathesis", f"engine.events.{name}", where)
    missing = fields - _fields(event)
    assert not missing, changed("schemathesis", f"engine.events.{name}'s {missing}", where)


def test_the_scenario_records_conform_reads_keep_their_fields() -> None:
    from schemathesis.engine.recorder import CheckFailureInfo, CheckNode, ScenarioRecorder

    where = "emulator/conformance/engine.py (collect)"
    for cls, fields in (
        (ScenarioRecorder, {"interactions", "cases", "checks"}),
        (CheckNode, {"name", "failure_info"}),
        (CheckFailureInfo, {"failure", "code_sample"}),
    ):
        missing = fields - _fields(cls)
        assert not missing, changed("schemathesis", f"{cls.__name__}'s {missing}", where)
