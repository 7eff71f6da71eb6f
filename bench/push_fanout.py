"""Benchmark: fan 10,000 Web Push messages out to a test push service on loopback.

Run from the repository root (pywebpush is for this benchmark only, not a runtime dependency):

    pip install pywebpush            # or: pip install -e '.[bench]'
    python -m bench.push_fanout      # --messages 10000 --sync-messages 500 --concurrency 64 --runs 3

It starts `python -m tests.pushservice --no-decrypt` in a subprocess (every request's VAPID
header is verified, ES256 signature included; decryption is skipped so the service does not
dominate), creates the subscribers there, then in each run sends one message to each
subscriber with:

  (a) server.push.PushSender.send_many (cached VAPID header, aiohttp, bounded concurrency);
  (b) pywebpush.webpush() called in a loop, as most projects do: run on the first
      --sync-messages subscribers only and the rate extrapolated;
  (c) pywebpush.webpush_async with one shared aiohttp session, gathered under a semaphore
      of the same concurrency.

pywebpush gets a VAPID key loaded once (its best case). (a) and (c) run on the same event
loop, the one the product uses (server.cli.run_loop: uvloop when installed). It prints
pushes/s per run and the median over runs, ratios against (b), the time from start to the
last delivery the service accepted, the longest event-loop stall seen while sending, and the
sending process's CPU time per push. Client and service share the machine's cores, so rates depend on what else runs:
compare within one run; CPU per push is the steadier figure on a busy host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from server.cli import run_loop
from server.push import (
    PushMessage,
    PushSender,
    Subscription,
    VapidKeys,
    load_or_create_vapid_keys,
    make_client_session,
)

SUBJECT = "mailto:ops@homework-clinic.org"
PAYLOAD = {
    "title": "Time for your stretches",
    "body": "Knee-to-chest, figure-4 and cat-cow: about 10 minutes",
    "url": "/app/routines/123",
    "tag": "routine-123",
}
TTL = 3600


@dataclass
class Measurement:
    sent: int
    seconds: float
    to_last_delivery: float | None
    max_stall: float | None
    cpu: float  # this process's CPU seconds: robust when other jobs share the cores

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


@contextmanager
def push_service(repo: Path, expected_key: str) -> Iterator[str]:
    """Run the test push service in a subprocess and yield its origin."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.pushservice",
            "--port",
            "0",
            "--no-decrypt",
            "--expected-key",
            expected_key,
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"push service did not start: {line!r}")
        yield line.removeprefix("READY ")
    finally:
        process.terminate()
        process.wait(10)


def admin(origin: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the push service's admin API."""
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(origin + path, data=data), timeout=120) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def check_accepted(origin: str, expected: int, label: str) -> dict[str, Any]:
    """Fail loudly unless the service accepted exactly what we sent, and only that."""
    stats: dict[str, Any] = admin(origin, "/_admin/stats")
    if stats["accepted"] != expected or stats["statuses"] != {"201": expected}:
        raise RuntimeError(f"{label}: expected {expected} accepted, service says {stats}")
    return stats


async def watch_loop(stalls: list[float], stop: asyncio.Event) -> None:
    """Record how late a 10 ms timer fires: the event loop's longest stall."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        stalls.append(time.perf_counter() - before - 0.01)


async def timed(send: Callable[[], Awaitable[None]]) -> tuple[float, float, float, float]:
    """Run send() while watching the loop; return (start wall time, seconds, stall, CPU)."""
    stalls: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(stalls, stop))
    wall, started, cpu = time.time(), time.perf_counter(), time.process_time()
    await send()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stop.set()
    await watcher
    return wall, seconds, max(stalls, default=0.0), cpu


async def run_ours(
    keys: VapidKeys, origin: str, subscriptions: list[Subscription], concurrency: int
) -> Measurement:
    messages = [PushMessage(s, PAYLOAD, TTL) for s in subscriptions]
    return await send_with_ours(keys, origin, messages, concurrency=concurrency, label="(a)")


async def send_with_ours(
    keys: VapidKeys, origin: str, messages: list[PushMessage], *, concurrency: int = 64, label: str
) -> Measurement:
    """Send messages with PushSender.send_many and measure it against the service's counters."""
    admin(origin, "/_admin/reset", {})
    async with make_client_session(limit_per_host=concurrency) as session:
        sender = PushSender(keys, SUBJECT, session, concurrency=concurrency, extra_origins=[origin])
        results: list[Any] = []

        async def send() -> None:
            results.extend(await sender.send_many(messages))

        wall, seconds, stall, cpu = await timed(send)
    if not all(r.delivered for r in results):
        raise RuntimeError(f"{label}: some messages were not delivered")
    stats = check_accepted(origin, len(messages), label)
    return Measurement(len(messages), seconds, stats["last_accept"] - wall, stall, cpu)


