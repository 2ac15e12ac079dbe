"""The ``officers`` table: officers an agency has seen, their number (for "Officer {n}") and availability."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database


@dataclass
class Officer:
    agency: str
    user_id: str
    number: int
    available: int | None          # None: never said; 1 after !available, 0 after !away
    presence: str | None           # last Matrix presence reported (online, unavailable, offline)
    last_assigned_ts: int | None
    away_ts: int | None = None     # when they last said !away (None: not away)


class Officers:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, agency: str, user_id: str) -> Officer:
        """The officer's row, made (with the agency's next number) the first time they are seen."""
        with self.db.transaction():
            row = self.db.row("SELECT * FROM officers WHERE agency = ? AND user_id = ?", [agency, user_id])
            if row is None:
                n = self.db.row("SELECT COALESCE(MAX(number), 0) + 1 AS n FROM officers WHERE agency = ?",
                                [agency])["n"]  # type: ignore[index]
                self.db.execute("INSERT INTO officers (agency, user_id, number) VALUES (?,?,?)", [agency, user_id, n])
                row = self.db.row("SELECT * FROM officers WHERE agency = ? AND user_id = ?", [agency, user_id])
        return Officer(**row)  # type: ignore[arg-type]

    def of_agency(self, agency: str) -> list[Officer]:
        return [Officer(**r) for r in self.db.rows("SELECT * FROM officers WHERE agency = ? ORDER BY number",
                                                   [agency])]

    def set_available(self, agency: str, user_id: str, available: bool) -> None:
        self.get(agency, user_id)
        self.db.execute("UPDATE officers SET available = ?, away_ts = ? WHERE agency = ? AND user_id = ?",
                        [int(available), None if available else int(time.time() * 1000), agency, user_id])

    def set_presence(self, user_id: str, presence: str) -> None:
        self.db.execute("UPDATE officers SET presence = ? WHERE user_id = ?", [presence, user_id])

    def assigned(self, agency: str, user_id: str) -> None:
        self.db.execute("UPDATE officers SET last_assigned_ts = ? WHERE agency = ? AND user_id = ?",
                        [int(time.time() * 1000), agency, user_id])
