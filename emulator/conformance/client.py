"""conform's own exchanges with the service: `Client` sends a request (over the network, or
in-process to ``options.app``), times it and counts it; each `Answer` is then validated by
`validation.Validator` against the contract.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .deadline import Deadline
from .deviations import Report, Sample
from .evidence import NO_CREDIT, refusal_of
from .options import ConformOptions, rate_gap
from .samples import curl, excerpt

#: Largest answer read from the task routes (a task is a few hundred bytes).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: A 429 is retried this many times, after its Retry-After (at most MAX_RETRY_AFTER seconds).
MAX_429_RETRIES = 2
MAX_RETRY_AFTER = 60.0


@dataclass(slots=True)
class Answer:
    """One exchange: what was sent and what came back (or why nothing did)."""

    operation: str
    request: httpx.Request
    response: httpx.Response | None
    error: str | None
    elapsed: float

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status_code

    @property
    def refusal(self) -> str | None:
        """`RATE_LIMITED` or `NO_CREDIT` when the service declined to answer (see evidence)."""
        return None if self.response is None else refusal_of(self.status, self.response.content)

    def json(self) -> Any:
        """The body as JSON, or None."""
        if self.response is None:
            return None
        try:
            return self.response.json()
        except ValueError:
            return None

    def sample(self, line: str, detail: str = "") -> Sample:
        return Sample(
            line=line,
            detail=detail,
            request=curl(self.request),
            status=self.status,
            response=excerpt(self.response) if self.response is not None else f"({self.error})",
        )


class RunTimeUp(RuntimeError):
    """Raised instead of sending a request once the run's time (``--max-run-time``) is spent."""


def time_up(options: ConformOptions) -> str:
    """What a run says when its time ran out."""
    return (
        f"the run's time is up (--max-run-time {options.max_run_time:g} s): what was left of it "
        "was not sent"
    )


class Client:
    """HTTP to the service under test; the bearer key goes only to its task routes. Requests
    keep to the run's rate limit, like schemathesis' own.

    Each request has a deadline for all of it (connect, head, body: ``request_deadline``),
    besides httpx's per-read timeout, which a service trickling a byte every few seconds never
    trips; and none is sent after the run's own deadline (`RunTimeUp`)."""

    def __init__(
        self,
        options: ConformOptions,
        report: Report,
        tick: Callable[[], None] = lambda: None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options, self.report, self._tick = options, report, tick
        self.sleep, self.clock = sleep, clock
        self._gap = rate_gap(options.rate_limit)
        self._next_at = 0.0
        self.run_deadline: float | None = None
        self.start_run_clock()
        transport: httpx.BaseTransport | None = None
        if options.app is not None:
            from ..testing.transport import ASGITransport

            transport = ASGITransport(options.app)
            self.base_url = "http://127.0.0.1"
        else:
            self.base_url = (options.base_url or "").rstrip("/")
        self.http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(options.request_timeout, connect=options.connect_timeout),
            follow_redirects=False,
            # A fresh connection per request: its socket is known (see _read), so the deadline
            # can cut it. conform sends a few requests a second at most: the cost is small.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self.http.close()

    def start_run_clock(self) -> None:
        """``--max-run-time`` counts from now: the engine calls it again just before the first
        request, so building the contract's validators (seconds on a loaded machine) is not
        the service's time."""
        limit = self.options.max_run_time
        self.run_deadline = self.clock() + limit if limit else None

    def out_of_time(self) -> bool:
        """Whether the run's time (``--max-run-time``) is spent."""
        return self.run_deadline is not None and self.clock() >= self.run_deadline

    def auth(self, key: str | None = None) -> dict[str, str]:
        key = self.options.api_key if key is None else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = False,
        limit: int = MAX_ANSWER_BYTES,
        **content: Any,
    ) -> Answer:
        """Send one request; ``url`` is a path on the service or an absolute URL. At most
        ``limit`` bytes of the answer are read (more is an error, not a hang or a crash)."""
        absolute = url if "://" in url else self.base_url + url
        request = self.http.build_request(method, absolute, headers=headers, **content)
        request.read()  # a multipart body is a stream: buffer it, for the report and for retries
        self._pace()
        if self.out_of_time():
            raise RunTimeUp(time_up(self.options))
        started = time.perf_counter()
        response: httpx.Response | None = None
        error = None
        cut = Deadline(self.options.request_deadline)
        try:
            response = self._read(request, follow_redirects, limit, cut)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except _TooLarge as exc:
            error = str(exc)
        finally:
            cut.cancel()
        if cut.fired:
            response, error = (
                None,
                (
                    f"no complete answer within {self.options.request_deadline:g} s "
                    "(--request-deadline: connect, head and body together)"
                ),
            )
        elapsed = time.perf_counter() - started
        if response is not None:
            # Set by httpx only when its own stream closes; the in-process transport never does.
            response.elapsed = datetime.timedelta(seconds=elapsed)
        if response is None:
            self.report.exchange(operation, None)
        else:
            content_type = response.headers.get("content-type", "")
            self.report.exchange(operation, response.status_code, content_type, response.content)
        self._tick()
        return Answer(operation, request, response, error, elapsed)

    def send_patiently(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        on_limited: Callable[[Answer], object],
        **kwargs: Any,
    ) -> Answer:
        """`send`, retrying a 429 after its Retry-After; each 429 goes to ``on_limited`` first
        (to be checked), so a rate limit is never mistaken for the service's verdict. The answer
        may still be a refusal (`refusal`): the caller says it could not check."""
        for _ in range(MAX_429_RETRIES):
            answer = self.send(operation, method, url, **kwargs)
            if answer.status != 429 or answer.refusal == NO_CREDIT:
                return answer
            on_limited(answer)
            self.sleep(retry_after(answer, 1.0))
        return self.send(operation, method, url, **kwargs)

    def _pace(self) -> None:
        if not self._gap:
            return
        now = self.clock()
        if self._next_at > now:
            self.sleep(self._next_at - now)
        self._next_at = max(now, self._next_at) + self._gap

    def _read(
        self, request: httpx.Request, follow_redirects: bool, limit: int, cut: Deadline
    ) -> httpx.Response:
        # httpcore's trace hands over each new connection: the deadline's timer shuts its socket.
        request.extensions = {**request.extensions, "trace": cut.trace}
        response = self.http.send(request, follow_redirects=follow_redirects, stream=True)
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _TooLarge(f"the answer is larger than {limit} bytes; not read further")
        finally:
            response.close()
        # The body is decoded: the rebuilt answer must not claim an encoding or length.
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=bytes(body),
            request=request,
            extensions=response.extensions,
        )


class _TooLarge(Exception):
    pass


def retry_after(answer: Answer, fallback: float) -> float:
    """Seconds a 429 asks to wait (bounded); ``fallback`` when it does not say."""
    value = "" if answer.response is None else answer.response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return fallback
    return min(MAX_RETRY_AFTER, max(0.0, seconds)) if seconds == seconds else fallback
