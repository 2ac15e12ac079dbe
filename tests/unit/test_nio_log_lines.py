"""nio's routine warnings stay out of the operator's log; its other warnings and errors do not."""
from __future__ import annotations

import logging

import pytest

from bridge.matrix.crypto import quiet_routine_nio_lines


@pytest.fixture
def nio_log(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("nio.crypto.log")
    before = list(logger.filters)
    logger.filters[:] = []
    quiet_routine_nio_lines()
    quiet_routine_nio_lines()                 # twice (the bridge, then the demo): still one filter
    assert len(logger.filters) == 1
    caplog.set_level(logging.WARNING, logger="nio.crypto.log")
    yield logger
    logger.filters[:] = before


def test_a_new_puppets_missing_olm_sessions_are_not_logged(nio_log: logging.Logger, caplog):
    nio_log.warning("Missing session for device ABCDEFGHIJ")
    nio_log.warning(f"Missing session for device {'XYZ'}")
    assert not caplog.records


def test_nios_other_warnings_and_errors_are_logged(nio_log: logging.Logger, caplog):
    nio_log.warning("Error decrypting megolm event, no session found with session id abc for room !r")
    nio_log.error("Found matching session yet decryption failed for sender x")
    nio_log.warning("Session for device ABC is missing a key")
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR", "WARNING"]
