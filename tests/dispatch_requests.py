"""Hypothesis strategies for requests near the dispatch's two routes (submission and poll,
result download), with bodies, headers, faults and paths of every kind the routes must answer
as Starlette does: drawn by tests/test_dispatch.py."""

from __future__ import annotations

import io
import json

from hypothesis import strategies as st
from PIL import Image

from .dispatch_pair import KEY, OTHER, TOKEN, UNKNOWN_TOKEN, Pair, Sent


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def _multipart(fields: dict[str, str], picture: bytes | None) -> tuple[bytes, bytes]:
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if picture is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            'filename="in.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + picture
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}".encode()


SUBMISSIONS = st.sampled_from(
    [
        {"model": "NanoBanana2-0.5K", "prompt": "a cat"},
        {"model": "NanoBanana2-0.5K", "prompt": "doomed"},
        {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024", "n": 2},
        {"model": "NanoBanana2-0.5K", "prompt": "x", "extra": 1, "more": [1, 2]},
        {"model": "nope", "prompt": "x"},
        {"model": "NanoBanana2-0.5K"},
        {"prompt": "x" * 5000},
        ["not", "an", "object"],
    ]
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    """A body and its Content-Type (None: no such header)."""
    kind = draw(st.sampled_from(["json"] * 3 + ["text", "multipart", "empty", "huge", "raw"]))
    if kind == "json":
        body = json.dumps(draw(SUBMISSIONS)).encode()
        return body, draw(st.sampled_from([b"application/json", b"application/json; x=1", None]))
    if kind == "multipart":
        fields = {"model": "NanoBanana2-0.5K", "prompt": draw(st.sampled_from(["x", "doomed"]))}
        return _multipart(fields, draw(st.sampled_from([_png(), b"not a png", None])))
    if kind == "huge":
        return b'{"prompt": "' + b"y" * 5000 + b'"}', b"application/json"
    if kind == "raw":
        return draw(st.binary(max_size=64)), draw(st.sampled_from([b"text/plain", None]))
    if kind == "text":
        return b'{"model": "NanoBanana2-0.5K", "prompt": ', b"application/json"
    return b"", draw(st.sampled_from([b"application/json", None]))


AUTHORIZATIONS = st.sampled_from(
    [f"Bearer {KEY}".encode()] * 9
    + [f"Bearer {OTHER}".encode()] * 2
    + [f"bearer   {KEY}  ".encode(), None, b"Bearer sk-unknown", b"Bearer", b"Bearer "]
    + [b"Basic abc", b"", b"Bearer \xe9\xff"]
)


#: Paths other than the two routes' own (an encoded slash arrives decoded in "path").
ODD_PATHS = [
    "/v1/images/tasks/",
    "/v1/images/tasks//",
    "/v1/images/tasks/a/b",
    "/v1/images/tasks\n",
    "/V1/images/tasks",
    "/v1/images/tasksx",
    "/v1/images/task",
    "/_emulator/health",
    "",
    "/_emulator/results/",
    "/_emulator/results/a/b",
    "/_emulator/results/a/b/c/d",
    "/_emulator/results//b/0.png",
    "/_emulator/results/a//0.png",
    "/_emulator/results/a/b/",
    "/_emulator/resultsx/a/b/0.png",
    "/_emulator/results",
]
#: Result names: the first is a task's first picture; the others other pictures, other
#: formats, names the route matches and the handler refuses, one past the route's regex.
RESULT_NAMES = ["0.png"] * 4 + ["1.png", "2.png", "0.jpeg", "00.png", "0.png\n", "\u00b2.png"]
RESULT_NAMES += ["0.PNG", "x", "0.png/", "é.png", "0.png?"]
#: Tokens: the task's own, then bad ones (the route matches them all but the empty one).
RESULT_TOKENS = [TOKEN] * 4 + [TOKEN + "\n", UNKNOWN_TOKEN, "", TOKEN + "x", "\n", "é"]


@st.composite
def requests(draw: st.DrawFn, pair: Pair) -> Sent:
    """A request near the two routes. Hypothesis favours the first of each list (and shrinks
    to it), so the first is the common case and repeats weigh the draws."""
    root_path = draw(st.sampled_from(["", "", "", "/api"]))
    # Drawn alike whatever the pair has seen (Hypothesis replays the draws): a task it made,
    # when there is one, or any text.
    made = draw(st.sampled_from([True, True, True, False]))
    pick, text = draw(st.integers(0, 7)), draw(st.text(max_size=12))
    known = pair.task_ids
    task_id = known[pick % len(known)] if made and known else text
    route = draw(st.sampled_from(["submit", "poll", "poll", "submit", "result", "result", "odd"]))
    token_of = None
    if route == "submit":
        tail = "/v1/images/tasks"
        method = draw(st.sampled_from(["POST"] * 5 + ["PUT", "GET", "HEAD", "OPTIONS"]))
    elif route == "result":
        token, name = draw(st.sampled_from(RESULT_TOKENS)), draw(st.sampled_from(RESULT_NAMES))
        tail, token_of = f"/_emulator/results/{task_id}/{token}/{name}", task_id
        method = draw(st.sampled_from(["GET"] * 4 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    else:
        tail = f"/v1/images/tasks/{task_id}"
        tail = draw(st.sampled_from([tail] * 4 + [tail + "/", tail + "\n"]))
        if route == "odd":
            tail = draw(st.sampled_from(ODD_PATHS))
        method = draw(st.sampled_from(["GET"] * 4 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    prefix = draw(st.sampled_from([root_path] * 3 + ["", "/apix"])) if root_path else ""
    headers = [(b"host", draw(st.sampled_from([b"127.0.0.1:8000", b"emulator.test"])))]
    authorization = draw(AUTHORIZATIONS)
    if authorization is not None:
        headers.append((b"authorization", authorization))
    body, content_type = draw(bodies()) if method in ("POST", "PUT") else (b"", None)
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if body and draw(st.booleans()):
        headers.append((b"content-length", str(len(body)).encode()))
    fault = draw(
        st.sampled_from(
            [None] * 8 + [b"e503", b"e429", b"drop", b"hang", b"respond", b"text", b"malformed"]
            + [b"empty"]
        )
    )  # fmt: skip
    if fault is not None:
        headers.append((b"x-fault", fault))
    if draw(st.sampled_from([False] * 15 + [True])):
        headers.append((b"x-padding", b"p" * 3000))  # past max_header_bytes: 431
    draw(st.randoms()).shuffle(headers)
    split = draw(st.none() | st.integers(0, max(len(body), 1)))
    query = draw(st.sampled_from([b"", b"", b"a=1&b=%C3%A9"]))
    return Sent(method, prefix + tail, root_path, headers, body, split, query, token_of)
