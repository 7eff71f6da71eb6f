"""Demo data for `homework serve --demo`: a practitioner, a patient with homework, an invite."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from . import assignments, clinic_sessions, completions, devices, exercises, invites, patients, practitioners, routines
from .clock import local_date, utcnow
from .config import Settings
from .db import Database, migrate
from .library import BUILTIN_EXERCISES
from .schedule import local_moment

DEMO_EMAIL = "demo@homework.example"
DEMO_PASSWORD = "stretch-every-day"
DEMO_ROUTINE = ("knee-to-chest", "piriformis-supine", "sciatic-nerve-glide")


async def seed(settings: Settings) -> tuple[str, str]:
    """Create the demo data once; return a fresh invite link and code for the demo patient."""
    now = utcnow()
    async with Database(settings.db_path) as db:
        await migrate(db)
        await exercises.sync_builtins(db, now=now)
        row = await db.fetchone("SELECT id, email, name FROM practitioners WHERE email = ?", (DEMO_EMAIL,))
        if row is None:
            me = await practitioners.create(db, email=DEMO_EMAIL, name="Dr Demo", password=DEMO_PASSWORD, now=now)
        else:
            me = practitioners.Practitioner(row["id"], row["email"], row["name"])
        existing = await patients.list_for(db, me.id)
        if existing:
            patient = existing[0]
        else:
            patient = await patients.create(db, me.id, name="Sam Patient", timezone="Europe/London", now=now)
            library = {e.name: e for e in await exercises.list_visible(db, me.id)}
            by_slug = {b.slug: b.name for b in BUILTIN_EXERCISES}
            wanted = [library[by_slug[s]] for s in DEMO_ROUTINE if s in by_slug and by_slug[s] in library]
            if not wanted:
                wanted = list(library.values())[:3]
            items = [
                routines.Item(e.id, e.reps, e.sets, e.hold_seconds, e.sides, 30, "") for e in wanted
            ]
            routine = await routines.create(db, me.id, name="Sciatica, week 1", notes="", items=items, now=now)
            today = local_date(now, patient.timezone)
            await clinic_sessions.create(db, patient.id, day=today, note="First visit: acupuncture, lower back", now=now)
            await assignments.create(
                db, me.id, patient.id, routine_id=routine.id, start_date=today,
                end_date=today + timedelta(weeks=6), days_mask=127, times=["08:00", "19:30"],
                session_date=today, note="Gently does it. Stop if the leg pain spreads.", now=now,
            )
            await _patient_with_history(db, me.id, routine.id, settings, now)
        invite = await invites.create(
            db, patient.id, base_url=settings.base_url, secret_key=settings.secret_key, now=now
        )
    return invite.url, invite.code_display


async def _patient_with_history(db: Database, practitioner_id: int, routine_id: int, settings: Settings,
                                now: datetime) -> None:
    """A second patient three weeks in, through the same code paths a real one takes, so the charts show something."""
    rng = random.Random(42)
    start_at = now - timedelta(days=21)
    patient = await patients.create(db, practitioner_id, name="Alex Rivera", timezone="Europe/Madrid", now=start_at)
    start = local_date(start_at, patient.timezone)
    for weeks, note in ((0, "Acupuncture, lower back and left leg"), (1, "Acupuncture; leg pain easing"),
                        (2, "Acupuncture and mobilisation")):
        await clinic_sessions.create(db, patient.id, day=start + timedelta(weeks=weeks), note=note, now=start_at)
    assignment = await assignments.create(
        db, practitioner_id, patient.id, routine_id=routine_id, start_date=start, end_date=None, days_mask=127,
        times=["08:00", "19:30"], session_date=start, note="Twice a day, gently.", now=start_at,
    )
    invite = await invites.create(db, patient.id, base_url=settings.base_url, secret_key=settings.secret_key,
                                  now=start_at)
    await devices.join(db, token=invite.url.rsplit("/", 1)[1], label="iPhone · Safari",
                       secret_key=settings.secret_key, now=start_at)
    for day_index in range(21):
        day = start + timedelta(days=day_index)
        for hhmm in assignment.times:
            if rng.random() > 0.8 - (0.3 if day_index > 17 else 0):
                continue  # missed; and fewer done in the last days, so the list flags it
            done_at = local_moment(day, hhmm, patient.timezone) + timedelta(minutes=rng.randint(5, 50))
            if done_at > now:
                continue
            pain = max(1, round(6.5 - day_index * 0.18 + rng.uniform(-1, 1)))
            await completions.record(
                db, patient_id=patient.id, timezone=patient.timezone, client_id=f"demo-{day}-{hhmm}",
                assignment_id=assignment.id, day=day, time=hhmm, completed_at=done_at,
                pain_before=min(10, pain + rng.randint(0, 2)), pain_after=pain,
                difficulty=rng.choice(["easy", "ok", "ok", "hard"]), note="", now=done_at,
            )
