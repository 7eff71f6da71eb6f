"""Turn untrusted request data into typed values, collecting every bad field at once.

    data = Input(body)
    name = data.text("name", max_len=120)
    tz = data.timezone("timezone")
    data.check()          # raises BadRequest naming each bad field

Works the same for JSON bodies and HTML forms (whose values are all strings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from typing import Any, TypeVar

from .clock import is_timezone
from .errors import BadRequest

T = TypeVar("T")
MISSING: Any = object()

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SIDES = ("none", "left", "right", "both")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body or raise BadRequest naming the body."""
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.", {"body": "required"})
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.", {"body": "not valid JSON"}) from None


class Input:
    """Typed access to one request's fields; errors pile up until check()."""

    def __init__(self, data: Any, *, form: bool = False, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise BadRequest("The request body must be a JSON object.", {"body": "must be an object"})
        self.data = data
        self.form = form
        self.prefix = prefix
        self.errors: dict[str, str] = {}

    def has(self, name: str) -> bool:
        return name in self.data and not (self.form and self.data[name] == "")

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(self.prefix + name, message)

    def check(self) -> None:
        if self.errors:
            names = ", ".join(self.errors)
            raise BadRequest(f"Please correct: {names}.", dict(self.errors))

    def _get(self, name: str, required: bool) -> Any:
        value = self.data.get(name, MISSING)
        if value is None or (self.form and value == ""):
            value = MISSING
        if value is MISSING and required:
            self.error(name, "required")
        return value

    def text(self, name: str, *, required: bool = True, max_len: int = 200, default: str | None = "") -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return default
        if not isinstance(value, str):
            self.error(name, "must be a string")
            return default
        value = value.strip()
        if len(value) > max_len:
            self.error(name, f"must be at most {max_len} characters")
            return default
        if required and not value:
            self.error(name, "required")
            return default
        if "\x00" in value:
            self.error(name, "must not contain NUL characters")
            return default
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): not text SQLite can keep
                self.error(name, "must be valid Unicode text")
                return default
        return value

    def integer(self, name: str, *, lo: int, hi: int, required: bool = True, default: int | None = None) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return default
        if self.form and isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value):
            value = int(value)
        # bool is an int in Python; true is not a number of reps.
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, "must be a whole number")
            return default
        if not lo <= value <= hi:
            self.error(name, f"must be between {lo} and {hi}")
            return default
        return value

    def choice(self, name: str, options: Sequence[str], *, required: bool = True, default: str | None = None) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return default
        if not isinstance(value, str) or value not in options:
            self.error(name, "must be one of " + ", ".join(options))
            return default
        return value

    def date(self, name: str, *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return None
        if not isinstance(value, str) or not _DATE.match(value):
            self.error(name, "must be a date like 2026-01-31")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.error(name, "is not a real date")
            return None

    def time(self, name: str, *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return None
        return self._time_value(name, value)

    def _time_value(self, name: str, value: Any) -> str | None:
        if not isinstance(value, str) or not _TIME.match(value.strip()):
            self.error(name, "must be a time like 08:30")
            return None
        return value.strip()

    def datetime(self, name: str, *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return None
        if not isinstance(value, str) or len(value) > 40:
            self.error(name, "must be an ISO 8601 timestamp with a time zone")
            return None
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.error(name, "must be an ISO 8601 timestamp with a time zone")
            return None
        if moment.tzinfo is None:
            self.error(name, "must include a time zone offset, e.g. Z or +01:00")
            return None
        return moment

    def timezone(self, name: str, *, required: bool = True) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return None
        if not isinstance(value, str) or len(value) > 64 or not is_timezone(value):
            self.error(name, "must be an IANA time zone like Europe/London")
            return None
        return value

    def boolean(self, name: str, *, required: bool = True, default: bool | None = None) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return default
        if self.form and value in ("on", "true", "1"):
            return True
        if self.form and value in ("off", "false", "0"):
            return False
        if not isinstance(value, bool):
            self.error(name, "must be true or false")
            return default
        return value

    def days(self, name: str) -> int:
        """Parse ["mon", "wed"] (or a form's repeated field) into the stored bit mask."""
        value = self._get(name, True)
        if value is MISSING:
            return 0
        if isinstance(value, str) and self.form:
            value = [value]
        if not isinstance(value, list) or not value or len(value) > 7:
            self.error(name, "must be a non-empty list of days like [\"mon\", \"thu\"]")
            return 0
        mask = 0
        for day in value:
            if not isinstance(day, str) or day.lower() not in DAYS:
                self.error(name, "days must be mon, tue, wed, thu, fri, sat or sun")
                return 0
            mask |= 1 << DAYS.index(day.lower())
        return mask

    def times(self, name: str, *, most: int = 6) -> list[str]:
        """Parse a list of distinct local times of day, returned sorted."""
        value = self._get(name, True)
        if value is MISSING:
            return []
        if isinstance(value, str) and self.form:
            value = [v for v in re.split(r"[,\s]+", value) if v]
        if not isinstance(value, list) or not 1 <= len(value) <= most:
            self.error(name, f"must be a list of 1 to {most} times like [\"08:00\", \"19:30\"]")
            return []
        parsed = [self._time_value(name, item) for item in value]
        if any(p is None for p in parsed):
            return []
        times = sorted(set(p for p in parsed if p is not None))
        if len(times) != len(parsed):
            self.error(name, "must not repeat a time")
            return []
        return times

    def list(self, name: str, *, most: int) -> list[Any]:
        value = self._get(name, True)
        if value is MISSING:
            return []
        if not isinstance(value, list):
            self.error(name, "must be a list")
            return []
        if len(value) > most:
            self.error(name, f"must have at most {most} entries")
            return []
        return value

    def nested(self, name: str, value: Any) -> Input | None:
        """Validate an object inside a list; its errors carry the prefix name (e.g. items[0].)."""
        if not isinstance(value, Mapping):
            self.error(name, "must be an object")
            return None
        child = Input(value, form=self.form, prefix=self.prefix + name + ".")
        child.errors = self.errors
        return child


def mask_to_days(mask: int) -> list[str]:
    return [day for i, day in enumerate(DAYS) if mask & (1 << i)]


def format_time(value: time) -> str:
    return value.strftime("%H:%M")
