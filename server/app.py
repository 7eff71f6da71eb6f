"""The application factory: create_app(settings) -> Starlette."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
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
from .collector import quiet_collector
from .config import Settings
from .db import Database, migrate
from .push import PushSender, load_or_create_vapid_keys, make_client_session
from .scheduler import Scheduler
from .errors import AppError
from .routes import api, insight, pages, patient_api, patient_pages, push_api, pwa
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


log = logging.getLogger("homework")


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    for task in list(tasks):
        await _cancel(task)


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """Build the app; the lifespan opens the database and migrates it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        db = Database(settings.db_path)
        await db.open()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(db.close)
            await migrate(db)
            await exercises.sync_builtins(db, now=clock())
            context = Context(
                settings=settings,
                db=db,
                clock=clock,
                session_signer=CookieSigner(settings.secret_key, "practitioner-session"),
                device_signer=CookieSigner(settings.secret_key, "patient-device"),
                vapid=load_or_create_vapid_keys(settings.data_dir),
            )
            if settings.vapid_subject:
                session = await stack.enter_async_context(make_client_session())
                context.sender = PushSender(
                    context.vapid, settings.vapid_subject, session, extra_origins=settings.push_allowed_origins
                )
            if settings.scheduler and context.sender is not None:
                scheduler = Scheduler(db, context.sender, clock=clock, interval=settings.scheduler_interval)
                task = asyncio.create_task(scheduler.run(), name="reminder-scheduler")
                stack.push_async_callback(_cancel, task)
            elif settings.scheduler:
                log.warning("reminders are off: set HOMEWORK_VAPID_SUBJECT to send them")
            stack.push_async_callback(_cancel_all, context.tasks)
            stack.enter_context(quiet_collector())
            yield {"ctx": context}

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.build(app.routes))

    routes = [
        # The router tries routes in order: the patient app's, asked at every open, go first.
        *patient_api.routes,
        *api.routes,
        *patient_pages.routes,
        *pwa.routes,
        *push_api.routes,
        *insight.routes,
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
