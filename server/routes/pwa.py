"""The web app manifest and the service worker, both served from the root scope."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..web import STATIC_DIR, TEMPLATES_DIR

SW_SOURCE = TEMPLATES_DIR / "app" / "sw.js"
# What the worker stores at install: the shell every patient page needs, and every
# exercise illustration, so a routine never shows a broken picture offline.
PRECACHE_DIRS = ("css", "app", "icons", "exercises")
PRECACHE_PAGES = ("/app/offline", "/app/join", "/manifest.webmanifest")
THEME_COLOR = "#0e7490"
BACKGROUND_COLOR = "#f3f6f7"


def manifest_data() -> dict[str, object]:
    return {
        "id": "/app",
        "name": "Homework: your exercises",
        "short_name": "Homework",
        "description": "The stretches your practitioner gave you, with a timer, that work without a connection.",
        "lang": "en",
        "start_url": "/app",
        "scope": "/",
        "display": "standalone",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_COLOR,
        "icons": [
            {
                "src": "/static/icons/icon-192.png",
                "sizes": "192x192",
                "type": "image/png",
                "purpose": "any",
            },
            {
                "src": "/static/icons/icon-512.png",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "any",
            },
            {
                "src": "/static/icons/maskable-512.png",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
    }


def precache_files(static_dir: Path) -> list[Path]:
    files: list[Path] = []
    for name in PRECACHE_DIRS:
        folder = static_dir / name
        if folder.is_dir():
            files.extend(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return sorted(files)


@lru_cache(maxsize=8)
def service_worker(static_dir: Path = STATIC_DIR, source: Path = SW_SOURCE) -> tuple[str, str]:
    """Return (version, script): the version hashes every static file, the worker and the page templates.

    Computed once per process (the first request after start): a deploy that changes any of
    these files restarts the server, so browsers see a new sw.js, install it into a new cache
    and delete the old caches when it activates.
    """
    digest = hashlib.sha256()
    for base, paths in (
        (static_dir, static_dir.rglob("*")),
        (source.parent, source.parent.iterdir()),
    ):
        for path in sorted(p for p in paths if p.is_file()):
            digest.update(
                path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0"
            )
    version = digest.hexdigest()[:16]
    urls = list(PRECACHE_PAGES) + [
        "/static/" + p.relative_to(static_dir).as_posix() for p in precache_files(static_dir)
    ]
    script = (
        source.read_text()
        .replace("__VERSION__", version)
        .replace("__PRECACHE__", json.dumps(urls, indent=2))
    )
    return version, script


async def manifest(request: Request) -> Response:
    return JSONResponse(
        manifest_data(),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


async def sw_js(request: Request) -> Response:
    version, script = service_worker()
    return Response(
        script,
        media_type="text/javascript",
        # no-cache: the browser revalidates on every update check, so a deploy reaches
        # phones at their next visit instead of after an HTTP cache lifetime.
        headers={"Cache-Control": "no-cache", "ETag": f'"{version}"'},
    )


routes = [
    Route("/manifest.webmanifest", manifest, methods=["GET"]),
    Route("/sw.js", sw_js, methods=["GET"]),
]
