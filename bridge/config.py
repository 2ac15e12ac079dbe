"""The one configuration schema.

Every key's default, type and explanation live in ``SCHEMA`` below and nowhere
else: loading, validation, environment overrides and ``example-config.yaml``
(rendered by :func:`render_example`, checked against the schema by a test) all
read it.  A bad key stops start-up with a message naming the key.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .client_address import parse_networks
from .limits import Rate

EXAMPLE_SECRET = "CHANGE-ME"  # placeholder used in the example; refused at start-up


class ConfigError(ValueError):
    """A configuration problem, worded for the person editing the file."""


@dataclass(frozen=True)
class Key:
    path: str                 # dotted path, e.g. "appservice.hs_token"
    kind: type | str          # str, int, float, bool, "list", "agencies", "topics", "scenarios", "rate", "networks"
    default: Any = None       # None with required=True means it must be given
    doc: str = ""
    required: bool = False
    secret: bool = False
    example: Any = None       # value written to example-config.yaml (defaults to default)
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


def _url(v: str) -> str | None:
    return None if re.match(r"^https?://[^\s/]+", v) else "must be an http(s) URL"


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2.1 contrast ratio of two #rrggbb colours (1.0 to 21.0)."""
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _text_background(v: str) -> str | None:
    """A colour white text sits on (buttons, header) must reach WCAG AA: 4.5:1."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", v):
        return "must be a colour written #rrggbb, such as #0b57a4"
    ratio = contrast_ratio(v, "#ffffff")
    if ratio < 4.5:
        return (f"{v} has a contrast of {ratio:.1f}:1 with the white text on it; WCAG AA needs at least 4.5:1. "
                "Choose a darker colour")
    return None


def _logo(v: str) -> str | None:
    if v and not re.search(r"\.(png|jpe?g|webp|svg)$", v, re.IGNORECASE):
        return "must be a .png, .jpg, .webp or .svg file"
    return None


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _not_negative(v: float) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def _port(v: int) -> str | None:
    return None if 0 < v < 65536 else "must be a TCP port (1-65535)"


def _localpart(v: str) -> str | None:
    return None if re.fullmatch(r"[a-z0-9._=\-/]+", v) else "must be a Matrix localpart (a-z 0-9 . _ = - /)"


def secret_problem(v: str) -> str | None:
    if EXAMPLE_SECRET in v:
        return "is still the example value; generate a random secret (e.g. `openssl rand -hex 32`)"
    return None if len(v) >= 16 else "must be at least 16 characters of random text"


# The keys of one agency (see ``_parse_agency``), with their explanation; defaults are in the parser.
AGENCY_FIELD_DOCS: dict[str, str] = {
    "id": "short lowercase identifier (required)",
    "name": "the agency's name, shown to citizens on transfer (required)",
    "server_name": "homeserver its officers are on (default: homeserver.server_name)",
    "officers": "Matrix user IDs (@name:server) and/or whole server names (every user there is an officer)",
    "supervisors": "Matrix user IDs of supervisors: mentioned on alerts, may act like officers, and use "
                   "!hold/!unhold and the console",
    "dispatch_room": "room ID of its dispatch room (null: the bridge creates an encrypted one and invites "
                     "the officers and supervisors listed by user ID)",
    "topics": "topic IDs it handles (alternative to `agency` on a topic)",
    "hours": "null (always open) or {timezone, weekly: {mon..sun: [\"HH:MM-HH:MM\", ...]}, holidays: "
             "[YYYY-MM-DD, ...]}; outside them citizens get the offline message form",
    "routing": "manual (officers !claim chats) or auto (the bridge assigns available officers)",
    "max_chats_per_officer": "most chats one officer holds at once (default 3)",
    "timeouts": "{unclaimed_seconds (one re-alert listing the unclaimed chats, at most once per this interval, "
                "default 120), unanswered_seconds (claimed but no reply: back to the queue, default 180), "
                "visitor_idle_seconds (warn the citizen, default 600), visitor_idle_close_seconds (then close, "
                "default 120), abandoned_seconds (a waiting chat with no open page and no message for this long "
                "is closed; default chats.abandoned_seconds), officer_absent_seconds (an officer holding chats whose "
                "homeserver presence is offline or unavailable and who has not been active for this long: "
                "supervisors are alerted and each of their chats goes back to the queue, default 600)}; "
                "0 turns one off",
    "max_waiting_chats": "most chats waiting unclaimed in its queue; over it new chats get a \"busy\" answer with "
                         "the phone number (default chats.max_waiting_per_agency; 0: no cap)",
    "canned": "{key: text} answers officers send with !canned <key>",
    "present_officers_as": "display_name, or a pattern such as \"Officer {n}\" ({n}: the officer's number)",
    "emergency": "{language: [words or phrases]} that mark a chat an emergency (\"*\": every language; "
                 "matched as whole words, ignoring case and accents)",
    "retention_days": "how long its closed chats are kept (overrides records.retention_days)",
}


SCHEMA: list[Key] = [
    Key("homeserver.url", str, "http://127.0.0.1:8008", "How the bridge reaches the homeserver's client API.", check=_url),
    Key("homeserver.server_name", str, required=True, example="police.example",
        doc="The homeserver's server name (the part after ':' in user IDs)."),
    Key("homeserver.verify_tls", bool, True, "Verify the homeserver's TLS certificate (leave on in production)."),
    Key("homeserver.max_connections", int, 64,
        "Most connections the bridge opens to the homeserver at once, for its bot and every visitor's puppet "
        "together; requests beyond them wait their turn.", check=_positive),
    Key("homeserver.ping_at_start", bool, True,
        "At start, and when the homeserver answers again after an outage, ask it (appservice ping) to send at "
        "once what it kept for the bridge; off, it sends after its own back-off (up to minutes; the bridge still "
        "reads open chats' rooms back 10 s after start). Only turned off to measure the difference."),
    Key("appservice.id", str, "precinct", "Appservice ID, as in the registration file.", check=_localpart),
    Key("appservice.bind_host", str, "127.0.0.1",
        "Private address for the appservice API (homeserver → bridge). Never expose it publicly."),
    Key("appservice.port", int, 29330, "Port of the appservice API listener.", check=_port),
    Key("appservice.url", str, "http://127.0.0.1:29330",
        "URL at which the homeserver reaches the appservice API (written into the registration).", check=_url),
    Key("appservice.as_token", str, required=True, secret=True, example=EXAMPLE_SECRET + "-as-token",
        doc="Token the bridge uses towards the homeserver. `generate-registration` fills it in.", check=secret_problem),
    Key("appservice.hs_token", str, required=True, secret=True, example=EXAMPLE_SECRET + "-hs-token",
        doc="Token the homeserver presents to the bridge. `generate-registration` fills it in.", check=secret_problem),
    Key("appservice.bot_localpart", str, "precinct", "Localpart of the bridge's own bot user (sender_localpart).",
        check=_localpart),
    Key("appservice.puppet_prefix", str, "webchat_",
        "Localpart prefix of visitor puppet users; the registration claims it exclusively.", check=_localpart),
    Key("web.bind_host", str, "127.0.0.1",
        "Address of the public listener (citizen page and visitor API); put a TLS reverse proxy in front."),
    Key("web.port", int, 8080, "Port of the public listener.", check=_port),
    Key("web.public_url", str, "http://127.0.0.1:8080",
        "The URL citizens use to reach the public listener (used to build ws_url and links).", check=_url),
    Key("web.embed_origins", "origins", default=[], example=["https://www.police.example"],
        doc="Agency websites allowed to embed the chat widget and open its WebSocket (scheme://host[:port]). "
            "The bridge's own origin is always allowed."),
    Key("web.max_message_chars", int, 4000, "Longest visitor message accepted; longer ones get 413, never truncated.",
        check=_positive),
    Key("web.max_display_name_chars", int, 64, "Longest visitor display name accepted.", check=_positive),
    Key("web.chat_message_burst", int, 20,
        "Messages a citizen may send in a burst (WebSocket and POST together) before the rate below applies; "
        "over it the message is refused with rate_limited and the page sends it again a moment later.",
        check=_positive),
    Key("web.chat_messages_per_minute", float, 30.0,
        "Sustained rate of a citizen's messages per chat once the burst is used up.", check=_positive),
    Key("web.typing_interval_seconds", float, 3.0,
        "At most one typing call to the homeserver per chat this often; only changes of state are sent.",
        check=_positive),
    Key("web.max_sockets_per_chat", int, 5,
        "Open WebSockets one chat may have (tabs of the same citizen); more are refused after auth.",
        check=_positive),
    Key("web.max_sockets_per_address", int, 50,
        "Open WebSockets from one client address, authenticated or not; more are refused with 429 before the "
        "upgrade. Several citizens may share an address (a library, a mobile carrier), so keep it generous.",
        check=_positive),
    Key("web.trusted_proxies", "networks", default=[], example=[],
        doc="Reverse proxies (addresses or CIDR ranges, such as 127.0.0.1 or 10.0.0.0/8) whose X-Forwarded-For "
            "the bridge believes. A request from one of them is counted against the address the proxy saw (read "
            "from the right of X-Forwarded-For, skipping hops that are themselves listed); a request from anyone "
            "else is counted against its own address and its X-Forwarded-For is ignored. Every per-address "
            "decision uses this address: the limits below, !block, the sockets per address and console sign-in. "
            "Empty (the default): the header is never believed, so behind a proxy list it here, or every citizen "
            "shares the proxy's address and its limits."),
    Key("resources.reserved_descriptors", int, 0,
        "File descriptors kept for the chats already open. While fewer than this many are free under the "
        "open-files limit (which the bridge raises to the hard limit at start-up; see LimitNOFILE in "
        "config/precinct.service), new chats get a \"busy\" answer (HTTP 503, the phone number), and while fewer "
        "than half of it are free, new connections to the public listener are answered busy and closed. "
        "0: an eighth of the limit, at least 64.", check=_not_negative),
    Key("store.path", str, "precinct.db", "SQLite database file (relative paths are relative to the config file)."),
    Key("store.crypto_dir", str, "crypto",
        "Folder for the visitor devices' encryption state (one file per device; relative to the config file)."),
    Key("crypto.pickle_key", str, required=True, secret=True, example=EXAMPLE_SECRET + "-pickle-key",
        doc="Secret that encrypts the stored device keys at rest. Losing it makes existing devices unusable.",
        check=secret_problem),
    Key("crypto.undecryptable_wait_seconds", float, 60.0,
        "How long an officer message that cannot be decrypted waits for its keys before the officer is asked to "
        "resend it.", check=_positive),
    Key("crypto.new_device_window_seconds", float, 60.0,
        "An officer's device that appears just after the bridge sent something (signed in a moment earlier, "
        "its keys uploaded a moment later) is given the keys of what was sent to that officer's other devices "
        "in this many seconds before it was seen, so it can read it. 0: new devices read only what is sent "
        "after they are seen. Each key is one to-device message, so a long window in a busy dispatch room "
        "means a burst of them per new device; keys are uploaded seconds after a sign-in.", check=_not_negative),
    Key("crypto.idle_unload_seconds", float, 120.0,
        "A visitor device's encryption state is unloaded from memory when unused for this long (a closed chat's "
        "soon after its last message), and loaded again from its store file when needed.", check=_positive),
    Key("metrics.enabled", bool, True, "Serve Prometheus metrics at /metrics on the private metrics listener."),
    Key("metrics.bind_host", str, "127.0.0.1",
        "Private address of the metrics listener. Never expose it publicly: the figures describe police workload. "
        "It is separate from the appservice listener so Prometheus never needs the homeserver's token."),
    Key("metrics.port", int, 29331, "Port of the metrics listener.", check=_port),
    Key("console.link_ttl_seconds", int, 300,
        "How long a supervisor's one-time console sign-in link (sent by the bot on !console) stays valid.",
        check=lambda v: None if 30 <= v <= 900 else "must be between 30 and 900 seconds"),
    Key("console.idle_minutes", int, 30,
        "A console session ends after this many minutes without a request (CJIS AC-11: at most 30).",
        check=lambda v: None if 1 <= v <= 30 else "must be between 1 and 30 minutes"),
    Key("training.scenarios", "scenarios",
        default=[{"id": "stolen-bike", "title": "Stolen bicycle",
                  "lines": ["Hi, my bike was stolen from outside the station this morning.",
                            "It's a blue Trek, I locked it to the railings at about 8.",
                            "I have a photo of it and the frame number at home.",
                            "Thanks, what happens next?"]}],
        doc="Practice chats a supervisor starts with `!practice [scenario] [@trainee]` in a dispatch room: the "
            "bridge plays the citizen, saying the first line at once and the next after each officer reply. "
            "Practice chats are marked as training, never counted in reports or sent to webhooks, and kept "
            "for records.training_retention_days."),
    Key("reports.summary_rooms", "rooms", default={},
        doc="Where the bot posts each agency's daily summary (yesterday's figures): agency id → room ID, e.g. "
            "{central: '!supervisors:police.example'}. Invite the bot to the room; agencies not listed get none."),
    Key("reports.summary_time", str, "06:00", "When (UTC, HH:MM) the daily summary of the previous day is posted.",
        check=lambda v: None if re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", v) else "must be a time like 06:00"),
    Key("chats.first_number", int, 1001, "Number given to the first chat; officers see 'Chat <number>'.",
        check=_positive),
    Key("chats.block_hours", int, 24,
        "How long an officer's !block refuses new chats from the blocked chat's source (a salted hash of its "
        "address, never the address; !unblock lifts it sooner).", check=_positive),
    Key("chats.puppet_pool_size", int, 3,
        "Visitor identities (user, device, cross-signing) prepared ahead so a new chat only needs its room. "
        "0 disables the pool."),
    Key("chats.max_waiting_per_agency", int, 50,
        "Most chats waiting unclaimed in one agency's queue (an agency's max_waiting_chats overrides it). Over it a "
        "new chat is refused with a \"busy\" answer (HTTP 503, Retry-After) naming site.phone_number and the "
        "emergency number, and nothing is created. 0: no cap.",
        check=lambda v: None if v >= 0 else "must be 0 (no cap) or more"),
    Key("chats.abandoned_seconds", float, 900.0,
        "A waiting chat whose citizen has no page open and has written nothing for this long is closed (the "
        "citizen sees why if they come back); an agency's timeouts.abandoned_seconds overrides it. 0: never.",
        check=lambda v: None if v >= 0 else "must be 0 (never) or more seconds"),
    # Admission control: token buckets per client address and overall (bridge/limits.py). A request over
    # either is refused with 429, Retry-After and {"error": "rate_limited"}, and nothing of it is stored.
    Key("limits.chats_per_address", "rate", default={"burst": 5, "per_hour": 20},
        doc="New chats (POST /api/v1/chats) one client address may start: a burst, then per_hour on average. A "
            "citizen starts one chat, perhaps a second after ending it (reloading the page resumes the chat and "
            "starts none), so 5 at once leaves room for a household, an office or a library sharing an address, "
            "and one every 3 minutes after that for a busy shared address (a mobile carrier's NAT). A script on "
            "one address gets 5 chats, then one every 3 minutes."),
    Key("limits.chats_overall", "rate", default={"burst": 60, "per_hour": 600},
        doc="New chats from all addresses together. Protects the homeserver (a chat that speaks costs a Matrix "
            "user, device and room) and the officers' queues from a flood spread over many addresses. A force's "
            "busiest hour brings a few dozen chats; 60 at once and 10 a minute after that is several times more, "
            "and still far below what one homeserver creates. Over it every citizen is refused for a while, "
            "with the phone and emergency numbers: raise it for a very large service."),
    Key("limits.offline_messages_per_address", "rate", default={"burst": 3, "per_hour": 10},
        doc="Offline messages (POST /api/v1/offline_messages; each is a ticket and a dispatch notice) one client "
            "address may leave. A citizen leaves one, perhaps a correction."),
    Key("limits.offline_messages_overall", "rate", default={"burst": 30, "per_hour": 300},
        doc="Offline messages from all addresses together (each one an officer must read)."),
    Key("limits.uploads_per_address", "rate", default={"burst": 10, "per_hour": 60},
        doc="Attachments (photos, PDFs) one client address may upload: 10 photos at once, then one a minute. "
            "Checked before the file is read, so a refused upload costs no transfer."),
    Key("limits.uploads_overall", "rate", default={"burst": 100, "per_hour": 1200},
        doc="Attachments from all addresses together (each up to attachments.max_bytes, stored on the homeserver)."),
    Key("limits.console_sign_ins_per_address", "rate", default={"burst": 10, "per_hour": 30},
        doc="Console sign-in attempts (the sign-in form's POST) from one client address. A supervisor signs in a "
            "few times a day; links are single-use 256-bit secrets, so this is not about guessing them but about "
            "what a flood of bogus attempts costs (a database write and an audit entry each). A refused attempt "
            "does not spend the link."),
    Key("limits.console_sign_ins_overall", "rate", default={"burst": 30, "per_hour": 120},
        doc="Console sign-in attempts from all addresses together."),
    Key("proof_of_work.enabled", bool, False,
        "Ask the citizen's browser for a little work before a chat starts: the page fetches a signed challenge "
        "and solves it in the background (a Web Worker, SHA-256) while the citizen fills in the form. Nothing to "
        "see or click, no cookie, no third party. Makes floods of new chats cost the sender CPU time. Off: no "
        "challenge is asked for."),
    Key("proof_of_work.base_bits", int, 16,
        "Work asked for when nothing is being refused, in bits: each bit doubles it. 16 bits is 65,536 SHA-256 "
        "hashes on average, about half a second in Chromium on a small server (figures in docs/proof-of-work.md), "
        "done while the citizen fills in the form.",
        check=lambda v: None if 1 <= v <= 32 else "must be between 1 and 32 bits"),
    Key("proof_of_work.max_bits", int, 18,
        "The most work ever asked for, in bits (at least base_bits). The difficulty rises towards it while chat "
        "creation is being refused (blocked, busy); each bit doubles a citizen's wait, so keep it "
        "within what a slow phone does in a few seconds (18: about 2 s median in Chromium on a small server).",
        check=lambda v: None if 1 <= v <= 32 else "must be between 1 and 32 bits"),
    Key("proof_of_work.refusals_per_bit", float, 10.0,
        "How fast the difficulty rises: one bit more for every this many recently refused chat creations (to the "
        "nearest: half of it already adds one).",
        check=_positive),
    Key("proof_of_work.half_life_seconds", float, 120.0,
        "How fast it falls back: the count of recent refusals halves every this many seconds without one.",
        check=_positive),
    Key("proof_of_work.challenge_seconds", int, 300,
        "How long a challenge stays valid. A used challenge is remembered this long so it cannot be used again; "
        "the page fetches a new one if the citizen takes longer.",
        check=lambda v: None if 1 <= v <= 3600 else "must be between 1 and 3600 seconds"),
    Key("attachments.max_bytes", int, 10 * 1024 * 1024, "Largest attachment a citizen may send, in bytes.",
        check=_positive),
    Key("attachments.allowed_types", "mimetypes", default=["image/jpeg", "image/png", "image/webp", "application/pdf"],
        doc="Types citizens may send, recognised from the file's content (not its name). "
            "Known: image/jpeg, image/png, image/webp, application/pdf."),
    Key("site.service_name", str, "",
        "The agency's name for the chat, shown as the page's title and header in every language "
        "(empty: 'Police non-emergency web chat', in the citizen's language)."),
    Key("site.logo", str, "",
        "The agency's logo shown in the page header: a .png, .jpg, .webp or .svg file (relative to the config file); "
        "the bridge serves it itself, so the page loads nothing from elsewhere. Empty: no logo.", check=_logo),
    Key("site.primary_color", str, "#0b57a4",
        "Colour of buttons and links (#rrggbb). White text sits on it, so it must reach a 4.5:1 contrast.",
        check=_text_background),
    Key("site.header_color", str, "#0b3a6e",
        "Colour of the page header (#rrggbb). White text sits on it, so it must reach a 4.5:1 contrast.",
        check=_text_background),
    Key("site.emergency_number", str, "999",
        "Emergency number shown (as a tap-to-call link) on every screen: 999, 911, 112…",
        check=lambda v: None if re.fullmatch(r"[0-9+ ]{2,16}", v) else "must be a phone number such as 999, 911 or 112"),
    Key("site.phone_number", str, "",
        "The police's non-emergency phone number (such as 101), offered when the queue is full. Empty: none given.",
        check=lambda v: None if not v or re.fullmatch(r"[0-9+ ()-]{2,24}", v) else "must be a phone number such as 101"),
    Key("site.welcome_text", str, "",
        "Short welcome shown above the start form, as written, in every language (empty: the standard welcome, "
        "in the citizen's language)."),
    Key("site.review_text", str, "",
        "What the start page says about supervisors reviewing chats (they may join one with !watch), as written, "
        "in every language (empty: the standard sentence, in the citizen's language)."),
    Key("site.privacy_url", str, "", "Link to the privacy notice (empty: no link shown)."),
    Key("site.require_consent", bool, False,
        "Citizens must tick that they have read the privacy notice before starting a chat (needs site.privacy_url)."),
    Key("site.quick_exit_url", str, "https://www.bbc.co.uk/weather",
        "Neutral page the 'Quick exit' button replaces the chat with, for someone who must hide it at once.",
        check=_url),
    Key("officers.presence_poll_seconds", float, 30.0,
        "How often the bridge asks the homeserver for the presence of officers holding chats (homeservers push "
        "appservices presence only for their own users); see an agency's timeouts.officer_absent_seconds.",
        check=_positive),
    Key("officers.command_prefix", str, "!",
        "What starts an officer's command (!close, !claim …). Nothing starting with it ever reaches a citizen.",
        check=lambda v: None if 1 <= len(v) <= 3 and not v.isspace() and " " not in v
        else "must be 1-3 non-blank characters, such as ! or /"),
    Key("federation.allowed_servers", "servers", default=[], example=["police-north.example"],
        doc="Other homeservers (server names, as after the ':' in user IDs) whose officers may take part in chats. "
            "Chat rooms carry a server ACL allowing only the bridge's homeserver and these; users of any other "
            "server are never invited, never given room keys, and removed if they appear."),
    Key("routing.transfer_first_officer", str, "leave",
        "After `!transfer`, once the new officer has joined: `leave` removes the transferring agency's officers "
        "from the chat, `stay` keeps them in it.",
        check=lambda v: None if v in ("leave", "stay") else "must be leave or stay"),
    Key("agencies", "agencies", required=True,
        example=[{"id": "central", "name": "Central Police",
                  "officers": ["@officer1:police.example", "@officer2:police.example"],
                  "supervisors": ["@sergeant1:police.example"], "dispatch_room": None,
                  "topics": ["general", "lost-property"],
                  "hours": {"timezone": "Europe/London",
                            "weekly": {"mon": ["08:00-20:00"], "tue": ["08:00-20:00"], "wed": ["08:00-20:00"],
                                       "thu": ["08:00-20:00"], "fri": ["08:00-20:00"], "sat": ["10:00-16:00"]},
                            "holidays": ["2026-12-25", "2027-01-01"]},
                  "routing": "manual", "max_chats_per_officer": 3,
                  "timeouts": {"unclaimed_seconds": 120, "unanswered_seconds": 180, "visitor_idle_seconds": 600,
                               "visitor_idle_close_seconds": 120},
                  "canned": {"hello": "Hello, I am an officer. How can I help?",
                             "999": "If anyone is in danger right now, please call 999."},
                  "present_officers_as": "display_name",
                  "emergency": {"en": ["help me", "knife", "gun", "weapon", "kill myself", "suicide"],
                                "fr": ["au secours", "couteau", "arme"]}, "retention_days": 730}],
        doc="Agencies answering chats. Keys of each agency:"
            + "".join(f"\n  {name}: {doc}" for name, doc in AGENCY_FIELD_DOCS.items())),
    Key("topics", "topics",
        default=[{"id": "general", "label": "General enquiry", "agency": None}],
        example=[{"id": "general", "label": "General enquiry", "agency": "central"},
                 {"id": "lost-property", "label": "Lost property", "agency": "central"}],
        doc="Topics a citizen can pick; each goes to an agency (null: the first agency)."),
    Key("records.signing_key_path", str, "records-signing.key",
        "Ed25519 key that signs each closed chat's transcript; created (mode 0600) on first start. Keep it with the "
        "config's secrets and back it up: `python -m bridge records public-key` prints what verifiers need."),
    Key("records.training_retention_days", int, 90,
        "Finished practice chats (training) are purged this many days after closing: their own retention, "
        "apart from real chats'. Chats under legal hold are never purged.", check=_positive),
    Key("records.retention_days", int, 730,
        "Closed chats are purged this many days after closing (an agency's retention_days overrides it); "
        "chats under legal hold are never purged.", check=_positive),
    Key("records.audit_retention_days", int, 365,
        "Audit entries are kept at least this many days (the chain stays verifiable after pruning).",
        check=lambda v: None if v >= 365 else "must be at least 365 days"),
    Key("records.refusal_window_seconds", int, 3600,
        doc="Repeated refusals from one source (refused chat creations, failed or refused console sign-ins, "
            "refused erasures) are one audit entry per this window: the first refusal is recorded at once, the "
            "ones after it in the window as one entry with their count when the window ends. The source is a "
            "salted daily hash of the client address, never the address. An hour keeps a flood to two entries "
            "an hour per source in an audit trail kept for a year.",
        check=lambda v: None if 1 <= v <= 86400 else "must be between 1 and 86400 seconds"),
    Key("records.audit_checkpoint_minutes", int, 60,
        "How often the head of the audit chain is signed with the records key (and always at shutdown). Someone "
        "who can write the database could rewrite the chain and recompute its hashes; they cannot sign: "
        "`audit verify` then names the first entry after the last signed checkpoint that still holds.",
        check=_positive),
    Key("records.purge_interval_minutes", int, 60,
        "How often the bridge purges expired chats and audit entries.", check=_positive),
    Key("webhooks.endpoints", "webhooks", default=[],
        doc="Signed webhooks, so a force can link chats to its records or CAD system. A list of "
            "{agency: <agency id>, url: https://…, secret: <at least 16 random characters>}; each receives "
            "chat.queued, chat.claimed, chat.assigned, chat.transferred and chat.closed of that agency's chats as "
            "JSON POSTs signed with HMAC-SHA256 (see docs/webhooks.md), retried with back-off for a day."),
    Key("logging.level", str, "INFO", "Log level: DEBUG, INFO, WARNING or ERROR.",
        check=lambda v: None if v in ("DEBUG", "INFO", "WARNING", "ERROR") else "must be DEBUG, INFO, WARNING or ERROR"),
]

_BY_PATH = {k.path: k for k in SCHEMA}
_TOP_SECTIONS = {k.path.split(".")[0] for k in SCHEMA}


@dataclass(frozen=True)
class Timeouts:
    unclaimed_seconds: float = 120
    unanswered_seconds: float = 180
    visitor_idle_seconds: float = 600
    visitor_idle_close_seconds: float = 120
    abandoned_seconds: float | None = None       # None: chats.abandoned_seconds
    officer_absent_seconds: float = 600           # holder offline or idle this long: their chats go back


@dataclass(frozen=True)
class Hours:
    timezone: str
    weekly: dict[str, tuple[tuple[int, int], ...]]   # "mon" → ((start_minute, end_minute), …)
    holidays: frozenset[str]                          # "YYYY-MM-DD" in the agency's time zone


DEFAULT_EMERGENCY = {"en": ("help me", "knife", "gun", "weapon", "kill myself", "suicide", "being attacked")}


@dataclass(frozen=True)
class Agency:
    id: str
    name: str
    officers: tuple[str, ...]                 # user IDs
    server_name: str = ""
    officer_servers: tuple[str, ...] = ()     # every user of these servers is an officer
    supervisors: tuple[str, ...] = ()
    dispatch_room: str | None = None
    topics: tuple[str, ...] = ()
    hours: Hours | None = None
    routing: str = "manual"
    max_chats_per_officer: int = 3
    timeouts: Timeouts = Timeouts()
    canned: dict[str, str] = field(default_factory=dict)
    present_officers_as: str = "display_name"
    emergency: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_EMERGENCY))
    retention_days: int | None = None
    max_waiting_chats: int | None = None      # None: chats.max_waiting_per_agency

    def is_supervisor(self, user_id: str) -> bool:
        return user_id in self.supervisors

    def is_officer(self, user_id: str) -> bool:
        """Officers and supervisors: who may claim, be invited to and act in this agency's chats."""
        return (user_id in self.officers or user_id in self.supervisors
                or user_id.split(":", 1)[-1] in self.officer_servers)

    def invitees(self) -> tuple[str, ...]:
        """Everyone named by user ID: who the dispatch room invites."""
        return tuple(dict.fromkeys(self.officers + self.supervisors))


