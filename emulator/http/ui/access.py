"""Who may use the dashboard, and which forms it takes.

The dashboard is a control plane. With ``admin_token`` set it needs that token: sent as
``X-Emulator-Token`` like the rest of ``/_emulator``, or typed once into a form and then kept
in a session cookie. The cookie holds an HMAC of the token, never the token itself, so it opens
the dashboard and nothing else; it is HttpOnly, SameSite=Strict and scoped to the dashboard.

Every state-changing form is checked twice against cross-site requests: the browser's
``Origin`` (or ``Sec-Fetch-Site``) must name this very origin, and the form must carry the
value of the dashboard's CSRF cookie (a double submit: a page of another site can neither read
that cookie nor, SameSite=Strict, have the browser send it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

from ...errors import EmulatorError
from ..guard import emulator_of, is_admin
from . import PREFIX
from .forms import Form

SESSION_COOKIE = "emulator_ui_session"
CSRF_COOKIE = "emulator_ui_csrf"
CSRF_FIELD = "csrf"
#: What ``secrets.token_urlsafe(32)`` gives: a CSRF cookie of any other form is replaced.
_CSRF_FORM = re.compile(r"[A-Za-z0-9_-]{43}")
_SESSION_PURPOSE = b"image-task-emulator dashboard session v1"


class CrossSiteRequest(EmulatorError):
    """A form that did not come from a page of this dashboard."""

    status_code = 403
    code = "cross_site_request"


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: the same on every worker and after a restart
    (nothing to share), useless as an ``X-Emulator-Token``."""
    return hmac.new(token.encode("ascii"), _SESSION_PURPOSE, hashlib.sha256).hexdigest()


def token_required(request: Request) -> bool:
    return bool(emulator_of(request).settings.admin_token)


def signed_in(request: Request) -> bool:
    """No ``admin_token`` is set, or the request carries it (header) or its session cookie."""
    token = emulator_of(request).settings.admin_token
    if not token or is_admin(request):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return secrets.compare_digest(cookie.encode("utf-8"), session_value(token).encode("ascii"))


def token_matches(request: Request, given: str) -> bool:
    token = emulator_of(request).settings.admin_token or ""
    return bool(token) and secrets.compare_digest(given.encode("utf-8"), token.encode("ascii"))


def csrf_token(request: Request) -> str:
    """The token this page's forms carry: the CSRF cookie's, or a fresh one (``set_cookies``
    then sends it)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if _CSRF_FORM.fullmatch(cookie):
        return cookie
    fresh: str | None = request.scope.setdefault("state", {}).get("ui_csrf")
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.scope["state"]["ui_csrf"] = fresh
    return fresh


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    # No Max-Age: a session cookie, gone when the browser closes. Secure when served over TLS.
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def set_cookies(response: Response, request: Request) -> None:
    """Send the CSRF cookie drawn for this page, if one was."""
    fresh = request.scope.get("state", {}).get("ui_csrf")
    if fresh is not None:
        _set_cookie(response, request, CSRF_COOKIE, fresh)


def sign_in(response: Response, request: Request) -> None:
    token = emulator_of(request).settings.admin_token
    if token:
        _set_cookie(response, request, SESSION_COOKIE, session_value(token))


def sign_out(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def check_same_site(request: Request, form: Form) -> None:
    """403 unless the form came from a page of this dashboard (see the module's doc)."""
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.lower() != _own_origin(request):
            raise CrossSiteRequest(
                "this form was sent from another origin; use the dashboard's own pages"
            )
    else:
        # Browsers send Origin with every POST (Sec-Fetch-Site where they do not): a form
        # showing neither as this origin came from no page of the dashboard, whatever its
        # CSRF field ("none", a navigation of the user's own, is no page either).
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is None:
            raise CrossSiteRequest(
                "this form carries no Origin (or Sec-Fetch-Site) header naming this origin; "
                "send it from the dashboard's own pages"
            )
        if fetch_site != "same-origin":
            raise CrossSiteRequest(
                "this form was sent from another site (Sec-Fetch-Site); use the dashboard's pages"
            )
    sent = form.pop(CSRF_FIELD, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (
        _CSRF_FORM.fullmatch(cookie)
        and secrets.compare_digest(sent.encode("utf-8"), cookie.encode("ascii"))
    ):
        raise CrossSiteRequest(
            "the form's csrf field does not match the dashboard's cookie: reload the page "
            "and send the form again",
            field=CSRF_FIELD,
        )


def safe_next(value: str | None) -> str:
    """Where to go after a form: a path of the dashboard, never another site."""
    if (
        value
        and (value == PREFIX or value.startswith(PREFIX + "/") or value.startswith(PREFIX + "?"))
        and "//" not in value
        and ".." not in value
        and "\\" not in value
        and value.isprintable()
        and len(value) <= 2048
    ):
        return value
    return PREFIX


__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "PREFIX",
    "SESSION_COOKIE",
    "CrossSiteRequest",
    "check_same_site",
    "csrf_token",
    "safe_next",
    "set_cookies",
    "sign_in",
    "sign_out",
    "signed_in",
    "token_matches",
    "token_required",
]
