"""The console's reports: figures of a period as tables and SVG charts, and the same figures as CSV."""
from __future__ import annotations

import time

from aiohttp import web

from ..reports import charts
from ..reports.figures import Figures
from ..reports.report import Report, build, csv_text, facts
from . import pages
from .auth import Supervisor
from .pages import Page, e
from ..client_address import ClientAddresses
from ..config import Config
from ..records import Records
from ..store import Store
from .web import FormReader, Guard, csrf_token, day_ms, html_response

DEFAULT_DAYS = 7
MAX_DAYS = 366


def _secs(v: float | None) -> str:
    return pages.duration(int(v * 1000)) if v is not None else "—"


def _row(name: str, f: Figures) -> list[str]:
    rate = f"{f.abandoned} ({f.abandoned_rate:.0%})" if f.abandoned_rate is not None else str(f.abandoned)
    fb = f"{f.feedback_average:.2f} ({f.rated})" if f.feedback_average is not None else "—"
    return [e(name), str(f.chats), str(f.answered), e(rate), f"{_secs(f.wait_p50_s)} / {_secs(f.wait_p90_s)}",
            f"{_secs(f.first_response_p50_s)} / {_secs(f.first_response_p90_s)}",
            f"{_secs(f.handling_p50_s)} / {_secs(f.handling_p90_s)}", str(f.transfers), str(f.emergencies), e(fb)]


HEADERS = ["", "Chats", "Answered", "Abandoned before answer", "Waiting p50 / p90", "First response p50 / p90",
           "Handling p50 / p90", "Transfers", "Emergencies", "Feedback average (rated)"]


def _figures_table(groups: dict[str, Figures]) -> str:
    return pages.table(HEADERS, [_row(name, f) for name, f in groups.items()], numeric=tuple(range(1, 10)),
                       empty="No chats in this period.")


def _chart(title: str, labels: list[str], series: list[tuple[str, list]], unit: str = "") -> str:
    """The chart, and beside it the same figures as a table (its text equivalent, for every reader)."""
    head = "".join(f"<th scope=\"col\">{e(name)}{e(unit)}</th>" for name, _ in series)
    rows = "".join(f"<tr><th scope=\"row\">{e(label)}</th>" + "".join(
        f"<td class=\"num\">{'' if values[i] is None else e(values[i])}</td>" for _, values in series) + "</tr>"
                   for i, label in enumerate(labels))
    table = (f"<table><caption>{e(title)}: the figures</caption><thead><tr><th scope=\"col\"></th>{head}</tr>"
             f"</thead><tbody>{rows}</tbody></table>")
    return charts.bar_chart(title, labels, series, unit=unit) + pages.scrolling(table, f"{title}: the figures")


def _pair_chart(title: str, groups: dict[str, Figures], p50: str, p90: str) -> str:
    names = list(groups)
    return _chart(title, names, [("p50", [getattr(groups[n], p50) for n in names]),
                                 ("p90", [getattr(groups[n], p90) for n in names])], unit=" s")


