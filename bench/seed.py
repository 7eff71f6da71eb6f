"""Build a realistic benchmark database through the app's own migrations.

    python -m bench.seed /tmp/bench.db          # 10,000 patients; prints what it made

The schema comes from server.db.migrate and the built-in library from
server.exercises.sync_builtins, exactly as the app's lifespan does; everything else is
plain SQL inserted in bulk (one transaction, executemany) because going through the
HTTP API would take minutes. Shapes follow the app's own writers:

- 50 practitioners, each with 8 routines of 3-8 built-in exercises;
- 10,000 patients over the practitioners, in a dozen time zones, 2% archived;
- 5 assignments per patient (50,000), items JSON copied from the routine and its
  exercises as server/assignments.py does; about 60% running, 20% ended early by the
  practitioner (ended_at set), 20% past their end date;
- for 40% of patients, 28 days of completions (each scheduled slot done with the
  patient's own adherence, 50-95%), slots computed by server.schedule.slot_times;
- one device per patient whose token is derived from the patient id (device_token), so
  the load generator can send a valid signed hw_device cookie (device_cookie).

Everything is random but seeded: the same arguments give the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from server import exercises, routines
from server.clock import iso, local_date, utcnow, zone
from server.db import Database, migrate
from server.devices import COOKIE
from server.schedule import Plan, slot_times
from server.security import CookieSigner, token_hash

SECRET_KEY = "bench-secret-key-" + "x" * 32
ZONES = (
    "Europe/London", "Europe/Berlin", "Europe/Madrid", "Europe/Helsinki", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata",
    "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
)
# Common prescriptions: every day, weekdays, Mon/Wed/Fri, Tue/Thu/Sat.
DAY_MASKS = (127, 127, 127, 31, 21, 42)
TIMES = (["08:00"], ["08:00", "19:30"], ["07:30", "18:00"], ["07:00", "12:30", "19:00"], ["20:00"])
NOTES = ("", "", "", "Go gently on the left side this week.", "Stop if the pain goes above 5.",
         "Add the second set only once the first feels easy.")


def device_token(patient_id: int) -> str:
    """The seeded device token of a patient (43 url-safe characters, like security.new_token)."""
    digest = hashlib.sha256(f"bench-device-{patient_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def device_cookie(patient_id: int, secret_key: str = SECRET_KEY) -> str:
    """The Cookie header value the app accepts for the patient's seeded device."""
    return f"{COOKIE}={CookieSigner(secret_key, 'patient-device').sign(device_token(patient_id))}"


@dataclass
class Seeded:
    path: Path
    now: datetime
    patients: int
    assignments: int
    completions: int
    seconds: float
    # Patients that can sign in (not archived), with their zone and running assignments.
    usable: list[tuple[int, str, list[tuple[int, list[str]]]]] = field(repr=False, default_factory=list)

    def sample(self, n: int, *, seed: int = 7) -> list[tuple[int, str, list[tuple[int, list[str]]]]]:
        """n distinct usable patients (deterministic), for the load generators to rotate over."""
        return random.Random(seed).sample(self.usable, min(n, len(self.usable)))


async def _schema(path: Path, now: datetime) -> None:
    async with Database(path) as db:
        await migrate(db)
        await exercises.sync_builtins(db, now=now)


