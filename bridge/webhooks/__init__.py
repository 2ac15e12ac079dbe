"""Signed webhooks to agencies' own systems (records, CAD) when a chat is queued, claimed, assigned,
transferred or closed.

    announcing.py  a Journal that also writes a delivery row for those chat events, in the same commit
    sender.py   delivers the rows in order per chat, retrying with back-off; never on the chat path
    signing.py  the HMAC-SHA256 signature (and its check, for receivers and tests)
"""