@dataclass(frozen=True)
class Topic:
    id: str
    label: str
    agency: str


@dataclass(frozen=True)
class Scenario:
    """A practice chat's script: what the bridge, playing the citizen, says in turn."""
    id: str
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Webhook:
    agency: str
    url: str
    secret: str


@dataclass
class Config:
    """Validated configuration. ``get("a.b")`` reads a key; agencies and topics are typed."""

    values: dict[str, Any]
    base_dir: Path
    agencies: list[Agency] = field(default_factory=list)
    topics: list[Topic] = field(default_factory=list)
    webhooks: list[Webhook] = field(default_factory=list)
    scenarios: tuple[Scenario, ...] = ()

    def get(self, path: str) -> Any:
        return self.values[path]

    def path(self, key: str) -> Path:
        p = Path(self.values[key])
        return p if p.is_absolute() else self.base_dir / p

    def rate(self, path: str) -> Rate:
        """A ``limits.*`` key as the token bucket's rate."""
        return Rate.of(self.values[path])

    def agency(self, agency_id: str) -> Agency:
        return next(a for a in self.agencies if a.id == agency_id)

    def scenario(self, scenario_id: str | None) -> Scenario | None:
        """The practice scenario with this ID (the first one for None); None if there is no such one."""
        if scenario_id is None:
            return self.scenarios[0] if self.scenarios else None
        return next((sc for sc in self.scenarios if sc.id == scenario_id), None)

    def retention_days(self, agency_id: str) -> int:
        """How long this agency's closed chats are kept."""
        agency = next((a for a in self.agencies if a.id == agency_id), None)
        return agency.retention_days if agency and agency.retention_days else self.values["records.retention_days"]

    def max_waiting(self, agency_id: str) -> int:
        """Most unclaimed chats this agency's queue takes (0: no cap)."""
        own = self.agency(agency_id).max_waiting_chats
        return self.values["chats.max_waiting_per_agency"] if own is None else own

    def abandoned_seconds(self, agency_id: str) -> float:
        """After how long a waiting chat with no page open and no message is closed (0: never)."""
        own = self.agency(agency_id).timeouts.abandoned_seconds
        return self.values["chats.abandoned_seconds"] if own is None else own

    def longest_abandoned_seconds(self) -> float:
        """The longest ``abandoned_seconds`` of any agency (0: no agency closes abandoned chats)."""
        return max((self.abandoned_seconds(a.id) for a in self.agencies), default=0.0)

    def topic(self, topic_id: str | None) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        return self.topics[0]