def seed(
    path: Path,
    *,
    patients: int = 10_000,
    practitioners: int = 50,
    per_patient: int = 5,
    completion_share: float = 0.4,
    days: int = 28,
    now: datetime | None = None,
    rng_seed: int = 1,
) -> Seeded:
    """Create the database at path (which must not exist yet) and return what was made."""
    started = time.perf_counter()
    now = (now or utcnow()).astimezone(UTC)
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    asyncio.run(_schema(path, now))
    rng = random.Random(rng_seed)
    stamp = iso(now)
    today = now.date()

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a throwaway file: durability does not matter while seeding
    conn.execute("BEGIN")
    library = [
        (r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])
        for r in conn.execute(
            "SELECT id, name, summary, steps, safety, image, hold_seconds, reps, sets, sides FROM exercises"
            " WHERE practitioner_id IS NULL ORDER BY id"
        )
    ]
    conn.executemany(
        "INSERT INTO practitioners (id, email, name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        [(p, f"p{p}@bench.test", f"Practitioner {p}", "not-a-hash", stamp) for p in range(1, practitioners + 1)],
    )

    # Routines and their items, then the frozen copy an assignment stores (as assignments.create builds it).
    routine_rows, item_rows, frozen = [], [], {}
    routine_id = item_id = 0
    for p in range(1, practitioners + 1):
        for k in range(8):
            routine_id += 1
            routine_rows.append((routine_id, p, f"Routine {k + 1}", "Warm up first.", stamp, stamp))
            items = []
            for position, ex in enumerate(rng.sample(library, rng.randint(3, min(8, len(library))))):
                ex_id, name, summary, steps, safety, image, hold, reps, sets, sides = ex
                item_id += 1
                rest = rng.choice((15, 30, 45, 60))
                item_rows.append((item_id, routine_id, position, ex_id, reps, sets, hold, sides, rest, ""))
                items.append({
                    "exercise_id": ex_id, "name": name, "summary": summary, "steps": steps, "safety": safety,
                    "image_url": exercises.image_url(image), "reps": reps, "sets": sets, "hold_seconds": hold,
                    "sides": sides, "rest_seconds": rest, "notes": "",
                })
            frozen[routine_id] = (p, f"Routine {k + 1}", json.dumps(items), len(items), routines.estimated_minutes(items))
    conn.executemany(
        "INSERT INTO routines (id, practitioner_id, name, notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        routine_rows,
    )
    conn.executemany(
        "INSERT INTO routine_items (id, routine_id, position, exercise_id, reps, sets, hold_seconds, sides,"
        " rest_seconds, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        item_rows,
    )

    patient_rows, device_rows, assignment_rows, completion_rows = [], [], [], []
    usable = []
    assignment_id = completion_id = 0
    for pid in range(1, patients + 1):
        practitioner = rng.randint(1, practitioners)
        tz = rng.choice(ZONES)
        archived = 1 if rng.random() < 0.02 else 0
        joined = now - timedelta(days=rng.randint(35, 300), minutes=rng.randint(0, 1440))
        patient_rows.append((pid, practitioner, f"Patient {pid}", tz, archived, iso(joined - timedelta(days=1)), iso(joined)))
        device_rows.append((pid, pid, token_hash(device_token(pid)), "iPhone · Safari", iso(joined), stamp))
        plans, running = [], []
        for _ in range(per_patient):
            assignment_id += 1
            rid = (practitioner - 1) * 8 + rng.randint(1, 8)
            _, rname, items, count, minutes = frozen[rid]
            start = today - timedelta(days=rng.randint(30, 150))
            end: date | None = None
            ended_at = None
            kind = rng.random()
            if kind < 0.2:  # ended early by the practitioner
                ended = now - timedelta(days=rng.randint(1, 25), hours=rng.randint(0, 23))
                ended_at = iso(ended)
                end = min(local_date(ended, tz), start + timedelta(days=200))
            elif kind < 0.4:  # ran its course
                end = today - timedelta(days=rng.randint(1, 40))
                start = min(start, end - timedelta(days=14))
            elif rng.random() < 0.5:
                end = today + timedelta(days=rng.randint(7, 60))
            mask = rng.choice(DAY_MASKS)
            times = rng.choice(TIMES)
            assignment_rows.append((
                assignment_id, pid, practitioner, rid, rname, "Warm up first.", items, count, minutes,
                start.isoformat(), end.isoformat() if end else None, mask, json.dumps(times), None,
                rng.choice(NOTES), iso(datetime.combine(start, datetime.min.time(), UTC)), ended_at,
            ))
            plan = Plan(assignment_id, start.isoformat(), end.isoformat() if end else None, mask, tuple(times), ended_at)
            plans.append(plan)
            if ended_at is None and (end is None or end > today + timedelta(days=1)):
                running.append((assignment_id, times))
        if not archived and running:
            usable.append((pid, tz, running))
        if rng.random() < completion_share:
            adherence = rng.uniform(0.5, 0.95)
            last = local_date(now, tz)
            for back in range(days):
                day = last - timedelta(days=back)
                text = day.isoformat()
                for plan in plans:
                    for t in slot_times(plan, day, tz):
                        if back == 0 and t > now.astimezone(zone(tz)).strftime("%H:%M"):
                            continue  # not due yet today
                        if rng.random() > adherence:
                            continue
                        completion_id += 1
                        at = f"{text}T{t}:{rng.randint(0, 59):02d}Z"  # approximate: the zone offset is not applied
                        completion_rows.append((
                            completion_id, pid, plan.id, f"seed-{completion_id:09d}", text, t, at,
                            rng.randint(0, 6), rng.randint(0, 5), rng.choice(("easy", "ok", "hard", None)), "", at,
                        ))
    conn.executemany(
        "INSERT INTO patients (id, practitioner_id, name, timezone, archived, created_at, joined_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        patient_rows,
    )
    conn.executemany(
        "INSERT INTO devices (id, patient_id, token_hash, label, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
        device_rows,
    )
    conn.executemany(
        "INSERT INTO assignments (id, patient_id, practitioner_id, routine_id, routine_name, routine_notes, items,"
        " item_count, estimated_minutes, start_date, end_date, days, times, session_date, note, created_at, ended_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        assignment_rows,
    )
    conn.executemany(
        "INSERT INTO completions (id, patient_id, assignment_id, client_id, local_date, slot_time, completed_at,"
        " pain_before, pain_after, difficulty, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        completion_rows,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return Seeded(path, now, patients, len(assignment_rows), len(completion_rows), time.perf_counter() - started, usable)


def load(path: Path) -> Seeded:
    """Describe a database seeded earlier (to rerun the benchmarks without seeding again)."""
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tomorrow = (utcnow().date() + timedelta(days=1)).isoformat()
        running: dict[int, tuple[str, list[tuple[int, list[str]]]]] = {}
        for pid, tz, aid, times in conn.execute(
            "SELECT p.id, p.timezone, a.id, a.times FROM patients p JOIN assignments a ON a.patient_id = p.id"
            " WHERE p.archived = 0 AND a.ended_at IS NULL AND (a.end_date IS NULL OR a.end_date > ?)"
            " AND p.id IN (SELECT patient_id FROM devices WHERE label = 'iPhone · Safari') ORDER BY p.id, a.id",
            (tomorrow,),
        ):
            running.setdefault(pid, (tz, []))[1].append((aid, json.loads(times)))
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("patients", "assignments", "completions")]
    finally:
        conn.close()
    usable = [(pid, tz, plans) for pid, (tz, plans) in running.items()]
    return Seeded(Path(path), utcnow(), counts[0], counts[1], counts[2], time.perf_counter() - started, usable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--patients", type=int, default=10_000)
    args = parser.parse_args()
    made = seed(args.path, patients=args.patients)
    size = made.path.stat().st_size / 1e6
    print(f"{made.path}: {made.patients} patients, {made.assignments} assignments, {made.completions} completions,"
          f" {size:.0f} MB, {made.seconds:.1f} s")
    pid = made.usable[0][0]
    print(f"e.g. curl -H 'Cookie: {device_cookie(pid)}' http://127.0.0.1:8000/api/me/today")


if __name__ == "__main__":
    main()
