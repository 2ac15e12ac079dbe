from bridge.matrix.mentions import ensure_mentions, mentioning


def test_a_message_mentions_no_one_unless_told():
    assert mentioning({"msgtype": "m.text", "body": "@room"}) == {"msgtype": "m.text", "body": "@room",
                                                                  "m.mentions": {}}
    assert mentioning({"body": "x"}, ["@s:hs"])["m.mentions"] == {"user_ids": ["@s:hs"]}
    assert ensure_mentions({"body": "x", "m.mentions": {"user_ids": ["@a:hs"]}})["m.mentions"] == {"user_ids": ["@a:hs"]}
    assert ensure_mentions({"body": "x"})["m.mentions"] == {}


def test_an_edit_itself_notifies_no_one():
    edit = mentioning({"body": "* x", "m.new_content": {"body": "x"},
                       "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}, ["@s:hs"])
    assert edit["m.mentions"] == {} and edit["m.new_content"]["m.mentions"] == {"user_ids": ["@s:hs"]}
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$e"}
