"""The console's HTML, rendered on the server (pure functions; no scripts; every value escaped).

Forms post back to the console with the session's CSRF token; the only style sheet is
``/console/console.css``, so the console's CSP can forbid everything else.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..records import export
from ..store.chats import Chat
from .auth import Supervisor

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#111;background:#f6f7f9}
header{background:#0b2545;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#fff}header form{margin-left:auto}main{padding:1em 1.2em;max-width:80em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0}
.scroll{overflow-x:auto;max-width:100%}caption{text-align:left;font-weight:600;padding:.2em 0}
th,td{border:1px solid #ccd;padding:.3em .5em;text-align:left;vertical-align:top}thead th{background:#e8ecf2}
.num{text-align:right;font-variant-numeric:tabular-nums}.hash{font-family:monospace;word-break:break-all}
.notice{background:#fff8d6;border:1px solid #e0c200;padding:.6em}.error{background:#fde8e8;border:1px solid #c00;padding:.6em}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:end}label{display:flex;flex-direction:column;font-size:.9em}
button,input,select{font:inherit;padding:.25em .4em}
.chart{background:#fff;border:1px solid #ccd;margin:.5em 0;max-width:100%;height:auto}
.chart text{font:11px system-ui,sans-serif}.chart .bar.s0{fill:#1f5aa6}.chart .bar.s1{fill:#e07b00}.chart .axis{stroke:#666}
:focus-visible{outline:3px solid #f90;outline-offset:2px}
"""


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(ts: int | None) -> str:
    return export.when(ts)


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    s = max(0, int(ms // 1000))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass(frozen=True)
class Page:
    who: Supervisor | None
    csrf: str = ""


def layout(page: Page, title: str, body: str, status_note: str = "") -> str:
    nav = ""
    if page.who:
        links = [("/console/", "Live"), ("/console/search", "Search"), ("/console/reports", "Reports"),
                 ("/console/feedback", "Feedback"), ("/console/practice", "Practice"), ("/console/key", "Signing key")]
        nav = ("<nav aria-label=\"Console\">" + " ".join(f"<a href=\"{h}\">{e(t)}</a>" for h, t in links) + "</nav>"
               f"<span>{e(page.who.user_id)}</span>"
               f"<form method=\"post\" action=\"/console/sign-out\"><input type=\"hidden\" name=\"csrf\" "
               f"value=\"{e(page.csrf)}\"><button>Sign out</button></form>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(title)} — Precinct console</title><link rel=\"stylesheet\" href=\"/console/console.css\">"
            f"</head><body><header><strong>Precinct console</strong>{nav}</header><main>"
            f"{status_note}<h1>{e(title)}</h1>{body}</main></body></html>")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (),
          empty: str = "Nothing here.") -> str:
    """``rows`` hold already-escaped HTML cells."""
    body = "".join("<tr>" + "".join(f"<td class=\"num\">{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    if not body:
        return f"<p>{e(empty)}</p>"
    head = "".join(f"<th scope=\"col\">{e(h)}</th>" for h in headers)
    return scrolling(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", "Table")


def scrolling(table_html: str, label: str) -> str:
    """A wide table scrolls sideways inside its own box (WCAG reflow allows it for data tables), so the page
    itself never gets wider than a 360 px screen; the box can take the keyboard focus to be scrolled."""
    return f"<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"{e(label)}\">{table_html}</div>"


def signed_out(bot: str, message: str = "") -> str:
    note = f"<p class=\"error\" role=\"alert\">{e(message)}</p>" if message else ""
    return layout(Page(None), "Sign in", f"{note}<p>Supervisors sign in with their Matrix account: send "
                  f"<code>!console</code> to <code>{e(bot)}</code> in a direct chat. The bot answers with a "
                  "sign-in link that works once, for five minutes.</p>")


def confirm_sign_in(token: str, csrf: str) -> str:
    """A button, not an automatic sign-in: link previews and scanners that fetch the URL spend nothing."""
    return layout(Page(None), "Sign in", "<form method=\"post\" action=\"/console/sign-in\">"
                  f"<input type=\"hidden\" name=\"token\" value=\"{e(token)}\">"
                  f"<input type=\"hidden\" name=\"csrf\" value=\"{e(csrf)}\">"
                  "<p><button>Sign in to the console</button></p></form>")


def _chat_link(chat_id: str, number: Any) -> str:
    return f"<a href=\"/console/chats/{e(chat_id)}\">Chat {e(number)}</a>"


def live(page: Page, agency_names: dict[str, str], chats: list[Chat], now_ms: int) -> str:
    parts = ["<p><a href=\"/console/\">Refresh</a> · as of " + e(when(now_ms)) + "</p>"]
    for agency, name in agency_names.items():
        mine = [c for c in chats if c.agency == agency]
        # The queue as it is served: emergencies and raised priority first, then first come first served.
        waiting = sorted((c for c in mine if c.state == "waiting"), key=lambda c: (-(c.priority or 0), c.number))
        active = [c for c in mine if c.state != "waiting"]
        parts.append(f"<h2>{e(name)}: {len(waiting)} waiting, {len(active)} active</h2>")
        parts.append(table(["Chat", "Topic", "Priority", "Claimed by", "Waiting for"],
                           [[_chat_link(c.id, c.number), e(c.topic),
                             "Emergency" if c.emergency else "High" if c.priority else "",
                             e(c.claimed_by or ""), duration(now_ms - c.created_ts)] for c in waiting],
                           numeric=(4,), empty="No one is waiting."))
        by_officer: dict[str, list[Chat]] = {}
        for c in active:
            by_officer.setdefault(c.officer or c.claimed_by or "(not answered yet)", []).append(c)
        rows = [[e(officer), str(len(cs)), ", ".join(_chat_link(c.id, c.number) for c in cs),
                 duration(max(now_ms - (c.answered_ts or c.created_ts) for c in cs))]
                for officer, cs in sorted(by_officer.items())]
        parts.append(table(["Officer", "Active chats", "Chats", "Longest running"], rows, numeric=(1, 3),
                           empty="No active chats."))
    return layout(page, "Live queue and active chats", "".join(parts))


def select_field(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str | None) -> str:
    opts = "".join(f"<option value=\"{e(v)}\"{' selected' if v == (chosen or '') else ''}>{e(t)}</option>"
                   for v, t in [("", "any"), *options])
    return f"<label>{e(label)}<select name=\"{e(name)}\">{opts}</select></label>"


def input_field(name: str, label: str, value: str | None, kind: str = "text") -> str:
    return f"<label>{e(label)}<input type=\"{kind}\" name=\"{e(name)}\" value=\"{e(value or '')}\"></label>"


def search(page: Page, form: dict[str, str], agencies: dict[str, str], topics: dict[str, str],
           hits: list[Any] | None, error: str = "") -> str:
    fields = (input_field("q", "Words or phrase", form.get("q"), "search")
              + select_field("agency", "Agency", list(agencies.items()), form.get("agency"))
              + select_field("topic", "Topic", list(topics.items()), form.get("topic"))
              + input_field("officer", "Officer (Matrix ID)", form.get("officer"))
              + input_field("from", "From (date)", form.get("from"), "date") + input_field("to", "To (date)", form.get("to"), "date")
              + input_field("tag", "Tag", form.get("tag"))
              + select_field("rating", "Rating", [(str(n), f"{n} of 5") for n in range(1, 6)], form.get("rating")))
    body = f"<form class=\"filters\" method=\"get\" action=\"/console/search\" role=\"search\">{fields}" \
           "<button>Search</button></form>"
    if error:
        body += f"<p class=\"error\" role=\"alert\">{e(error)}</p>"
    if hits is not None:
        body += f"<h2>{len(hits)} result{'s' if len(hits) != 1 else ''}</h2>" + table(
            ["Chat", "Agency", "Topic", "Officer", "When", "Match"],
            [[_chat_link(h.chat_id, h.number), e(h.agency), e(h.topic), e(h.officer), e(when(h.ts)), e(h.snippet)]
             for h in hits], empty="No transcript matches.")
    return layout(page, "Transcript search", body)


def transcript(page: Page, doc: dict[str, Any], feedback: dict | None, can_hold: bool,
               can_watch: bool = False) -> str:
    chat = doc.get("chat") or {}
    cid, hold = str(chat.get("id")), chat.get("legal_hold")
    rows = [("Agency", e(chat.get("agency"))), ("Topic", e(chat.get("topic"))), ("State", e(chat.get("state"))),
            ("Officer", e(chat.get("officer"))), ("Started", e(when(chat.get("created_ts")))),
            ("Closed", e(when(chat.get("closed_ts")) if chat.get("closed_ts") else "still open"))]
    seal = doc.get("seal")
    rows.append(("Signed", e(f"up to entry {seal.get('last_index')}, final hash {seal.get('final_hash')}")
                 if seal else "not yet (signed when the chat closes)"))
    if feedback:
        rows.append(("Citizen's rating", e(f"{feedback['rating']} of 5") + (
            f" — “{e(feedback.get('comment'))}”" if feedback.get("comment") else "")))
    rows.append(("Legal hold", e(f"since {when(hold.get('ts'))} by {hold.get('by')}: {hold.get('reason') or ''}")
                 if hold else "none"))
    summary = scrolling("<table><tbody>" + "".join(f"<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>" for k, v in rows)
                        + "</tbody></table>", "Chat details")
    exports = " · ".join(f"<a href=\"/console/chats/{e(cid)}/export?format={f}\" download>Export {f.upper()}</a>"
                         for f in export.FORMATS)
    if chat.get("state") == "closed":
        exports += (f" · <a href=\"/console/chats/{e(cid)}/training-case\" download>Export as a training case</a>"
                    " (names and personal details replaced)")
    hold_form = ""
    if can_hold:
        action, label = ("lift", "Lift legal hold") if hold else ("set", "Place under legal hold")
        reason = "" if hold else input_field("reason", "Reason", "")
        hold_form = (f"<form method=\"post\" action=\"/console/chats/{e(cid)}/hold\" class=\"filters\">"
                     f"<input type=\"hidden\" name=\"csrf\" value=\"{e(page.csrf)}\">"
                     f"<input type=\"hidden\" name=\"action\" value=\"{action}\">{reason}<button>{label}</button></form>")
    if can_watch:
        hold_form += (f"<form method=\"post\" action=\"/console/chats/{e(cid)}/watch\" class=\"filters\">"
                      f"<input type=\"hidden\" name=\"csrf\" value=\"{e(page.csrf)}\">"
                      "<button>Invite me to its room to review it</button></form>"
                      "<p>You join the room in your Matrix client and read the conversation from its start; the chat "
                      "stays with its officer, and the review is recorded in the audit log.</p>")
    entries = table(["#", "Time", "Who", "What"], [[e(x.get("index")), e(when(x.get("ts"))), e(export.who(x)),
                                                   e(export.describe(x))] for x in doc.get("entries") or []],
                    numeric=(0,), empty="This chat has no recorded entries.")
    return layout(page, f"Chat {chat.get('number')}", summary + f"<p>{exports}</p>" + hold_form
                  + "<h2>Record</h2>" + entries)


def feedback_list(page: Page, rows: list[dict]) -> str:
    return layout(page, "Citizens' feedback", table(
        ["Chat", "Agency", "Officer", "Rating", "Comment", "When"],
        [[_chat_link(r["chat_id"], r["number"]), e(r["agency"]), e(r["officer"]), e(f"{r['rating']} of 5"),
          e(r["comment"]), e(when(r["ts"]))] for r in rows], empty="No feedback yet."))


def signing_key(page: Page, public_key: str) -> str:
    return layout(page, "Transcript signing key", "<p>The bridge signs every closed chat's record with this "
                  "Ed25519 key. Give it to whoever verifies an exported record:</p>"
                  f"<p class=\"hash\">{e(public_key)}</p><p><code>python -m bridge transcript verify record.json "
                  f"--public-key {e(public_key)}</code></p>")


def told(page: Page, title: str, message: str, back: str) -> str:
    return layout(page, title, f"<p class=\"notice\" role=\"status\">{e(message)}</p>"
                               f"<p><a href=\"{e(back)}\">Back to the chat</a></p>")


def problem(page: Page, title: str, message: str) -> str:
    return layout(page, title, f"<p class=\"error\" role=\"alert\">{e(message)}</p>")


def now_ms() -> int:
    return int(time.time() * 1000)
