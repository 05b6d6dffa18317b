"""What never reaches a cassette: keys, tokens, signatures.

A cassette is meant to be kept and shared (committed beside the tests that use it), so every
secret is masked before a line is written, never after:

- the ``Authorization`` header becomes ``Bearer ***``; a short one-way ``key_id`` (a hash
  prefix) still tells two keys of one recording apart;
- headers that carry credentials (cookies, ``X-Api-Key``...) are masked or dropped;
- JSON members and query parameters with a secret's name (``key``, ``api_key``, ``token``,
  ``signature``, ``accessToken``...) are masked, whatever they hold (a list, an object), in
  requests and answers;
- every body that parses as JSON is masked as JSON whatever its content type says (a service
  may label JSON ``text/plain``); any other text is searched for URLs;
- every URL, a whole value or inside a longer text, any case of ``http(s)://`` or
  scheme-relative (``//cdn.example/…``), has its query values, its fragment and its user info
  masked in place: signed result URLs carry their credentials there (``X-Amz-Signature``,
  ``Expires`` + ``Signature``, ``sig``...), and the picture is named by the path;
- finally each secret learned in the exchange is replaced wherever it still occurs (in a
  body's texts, never in its numbers or its JSON syntax).

Only what looks like a credential is learned, since a learned value is scrubbed from every
text of the exchange: the key, and a masked value that is not a plain word or number (a
prompt's ``?style=watercolor`` is masked in its URL, but "watercolor" stays in the prompt).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .exchange import MAX_JSON_DEPTH, json_depth

MASK = "***"
#: Secrets shorter than this are not searched for in bodies (they would mangle ordinary text);
#: they are still masked wherever they are named (the header, a secret-named member).
MIN_SCRUBBED_CHARS = 4
#: A value under a credential's name is learned (searched for elsewhere) from this length on,
#: unless it is a plain word or number shorter than `CREDENTIAL_CHARS` (``"standard"``,
#: ``1024``: a ``policy`` member may hold one, and scrubbing it would mangle the answer).
MIN_LEARNED_CHARS = 8
#: A value under any other name (a URL's ``?s=…``) is learned only when it is this long and
#: mixes letters and digits, as signatures and tokens do.
CREDENTIAL_CHARS = 16
_PLAIN = re.compile(r"[A-Za-z]+|[0-9]+")
_TOKEN = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])[^\s]+")

#: Names (lower case, "-" read as "_") that hold a credential wherever they appear.
SECRET_NAMES = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "access_key",
        "secret",
        "secret_key",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "session_token",
        "auth",
        "authorization",
        "password",
        "passwd",
        "signature",
        "sig",
        "credential",
        "policy",
        "key_pair_id",
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
        "x_goog_signature",
        "x_goog_credential",
    }
)
#: Request and answer headers never written (they carry sessions or credentials).
DROPPED_HEADERS = frozenset({"cookie", "set-cookie", "proxy-authorization"})


#: A URL inside any text, up to a space, a quote, an angle bracket or a backslash: http(s) in
#: any case, or scheme-relative with a host name (``//cdn.example/…``, ``//u:p@cdn.example?…``;
#: not any ``//``: ``cat//@artist`` is a prompt).
_URL_IN_TEXT = re.compile(
    r"(?i)\bhttps?://[^\s\"'<>\\]+"
    r"|//(?:[^\s\"'<>\\/@]+@)?(?:[a-z0-9-]+\.)+[a-z]{2,}(?::[0-9]+)?(?=[/?#])[^\s\"'<>\\]*"
)
#: Punctuation that ends a sentence rather than the URL before it.
_TRAILING = ".,;:!?)]}"
#: Where a camelCase name changes word ("accessToken" is "access_token").
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Whether a member, parameter or header called ``name`` (snake, kebab or camel case)
    holds a credential."""
    normal = _CAMEL.sub("_", name.strip()).lower().replace("-", "_")
    return normal in SECRET_NAMES or normal.endswith(("_key", "_token", "_secret", "_signature"))


def learnable(value: str, *, named: bool) -> bool:
    """Whether a masked value is searched for in the rest of the exchange: under a
    credential's name (``named``) when not a short plain word or number, under any other name
    only when it looks like a token (long, letters and digits)."""
    if named and len(value) >= MIN_LEARNED_CHARS:
        return len(value) >= CREDENTIAL_CHARS or _PLAIN.fullmatch(value) is None
    return len(value) >= CREDENTIAL_CHARS and _TOKEN.fullmatch(value) is not None


def key_id(key: str) -> str:
    """A one-way name for a key: which key, never the key (12 hex digits of its SHA-256)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def caller(headers: Mapping[str, str]) -> str | None:
    """Who sent a request, as a cassette tells callers apart: None without an ``Authorization``
    header, else the key id of its key (``""`` for a header with no key in it)."""
    if "authorization" not in headers:
        return None
    key = bearer_key(headers)
    return key_id(key) if key else ""


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The bearer key of a request's headers (lower-case names), or None."""
    value = headers.get("authorization", "").strip()
    scheme, sep, rest = value.partition(" ")
    key = rest.strip() if sep and scheme.lower() == "bearer" else value
    return key or None


