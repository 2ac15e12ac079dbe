"""Citizens' attachments: what a file really is, judged by its bytes, never by its name (pure)."""
from __future__ import annotations

import re

# (magic bytes test, MIME type, Matrix msgtype)
_SIGNATURES = [
    (lambda d: d.startswith(b"\xff\xd8\xff"), "image/jpeg", "m.image"),
    (lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), "image/png", "m.image"),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", "image/webp", "m.image"),
    (lambda d: d.startswith(b"%PDF-"), "application/pdf", "m.file"),
]


def sniff(data: bytes) -> tuple[str, str] | None:
    """(MIME type, msgtype) recognised from the content, or None."""
    for test, mimetype, msgtype in _SIGNATURES:
        if test(data):
            return mimetype, msgtype
    return None


def safe_filename(name: str | None, mimetype: str) -> str:
    """A file name fit to show and to put in a header: no paths, no control or quote characters."""
    base = re.sub(r"[^\w.\- ()]+", "_", (name or "").replace("\\", "/").split("/")[-1]).strip(" ._")[:100]
    extension = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
                 "application/pdf": ".pdf"}.get(mimetype, "")
    if not base:
        base = "attachment"
    return base if not extension or base.lower().endswith(extension) else base + extension
