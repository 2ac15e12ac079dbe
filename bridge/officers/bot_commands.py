"""Commands officers give the bridge's bot in its rooms (dispatch rooms and direct chats with the bot).

Any feature registers its own; the bot decrypts, parses and dispatches:

    bot.commands.register(Spec("hold", "hold <number>", "keep a chat for later", arg="required"), handler)

    async def handler(ctx: BotContext, cmd: Command) -> None:
        await ctx.reply(f"{ctx.sender} asked for {cmd.arg} in {ctx.room_id}")

``ctx.agency`` is the agency whose dispatch room it is (None in a direct chat); by default only
configured officers and supervisors (of that agency, or of any agency in a direct chat) reach a
handler; others are refused with a notice and an audit entry. ``officers_only=False`` lets anyone in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from ..journal import Journal
from ..config import Agency, Config
from . import commands
from .commands import Command, CommandError, Spec


@dataclass(frozen=True)
class BotContext:
    room_id: str
    sender: str
    agency: Agency | None                 # whose dispatch room; None in a direct chat with the bot
    reply: Callable[[str], Awaitable[None]]
    event_id: str | None = None

    def agencies(self, config: Config) -> list[Agency]:
        """The agencies the sender acts for here: this room's, or (direct chat) every one they belong to."""
        if self.agency is not None:
            return [self.agency] if self.agency.is_officer(self.sender) else []
        return [a for a in config.agencies if a.is_officer(self.sender)]


Handler = Callable[[BotContext, Command], Awaitable[None]]


class BotCommands:
    def __init__(self, config: Config, journal: Journal, prefix: str) -> None:
        self.config, self.journal, self.prefix = config, journal, prefix
        self._specs: list[Spec] = [Spec("help", "help", "list these commands")]
        self._handlers: dict[str, tuple[Handler, bool]] = {"help": (self._help, False)}

    def register(self, spec: Spec, handler: Handler, *, officers_only: bool = True) -> None:
        if spec.name in self._handlers:
            raise ValueError(f"bot command {spec.name!r} is registered twice")
        self._specs.append(spec)
        self._handlers[spec.name] = (handler, officers_only)

    @property
    def specs(self) -> tuple[Spec, ...]:
        return tuple(self._specs)

    def is_command(self, text: str) -> bool:
        return commands.is_command(text, self.prefix)

    async def handle(self, ctx: BotContext, text: str) -> None:
        parsed = commands.parse(text, self.prefix, self.specs)
        if parsed is None:
            return
        if isinstance(parsed, CommandError):
            await ctx.reply(parsed.message)
            return
        handler, officers_only = self._handlers[parsed.name]
        if officers_only and not ctx.agencies(self.config):
            self.journal.audit(f"bot.{parsed.name}", ctx.sender, "refused", target=parsed.arg or None,
                               origin=ctx.room_id, reason="not an officer or supervisor")
            await ctx.reply(f"{ctx.sender} is not an officer or supervisor here; {self.prefix}{parsed.name} refused.")
            return
        await handler(ctx, parsed)

    def help_text(self) -> str:
        return "Commands here:\n" + commands.help_text(self.prefix, self.specs)

    async def _help(self, ctx: BotContext, cmd: Command) -> None:
        await ctx.reply(self.help_text())
