"""After the homeserver itself restarts, what it queued for the bridge arrives at once.

Synapse starts its appservice scheduler lazily, on the first new event that concerns an
appservice, so without help a backlog can sit for a minute or more after a homeserver restart.
It restarts the session's Synapse and bridge; the tests after it use the restarted ones.
"""
from __future__ import annotations

import time
import uuid

from tests.conftest import MatrixEnv
from tests.support.visitor import Visitor
from tests.support.bridge_db import rows
from tests.support.waiting import until


def appservice_marked_down(env: MatrixEnv) -> bool:
    """Synapse's own record (read-only) that it failed to reach the bridge and will need to recover."""
    rows = env.synapse.query("SELECT state FROM application_services_state WHERE as_id = 'precinct'")
    return bool(rows and rows[0][0] == "down")


async def test_backlog_arrives_promptly_after_homeserver_and_bridge_restart(matrix_env: MatrixEnv, officer_of,
                                                                           bridge_log):
    officer = await officer_of("central")
    visitor = Visitor(matrix_env.public_url)
    try:
        await visitor.create(topic="general")
        await visitor.connect()
        marker = f"before the outage {uuid.uuid4().hex[:6]}"
        await visitor.send(marker)
        room_id = (await officer.wait_message(lambda m: m.body == marker, 60)).room_id
        await officer.send(room_id, "warm-up so the officer's room key is already shared")
        await visitor.wait_frame(lambda f: f.get("body", "").startswith("warm-up"), 60)

        matrix_env.bridge.stop()                       # the bridge is down for maintenance...
        # A graceful stop signs the audit chain's head (records.audit_checkpoint_minutes, and at shutdown).
        head = rows(matrix_env.db_path, "SELECT MAX(idx) FROM audit_log")[0][0]
        assert rows(matrix_env.db_path, "SELECT MAX(idx) FROM audit_checkpoints")[0][0] == head
        queued = f"written during the outage {uuid.uuid4().hex[:6]}"
        await officer.send(room_id, queued)            # ...Synapse queues this for the appservice
        await until(lambda: appservice_marked_down(matrix_env), 30, "Synapse noticing the bridge is down")
        await visitor.disconnect()
        await officer.stop()
        matrix_env.synapse.stop()                      # then the homeserver restarts too
        matrix_env.synapse.start()
        started = time.monotonic()
        matrix_env.bridge.start()
        await visitor.connect()
        await visitor.wait_frame(lambda f: f.get("body") == queued, 30, "the queued officer message")
        # Without a nudge Synapse's scheduler stays idle until an unrelated event (a minute or more).
        assert time.monotonic() - started < 30
    finally:
        await visitor.close()
        if matrix_env.synapse.pid is None:
            matrix_env.synapse.start()
        if matrix_env.bridge.pid is None:
            matrix_env.bridge.start()
