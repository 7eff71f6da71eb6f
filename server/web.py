"""HTTP glue shared by every route module: the app context, input, auth, responses and errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import completions, devices, patients, practitioners
from .config import Settings
from .db import Database
from .errors import AppError, NotFound, PayloadTooLarge, Unauthorized
from .devices import Me
from .patients import Patient
from .practitioners import Practitioner
from .push import PushSender, VapidKeys
from .security import CookieSigner
from .validate import Input, parse_json

log = logging.getLogger("homework")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
MAX_BODY = 64 * 1024
SESSION_COOKIE = "hw_session"


@dataclass
class Context:
    """What every handler needs, built once by the app's lifespan."""

    settings: Settings
    db: Database
    clock: Callable[[], datetime]
    session_signer: CookieSigner
    device_signer: CookieSigner
    vapid: VapidKeys
    # None when no VAPID subject is configured: nothing may be pushed then.
    sender: PushSender | None = None
    # Background work started by requests (test pushes), kept so it is not garbage-collected.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Patients' streaks, reused while their data is unchanged (completions.StreakMemo).
    streaks: completions.StreakMemo = field(default_factory=completions.StreakMemo)

    def now(self) -> datetime:
        return self.clock()


def ctx(request: Request) -> Context:
    return request.state.ctx  # type: ignore[no-any-return]


templates = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html", "xml", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def rate_html(value: float | None) -> Markup:
    """An adherence fraction as a coloured percentage, or a dash when nothing was scheduled.

    A filter, not a template macro: the patient list shows two per row, and a Jinja macro
    call costs several times a function call (measured: a fifth of the list's render time).
    """
    if value is None:
        return Markup('<span class="muted">–</span>')
    pct = round(value * 100)
    level = "rate-low" if pct < 50 else "rate-mid" if pct < 80 else "rate-high"
    return Markup(f'<span class="rate {level}">{pct}%</span>')


templates.filters["rate"] = rate_html


