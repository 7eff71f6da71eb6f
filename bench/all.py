"""Run every benchmark and print one markdown report (also saved to bench/results/latest.md).

    python -m bench.all                      # ~4-5 minutes on a 2-core machine
    python -m bench.all --duration 3 --runs 1 --only ceiling,minimal,real   # a quick look
    python -m bench.all --db /tmp/bench.db   # reuse (or keep) a seeded database
    python -m bench.all --variant fix=/tmp/homework-fix      # also serve another checkout's app

Seeds a database with bench.seed, then for each round (3 by default) starts every case in
turn as its own uvicorn process (uvloop + httptools, 1 worker unless the case says 2),
checks one response, warms it up for 1 s and loads it with wrk (-t2 -c64) for --duration
seconds. Rounds interleave the cases so that the machine's noise hits all of them alike;
the report gives, per case, the median over rounds of req/s and of p50 and p99 latency,
and ratios against the baselines measured in the same run. Finally bench.profile times the
parts of one today request in-process (no HTTP).

A variant (NAME=PATH) is a copy of the repository (e.g. with a proposed server change):
its real app is served from PATH against its own copy of the database and reported beside
ours, so a fix is measured against the current code in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import profile
from bench.seed import SECRET_KEY, Seeded, device_cookie, load, seed

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = Path(__file__).resolve().parent / "wrk"
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Case:
    key: str
    label: str
    factory: str  # bench.apps:<factory>
    requests: str  # name of the request file
    script: str  # wrk Lua script
    workers: int = 1
    root: Path = ROOT  # the checkout the server is imported from
    db: str = "main"  # which database copy
    runs: list[dict[str, float]] = field(default_factory=list)

    def median(self, name: str) -> float:
        values = [r[name] for r in self.runs]
        return statistics.median(values) if values else float("nan")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by a process and its descendants (threads included)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(case: Case, db: Path, data_dir: Path, log: Path) -> Iterator[tuple[str, int]]:
    """Run the case's app under uvicorn on a free loopback port; yield its base URL and pid."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_DB": str(db),
        "BENCH_DATA_DIR": str(data_dir),
        "BENCH_SECRET": SECRET_KEY,
        "BENCH_BASE_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(case.root),
    }
    cmd = [
        sys.executable, "-m", "uvicorn", f"bench.apps:{case.factory}", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(case.workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]
    with log.open("a") as out:
        out.write(f"\n== {case.key}: {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=case.root, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own process group (start_new_session)
            proc.wait(timeout=5)


def first_request(path: Path) -> tuple[str, str, str | None]:
    """(path, cookie, JSON body or None for a GET) of the first line of a request file."""
    parts = path.read_text().splitlines()[0].split("\t")
    if len(parts) == 2:
        return parts[0], parts[1], None
    body = json.dumps({"client_id": f"check-{time.time_ns()}", "assignment_id": int(parts[2]), "date": parts[3],
                       "time": parts[4]})
    return parts[0], parts[1], body


def check(url: str, request_file: Path, deadline: float = 30.0) -> None:
    """Wait for the server, then make sure one request of the load succeeds (so wrk measures real work)."""
    path, cookie, body = first_request(request_file)
    started = time.monotonic()
    while True:
        req = urllib.request.Request(url + path, data=body.encode() if body else None,
                                     method="POST" if body else "GET")
        if cookie:
            req.add_header("Cookie", cookie)
        if body:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                payload = json.loads(resp.read())
                if resp.status not in (200, 201):
                    raise RuntimeError(f"{url + path}: HTTP {resp.status}")
                if not body and "slots" not in payload:
                    raise RuntimeError(f"{url + path}: unexpected body {payload!r:.200}")
                return
        except (ConnectionError, urllib.error.URLError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                raise RuntimeError(f"{url + path}: HTTP {exc.code} {exc.read()[:200]!r}") from None
            if time.monotonic() - started > deadline:
                raise RuntimeError(f"{url} did not start within {deadline} s") from None
            time.sleep(0.1)


def wrk(url: str, script: str, request_file: Path, *, duration: int, threads: int, connections: int,
        run_tag: str) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
           "-s", str(WRK_DIR / script), url, "--", str(request_file), run_tag]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[:500]}")
    out = done.stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    raw = json.loads(line[len("BENCH "):])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "requests": raw["requests"],
    }


