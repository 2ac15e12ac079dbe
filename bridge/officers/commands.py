"""Officers' commands, parsed without I/O: a line of text → a ``Command`` or a ``CommandError``.

Anything whose first non-blank character is the prefix is a command attempt, so nothing an officer
types with the prefix is ever passed to the citizen, even a typo.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    name: str
    usage: str                 # e.g. "close [reason]"
    summary: str
    arg: str = "none"          # none | optional | required | choice
    choices: tuple[str, ...] = ()

    def line(self, prefix: str) -> str:
        return f"{prefix}{self.usage} — {self.summary}"


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""              # everything after the command word, stripped ("" when none)

    @property
    def first(self) -> str:
        """The first word of the argument (e.g. the target of a transfer)."""
        return self.arg.split(None, 1)[0] if self.arg else ""

    @property
    def rest(self) -> str:
        """The argument after its first word (e.g. a transfer's note)."""
        parts = self.arg.split(None, 1)
        return parts[1].strip() if len(parts) > 1 else ""


@dataclass(frozen=True)
class CommandError:
    message: str               # what the officer is told: what is valid


CHAT_ROOM: tuple[Spec, ...] = (
    Spec("help", "help", "list these commands"),
    Spec("close", "close [reason]", "end the chat; the citizen is told it has ended", arg="optional"),
    Spec("note", "note <text>", "an internal note for the record; never sent to the citizen", arg="required"),
    Spec("canned", "canned [key]", "list the canned answers, or send one to the citizen", arg="optional"),
    Spec("info", "info", "topic, times, language, priority, tags and who handled the chat"),
    Spec("priority", "priority high|normal", "raise or lower the chat's priority", arg="choice",
         choices=("high", "normal")),
    Spec("tag", "tag <label>", "label the chat (for the record and the dispatch room)", arg="required"),
    Spec("emergency", "emergency", "escalate: emergency banner to the citizen, supervisors alerted"),
    Spec("transfer", "transfer <agency or @officer:server> [note]",
         "hand the chat to another agency's queue or to one officer; they get the conversation so far",
         arg="required"),
    Spec("hold", "hold [reason]", "supervisors: put the chat under legal hold (never purged or erased)",
         arg="optional"),
    Spec("unhold", "unhold", "supervisors: lift the chat's legal hold"),
    Spec("block", "block [reason]", "end the chat and refuse new chats from the same source for a while "
         "(an abusive or hoax caller)", arg="optional"),
    Spec("unblock", "unblock", "lift this chat's block"),
)


def is_command(text: str, prefix: str) -> bool:
    return text.lstrip().startswith(prefix)


def parse(text: str, prefix: str, specs: tuple[Spec, ...]) -> Command | CommandError | None:
    """None when the text is not a command at all; otherwise the command or what is wrong with it."""
    if not is_command(text, prefix):
        return None
    body = text.lstrip()[len(prefix):]
    parts = body.split(None, 1)
    word = parts[0].lower() if parts and not body[:1].isspace() else ""
    arg = parts[1].strip() if word and len(parts) > 1 else ""
    spec = next((s for s in specs if s.name == word), None)
    if spec is None:
        shown = f"{prefix}{word}" if word else prefix
        return CommandError(f"Unknown command {shown!r}. Valid commands:\n" + help_text(prefix, specs))
    if spec.arg == "none" and arg:
        return CommandError(f"{prefix}{spec.name} takes no argument. Usage: {prefix}{spec.usage}")
    if spec.arg in ("required", "choice") and not arg:
        return CommandError(f"{prefix}{spec.name} needs an argument. Usage: {prefix}{spec.usage}")
    if spec.arg == "choice" and arg.lower() not in spec.choices:
        return CommandError(f"{prefix}{spec.name}: {arg!r} is not valid; use one of: {', '.join(spec.choices)}")
    return Command(spec.name, arg.lower() if spec.arg == "choice" else arg)


def help_text(prefix: str, specs: tuple[Spec, ...]) -> str:
    return "\n".join(s.line(prefix) for s in specs)