class Masker:
    """Masks one exchange. It learns the secrets it meets (the key, credential-like masked
    values) and scrubs them from everything masked after, so mask the request before the
    answer."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets: set[str] = set()
        for secret in secrets or []:
            self.learn(secret)

    def learn(self, secret: str) -> None:
        if len(secret) >= MIN_SCRUBBED_CHARS:
            self.secrets.add(secret)

    def _learn_masked(self, value: str, *, named: bool) -> None:
        if learnable(value, named=named):
            self.learn(value)

    # -- headers and queries -------------------------------------------------------------------
    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` (lower-case names) with credentials masked and session headers dropped."""
        out: dict[str, str] = {}
        for name, value in headers.items():
            if name in DROPPED_HEADERS:
                continue
            if name == "authorization":
                scheme, sep, rest = value.partition(" ")
                self.learn(rest.strip() if sep else value.strip())
                out[name] = f"{scheme} {MASK}" if sep else MASK
            elif secret_name(name):
                self._learn_masked(value.strip(), named=True)
                out[name] = MASK
            else:
                out[name] = self.text_urls(value)
        return out

    def query(self, query: str, *, every_value: bool = False) -> str:
        """A query string with secret-named values masked (``every_value``: all of them, the
        others learned only when they look like a token)."""
        if not query:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = []
        for name, value in pairs:
            named = secret_name(name)
            if every_value or named:
                self._learn_masked(value, named=named)
                masked.append((name, MASK if value else value))
            else:
                masked.append((name, value))
        return self.text(urlencode(masked, safe="*"))

    def url(self, url: str) -> str:
        """A URL: user info, every query value and the fragment masked (kept as it was when
        it has none of them)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        netloc, fragment = parts.netloc, parts.fragment
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            for secret in userinfo.split(":"):
                self._learn_masked(secret, named=True)
            netloc = f"{MASK}@{host}"
        query = self.query(parts.query, every_value=True)
        if fragment:
            # A fragment may carry a token (``#access_token=…``): values masked, or all of it.
            fragment = self.query(fragment, every_value=True) if "=" in fragment else MASK
        if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
            return self.text(url)
        out = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
        if parts.scheme:  # urlsplit lower-cases the scheme: keep the URL's own
            out = url[: len(parts.scheme)] + out[len(parts.scheme) :]
        return self.text(out)

    def text_urls(self, text: str) -> str:
        """``text`` with every URL in it masked (`url`), then known secrets scrubbed."""

        return self.text(_URL_IN_TEXT.sub(self._url_in_text, text))

    # -- bodies --------------------------------------------------------------------------------
    def json_value(self, value: Any) -> Any:
        """A parsed JSON value with secret-named members and URLs masked (known secrets are
        scrubbed after, by `scrub`)."""
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                named = secret_name(str(name))
                out[name] = self.all(item, named=True) if named else self.json_value(item)
            return out
        if isinstance(value, list):
            return [self.json_value(item) for item in value]
        if isinstance(value, str):
            return _URL_IN_TEXT.sub(self._url_in_text, value)
        return value

    def _url_in_text(self, match: re.Match[str]) -> str:
        found = match.group(0)
        core = found.rstrip(_TRAILING)
        return self.url(core) + found[len(core) :]

    def all(self, value: Any, *, named: bool) -> Any:
        """A secret-named member's value: every text or number in it masked in place, its
        shape kept (a list of keys stays a list). Texts are learned (`learnable`: ``named``
        for the value itself, its list items and members with a credential's name); numbers
        never are (scrubbing digits would mangle other numbers, and JSON)."""
        if isinstance(value, dict):
            return {k: self.all(item, named=secret_name(str(k))) for k, item in value.items()}
        if isinstance(value, list):
            return [self.all(item, named=named) for item in value]
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            self._learn_masked(value, named=named)
        return MASK

    def scrub(self, value: Any) -> Any:
        """A parsed JSON value with known secrets replaced in its texts and member names;
        numbers and the JSON around them are left alone."""
        if isinstance(value, dict):
            return {self.text(str(k)): self.scrub(item) for k, item in value.items()}
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        return self.text(value) if isinstance(value, str) else value

    def text(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for secret in sorted(self.secrets, key=len, reverse=True):
            data = data.replace(secret.encode("utf-8"), MASK.encode())
        return data

    def body(self, data: bytes) -> tuple[bytes, bool]:
        """(masked bytes, whether anything changed). A body that parses as JSON is masked as
        JSON whatever its label (a JSON body that masking changed is written again
        compactly); other text, and JSON nested past `MAX_JSON_DEPTH`, has its URLs masked;
        bytes that are not text have known secrets scrubbed."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            scrubbed = self.data(data)  # bytes (a picture, an upload): only known secrets
            return scrubbed, scrubbed != data
        parsed = _parse(text)
        if parsed is _UNPARSED:
            masked = self.text_urls(text).encode("utf-8")
            return masked, masked != data
        # Learn first (secret-named members, URL queries), then scrub what remains.
        value = self.scrub(self.json_value(parsed))
        if value == parsed:
            return data, False
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), True


_UNPARSED = object()


def _parse(text: str) -> Any:
    """``text``'s JSON value, or `_UNPARSED` when it is not JSON or nests too deeply to mask
    as JSON (Python's json recurses: RecursionError)."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return _UNPARSED
    return parsed if json_depth(parsed) <= MAX_JSON_DEPTH else _UNPARSED
