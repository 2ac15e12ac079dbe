"""The records commands in-process on a real store (the running-bridge path is tests/integration/test_records.py):
purge, hold, erase refusals and exit codes, verify of unsigned exports, each leaving an audit entry."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from bridge.__main__ import main
from bridge.records.retention import DAY_MS
from bridge.records.transcripts import now_ms
from tests.support.configs import ROOT
from tests.support.records import records_env


def write_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["store"]["path"] = "p.db"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_hold_erase_purge_and_verify_from_the_command_line(tmp_path, capsys):
    config_path = write_config(tmp_path)
    config, store, records, service = records_env(tmp_path)
    chat, _ = service.open("general", "Sam", None)
    service.visitor_message(chat, "c1", "hello")
    open_doc = records.transcripts.document(chat.id)
    service.close(store.chats.get(chat.id), by="visitor")
    store.db.execute("UPDATE chats SET closed_ts = ? WHERE id = ?", [now_ms() - 800 * DAY_MS, chat.id])
    store.close()
    c = ["-c", str(config_path)]

    assert main(["records", "hold", str(chat.number), "--reason", "case 1", "--by", "@sup:p", *c]) == 0
    assert main(["records", "erase", *c, "--", chat.id]) == 1          # an ID may begin with "-"
    assert "legal_hold" in capsys.readouterr().err
    assert main(["records", "purge", *c]) == 0
    assert "Purged 0 chat(s)" in capsys.readouterr().out
    assert main(["records", "hold", "--lift", *c, "--", chat.id]) == 0
    assert main(["records", "erase", str(chat.number), "--by", "@sup:p", *c]) == 0
    assert main(["records", "purge", *c]) == 0
    assert "Purged 1 chat(s)" in capsys.readouterr().out
    assert main(["audit", "verify", *c]) == 0

    unsigned = tmp_path / "open.json"
    unsigned.write_text(json.dumps(open_doc))
    assert main(["transcript", "verify", str(unsigned)]) == 0
    assert "not signed" in capsys.readouterr().out
    assert main(["transcript", "verify", str(unsigned), "--public-key", records.signer.public_key]) == 1
    assert "origin cannot be checked" in capsys.readouterr().out

    config, store, records, service = records_env(tmp_path)
    trail = [(e["action"], e["outcome"], e["actor"]) for e in records.trail.entries()]
    store.close()
    actions = [a for a, _, _ in trail]
    assert actions == ["chat.close", "legal_hold.set", "chat.erase", "legal_hold.lifted", "chat.erase",
                       "chat.purged", "audit.verified"]                # chat.close: the citizen ended it
    assert [o for _, o, _ in trail] == ["ok", "ok", "refused", "ok", "ok", "ok", "ok"]
    assert trail[0][2] == "visitor" and trail[4][2] == "@sup:p" and trail[2][2].startswith("cli")
