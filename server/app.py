"""The application factory: create_app(settings) -> Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import exercises, openapi
from .clock import utcnow
from .config import Settings
from .db import Database, migrate
from .errors import AppError
from .routes import api, pages, patient_api
from .security import CookieSigner, CrossOriginProtection
from .web import (
    STATIC_DIR,
    Context,
    SecurityHeaders,
    error_response,
    handle_app_error,
    handle_http_exception,
    handle_server_error,
)


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """Build the app; the lifespan opens the database and migrates it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        db = Database(settings.db_path)
        await db.open()
        try:
            await migrate(db)
            await exercises.sync_builtins(db, now=clock())
            context = Context(
                settings=settings,
                db=db,
                clock=clock,
                session_signer=CookieSigner(settings.secret_key, "practitioner-session"),
                device_signer=CookieSigner(settings.secret_key, "patient-device"),
            )
            yield {"ctx": context}
        finally:
            await db.close()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.build(app.routes))

    routes = [
        *api.routes,
        *patient_api.routes,
        *pages.routes,
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(CrossOriginProtection, origin=settings.origin, reject=error_response),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            AppError: handle_app_error,
            HTTPException: handle_http_exception,
            Exception: handle_server_error,
        },
    )
    return app
