"""Sign-in: the page where a person pastes an API key, kept in the `agentqueue_key` cookie.

The cookie is HttpOnly (page scripts cannot read it), SameSite=Strict (another site's page
cannot make the browser send it) and Secure over https. The key travels only in the POST
body and the cookie: never in a URL, where it would land in logs and browser history.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import Headers

from agentqueue.api.dashboard.render import base_path, page
from agentqueue.api.deps import guard_of
from agentqueue.api.errors import HttpError, code_of
from agentqueue.api.security import COOKIE, Access, presented_key
from agentqueue.models import ApiScope

router = APIRouter(include_in_schema=False)

MAX_KEY_CHARS = 500


class SignInNeeded(Exception):
    """A dashboard page was asked for without an accepted key."""

    def __init__(self, next_path: str, rejected: bool) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.rejected = rejected


async def viewer(request: Request) -> Access:
    """The caller of a dashboard page (read scope), or `SignInNeeded` when a key is needed."""
    try:
        return await guard_of(request).check(request, ApiScope.READ)
    except HttpError as error:
        if code_of(error) != "unauthorized":
            raise
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInNeeded(target, rejected=presented_key(request) is not None) from None


Viewer = Annotated[Access, Depends(viewer)]
"""A dashboard page's caller: anyone the API would let read."""


async def to_sign_in(request: Request, error: Exception) -> Response:
    """Send the browser to the sign-in page, remembering where it was going."""
    assert isinstance(error, SignInNeeded)
    query = f"next={quote(error.next_path, safe='')}" + ("&rejected=1" if error.rejected else "")
    response = RedirectResponse(f"{base_path(request)}/login?{query}", status_code=303)
    if error.rejected:  # a revoked or unknown key in the cookie: forget it
        response.delete_cookie(COOKIE, path="/")
    return response


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@router.get("/login")
async def login_form(request: Request, next: str = "/", rejected: bool = False) -> Response:
    """The sign-in form (`rejected`: the saved key stopped working)."""
    message = "Your saved key was not accepted (revoked?). Sign in again." if rejected else None
    return await _form(request, safe_next(next), message)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the pasted key; when it may read, keep it in the cookie and go on."""
    if not _same_origin(request.headers):
        raise HttpError("forbidden", "sign-in must come from this site's own form")
    form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    key = (form.get("key") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    problem = await _key_problem(request, key)
    if problem is not None:
        return await _form(request, target, problem, status_code=401)
    response = RedirectResponse(base_path(request) + target, status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.api_route("/logout", methods=["GET", "POST"])
async def logout(request: Request) -> Response:
    """Forget the key: clear the cookie, back to the sign-in page."""
    response = RedirectResponse(f"{base_path(request)}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def _form(
    request: Request, target: str, message: str | None, status_code: int = 200
) -> Response:
    guard = guard_of(request)
    return page(
        request,
        "login.html",
        None,
        status_code=status_code,
        next_path=target,
        message=message,
        open_access=await guard.open_access(),
    )


async def _key_problem(request: Request, key: str) -> str | None:
    """Why `key` cannot sign in (None: it can). The app's guard judges it, as for any call."""
    if not key:
        return "Paste an API key."
    if len(key) > MAX_KEY_CHARS or not key.isascii():
        return "That is not an API key of this server."
    probe = Request(
        {
            "type": "http",
            "method": "GET",
            "path": request.url.path,
            "headers": [(b"authorization", b"Bearer " + key.encode("ascii"))],
            "app": request.app,
        }
    )
    try:
        await guard_of(request).check(probe, ApiScope.READ)
    except HttpError as error:
        if code_of(error) == "unauthorized":
            return "That key is unknown or revoked."
        return error.message
    return None


def _same_origin(headers: Headers) -> bool:
    """Whether a form post comes from a page of this host (stops another site signing a
    browser in with the other site's key). Browsers send `Origin` with every form post."""
    origin = headers.get("origin")
    if origin is None:  # not a browser's form post (curl, a script)
        return True
    return origin != "null" and urlsplit(origin).netloc == headers.get("host", "")
