"""The supervisor console, served by the bridge under /console on the public listener.

    auth.py     one-time sign-in links (issued by the bot on !console), sessions with idle expiry
    pages.py    server-rendered HTML (no scripts), every value escaped
    web.py      the routes, cookies and the console's own strict CSP
    reports_web.py, practice_web.py
                sections of the console (reports and their CSV; starting practice chats)
    bot_command.py, cli.py
                !console in a direct chat with the bot; the command line's sign-in link
"""
