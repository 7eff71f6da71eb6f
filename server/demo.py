"""Demo data for `homework serve --demo`: a practitioner, a patient with homework, an invite."""

from __future__ import annotations

from datetime import timedelta

from . import assignments, clinic_sessions, exercises, invites, patients, practitioners, routines
from .clock import local_date, utcnow
from .config import Settings
from .db import Database, migrate
from .library import BUILTIN_EXERCISES

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
        invite = await invites.create(
            db, patient.id, base_url=settings.base_url, secret_key=settings.secret_key, now=now
        )
    return invite.url, invite.code_display
