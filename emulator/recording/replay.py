"""``serve --replay DIR``: the real service's recorded answers, served again without it.

- a submission is matched by its body (masked as the recorder masked it) and its caller's key
  (`matching`): the k-th identical submission gets the k-th recorded answer to it, then the
  last one again; a key never recorded is the recording's key when only one was served;
- each caller's polls of a task (told apart by key id, as the recorder wrote them) get that
  caller's recorded polls in order, then its last answer again; a HEAD looks without using
  one up;
- result pictures recorded by hash are served at ``/_recording/results/{sha256}``, and an
  answer that names a recorded picture names it there (on this server's address);
- anything not recorded is a 404 ``not_recorded`` whose message names what was missing.

Recorded answers are sent byte for byte (status, the recorded headers, the body), except the
URLs of recorded pictures. ``POST /_recording/rewind`` starts every sequence again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import EmulatorError
from ..http.errors import exception_handlers
from ..http.privates import anchor_at_end
from .cassette import Cassette, Exchange
from .masking import Masker, caller
from .matching import describe, submission_key
from .recorder import POLL_PATH, RECORDED_REQUEST_HEADERS, SUBMIT_PATH

RESULTS_PATH = "/_recording/results/{sha}"
#: Largest submission body read (as the emulator's default max_body_bytes).
MAX_BODY_BYTES = 32 * 1024 * 1024


class NotRecorded(EmulatorError):
    status_code = 404
    code = "not_recorded"


class Replayer:
    """The recorded answers of one cassette, and how far each sequence has been played."""

    def __init__(self, cassette: Cassette) -> None:
        self.cassette = cassette
        self.submissions: dict[str, list[Exchange]] = defaultdict(list)
        #: How many submissions each caller (key id, None: no key) made.
        self.submitted: dict[str | None, int] = defaultdict(int)
        #: Each task's polls by caller: each key replays its own sequence, as the service
        #: answered it (the owner's polls, another key's refusals).
        self.polls: dict[tuple[str, str | None], list[Exchange]] = defaultdict(list)
        #: Masked result URL -> hash of the picture recorded for it.
        self.pictures: dict[str, str] = {}
        self.media_types: dict[str, str] = {}
        for exchange in cassette.exchanges:
            if exchange.kind == "submit":
                body = cassette.body(exchange.request_body) or b""
                key = submission_key(exchange.request_content_type, body, exchange.caller)
                self.submissions[key].append(exchange)
                self.submitted[exchange.caller] += 1
            elif exchange.kind == "poll" and exchange.task_id is not None:
                self.polls[(exchange.task_id, exchange.caller)].append(exchange)
            elif exchange.kind == "result" and exchange.status == 200 and exchange.url:
                sha = (exchange.response_body or {}).get("blob")
                if isinstance(sha, str):
                    self.pictures[exchange.url] = sha
                    self.media_types[sha] = exchange.content_type or "application/octet-stream"
        self.played: dict[Any, int] = {}
        task_routes = [e for e in cassette.exchanges if e.kind in ("submit", "poll")]
        #: Every key id recorded: each replays its own answers (a refused key its refusals).
        self.recorded_keys = {e.caller for e in task_routes} - {None}
        served = {e.caller for e in task_routes if e.status and 200 <= e.status < 300}
        served -= {None}
        #: The one key the service served (a 2xx), when only one was: a key never recorded
        #: then replays as it, so a CI without the recording's real key replays its cassette
        #: (the made-up key of conform's 401 check, only ever refused, does not count).
        #: With several, a key never recorded has nothing to replay.
        self.sole_key = next(iter(served)) if len(served) == 1 else None

    def caller(self, headers: Any) -> str | None:
        """The caller as the recording knows it: its key id (None: it sent no key), or, for a
        key never recorded, the sole key the service served, when there is one."""
        who = caller(headers)
        if who is None or who in self.recorded_keys or self.sole_key is None:
            return who
        return self.sole_key

    def rewind(self) -> None:
        self.played.clear()

    def next(self, table: str, key: Any, recorded: list[Exchange], *, advance: bool) -> Exchange:
        """The next answer of a sequence (the last once all were played); ``advance`` False
        (a HEAD) looks at it without using it up."""
        done = self.played.get((table, key), 0)
        if advance:
            self.played[(table, key)] = done + 1
        return recorded[min(done, len(recorded) - 1)]

    def answer(self, exchange: Exchange, base_url: str) -> Response:
        if exchange.status is None:
            said = exchange.error or "no reason recorded"
            if exchange.upstream_status is not None:
                said = f"the upstream answered {exchange.upstream_status}, but {said}"
            raise EmulatorError(
                f"the recording has no answer here (line {exchange.line}): {said}",
                status_code=502,
                code="recorded_no_answer",
            )
        body = self.cassette.body(exchange.response_body)
        if body is None:
            raise NotRecorded(
                f"the body recorded at line {exchange.line} is missing from the cassette's blobs"
            )
        body = self._local_pictures(body, base_url)
        response = Response(body, status_code=exchange.status)
        # Values as the recorder kept them: UTF-8 text (the same bytes as Latin-1 for ASCII).
        response.raw_headers.extend(
            (name.encode("ascii"), value.encode("utf-8"))
            for name, value in exchange.response_headers.items()
        )
        return response

    def _local_pictures(self, body: bytes, base_url: str) -> bytes:
        """``body`` with each recorded picture's URL pointing at this server."""
        if not self.pictures or b"http" not in body:
            return body
        text = body.decode("utf-8", "replace")
        for url, sha in self.pictures.items():
            local = base_url.rstrip("/") + RESULTS_PATH.format(sha=sha)
            for form in {json.dumps(url)[1:-1], json.dumps(url, ensure_ascii=False)[1:-1]}:
                text = text.replace(form, local)
        return text.encode("utf-8")