def render(page: Page, report: Report, form: dict[str, str], agencies: dict[str, str], query: str) -> str:
    fields = (pages.input_field("from", "From (date)", form["from"], "date") + pages.input_field("to", "To (date)", form["to"], "date")
              + pages.select_field("agency", "Agency", list(agencies.items()), form["agency"]))
    body = [f"<form class=\"filters\" method=\"get\" action=\"/console/reports\">{fields}<button>Show</button></form>",
            f"<p>Chats opened from {e(form['from'])} to {e(form['to'])} (UTC). Times are h:mm:ss or m:ss; p50 is "
            f"the median, p90 the time nine in ten stayed within. <a href=\"/console/reports.csv?{e(query)}\" "
            "download>Download these figures as CSV</a></p>",
            "<h2>All chats</h2>", _figures_table({"All": report.overall}),
            _chart("Chats per hour of the day (UTC)", [f"{h:02d}" for h in range(24)], [("chats", list(report.hours))]),
            _chart("Chats per day", [d for d, _ in report.days], [("chats", [n for _, n in report.days])]),
            "<h2>By agency</h2>", _figures_table(report.by_agency),
            _pair_chart("Waiting time by agency", report.by_agency, "wait_p50_s", "wait_p90_s"),
            _pair_chart("First response time by agency", report.by_agency, "first_response_p50_s",
                        "first_response_p90_s"),
            _pair_chart("Handling time by agency", report.by_agency, "handling_p50_s", "handling_p90_s"),
            _chart("Abandoned before answer by agency", list(report.by_agency),
                   [("abandoned", [None if f.abandoned_rate is None else round(f.abandoned_rate * 100, 1)
                                   for f in report.by_agency.values()])], unit=" %"),
            "<h2>By topic</h2>", _figures_table(report.by_topic),
            _pair_chart("Waiting time by topic", report.by_topic, "wait_p50_s", "wait_p90_s"),
            "<h2>By officer</h2>", _figures_table(report.by_officer),
            _chart("Feedback average by officer", list(report.by_officer),
                   [("average", [f.feedback_average for f in report.by_officer.values()])]),
            _pair_chart("Handling time by officer", report.by_officer, "handling_p50_s", "handling_p90_s")]
    return pages.layout(page, "Reports", "".join(body))


class ReportsWeb:
    """The console's /reports and /reports.csv (a ``ConsoleSection``: the console adds these routes)."""

    def __init__(self, config: Config, store: Store, records: Records, client_address: ClientAddresses) -> None:
        self.config, self.store, self.records, self.client_address = config, store, records, client_address

    def routes(self, app: web.Application, guarded: Guard, read_form: FormReader) -> None:
        app.router.add_get("/reports", guarded(self.page))
        app.router.add_get("/reports.csv", guarded(self.csv))

    def _report(self, request: web.Request, who: Supervisor) -> tuple[Report, dict[str, str], dict[str, str]]:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        first = time.strftime("%Y-%m-%d", time.gmtime(time.time() - (DEFAULT_DAYS - 1) * 86400))
        form = {"from": request.query.get("from") or first, "to": request.query.get("to") or today,
                "agency": request.query.get("agency", "")}
        agencies = {a.id: a.name for a in self.config.agencies if a.id in who.agencies}
        try:
            since, until = day_ms(form["from"]), day_ms(form["to"], end=True)
        except ValueError:
            raise web.HTTPBadRequest(reason="Bad dates", text="Dates are written YYYY-MM-DD.") from None
        assert since is not None and until is not None
        if until <= since or until - since > MAX_DAYS * 86_400_000:
            raise web.HTTPBadRequest(reason="Bad period", text=f"Choose a period of 1 to {MAX_DAYS} days.")
        if form["agency"] and form["agency"] not in agencies:
            raise web.HTTPBadRequest(reason="Bad agency", text="Choose one of your agencies.")
        chosen = [form["agency"]] if form["agency"] else list(agencies)
        rows = self.store.chats.report_facts(chosen, since, until)
        return build(facts(rows), since, until), form, agencies

    async def page(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        report, form, agencies = self._report(request, who)
        self.records.audit("report.viewed", who.user_id, origin=self.client_address(request),
                                   period=f"{form['from']}..{form['to']}", agency=form["agency"] or None)
        return html_response(render(Page(who, csrf_token(sid)), report, form, agencies, request.query_string))

    async def csv(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        report, form, _ = self._report(request, who)
        self.records.audit("report.exported", who.user_id, origin=self.client_address(request),
                                   period=f"{form['from']}..{form['to']}", agency=form["agency"] or None)
        name = f"precinct-report-{form['from']}-{form['to']}.csv"
        return web.Response(text=csv_text(report), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f"attachment; filename=\"{name}\""})
