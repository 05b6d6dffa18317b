"""What never reaches a cassette: keys, tokens, signatures.

A cassette is meant to be kept and shared (committed beside the tests that use it), so every
secret is masked before a line is written, never after:

- the ``Authorization`` header becomes ``Bearer ***``; a short one-way ``key_id`` (a hash
  prefix) still tells two keys of one recording apart;
- headers that carry credentials (cookies, ``X-Api-Key``...) are masked or dropped;
- JSON members and query parameters with a secret's name (``key``, ``api_key``, ``token``,
  ``signature``...) are masked, in requests and answers;
- every URL in an answer has its query values masked: signed result URLs carry their
  credentials there (``X-Amz-Signature``, ``Expires`` + ``Signature``, ``sig``...), and the
  picture is named by the path;
- finally each secret seen in the exchange (the key, a masked value) is replaced wherever it
  still occurs, in any body, as text or bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
#: Secrets shorter than this are not searched for in bodies (they would mangle ordinary text);
#: they are still masked wherever they are named (the header, a secret-named member).
MIN_SCRUBBED_CHARS = 4

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


def secret_name(name: str) -> bool:
    """Whether a member, parameter or header called ``name`` holds a credential."""
    normal = name.strip().lower().replace("-", "_")
    return normal in SECRET_NAMES or normal.endswith(("_key", "_token", "_secret", "_signature"))


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
    """Masks one exchange. It learns the secrets it meets (the key, masked values) and scrubs
    them from everything masked after, so mask the request before the answer."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets: set[str] = set()
        for secret in secrets or []:
            self.learn(secret)

    def learn(self, secret: str) -> None:
        if len(secret) >= MIN_SCRUBBED_CHARS:
            self.secrets.add(secret)

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
                self.learn(value.strip())
                out[name] = MASK
            else:
                out[name] = self.text(value)
        return out

    def query(self, query: str, *, every_value: bool = False) -> str:
        """A query string with secret-named values masked (``every_value``: all of them)."""
        if not query:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = []
        for name, value in pairs:
            if every_value or secret_name(name):
                if value:
                    self.learn(value)
                masked.append((name, MASK if value else value))
            else:
                masked.append((name, value))
        return self.text(urlencode(masked, safe="*"))

    def url(self, url: str) -> str:
        """A URL from an answer: credentials in it masked, every query value masked."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            for secret in userinfo.split(":"):
                self.learn(secret)
            netloc = f"{MASK}@{host}"
        query = self.query(parts.query, every_value=True)
        return self.text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))

    # -- bodies --------------------------------------------------------------------------------
    def json_value(self, value: Any) -> Any:
        """A parsed JSON value with secret-named members and URL queries masked."""
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                if secret_name(str(name)) and isinstance(item, str | int | float):
                    self.learn(str(item))
                    out[name] = MASK
                else:
                    out[name] = self.json_value(item)
            return out
        if isinstance(value, list):
            return [self.json_value(item) for item in value]
        if isinstance(value, str):
            if value.startswith(("http://", "https://")):
                return self.url(value)
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for secret in sorted(self.secrets, key=len, reverse=True):
            data = data.replace(secret.encode("utf-8"), MASK.encode())
        return data

    def body(self, data: bytes, content_type: str) -> tuple[bytes, bool]:
        """(masked bytes, whether anything changed). A JSON body whose masking changed
        something is written again compactly; any other body only has secrets scrubbed."""
        if "json" in content_type.lower():
            try:
                parsed = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                parsed = _UNPARSED
            if parsed is not _UNPARSED:
                # Learn first (secret-named members, URL queries), then scrub what remains.
                masked = self.json_value(parsed)
                if masked != parsed:
                    text = json.dumps(masked, ensure_ascii=False, separators=(",", ":"))
                    return self.data(text.encode("utf-8")), True
        scrubbed = self.data(data)
        return scrubbed, scrubbed != data


_UNPARSED = object()