async def _read_bounded(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise EmulatorError(
                f"the request body is larger than {MAX_BODY_BYTES} bytes",
                status_code=413,
                code="request_too_large",
            )
    return bytes(body)


def _replayer(request: Request) -> Replayer:
    replayer: Replayer = request.app.state.replayer
    return replayer


def _masked(request: Request, body: bytes) -> bytes:
    """``body`` masked as the recorder masked the recorded one (its key and query first, as
    the recorder learns them), so a submission whose body held a URL or a secret matches."""
    masker = Masker()
    masker.headers({k: v for k, v in request.headers.items() if k in RECORDED_REQUEST_HEADERS})
    masker.query(request.url.query)
    return masker.body(body)[0]


def _who(caller: str | None) -> str:
    return "without a key" if caller is None else f"with this key (key id {caller or 'empty'})"


async def submit(request: Request) -> Response:
    replayer = _replayer(request)
    body = _masked(request, await _read_bounded(request))
    content_type = request.headers.get("content-type", "")
    who = replayer.caller(request.headers)
    key = submission_key(content_type, body, who)
    recorded = replayer.submissions.get(key)
    if not recorded:
        count = replayer.submitted.get(who, 0)
        raise NotRecorded(
            f"no recorded submission has this body ({describe(content_type, body)}) "
            f"{_who(who)}; the cassette holds {count} submission(s) {_who(who)} (bodies "
            "compared as the recorder masked them: URL query values, secret-named members)"
        )
    exchange = replayer.next("submit", key, recorded, advance=True)
    return replayer.answer(exchange, str(request.base_url))


async def poll(request: Request) -> Response:
    replayer = _replayer(request)
    task_id = request.path_params["task_id"]
    who = replayer.caller(request.headers)
    recorded = replayer.polls.get((task_id, who))
    if not recorded:
        others = [c for (t, c) in replayer.polls if t == task_id and c != who]
        hint = ""
        if others:
            keys = sum(c is not None for c in others)
            said = [f"with {keys} {'other ' if who is not None else ''}key(s)"] if keys else []
            said += ["without a key"] if None in others else []
            hint = f" (it has polls {' and '.join(said)})"
        raise NotRecorded(f"the cassette has no poll of task {task_id!r} {_who(who)}{hint}")
    # A HEAD (Starlette answers it on this route) is not a poll: it must not use one up.
    exchange = replayer.next("poll", (task_id, who), recorded, advance=request.method != "HEAD")
    return replayer.answer(exchange, str(request.base_url))


async def picture(request: Request) -> Response:
    replayer = _replayer(request)
    sha = request.path_params["sha"]
    media_type = replayer.media_types.get(sha)
    data = replayer.cassette.blob(sha) if media_type is not None else None
    if media_type is None or data is None:
        raise NotRecorded(f"the cassette holds no result picture with hash {sha[:80]!r}")
    return Response(data, media_type=media_type)


async def rewind(request: Request) -> Response:
    _replayer(request).rewind()
    return JSONResponse({"status": "rewound"})


async def health(request: Request) -> Response:
    replayer = _replayer(request)
    return JSONResponse(
        {
            "status": "ok",
            "mode": "replay",
            "exchanges": len(replayer.cassette.exchanges),
            "warnings": len(replayer.cassette.warnings),
        }
    )


async def _not_recorded(request: Request) -> Response:
    raise NotRecorded(
        f"{request.method} {request.url.path} is not something a cassette records: the replay "
        f"answers POST {SUBMIT_PATH}, GET {POLL_PATH} and recorded result pictures"
    )


def create_replay_app(
    directory: str | Path, warn: Callable[[str], None] | None = None
) -> Starlette:
    """The replay server of the cassette in ``directory``. ``warn`` is told each line skipped;
    FileNotFoundError: no cassette there; ValueError: not one line of it can be replayed (an
    empty, foreign or damaged cassette would otherwise answer only ``not_recorded``)."""
    cassette = Cassette.load(directory)
    for warning in cassette.warnings:
        (warn or (lambda _: None))(warning)
    if not any(e.kind in ("submit", "poll", "result") for e in cassette.exchanges):
        skipped = len(cassette.warnings)
        why = f"all {skipped} line(s) were skipped" if skipped else "it holds no exchange"
        raise ValueError(f"nothing to replay in {directory}: {why}")
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route(SUBMIT_PATH, submit, methods=["POST"]),
        Route(POLL_PATH, poll, methods=["GET"]),
        Route(RESULTS_PATH, picture, methods=["GET"]),
        Route("/_recording/rewind", rewind, methods=["POST"]),
        Route("/_recording/health", health, methods=["GET"]),
        Route("/{path:path}", _not_recorded, methods=every),
    ]
    anchor_at_end(routes)  # a path ending in %0A is no route's (Starlette's "$" allows it)
    app = Starlette(
        routes=routes,
        exception_handlers=dict(exception_handlers()),
    )
    app.state.replayer = Replayer(cassette)
    return app


__all__ = ["NotRecorded", "Replayer", "create_replay_app"]
