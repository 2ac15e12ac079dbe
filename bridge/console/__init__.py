"""The supervisor console, served by the bridge under /console on the public listener.

    auth.py     one-time sign-in links (issued by the bot on !console), sessions with idle expiry
    pages.py    server-rendered HTML (no scripts), every value escaped
    web.py      the routes, cookies and the console's own strict CSP
"""
