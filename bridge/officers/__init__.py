"""The officers' side: commands, routing (queue, claims, assignment), dispatch rooms, timeouts.

    commands.py        text → Command | CommandError (pure)
    chat_room.py       what a command typed in a chat room does
    decide.py          routing decisions (pure); routing.py applies them (claims, assignment, timers)
    dispatch.py        each agency's dispatch room: the bot's live notices; dispatch_text.py their words
    bot_rooms.py       the bot's rooms as an inbound handler (chats.inbound.RoomHandler); bot_commands.py
    access.py, admission.py  who may take part, who is admitted to a chat's room
    transfer.py        chats handed to another agency
    emergency.py       emergency words (pure)

May import chats and everything below it; never web (tests/unit/test_layers.py).
"""
