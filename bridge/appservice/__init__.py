"""The appservice side of the bridge: what the homeserver calls, and the file that tells it to.

    endpoint.py      /_matrix/app/v1: authenticate the homeserver, store each transaction, then answer
                     (commit before acknowledging), user queries, the start-up ping
    registration.py  the registration file (namespaces, tokens, MSC flags) and ``generate-registration``
    catchup.py       after a start, each open chat's and dispatch room's recent timeline read back, for events
                     the homeserver's push never brought
"""
