"""The Matrix side: requests to the homeserver, puppets' devices and end-to-end encryption. Knows nothing
of chats, officers or the web (tests/unit/test_layers.py).

    cs_api.py        client-server requests as values (pure): the only place paths are spelled
    homeserver.py    HomeserverApi: sends them as the appservice or as one puppet's device
    reachable.py     HomeserverWatch: whether the homeserver answers now (start-up waits for it, /health says it)
    puppets.py       visitor puppets: user, device, cross-signing identity, the warm pool
    crosssign.py     cross-signing keys and signatures (pure)
    crypto.py        Olm/Megolm for every puppet, fed from appservice transactions (the only module on nio's crypto)
    recent_keys.py   room keys owed to devices that appear just after a send (pure bookkeeping)
    idle.py          unloads crypto clients nobody has used for a while
    rooms.py         chat rooms: created, dressed from the pool, invites, ACL, room versions (RoomPolicy)
    mentions.py      intentional mentions: what a message may ring
    bot.py           the appservice's own bot user
"""
