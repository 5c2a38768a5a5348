"""Time, always timezone-aware UTC: one place that knows a naive datetime means UTC.

SQLite hands back naive datetimes and users type dates without a zone; every such value
is read as UTC here rather than at each call site.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

UTC = timezone.utc


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` with a timezone: a naive datetime is taken to be UTC (aware ones unchanged)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(at: datetime | None = None) -> str:
    """Fixed-width UTC timestamp (``2020-06-10T12:00:00.000000Z``): sorts as text; default now."""
    return as_utc(at or utcnow()).astimezone(UTC).replace(tzinfo=None).isoformat(
        timespec="microseconds") + "Z"


def stamp() -> str:
    """Now, ISO 8601 to the second (report headers, fitted-file dates)."""
    return utcnow().isoformat(timespec="seconds")


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_end(day: date) -> datetime:
    """Midnight UTC at the end of ``day`` (exclusive bound of an inclusive day)."""
    return day_start(day) + timedelta(days=1)