def _lookup(raw: dict, path: str) -> tuple[bool, Any]:
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _coerce(key: Key, value: Any) -> Any:
    if key.kind in (str, int, float, bool):
        if key.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if key.kind is not bool and isinstance(value, bool) or not isinstance(value, key.kind):
            raise ConfigError(f"{key.path}: expected {key.kind.__name__}, got {type(value).__name__} ({value!r})")
    if key.check and (problem := key.check(value)):
        raise ConfigError(f"{key.path}: {problem}")
    return value


def _env_value(key: Key, text: str) -> Any:
    if key.kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key.path} (from environment {env_name(key.path)}): expected true or false, got {text!r}")
    if key.kind in (int, float):
        try:
            return key.kind(text)
        except ValueError:
            raise ConfigError(f"{key.path} (from environment): expected {key.kind.__name__}, got {text!r}")
    if key.kind is str:
        return text
    return yaml.safe_load(text)


def env_name(path: str) -> str:
    """``appservice.hs_token`` → ``PRECINCT_APPSERVICE__HS_TOKEN``."""
    return "PRECINCT_" + path.upper().replace(".", "__")


def _parse_origins(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(
            isinstance(o, str) and re.fullmatch(r"https?://[^/\s:]+(:\d+)?", o) for o in value):
        raise ConfigError("web.embed_origins: expected a list of origins like https://www.police.example "
                          "(scheme and host, no path)")
    return value


def _parse_networks(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: expected a list of addresses or CIDR ranges, such as [127.0.0.1, 10.0.0.0/8]")
    try:
        parse_networks(value)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    return value


def _parse_rate(value: Any, path: str) -> dict[str, Any]:
    """{burst: whole number >= 1, per_hour: number > 0}: what a token bucket takes (bridge/limits.py)."""
    if not isinstance(value, dict) or set(value) != {"burst", "per_hour"}:
        raise ConfigError(f"{path}: expected {{burst: <requests at once>, per_hour: <requests an hour after "
                          f"that>}}, got {value!r}")
    burst, per_hour = value["burst"], value["per_hour"]
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"{path}.burst: expected a whole number of at least 1, got {burst!r}")
    if isinstance(per_hour, bool) or not isinstance(per_hour, (int, float)) or not per_hour > 0 \
            or per_hour == float("inf"):
        raise ConfigError(f"{path}.per_hour: expected a number greater than 0, got {per_hour!r}")
    return {"burst": burst, "per_hour": per_hour}


_USER_ID = re.compile(r"@[^:\s]+:\S+")
_SERVER = re.compile(r"(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _user_ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(u, str) and _USER_ID.fullmatch(u) for u in value):
        raise ConfigError(f"{where}: expected a list of Matrix user IDs like @name:server")
    return tuple(value)


def _parse_hours(value: Any, where: str) -> Hours | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"timezone", "weekly", "holidays"}:
        raise ConfigError(f"{where}: expected a mapping with timezone, weekly and holidays")
    tz = value.get("timezone")
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(str(tz))
    except Exception:
        raise ConfigError(f"{where}.timezone: {tz!r} is not a known time zone (such as Europe/London)")
    weekly_raw = value.get("weekly") or {}
    if not isinstance(weekly_raw, dict) or set(weekly_raw) - set(_DAYS):
        raise ConfigError(f"{where}.weekly: expected a mapping of {', '.join(_DAYS)} to lists of \"HH:MM-HH:MM\"")
    weekly: dict[str, tuple[tuple[int, int], ...]] = {}
    for day, spans in weekly_raw.items():
        spans = [spans] if isinstance(spans, str) else spans
        parsed = []
        for span in spans or []:
            m = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", str(span).strip())
            start = int(m[1]) * 60 + int(m[2]) if m else -1
            end = int(m[3]) * 60 + int(m[4]) if m else -1
            if not m or not (0 <= start < end <= 24 * 60) or int(m[2]) > 59 or int(m[4]) > 59:
                raise ConfigError(f"{where}.weekly.{day}: {span!r} is not a time span like \"08:00-18:00\"")
            parsed.append((start, end))
        weekly[day] = tuple(parsed)
    holidays = value.get("holidays") or []
    if not isinstance(holidays, list) or not all(re.fullmatch(r"\d{4}-\d\d-\d\d", str(d)) for d in holidays):
        raise ConfigError(f"{where}.holidays: expected a list of dates like 2026-12-25")
    return Hours(str(tz), weekly, frozenset(str(d) for d in holidays))


def _parse_timeouts(value: Any, where: str) -> Timeouts:
    if value is None:
        return Timeouts()
    names = set(Timeouts.__dataclass_fields__)
    if not isinstance(value, dict) or set(value) - names:
        raise ConfigError(f"{where}: expected a mapping with {', '.join(sorted(names))}")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{where}.{k}: expected a number of seconds (0 turns it off), got {v!r}")
    return Timeouts(**{k: float(v) for k, v in value.items()})


def _parse_agency(a: Any, where: str, default_server: str) -> Agency:
    if not isinstance(a, dict):
        raise ConfigError(f"{where}: expected a mapping with id, name, officers")
    unknown = set(a) - set(AGENCY_FIELD_DOCS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {', '.join(AGENCY_FIELD_DOCS)}")
    aid, name = a.get("id"), a.get("name")
    if not isinstance(aid, str) or not re.fullmatch(r"[a-z0-9_-]+", aid):
        raise ConfigError(f"{where}.id: expected a short lowercase identifier, got {aid!r}")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: expected the agency's name")
    officers = a.get("officers") or []
    if not isinstance(officers, list) or not all(
            isinstance(o, str) and (_USER_ID.fullmatch(o) or _SERVER.fullmatch(o)) for o in officers):
        raise ConfigError(f"{where}.officers: expected a list of Matrix user IDs like @name:server "
                          "or server names like police.example")
    server = a.get("server_name") or default_server
    if not isinstance(server, str) or not _SERVER.fullmatch(server):
        raise ConfigError(f"{where}.server_name: expected a server name like police.example, got {server!r}")
    room = a.get("dispatch_room")
    if room is not None and not (isinstance(room, str) and re.fullmatch(r"![^:\s]+:\S+", room)):
        raise ConfigError(f"{where}.dispatch_room: expected a room ID like !abc:server or null, got {room!r}")
    topics = a.get("topics") or []
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ConfigError(f"{where}.topics: expected a list of topic IDs")
    routing = a.get("routing", "manual")
    if routing not in ("manual", "auto"):
        raise ConfigError(f"{where}.routing: expected manual or auto, got {routing!r}")
    cap = a.get("max_chats_per_officer", 3)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"{where}.max_chats_per_officer: expected a whole number of at least 1, got {cap!r}")
    canned = a.get("canned") or {}
    if not isinstance(canned, dict) or not all(
            isinstance(k, (str, int)) and re.fullmatch(r"[\w-]+", str(k)) and isinstance(v, str) and v.strip()
            for k, v in canned.items()):
        raise ConfigError(f"{where}.canned: expected a mapping of short keys (letters, digits, - or _) to texts")
    present = a.get("present_officers_as", "display_name")
    if not isinstance(present, str) or not (present == "display_name" or "{n}" in present) \
            or re.search(r"{(?!n})", present):
        raise ConfigError(f"{where}.present_officers_as: expected display_name or a pattern with {{n}} "
                          f"such as \"Officer {{n}}\", got {present!r}")
    emergency_raw = a.get("emergency", DEFAULT_EMERGENCY)
    if not isinstance(emergency_raw, dict) or not all(
            isinstance(lang, str) and isinstance(words, (list, tuple)) and all(isinstance(w, str) and w.strip() for w in words)
            for lang, words in emergency_raw.items()):
        raise ConfigError(f"{where}.emergency: expected a mapping of language codes (or \"*\") "
                          "to lists of words and phrases")
    max_waiting = a.get("max_waiting_chats")
    if max_waiting is not None and (isinstance(max_waiting, bool) or not isinstance(max_waiting, int) or max_waiting < 0):
        raise ConfigError(f"{where}.max_waiting_chats: expected a whole number (0: no cap), got {max_waiting!r}")
    retention = a.get("retention_days")
    if retention is not None and (isinstance(retention, bool) or not isinstance(retention, int) or retention <= 0):
        raise ConfigError(f"{where}.retention_days: expected a whole number of days greater than 0")
    return Agency(
        aid, name.strip(), tuple(o for o in officers if o.startswith("@")), server,
        tuple(o for o in officers if not o.startswith("@")), _user_ids(a.get("supervisors"), f"{where}.supervisors"),
        room, tuple(topics), _parse_hours(a.get("hours"), f"{where}.hours"), routing, cap,
        _parse_timeouts(a.get("timeouts"), f"{where}.timeouts"), {str(k): v for k, v in canned.items()},
        present, {str(k).lower(): tuple(v) for k, v in emergency_raw.items()}, retention, max_waiting)


_SERVER_NAME = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?")


def server_of(user_id: str) -> str:
    """The server name of a Matrix user ID (everything after the first ':')."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _parse_servers(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) and _SERVER_NAME.fullmatch(s) for s in value):
        raise ConfigError("federation.allowed_servers: expected a list of server names like police-north.example "
                          "(host, optionally :port)")
    return value


def _check_officer_servers(agencies: list[Agency], own: str, allowed: list[str]) -> None:
    for i, agency in enumerate(agencies):
        for key, users in (("officers", agency.officers), ("supervisors", agency.supervisors)):
            for user in users:
                if server_of(user) != own and server_of(user) not in allowed:
                    raise ConfigError(f"agencies[{i}].{key}: {user} is on {server_of(user)}, which is neither "
                                      f"this homeserver ({own}) nor in federation.allowed_servers")
        for server in agency.officer_servers:
            if server != own and server not in allowed:
                raise ConfigError(f"agencies[{i}].officers: {server} is neither this homeserver ({own}) nor in "
                                  "federation.allowed_servers")


def _parse_agencies(value: Any, default_server: str = "") -> list[Agency]:
    if not isinstance(value, list) or not value:
        raise ConfigError("agencies: expected a non-empty list of agencies")
    out: list[Agency] = []
    for i, a in enumerate(value):
        agency = _parse_agency(a, f"agencies[{i}]", default_server)
        if any(o.id == agency.id for o in out):
            raise ConfigError(f"agencies[{i}].id: duplicate agency id {agency.id!r}")
        out.append(agency)
    return out


RESERVED_SCENARIO = "live"      # a practice chat whose citizen a supervisor plays (chats/training.LIVE)


def _parse_scenarios(value: Any) -> tuple[Scenario, ...]:
    if not isinstance(value, list):
        raise ConfigError("training.scenarios: expected a list of scenarios (id, title, lines)")
    out: list[Scenario] = []
    for i, sc in enumerate(value):
        where = f"training.scenarios[{i}]"
        if not isinstance(sc, dict) or set(sc) != {"id", "title", "lines"}:
            raise ConfigError(f"{where}: expected a mapping with exactly id, title and lines")
        if not isinstance(sc["id"], str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", sc["id"]):
            raise ConfigError(f"{where}.id: expected a short name of lower-case letters, digits and dashes")
        if sc["id"] == RESERVED_SCENARIO:
            raise ConfigError(f"{where}.id: {RESERVED_SCENARIO!r} is kept for practice chats a supervisor plays "
                              "from the console; choose another name")
        if sc["id"] in {o.id for o in out}:
            raise ConfigError(f"{where}.id: {sc['id']!r} is used twice")
        if not isinstance(sc["title"], str) or not sc["title"].strip():
            raise ConfigError(f"{where}.title: expected a non-empty text")
        lines = sc["lines"]
        if not isinstance(lines, list) or not lines or not all(isinstance(t, str) and t.strip() for t in lines):
            raise ConfigError(f"{where}.lines: expected a non-empty list of non-empty texts")
        out.append(Scenario(sc["id"], sc["title"].strip(), tuple(t.strip() for t in lines)))
    return tuple(out)


def _parse_topics(value: Any, agencies: list[Agency]) -> list[Topic]:
    if not isinstance(value, list) or not value:
        raise ConfigError("topics: expected a non-empty list of topics")
    ids = {a.id for a in agencies}
    out = []
    for i, t in enumerate(value):
        where = f"topics[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("id"), str) or not isinstance(t.get("label"), str):
            raise ConfigError(f"{where}: expected a mapping with id, label and agency")
        unknown = set(t) - {"id", "label", "agency"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected id, label, agency")
        listed = [a.id for a in agencies if t["id"] in a.topics]
        if len(listed) > 1 or (listed and t.get("agency") and t.get("agency") != listed[0]):
            raise ConfigError(f"{where}.agency: topic {t['id']!r} is given to more than one agency "
                              f"({sorted(set(listed + [t.get('agency')]) - {None})})")
        agency = t.get("agency") or (listed[0] if listed else agencies[0].id)
        if agency not in ids:
            raise ConfigError(f"{where}.agency: {agency!r} is not one of the agencies {sorted(ids)}")
        out.append(Topic(t["id"], t["label"], agency))
    return out


def _parse_webhooks(value: Any, agencies: list[Agency]) -> list[Webhook]:
    if not isinstance(value, list):
        raise ConfigError("webhooks.endpoints: expected a list of {agency, url, secret}")
    ids = {a.id for a in agencies}
    out = []
    for i, w in enumerate(value):
        where = f"webhooks.endpoints[{i}]"
        if not isinstance(w, dict) or set(w) != {"agency", "url", "secret"}:
            raise ConfigError(f"{where}: expected exactly the keys agency, url and secret")
        if w["agency"] not in ids:
            raise ConfigError(f"{where}.agency: {w['agency']!r} is not one of the agencies {sorted(ids)}")
        if not isinstance(w["url"], str) or _url(w["url"]):
            raise ConfigError(f"{where}.url: must be an http(s) URL")
        if not isinstance(w["secret"], str) or (problem := secret_problem(w["secret"])):
            raise ConfigError(f"{where}.secret: {problem if isinstance(w['secret'], str) else 'expected text'}")
        out.append(Webhook(w["agency"], w["url"], w["secret"]))
    return out


def load(raw: dict, base_dir: Path, environ: dict[str, str] | None = None) -> Config:
    """Validate a parsed config mapping (plus ``PRECINCT_*`` environment overrides)."""
    environ = os.environ if environ is None else environ
    if not isinstance(raw, dict):
        raise ConfigError("the configuration file must be a YAML mapping")
    unknown = set(raw) - _TOP_SECTIONS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; expected {sorted(_TOP_SECTIONS)}")
    for section, body in raw.items():
        nested = any("." in k.path and k.path.startswith(section + ".") for k in SCHEMA)
        if nested and body is not None and not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a mapping of keys (see example-config.yaml), got {body!r}")
        if isinstance(body, dict):
            for sub in body:
                if f"{section}.{sub}" not in _BY_PATH:
                    raise ConfigError(f"{section}.{sub}: unknown key (see example-config.yaml)")
    values: dict[str, Any] = {}
    for key in SCHEMA:
        found, value = _lookup(raw, key.path)
        if env_name(key.path) in environ:
            found, value = True, _env_value(key, environ[env_name(key.path)])
        if not found or value is None:
            if key.required:
                raise ConfigError(f"{key.path}: missing; {key.doc}")
            value = key.default
        values[key.path] = _coerce(key, value) if key.kind in (str, int, float, bool) else value
    _check_distinct_secrets(values)
    values["web.embed_origins"] = _parse_origins(values["web.embed_origins"])
    values["web.trusted_proxies"] = _parse_networks(values["web.trusted_proxies"], "web.trusted_proxies")
    for key in SCHEMA:
        if key.kind == "rate":
            values[key.path] = _parse_rate(values[key.path], key.path)
    known = {"image/jpeg", "image/png", "image/webp", "application/pdf"}
    types = values["attachments.allowed_types"]
    if not isinstance(types, list) or not set(types) <= known:
        raise ConfigError(f"attachments.allowed_types: expected a list drawn from {sorted(known)}")
    values["federation.allowed_servers"] = _parse_servers(values["federation.allowed_servers"])
    agencies = _parse_agencies(values["agencies"], values["homeserver.server_name"])
    _check_officer_servers(agencies, values["homeserver.server_name"], values["federation.allowed_servers"])
    topics = _parse_topics(values["topics"], agencies)
    scenarios = _parse_scenarios(values["training.scenarios"])
    known_topics = {t.id for t in topics}
    for i, a in enumerate(agencies):
        if set(a.topics) - known_topics:
            raise ConfigError(f"agencies[{i}].topics: {sorted(set(a.topics) - known_topics)} are not topics "
                              f"(known: {sorted(known_topics)})")
    if values["proof_of_work.max_bits"] < values["proof_of_work.base_bits"]:
        raise ConfigError(f"proof_of_work.max_bits: {values['proof_of_work.max_bits']} is below "
                          f"proof_of_work.base_bits ({values['proof_of_work.base_bits']}); it must be at least that")
    privacy = values["site.privacy_url"]
    if privacy and _url(privacy):
        raise ConfigError(f"site.privacy_url: {_url(privacy)}")
    logo = values["site.logo"]
    if logo and not (Path(logo) if Path(logo).is_absolute() else base_dir / logo).is_file():
        raise ConfigError(f"site.logo: the file {logo} does not exist (paths are relative to the config file)")
    if values["site.require_consent"] and not privacy:
        raise ConfigError("site.require_consent: needs site.privacy_url, the notice citizens consent to")
    webhooks = _parse_webhooks(values["webhooks.endpoints"], agencies)
    rooms = values["reports.summary_rooms"]
    if not isinstance(rooms, dict) or not all(
            isinstance(r, str) and re.fullmatch(r"![^:\s]+(:\S+)?", r) for r in rooms.values()):
        raise ConfigError("reports.summary_rooms: expected agency id → room ID like !abc:police.example")
    if unknown := set(rooms) - {a.id for a in agencies}:
        raise ConfigError(f"reports.summary_rooms: {sorted(unknown)} not among the agencies {[a.id for a in agencies]}")
    return Config(values, base_dir, agencies, topics, webhooks, scenarios)


DISTINCT_SECRETS = ("appservice.as_token", "appservice.hs_token", "crypto.pickle_key")


def _check_distinct_secrets(values: dict[str, Any]) -> None:
    """One leaked value must not give away another: the appservice tokens and the pickle key differ."""
    for i, a in enumerate(DISTINCT_SECRETS):
        for b in DISTINCT_SECRETS[i + 1:]:
            if values.get(a) and values.get(a) == values.get(b):
                raise ConfigError(f"{a} and {b}: the same value; every secret must be different "
                                  "(`python -m bridge generate-registration` writes new ones)")


def secrets_in_file(raw: dict) -> list[str]:
    """The secret keys a parsed config file sets itself (not through the environment)."""
    return [k.path for k in SCHEMA if k.secret and _lookup(raw, k.path)[0] and _lookup(raw, k.path)[1]]


def load_file(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found")
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}")
    return load(raw, path.resolve().parent, environ)


def _doc_lines(doc: str, tag: str) -> list[str]:
    first, *rest = doc.split("\n")
    return [first + tag, *rest]


def render_example(values: Mapping[str, Any] | None = None) -> str:
    """The documented example config, straight from the schema (what example-config.yaml must contain).

    ``values`` (key path → value) replace the examples, comments kept: a configuration written for a
    place (the demo's) is this same text with its own values, never the example edited afterwards."""
    values = dict(values or {})
    unknown = sorted(set(values) - {key.path for key in SCHEMA})
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a configuration key")
    lines = ["# Precinct configuration. Every key is listed with its explanation and default.",
             "# Values can also be set by environment variables: PRECINCT_<SECTION>__<KEY>,",
             "# e.g. PRECINCT_APPSERVICE__HS_TOKEN. Keys marked 'required' have no default.", ""]
    section = None
    for key in SCHEMA:
        parts = key.path.split(".")
        value = values[key.path] if key.path in values else key.example if key.example is not None else key.default
        tag = " (required)" if key.required else ""
        tag += " (secret)" if key.secret else ""
        if len(parts) == 1:
            lines += ["", *(f"# {line}" for line in _doc_lines(key.doc, tag)),
                      yaml.safe_dump({parts[0]: value}, sort_keys=False, allow_unicode=True).rstrip()]
            section = None
            continue
        if parts[0] != section:
            lines += ["", f"{parts[0]}:"]
            section = parts[0]
        lines += [f"  # {line}" for line in _doc_lines(key.doc, tag)]
        dumped = yaml.safe_dump({parts[1]: value}, default_flow_style=True, allow_unicode=True, width=1000).strip()
        lines.append("  " + dumped[1:-1] if dumped.startswith("{") else "  " + dumped)
    return "\n".join(lines).lstrip("\n") + "\n"