def write_requests(seeded: Seeded, folder: Path, sample: int) -> dict[str, Path]:
    """Request files for wrk: reads rotate over `sample` patients, our app's writes over others, the bare
    insert's over a third set.

    The bare insert stores the slot it is sent, every time; the app stores one completion per slot and
    day and keeps the rest as extras. Sharing patients, the app would read hundreds of copies of a slot
    that it can never write itself, and be slowed by its baseline.
    """
    chosen = seeded.sample(3 * sample)
    readers, writers, bare_writers = chosen[:sample], chosen[sample : 2 * sample], chosen[2 * sample :]
    files = {
        "today_real": [f"/api/me/today\t{device_cookie(pid)}" for pid, _, _ in readers],
        "today_min": [f"/today/{pid}\t" for pid, _, _ in readers],
        # The ceiling gets the same cookies so it parses requests of the same size.
        "today_ceiling": [f"/api/me/today\t{device_cookie(pid)}" for pid, _, _ in readers],
        "post_real": _posts(seeded, writers, lambda pid: f"/api/me/completions\t{device_cookie(pid)}"),
        "post_min": _posts(seeded, bare_writers, lambda pid: f"/completions/{pid}\t"),
    }
    paths = {}
    for name, lines in files.items():
        path = folder / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n")
        paths[name] = path
    return paths


def _posts(seeded: Seeded, patients: list[tuple[int, str, list[tuple[int, list[str]]]]],
           target: Callable[[int], str]) -> list[str]:
    """One line per slot of the patients' local yesterday: PATH<TAB>COOKIE<TAB>ASSIGNMENT<TAB>DATE<TAB>TIME."""
    lines = []
    for pid, tz, running in patients:
        yesterday = (seeded.now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)).isoformat()
        lines += [f"{target(pid)}\t{aid}\t{yesterday}\t{t}" for aid, times in running for t in times]
    return lines


def cases(variants: list[tuple[str, Path]]) -> list[Case]:
    found = [
        Case("ceiling", "bare Starlette, constant JSON (ceiling)", "ceiling", "today_ceiling", "rotate.lua"),
        Case("minimal", "minimal aiosqlite handler, 1 query, no auth (floor)", "minimal", "today_min", "rotate.lua"),
        Case("real", "**our app** GET /api/me/today", "real", "today_real", "rotate.lua"),
        Case("real_cold", "our app, streak never remembered (first open of a day)", "real_no_memo", "today_real",
             "rotate.lua"),
        Case("per_request", "our app, a connection per request", "real_conn_per_request", "today_real", "rotate.lua"),
        Case("minimal_w2", "minimal handler, 2 workers", "minimal", "today_min", "rotate.lua", workers=2),
        Case("real_w2", "**our app**, 2 workers", "real", "today_real", "rotate.lua", workers=2),
        Case("post_ceiling", "bare Starlette, POST body read, constant JSON", "ceiling", "post_real",
             "completions.lua"),
        Case("post_min", "bare aiosqlite INSERT (WAL, sync=NORMAL)", "minimal", "post_min", "completions.lua"),
        Case("post_real", "**our app** POST /api/me/completions", "real", "post_real", "completions.lua"),
        Case("post_real_w2", "**our app** POST, 2 workers", "real", "post_real", "completions.lua", workers=2),
    ]
    for name, root in variants:
        found += [
            Case(f"{name}", f"variant `{name}` GET today", "real", "today_real", "rotate.lua", root=root, db=name),
            Case(f"{name}_w2", f"variant `{name}` GET today, 2 workers", "real", "today_real", "rotate.lua",
                 workers=2, root=root, db=name),
            Case(f"{name}_post", f"variant `{name}` POST completions", "real", "post_real", "completions.lua",
                 root=root, db=name),
            Case(f"{name}_post_w2", f"variant `{name}` POST completions, 2 workers", "real", "post_real",
                 "completions.lua", workers=2, root=root, db=name),
            Case(f"{name}_per_request", f"variant `{name}`, a connection per request", "real_conn_per_request",
                 "today_real", "rotate.lua", root=root, db=name),
        ]
    return found


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b and not math.isnan(a) and not math.isnan(b) else "n/a"


