"""The `homework` command: serve, migrate, worker, send-reminders, practitioner create, backup."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .config import ConfigError, Settings, settings_from_env

if TYPE_CHECKING:
    from .scheduler import Scheduler

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run main on uvloop when it is installed (uvicorn serves the app on it), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    # The push fan-out is event-loop bound: uvloop's C transports cost less per request.
    return uvloop.run(main)


def app_from_env():  # type: ignore[no-untyped-def]
    """Build the app from the environment (uvicorn's factory for --workers)."""
    from .app import create_app

    return create_app(settings_from_env())


def require_push(settings: Settings) -> None:
    if not settings.vapid_subject:
        raise ConfigError(
            "HOMEWORK_VAPID_SUBJECT is required to send reminders (e.g. mailto:admin@yourclinic.org);"
            " set it, or HOMEWORK_SCHEDULER=off"
        )


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if settings.scheduler:
        require_push(settings)
    if "HOMEWORK_BASE_URL" not in os.environ and (args.host, args.port) != ("127.0.0.1", 8000):
        # Invite links must point where this server really listens; worker processes read it too.
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        os.environ["HOMEWORK_BASE_URL"] = f"http://{host}:{args.port}"
        settings = settings_from_env()

    if args.demo:
        from . import demo

        url, code = asyncio.run(demo.seed(settings))
        print(
            f"\nHomework is starting at {settings.base_url}\n"
            f"  Practitioner login: {demo.DEMO_EMAIL} / {demo.DEMO_PASSWORD}  ({settings.base_url}/login)\n"
            f"  Demo patient invite link: {url}\n"
            f"  Or type this code in the app: {code}\n",
            flush=True,
        )
    uvicorn.run(
        "server.cli:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        log_level="info",
    )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from . import exercises
    from .clock import utcnow
    from .db import Database, migrate

    async def run() -> list[int]:
        async with Database(settings.db_path) as db:
            applied = await migrate(db)
            await exercises.sync_builtins(db, now=utcnow())
            return applied

    applied = asyncio.run(run())
    print(f"applied migrations {applied}" if applied else "database is up to date")
    return 0


def cmd_practitioner_create(settings: Settings, args: argparse.Namespace) -> int:
    from . import practitioners
    from .clock import utcnow
    from .db import Database, migrate
    from .errors import Conflict
    from .validate import Input

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if not password:
        print("error: give the password on standard input with --password-stdin", file=sys.stderr)
        return 2
    if len(password) < 10:
        print("error: the password must be at least 10 characters", file=sys.stderr)
        return 2
    data = Input({"email": args.email, "name": args.name})
    email, name = data.text("email", max_len=254), data.text("name", max_len=120)
    if data.errors or "@" not in (email or ""):
        print("error: give a valid --email and --name", file=sys.stderr)
        return 2

    async def run() -> int:
        async with Database(settings.db_path) as db:
            await migrate(db)
            try:
                me = await practitioners.create(db, email=email, name=name, password=password, now=utcnow())
            except Conflict:
                print(f"error: {email} already has an account", file=sys.stderr)
                return 1
            print(f"created practitioner {me.id} <{me.email}>")
            return 0

    return asyncio.run(run())


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from .db import Database

    target = Path(args.path)
    if target.exists():
        print(f"error: {target} exists; choose a new file", file=sys.stderr)
        return 1

    async def run() -> None:
        async with Database(settings.db_path) as db:
            await db.backup(target)

    asyncio.run(run())
    print(f"backed up {settings.db_path} to {target}")
    return 0


async def _with_scheduler(settings: Settings, work: Callable[[Scheduler], Awaitable[int]]) -> int:
    from . import exercises
    from .clock import utcnow
    from .db import Database, migrate
    from .push import PushSender, load_or_create_vapid_keys, make_client_session
    from .scheduler import Scheduler

    require_push(settings)
    assert settings.vapid_subject is not None
    async with Database(settings.db_path) as db, make_client_session() as session:
        await migrate(db)
        await exercises.sync_builtins(db, now=utcnow())
        keys = load_or_create_vapid_keys(settings.data_dir)
        sender = PushSender(keys, settings.vapid_subject, session, extra_origins=settings.push_allowed_origins)
        return await work(Scheduler(db, sender, clock=utcnow, interval=settings.scheduler_interval))


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    async def work(scheduler: Scheduler) -> int:
        print(f"reminder worker running, every {scheduler.interval:g} s (Ctrl-C to stop)", flush=True)
        await scheduler.run()
        return 0

    try:
        return run_loop(_with_scheduler(settings, work))
    except KeyboardInterrupt:
        return 0


def cmd_send_reminders(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            print(f"error: --at must be an ISO 8601 time like 2026-03-02T19:30:00Z, not {args.at!r}", file=sys.stderr)
            return 2
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)

    async def work(scheduler: Scheduler) -> int:
        report = await scheduler.tick(at)
        print(report.line())
        return 0

    return run_loop(_with_scheduler(settings, work))


def cmd_vapid_public_key(settings: Settings, args: argparse.Namespace) -> int:
    from .push import load_or_create_vapid_keys

    print(load_or_create_vapid_keys(settings.data_dir).application_server_key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homework", description="Home exercise programs for clinics.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes over one database")
    serve.add_argument("--demo", action="store_true", help="create demo data and print its logins")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    prac = sub.add_parser("practitioner", help="manage practitioner accounts")
    prac_sub = prac.add_subparsers(dest="action", required=True)
    create = prac_sub.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(func=cmd_practitioner_create)

    sub.add_parser("worker", help="run only the reminder scheduler (for several web processes)").set_defaults(
        func=cmd_worker
    )
    send = sub.add_parser("send-reminders", help="run one scheduler pass and print what it did")
    send.add_argument("--at", help="act as if it were this time (ISO 8601, UTC if no offset)")
    send.set_defaults(func=cmd_send_reminders)
    sub.add_parser("vapid-public-key", help="print the VAPID public key (applicationServerKey)").set_defaults(
        func=cmd_vapid_public_key
    )

    backup = sub.add_parser("backup", help="copy the database safely while it is in use")
    backup.add_argument("path")
    backup.set_defaults(func=cmd_backup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_env()
    except ConfigError as exc:
        print(f"homework: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(settings, args))
    except ConfigError as exc:
        print(f"homework: configuration error: {exc}", file=sys.stderr)
        return 2
