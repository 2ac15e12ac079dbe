"""The chat domain: a citizen's conversation from open to close, on both sides of the bridge.

    lifecycle.py     ChatService: open → waiting → active → closed; every change the citizen sees
    inbound.py       Matrix → each room's handler (ChatRooms here; the bot's rooms come from officers/)
    outbound.py      citizen → Matrix: the outbox, in order, with stored transaction IDs
    events.py        what an officer's event means (pure, frozen dataclasses)
    queue.py, hours.py  queue place and estimate, opening hours (pure)
    conversation.py  the conversation as people saw it (pure; transcripts, transfer notices)
    hub.py           signals to the citizen's open connections; notices.py, attachments.py
    training.py      practice chats: the bridge, or a supervisor, plays the citizen

Knows nothing of officers or web (tests/unit/test_layers.py).
"""
