"""The daily summary a supervisors' room gets: yesterday's figures in a few lines (pure functions)."""
from __future__ import annotations

import time
from urllib.parse import urlencode

from .figures import Figures

DAY_MS = 86_400_000


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def day_start(ms: int) -> int:
    return ms - ms % DAY_MS


def due_day(now_ms: int, at_hhmm: str, last_posted: str | None) -> str | None:
    """The day (YYYY-MM-DD, UTC) whose summary is due now, or None: after ``at_hhmm`` each day, the
    previous day's, unless already posted (a bridge that was down at that time posts it when it starts)."""
    hours, minutes = (int(x) for x in at_hhmm.split(":"))
    if now_ms < day_start(now_ms) + (hours * 60 + minutes) * 60_000:
        return None
    yesterday = time.strftime("%Y-%m-%d", time.gmtime((day_start(now_ms) - DAY_MS) / 1000))
    return None if last_posted is not None and last_posted >= yesterday else yesterday


def seconds_until_next(now_ms: int, at_hhmm: str) -> float:
    hours, minutes = (int(x) for x in at_hhmm.split(":"))
    today_at = day_start(now_ms) + (hours * 60 + minutes) * 60_000
    return ((today_at if today_at > now_ms else today_at + DAY_MS) - now_ms) / 1000


def text(agency_name: str, agency_id: str, day: str, f: Figures, hours: list[int], public_url: str) -> str:
    weekday = time.strftime("%A %d %B %Y", time.strptime(day, "%Y-%m-%d"))
    lines = [f"Daily summary for {agency_name}, {weekday} (UTC)"]
    if f.chats == 0:
        lines.append("No chats.")
    else:
        abandoned = (f"{f.abandoned} of {f.closed} closed ({f.abandoned_rate:.0%})"
                     if f.abandoned_rate is not None else "none closed yet")
        lines += [f"Chats: {f.chats}, answered {f.answered}; abandoned before answer: {abandoned}",
                  f"Waiting time: p50 {clock(f.wait_p50_s)}, p90 {clock(f.wait_p90_s)}",
                  f"First response: p50 {clock(f.first_response_p50_s)}, p90 {clock(f.first_response_p90_s)}",
                  f"Handling time: p50 {clock(f.handling_p50_s)}, p90 {clock(f.handling_p90_s)}",
                  f"Transfers: {f.transfers}; emergencies: {f.emergencies}",
                  f"Feedback: {f.feedback_average:.2f} average from {f.rated} rating{'s' if f.rated != 1 else ''}"
                  if f.feedback_average is not None else "Feedback: none"]
        busiest = max(range(24), key=lambda h: (hours[h], -h))
        lines.append(f"Busiest hour: {busiest:02d}:00–{(busiest + 1) % 24:02d}:00 ({hours[busiest]} "
                     f"chat{'s' if hours[busiest] != 1 else ''})")
    query = urlencode({"from": day, "to": day, "agency": agency_id})
    lines.append(f"Full report: {public_url.rstrip('/')}/console/reports?{query}")
    return "\n".join(lines)
