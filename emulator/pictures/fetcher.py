"""The opt-in fetcher of reference picture URLs (SPEC D-11: off by default).

With ``fetch_reference_urls`` on, an http(s) reference URL is downloaded at submission so the
result can derive from it. A test double must not become a way into the network it runs in,
so every fetch is fenced: the host must be on ``fetch_allow_hosts`` (when that list is set),
every address the name resolves to must be public unless ``fetch_allow_private`` is on,
redirects are not followed, the body is capped at ``fetch_max_bytes`` and the whole fetch at
``fetch_timeout`` seconds. A fetch that fails for any reason is a 400 naming the URL and why.

Known limit: the name is resolved once for the check and again by the HTTP client, so a DNS
server that answers differently the second time (DNS rebinding) could slip past the address
check. The allow-list does not have that hole; use it on shared machines.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx

from ..core.checks import shown
from ..errors import InvalidRequest
from .references import thumbnail_of


@dataclass(frozen=True, slots=True)
class Fences:
    """What a fetch may do (the ``fetch_*`` settings, fixed at start-up, and
    ``max_reference_pixels``)."""

    allow_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    timeout: float = 5.0
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 50_000_000


def host_allowed(host: str, allow_hosts: tuple[str, ...]) -> bool:
    """True when ``host`` matches the allow-list (empty: any host).

    Entries are exact host names or ``*.example.com``, which matches subdomains only.
    """
    if not allow_hosts:
        return True
    host = host.lower().rstrip(".")
    for entry in allow_hosts:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def _check_addresses(host: str, port: int, field: str, allow_private: bool) -> None:
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(
            f"{field}: cannot resolve host {shown(host)} ({exc})", field=field
        ) from None
    if allow_private:
        return
    for info in infos:
        address = str(info[4][0])
        if not is_public_address(address):
            raise InvalidRequest(
                f"{field}: refusing to fetch from {shown(host)}: it resolves to the non-public "
                f"address {address} (set fetch_allow_private to allow it)",
                field=field,
            )


async def fetch_picture(url: str, field: str, fences: Fences) -> bytes:
    """Download the picture at ``url`` within the fences; its thumbnail (PNG bytes)."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest(f"{field}: only http(s) URLs can be fetched", field=field)
    if not host_allowed(host, fences.allow_hosts):
        raise InvalidRequest(
            f"{field}: host {shown(host)} is not on fetch_allow_hosts "
            f"({', '.join(fences.allow_hosts)})",
            field=field,
        )
    limit = fences.max_bytes
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidRequest(f"{field}: the URL has an invalid port", field=field) from None
    try:
        with anyio.fail_after(fences.timeout):
            await _check_addresses(host, port, field, fences.allow_private)
            data = await _download(url, field, limit, fences.timeout)
    except TimeoutError:
        raise InvalidRequest(
            f"{field}: fetching {shown(url, 80)} took longer than {fences.timeout} s", field=field
        ) from None
    return await anyio.to_thread.run_sync(thumbnail_of, data, field, fences.max_pixels)


async def _download(url: str, field: str, limit: int, read_timeout: float) -> bytes:
    async with httpx.AsyncClient(
        timeout=read_timeout, follow_redirects=False, trust_env=False
    ) as client:
        try:
            async with client.stream("GET", url, headers={"Accept": "image/*"}) as response:
                if response.status_code != 200:
                    raise InvalidRequest(
                        f"{field}: fetching {shown(url, 80)} answered HTTP {response.status_code}"
                        + (" (redirects are not followed)" if response.is_redirect else ""),
                        field=field,
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise InvalidRequest(
                        f"{field}: the picture at {shown(url, 80)} is larger than the limit of "
                        f"{limit} bytes (fetch_max_bytes)",
                        field=field,
                    )
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > limit:
                        raise InvalidRequest(
                            f"{field}: the picture at {shown(url, 80)} is larger than the limit of "
                            f"{limit} bytes (fetch_max_bytes)",
                            field=field,
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise InvalidRequest(
                f"{field}: fetching {shown(url, 80)} failed: {type(exc).__name__}", field=field
            ) from None


__all__ = ["Fences", "fetch_picture", "host_allowed", "is_public_address"]