def report(all_cases: list[Case], args: argparse.Namespace, seeded: Seeded, timings: str) -> str:
    by = {c.key: c for c in all_cases}

    def rps(key: str) -> float:
        return by[key].median("rps") if key in by else float("nan")

    ceiling, minimal, real = rps("ceiling"), rps("minimal"), rps("real")
    baseline = {
        "minimal": f"{ratio(minimal, ceiling)} ceiling",
        "real": f"{ratio(real, ceiling)} ceiling, {ratio(real, minimal)} minimal",
        "real_cold": f"{ratio(rps('real_cold'), real)} ours",
        "per_request": f"{ratio(rps('per_request'), real)} ours",
        "minimal_w2": f"{ratio(rps('minimal_w2'), minimal)} 1 worker",
        "real_w2": f"{ratio(rps('real_w2'), real)} 1 worker",
        "post_ceiling": f"{ratio(rps('post_ceiling'), ceiling)} ceiling",
        "post_real": (f"{ratio(rps('post_real'), rps('post_ceiling'))} POST ceiling ({ratio(rps('post_real'), ceiling)}"
                      f" GET ceiling), {ratio(rps('post_real'), rps('post_min'))} bare insert"),
        "post_real_w2": f"{ratio(rps('post_real_w2'), rps('post_real'))} 1 worker",
    }
    for c in all_cases:
        if c.root != ROOT and c.key not in baseline:
            suffix = c.key[len(c.db):]
            if suffix == "_per_request":
                baseline[c.key] = f"{ratio(c.median('rps'), rps(c.db))} `{c.db}`"
            else:
                twin = {"": "real", "_w2": "real_w2", "_post": "post_real", "_post_w2": "post_real_w2"}[suffix]
                baseline[c.key] = f"{ratio(c.median('rps'), rps(twin))} ours"
    setup = (
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s after a 1 s warm-up, {args.runs} interleaved"
        f" rounds, medians; uvicorn + uvloop + httptools, 1 worker unless said. Database: {seeded.patients:,}"
        f" patients, {seeded.assignments:,} assignments, {seeded.completions:,} completions; reads rotate over"
        f" {args.sample} patients' device cookies, our writes over {args.sample} others and the bare insert's"
        f" over {args.sample} more."
        f" Load average (1 min) at start {args.load_before:.1f}, at end {os.getloadavg()[0]:.1f}: other work on"
        " the machine shares the cores, so compare ratios and CPU µs per request (server process tree, user +"
        " system, divided by requests) rather than absolute req/s."
    )
    lines = [
        f"# Benchmarks ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)",
        "",
        setup,
        "",
        "| case | req/s | p50 ms | p99 ms | server CPU µs/req | vs | req/s per round | errors |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for c in all_cases:
        if not c.runs:
            continue
        rounds = " / ".join(f"{r['rps']:,.0f}" for r in c.runs)
        errors = int(sum(r["errors"] for r in c.runs))
        lines.append(
            f"| {c.label} | {c.median('rps'):,.0f} | {c.median('p50_ms'):.1f} | {c.median('p99_ms'):.1f} |"
            f" {c.median('cpu_us'):,.0f} | {baseline.get(c.key, '')} | {rounds} | {errors} |"
        )
    lines += [
        "",
        "Targets from the issue, GET /api/me/today with 1 worker:",
        "",
        "| app | >= 25% of the ceiling | no slower than the minimal handler | p99 < 30 ms |",
        "|---|---|---|---|",
    ]
    variants = sorted({c.db for c in all_cases if c.root != ROOT})
    lines += _targets(by, ceiling, minimal, [("ours", "real"), *((f"variant `{v}`", v) for v in variants)])
    lines += [
        "",
        ("The same targets for POST /api/me/completions: its ceiling is the bare endpoint answering the same"
         " POSTs, its floor the bare insert (the last column, for information, divides by the GET ceiling):"),
        "",
        "| app | >= 25% of the ceiling | no slower than the bare insert | p99 < 30 ms | share of the GET ceiling |",
        "|---|---|---|---|---|",
    ]
    posts = [("ours", "post_real"), *((f"variant `{v}`", f"{v}_post") for v in variants)]
    lines += _targets(by, rps("post_ceiling"), rps("post_min"), posts, also=ceiling)
    lines += ["", timings]
    return "\n".join(lines) + "\n"


def _targets(
    by: dict[str, Case], ceiling: float, floor: float, apps: list[tuple[str, str]], also: float | None = None
) -> list[str]:
    """One row per app measured: >= 25% of the ceiling, no slower than the floor, p99 under 30 ms,
    and with also (another ceiling) the share of it."""
    rows = []
    for name, key in apps:
        if key not in by or not by[key].runs:
            continue
        got, p99 = by[key].median("rps"), by[key].median("p99_ms")
        extra = ""
        if also is not None:
            extra = " n/a (not measured) |" if math.isnan(also) else f" {got / also:.1%} |"
        rows.append(
            f"| {name} | {_share(got, ceiling, 0.25, '.1%')} | {_share(got, floor, 1.0, '.0%')}"
            f" | {'met' if p99 < 30 else '**NOT met**'} ({p99:.1f} ms) |{extra}"
        )
    return rows


def _share(got: float, base: float, needed: float, form: str) -> str:
    """Whether got is at least needed x base, and got / base (n/a when base was not measured)."""
    if math.isnan(base):
        return "n/a (not measured)"
    return f"{'met' if got >= needed * base else '**NOT met**'} ({got / base:{form}})"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the web server benchmarks; print a markdown report.")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per run (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sample", type=int, default=400, help="distinct patients the load rotates over")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--db", type=Path, help="seeded database to reuse (seeded there when missing)")
    parser.add_argument("--only", help="comma-separated case keys to run (ceiling, minimal, real, real_cold, per_request,"
                        " minimal_w2, real_w2, post_ceiling, post_min, post_real, post_real_w2; variants add NAME, NAME_w2, NAME_post,"
                        " NAME_post_w2, NAME_per_request)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                        help="also serve the app from another checkout (its own database copy)")
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process timing of one request")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    variants = [(n, Path(p).resolve()) for n, p in (v.split("=", 1) for v in args.variant)]
    args.load_before = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "servers.log"
    log.write_text("")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="homework-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = args.db or tmp / "bench.db"
        if db.exists():
            seeded = load(db)
            print(f"reusing {db}", file=sys.stderr)
        else:
            seeded = seed(db, patients=args.patients)
            print(f"seeded {db} in {seeded.seconds:.1f} s", file=sys.stderr)
        dbs = {"main": db}
        if variants:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so the copies hold every committed row
        for name, _ in variants:
            dbs[name] = tmp / f"{name}.db"
            shutil.copyfile(db, dbs[name])
        files = write_requests(seeded, tmp, args.sample)
        todo = [c for c in cases(variants) if not args.only or c.key in args.only.split(",")]
        for round_no in range(1, args.runs + 1):
            for case in todo:
                data_dir = tmp / f"data-{case.key}"
                data_dir.mkdir(exist_ok=True)
                request_file = files[case.requests]
                with serve(case, dbs[case.db], data_dir, log) as (url, pid):
                    check(url, request_file)
                    common = {"threads": args.threads, "connections": args.connections}
                    wrk(url, case.script, request_file, duration=1, run_tag=f"{round_no}w{time.time_ns()}", **common)
                    cpu = tree_cpu_seconds(pid)
                    result = wrk(url, case.script, request_file, duration=args.duration,
                                 run_tag=f"{round_no}r{time.time_ns()}", **common)
                    result["cpu_us"] = (tree_cpu_seconds(pid) - cpu) / max(result["requests"], 1) * 1e6
                case.runs.append(result)
                print(f"round {round_no} {case.key:>14}: {result['rps']:8,.0f} req/s  p99 {result['p99_ms']:6.1f} ms"
                      f"  {result['cpu_us']:6,.0f} µs CPU/req  errors {result['errors']:.0f}", file=sys.stderr)
        timings = "" if args.no_profile else profile.markdown(db, seeded)
    text = report(todo, args, seeded, timings)
    text += f"\nTotal time {time.monotonic() - started:.0f} s. Reproduce: `python -m bench.all {' '.join(sys.argv[1:])}`\n"
    (RESULTS / "latest.md").write_text(text)
    (RESULTS / "latest.json").write_text(json.dumps({c.key: c.runs for c in todo}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
