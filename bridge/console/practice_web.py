"""The console's practice page: a supervisor starts a practice chat, scripted or played by themselves.

    GET  /console/practice   the form: who plays the citizen (a scenario, or "you"), agency, trainee
    POST /console/practice   start it (chats/training.py) ─▶ queued, or given to the trainee at once
                             └─ "you": a link to the citizen's page carrying the chat's token in its
                                fragment (#practice=…), which never reaches a server or a log; the page
                                takes it and removes it from the address bar

The link is shown only here, to the signed-in supervisor who asked: a bot command would have posted it
where every officer of the dispatch room, the trainee among them, could read it.
"""
from __future__ import annotations

from functools import partial
from typing import Awaitable, Callable

from aiohttp import web

from ..chats import training
from ..chats.lifecycle import ChatService
from ..client_address import ClientAddresses
from ..config import Config
from ..journal import Journal
from ..store.chats import Chat
from . import pages
from .auth import Supervisor
from .pages import Page, e
from .web import FormReader, Guard, csrf_token, html_response

# Give a chat to an officer (routing's claim with how="practice"); returns what to tell the supervisor.
Assign = Callable[[Chat, str, str, str | None], Awaitable[str]]


def hand_over_link(chat: Chat, token: str) -> str:
    """The citizen's page for this chat; the fragment carries what the page needs to resume it."""
    return f"/chat#practice={chat.id}.{chat.number}.{token}"


def form_page(page: Page, config: Config, agencies: dict[str, str], error: str = "") -> str:
    plays = [(training.LIVE.id, "You (you type as the citizen)")] + [
        (sc.id, f"The bridge: {sc.title}") for sc in config.scenarios]
    choices = "".join(f"<option value=\"{e(v)}\">{e(t)}</option>" for v, t in plays)
    agency_choices = "".join(f"<option value=\"{e(i)}\">{e(n)}</option>" for i, n in agencies.items())
    body = ("<p>A practice chat is queued and answered like any chat, marked TRAINING in the dispatch room and the "
            "room's name, and never counted in reports. Name a trainee to give it to them at once; otherwise it "
            "waits in the queue.</p>"
            + (f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else "")
            + "<form method=\"post\" action=\"/console/practice\" class=\"filters\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{e(page.csrf)}\">"
            f"<label>Who plays the citizen<select name=\"scenario\">{choices}</select></label>"
            f"<label>Agency<select name=\"agency\">{agency_choices}</select></label>"
            + pages.input_field("trainee", "Trainee (Matrix ID, optional)", "")
            + "<button>Start the practice chat</button></form>")
    return pages.layout(page, "Practice chat", body)


def started_page(page: Page, chat: Chat, title: str, assigned: str | None, link: str | None) -> str:
    body = f"<p class=\"notice\" role=\"status\">Practice chat {e(chat.number)} ({e(title)}) has started.</p>"
    body += f"<p>{e(assigned)}</p>" if assigned else "<p>It is waiting in the queue.</p>"
    if link:
        body += (f"<p><a href=\"{e(link)}\" target=\"_blank\" rel=\"noopener noreferrer\">Open the citizen's page "
                 "for this chat</a> (a new tab). Whoever has this link can write as the citizen of this practice "
                 "chat, so keep it to yourself; it works until the chat is closed.</p>")
    return pages.layout(page, "Practice chat started", body)


class PracticeWeb:
    """The console's /practice (a ``ConsoleSection``)."""

    def __init__(self, config: Config, chats: ChatService, assign: Assign, journal: Journal,
                 client_address: ClientAddresses) -> None:
        self.config, self.chats, self.assign, self.journal = config, chats, assign, journal
        self.client_address = client_address

    def routes(self, app: web.Application, guarded: Guard, read_form: FormReader) -> None:
        app.router.add_get("/practice", guarded(self.page))
        app.router.add_post("/practice", guarded(partial(self.start, read_form=read_form)))

    def _agencies(self, who: Supervisor) -> dict[str, str]:
        return {a.id: a.name for a in self.config.agencies if a.id in who.agencies}

    async def page(self, request: web.Request, who: Supervisor, sid: str) -> web.Response:
        return html_response(form_page(Page(who, csrf_token(sid)), self.config, self._agencies(who)))

    async def start(self, request: web.Request, who: Supervisor, sid: str, read_form: FormReader) -> web.Response:
        form = await read_form(request, sid)
        page, origin = Page(who, csrf_token(sid)), self.client_address(request)
        agencies = self._agencies(who)

        def refused(message: str, **why: str) -> web.Response:
            self.journal.audit("chat.practice", who.user_id, "refused", origin=origin, **why)
            return html_response(form_page(page, self.config, agencies, message), status=400)

        agency_id, trainee = form.get("agency", ""), form.get("trainee", "").strip()
        if agency_id not in agencies:
            return refused("Choose one of the agencies you supervise.", reason="not a supervisor of that agency")
        wanted = form.get("scenario", "")
        scenario = training.LIVE if wanted == training.LIVE.id else self.config.scenario(wanted or None)
        if scenario is None:
            return refused("Choose who plays the citizen from the list.", reason="unknown scenario")
        if trainee and not self.config.agency(agency_id).is_officer(trainee):
            return refused(f"{trainee} is not an officer of {agencies[agency_id]}.", reason="trainee not an officer")
        chat, token = self.chats.open_practice(scenario, agency_id, who.user_id, origin)
        assigned = await self.assign(chat, trainee, "practice", origin) if trainee else None
        link = hand_over_link(chat, token) if scenario is training.LIVE else None
        return html_response(started_page(page, chat, scenario.title, assigned, link))