def render(request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    """Render a template with the request and the signed-in user available to it."""
    values = {"request": request, **(context or {})}
    return HTMLResponse(templates.get_template(name).render(values), status_code=status)


class JSON(JSONResponse):
    """Compact UTF-8 JSON encoded by orjson (a sixth of the standard encoder's time on the patient's today)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSON(data, status_code=status, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


async def read_json(request: Request) -> Input:
    """Read a JSON object body (at most 64 KiB) as validated Input."""
    body = await _read_body(request)
    return Input(parse_json(body))


async def read_form(request: Request) -> Input:
    await _read_body(request)  # enforces the size limit before multipart parsing
    form = await request.form(max_files=0, max_fields=200)
    data: dict[str, Any] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key in data:
            existing = data[key]
            data[key] = existing + [value] if isinstance(existing, list) else [existing, value]
        else:
            data[key] = value
    return Input(data, form=True)


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY} bytes.", {"body": "too large"})
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"The request body is larger than {MAX_BODY} bytes.", {"body": "too large"})
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # let request.form() reuse what we read
    return body


def path_id(request: Request, name: str = "id") -> int:
    """An id from the path; anything that is not a sane integer is simply not found."""
    raw = request.path_params[name]
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.isdigit() and len(raw) < 16:
        value = int(raw)
    else:
        raise NotFound()
    if not 0 < value < 2**62:
        raise NotFound()
    return value


# --- practitioner authentication ----------------------------------------------------------

async def current_practitioner(request: Request) -> Practitioner:
    """The practitioner behind a Bearer token or the session cookie; Unauthorized otherwise."""
    cached = getattr(request.state, "practitioner", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    c = ctx(request)
    auth = request.headers.get("authorization")
    practitioner = None
    if auth is not None:
        # A request that names a token is judged by that token alone, never by cookies.
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            practitioner = await practitioners.by_api_token(c.db, token.strip())
    else:
        session = c.session_signer.unsign(request.cookies.get(SESSION_COOKIE))
        if session:
            practitioner = await practitioners.by_session(c.db, session, now=c.now())
    if practitioner is None:
        raise Unauthorized("Sign in first.")
    request.state.practitioner = practitioner
    return practitioner


async def sign_in(request: Request, response: Response, practitioner: Practitioner) -> Response:
    """Start a browser session for practitioner and put its signed cookie on response."""
    c = ctx(request)
    token = await practitioners.start_session(c.db, practitioner, now=c.now())
    max_age = int(practitioners.SESSION_LIFETIME.total_seconds())
    set_cookie(response, c.settings, SESSION_COOKIE, c.session_signer.sign(token), max_age)
    return response


async def sign_out(request: Request, response: Response) -> Response:
    """End the browser session on the server and drop its cookie."""
    c = ctx(request)
    token = c.session_signer.unsign(request.cookies.get(SESSION_COOKIE))
    if token:
        await practitioners.end_session(c.db, token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def owned_patient(request: Request) -> tuple[Context, Patient]:
    """The context and the signed-in practitioner's patient named by the path's id (NotFound otherwise)."""
    me = await current_practitioner(request)
    c = ctx(request)
    return c, await patients.get(c.db, me.id, path_id(request))


def set_cookie(response: Response, settings: Settings, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", secure=settings.secure_cookies, path="/"
    )


# --- errors -------------------------------------------------------------------------------

def wants_json(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return path.startswith("/api/") or path == "/api" or path.endswith(".json")


def error_response(scope: Scope, exc: AppError) -> Response:
    """Render an AppError as the JSON error shape under /api, as a page elsewhere."""
    if wants_json(scope):
        return JSON(exc.body(), status_code=exc.status, headers=exc.headers)
    path: str = scope.get("path", "")
    if isinstance(exc, Unauthorized):
        if path.startswith("/app"):
            return RedirectResponse("/app/join", status_code=303)
        return RedirectResponse(f"/login?next={path}", status_code=303)
    # The patient app's pages keep its own look (and no link into the practitioner's side).
    page = "app/error.html" if path == "/app" or path.startswith("/app/") else "error.html"
    html = templates.get_template(page).render({"error": exc, "request": None})
    return HTMLResponse(html, status_code=exc.status, headers=exc.headers)


async def handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return error_response(request.scope, exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    err = AppError(exc.detail or "Error.", headers=dict(exc.headers or {}))
    err.status = exc.status_code
    err.code = codes.get(exc.status_code, "error")
    return error_response(request.scope, err)


async def handle_server_error(request: Request, exc: Exception) -> Response:
    # Only the type and path: request bodies may carry health data and never reach the logs.
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    err = AppError("Something went wrong on our side.")
    err.status, err.code = 500, "internal"
    return error_response(request.scope, err)


# --- headers ------------------------------------------------------------------------------

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'; manifest-src 'self'; worker-src 'self'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # Invite links carry a secret in the path: never send it on as a Referer.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Add the Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if api and not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- patient authentication ---------------------------------------------------------------

NOT_SIGNED_IN = "This phone is not signed in. Open your clinic's invite link or enter your code."


def device_token(request: Request) -> str | None:
    """The device token from a validly signed cookie, if there is one."""
    return ctx(request).device_signer.unsign(request.cookies.get(devices.COOKIE))


async def current_patient(request: Request) -> Me:
    """The patient behind the device cookie; Unauthorized when missing, revoked or archived."""
    cached = getattr(request.state, "me", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    c = ctx(request)
    token = device_token(request)
    me = await devices.authenticate(c.db, token, now=c.now()) if token else None
    if me is None:
        raise Unauthorized(NOT_SIGNED_IN)
    request.state.me = me
    return me


async def patient_today(request: Request) -> tuple[Me, dict[str, Any]]:
    """The signed-in patient and their today (completions.today_for_device: one query for both)."""
    c = ctx(request)
    token = device_token(request)
    found = await completions.today_for_device(c.db, c.streaks, token, now=c.now()) if token else None
    if found is None:
        raise Unauthorized(NOT_SIGNED_IN)
    request.state.me = found[0]
    return found


def client_address(request: Request) -> str:
    # uvicorn's proxy_headers has already replaced this with X-Forwarded-For from a trusted proxy.
    return request.client.host if request.client else "unknown"
