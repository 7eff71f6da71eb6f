"""UTC timestamps as stored (ISO 8601 text ending in Z) and the patient's local calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """Format an aware datetime as stored: UTC, seconds, trailing Z."""
    m = moment.astimezone(UTC)
    # An f-string, not strftime: a little cheaper, and always four digits of year as ISO 8601 wants.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def parse_iso(text: str) -> datetime:
    """Parse a stored or client timestamp; naive input is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1)
def timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def is_timezone(name: str) -> bool:
    """Tell whether name is an IANA zone this machine knows (checked against the list, not the file system)."""
    if name not in timezone_names():
        return False
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_date(moment: datetime, tz: str) -> date:
    return moment.astimezone(zone(tz)).date()


def days_ago(moment: datetime, days: int) -> datetime:
    return moment - timedelta(days=days)
