"""The public listener citizens reach: the chat page, the widget, static files and the visitor API.

    server.py        the aiohttp app: routes, strict headers (CSP), static files
    visitor_api.py   visitor API v1 (docs/visitor-api.md): open a chat, WebSocket, attachments, transcript
    flood.py         what one citizen's WebSocket may cost (rates, typing coalesced, sockets capped)
    pow.py           the optional proof-of-work gate on opening a chat
    branding.py      white label from the config: colours, logo
    transcript.py    the citizen's own copy of the conversation, text or HTML (pure)
"""
