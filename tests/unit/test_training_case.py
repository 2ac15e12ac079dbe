"""A closed chat as a training case (issue 15): participants become roles and what could identify someone
in the text is replaced; what the patterns cannot see is said in the case itself."""
from __future__ import annotations

from bridge.records import training_case


def entry(kind, actor, content=None, **details):  # type: ignore[no-untyped-def]
    return {"kind": kind, "actor": actor, "content": content, "details": details}


DOC = {"chat": {"topic_label": "General enquiry"}, "entries": [
    entry("queued", None, {"display_name": "Sam Jones"}, number=1001),
    entry("message.visitor", "visitor", {"body": "Hi, I'm Sam Jones of 12 High Street, SW1A 1AA. Call 07700 900123 "
                                                 "or sam.jones@example.org"}),
    entry("officer.joined", "@officer1:police.example"),
    entry("message.officer", "@officer1:police.example", {"body": "Hello Sam, PC Patel here. Is the car AB12 CDE?"},
          sender_name="PC Patel", format="text"),
    entry("message.visitor", "visitor", {"body": "Yes, stolen on 03/12/2026, crime ref 4412345, see www.x.test/a"}),
    entry("message.officer", "@officer2:police.example", {"body": "officer1 asked me to help."},
          sender_name="PC Lee", format="text"),
    entry("attachment", "visitor", {"name": "sam-jones-passport.jpg"}, mimetype="image/jpeg"),
    entry("closed", "visitor", by="visitor"),
]}


def test_participants_become_roles_and_personal_details_are_replaced():
    text = training_case.render(DOC)
    for secret in ("Sam", "Jones", "Patel", "Lee", "officer1", "officer2", "police.example", "High Street",
                   "SW1A", "07700", "example.org", "AB12", "03/12/2026", "4412345", "www.x.test", "passport"):
        assert secret.lower() not in text.lower(), secret
    assert "Citizen: Hi, I'm Citizen of [address], [postcode]. Call [number] or [email]" in text
    assert "Officer A: Hello Citizen, Officer A here. Is the car [registration]?" in text
    assert "Citizen: Yes, stolen on [date], crime ref [number], see [web address]" in text
    assert "Officer B: Officer A asked me to help." in text
    assert "Citizen: [sent a file: image/jpeg]" in text and "(Officer A joined)" in text
    assert text.startswith(training_case.NOTICE) and "other names written in free text may remain" in text


def test_erased_words_stay_erased():
    doc = {"chat": {}, "entries": [entry("message.visitor", "visitor", None)]}
    assert "Citizen: [erased]" in training_case.render(doc)
