"""The officers' side: commands, routing (queue, claims, assignment), dispatch rooms, timeouts.

    commands.py   text → Command | CommandError (pure)
    chat_room.py  what a command typed in a chat room does
"""