def _pywebpush_args(m: PushMessage) -> tuple[dict[str, Any], str, dict[str, str]]:
    s = m.subscription
    info = {"endpoint": s.endpoint, "keys": {"p256dh": s.p256dh, "auth": s.auth}}
    data = json.dumps(m.payload, separators=(",", ":"), ensure_ascii=False)
    headers = {"Urgency": m.urgency, **({"Topic": m.topic} if m.topic else {})}
    return info, data, headers


def run_pywebpush_loop(vapid: Any, origin: str, messages: list[PushMessage]) -> Measurement:
    """(b): pywebpush.webpush() once per message, as most projects call it."""
    from pywebpush import webpush  # type: ignore[import-untyped]

    admin(origin, "/_admin/reset", {})
    wall, started, cpu = time.time(), time.perf_counter(), time.process_time()
    for m in messages:
        info, data, headers = _pywebpush_args(m)
        webpush(
            info,
            data,
            vapid_private_key=vapid,
            vapid_claims={"sub": SUBJECT},  # a fresh dict: pywebpush writes aud and exp into it
            ttl=m.ttl,
            headers=headers,
        )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stats = check_accepted(origin, len(messages), "(b)")
    return Measurement(len(messages), seconds, stats["last_accept"] - wall, None, cpu)


async def run_pywebpush_async(
    vapid: Any, origin: str, messages: list[PushMessage], concurrency: int = 64
) -> Measurement:
    """(c): pywebpush.webpush_async, one shared aiohttp session, at most `concurrency` at once."""
    from pywebpush import webpush_async

    admin(origin, "/_admin/reset", {})
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(m: PushMessage) -> None:
            info, data, headers = _pywebpush_args(m)
            async with limit:
                await webpush_async(
                    info,
                    data,
                    vapid_private_key=vapid,
                    vapid_claims={"sub": SUBJECT},
                    ttl=m.ttl,
                    headers=headers,
                    aiohttp_session=session,
                )

        async def send() -> None:
            await asyncio.gather(*(one(m) for m in messages))

        wall, seconds, stall, cpu = await timed(send)
    stats = check_accepted(origin, len(messages), "(c)")
    return Measurement(len(messages), seconds, stats["last_accept"] - wall, stall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sync-messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from py_vapid import Vapid  # type: ignore[import-untyped]  # pywebpush's VAPID class

    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as data_dir:
        keys = load_or_create_vapid_keys(Path(data_dir))
        vapid = Vapid.from_pem(keys.private_pem)
        with push_service(repo, keys.application_server_key) as origin:
            made = admin(origin, "/_admin/subscribers", {"count": args.messages})
            subscriptions = [Subscription(**s) for s in made]
            subset = subscriptions[: args.sync_messages]
            print(
                f"{len(subscriptions)} subscribers at {origin}; concurrency {args.concurrency}; "
                f"(b) on {len(subset)} and extrapolated"
            )
            runs: dict[str, list[Measurement]] = {"a": [], "b": [], "c": []}
            for run in range(1, args.runs + 1):
                a = run_loop(run_ours(keys, origin, subscriptions, args.concurrency))
                b = run_pywebpush_loop(vapid, origin, [PushMessage(s, PAYLOAD, TTL) for s in subset])
                c = run_loop(run_pywebpush_async(vapid, origin, [PushMessage(s, PAYLOAD, TTL) for s in subscriptions],
                                                 args.concurrency))
                for key, m in zip("abc", (a, b, c), strict=True):
                    runs[key].append(m)
                print(
                    f"run {run}: (a) {a.rate:7.0f}/s, last delivery {a.to_last_delivery:.2f} s, "
                    f"stall {(a.max_stall or 0) * 1000:.0f} ms | (b) {b.rate:5.0f}/s | "
                    f"(c) {c.rate:5.0f}/s, stall {(c.max_stall or 0) * 1000:.0f} ms"
                )

    median_b = statistics.median(m.rate for m in runs["b"])
    labels = {
        "a": "(a) PushSender.send_many",
        "b": "(b) pywebpush.webpush loop*",
        "c": "(c) pywebpush.webpush_async",
    }
    print(f"\nmedians over {args.runs} runs ({args.messages} messages; * = extrapolated)")
    print(
        f"{'client':32} {'pushes/s':>9} {'vs (b)':>7} {'to last delivery':>17} "
        f"{'max stall':>10} {'client CPU/push':>16}"
    )
    for key, label in labels.items():
        rate = statistics.median(m.rate for m in runs[key])
        if key == "b":
            last = f"{args.messages / rate:.1f} s*"
        else:
            last = f"{statistics.median(m.to_last_delivery or 0 for m in runs[key]):.2f} s"
        stalls = [m.max_stall for m in runs[key] if m.max_stall is not None]
        stall = f"{statistics.median(stalls) * 1000:.0f} ms" if stalls else "n/a"
        cpu = statistics.median(m.cpu / m.sent for m in runs[key]) * 1e6
        print(
            f"{label:32} {rate:9.0f} {rate / median_b:6.1f}x {last:>17} {stall:>10} {cpu:13.0f} us"
        )


if __name__ == "__main__":
    main()
