"""Business hours (pure): is an agency open at a given moment, in its own time zone?"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from ..config import Hours

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_open(hours: Hours | None, at: datetime | None = None) -> bool:
    """No hours configured means always open; a holiday is closed all day; days not listed are closed."""
    if hours is None:
        return True
    local = (at or datetime.now(timezone.utc)).astimezone(ZoneInfo(hours.timezone))
    if local.strftime("%Y-%m-%d") in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in hours.weekly.get(DAYS[local.weekday()], ()))
