"""``!console`` to the bridge's bot: a supervisor gets a one-time console sign-in link in their direct chat.

Only in a direct chat with the bot: a link posted in a dispatch room could be used by anyone there,
so there the bot only says where to ask.  Everyone who is not a configured supervisor gets a
refusal (recorded in the audit log by ``issue_sign_in_link``).
"""
from __future__ import annotations

from typing import Any

from ..officers.commands import Command, Spec
from .auth import ConsoleAuth

SPEC = Spec("console", "console", "a one-time sign-in link to the supervisor console (supervisors, direct chat)")


class ConsoleCommand:
    def __init__(self, auth: ConsoleAuth, prefix: str = "!") -> None:
        self.auth, self.prefix = auth, prefix

    async def handle(self, ctx: Any, cmd: Command) -> None:
        """``ctx``: the bot command context (room_id, sender, agency — None in a direct chat — and reply)."""
        if ctx.agency is not None:
            self.auth.journal.audit("console.link", ctx.sender, "refused", origin=ctx.room_id,
                                    reason="asked outside a direct chat")
            await ctx.reply(f"Send {self.prefix}console to me in a direct chat: a sign-in link is for you alone.")
            return
        url = self.auth.issue_sign_in_link(ctx.sender, origin=ctx.room_id)
        if url is None:
            await ctx.reply(f"{ctx.sender} is not a supervisor of any agency, so there is no console link. "
                            "This request has been recorded.")
            return
        minutes = max(1, self.auth.link_ttl_ms // 60000)
        await ctx.reply(f"Your sign-in link to the supervisor console. It works once, for {minutes} minutes; "
                        f"do not share it:\n{url}")
