"""One period's report: every figure overall and by agency, topic and officer, and the same as CSV."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

from .figures import ChatFacts, Figures, by_officer, figures, grouped, per_day, per_hour


@dataclass(frozen=True)
class Report:
    since_ms: int
    until_ms: int
    overall: Figures
    by_agency: dict[str, Figures]
    by_topic: dict[str, Figures]
    by_officer: dict[str, Figures]
    hours: list[int]
    days: list[tuple[str, int]]


def build(chats: list[ChatFacts], since_ms: int, until_ms: int) -> Report:
    """``chats``: those opened in [since_ms, until_ms)."""
    return Report(since_ms, until_ms, figures(chats), grouped(chats, lambda c: c.agency),
                  grouped(chats, lambda c: c.topic), grouped(chats, by_officer), per_hour(chats),
                  per_day(chats, since_ms, until_ms))


def cell(value: object) -> str:
    """A CSV cell: numbers without float noise, blanks for "no value", and nothing a spreadsheet runs."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0").rstrip(".")
    else:
        text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(report: Report) -> str:
    """Long form: section, group, figure, value — the same figures the page shows."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["section", "group", "figure", "value"])
    sections = [("overall", {"all": report.overall}), ("agency", report.by_agency), ("topic", report.by_topic),
                ("officer", report.by_officer)]
    for section, groups in sections:
        for group, figs in groups.items():
            for name, value in asdict(figs).items():
                w.writerow([section, cell(group), name, cell(value)])
    for hour, count in enumerate(report.hours):
        w.writerow(["hour", f"{hour:02d}:00", "chats", count])
    for day, count in report.days:
        w.writerow(["day", day, "chats", count])
    return out.getvalue()


def facts(rows: list[dict]) -> list[ChatFacts]:
    """The store's report rows (``Chats.report_facts``) as ChatFacts."""
    return [ChatFacts(**{**r, "emergency": bool(r["emergency"])}) for r in rows]
