"""Fixtures for the cross-server tests: see tests/support/federation.py for the three homeservers."""
from __future__ import annotations

import pytest

from tests.support.federation import PASSWORD, FederationEnv, federation
from tests.support.officer import NioOfficer, OfficerPool
from tests.support.visitor import Visitor


@pytest.fixture(scope="session")
def fed_env(tmp_path_factory: pytest.TempPathFactory):
    with federation(tmp_path_factory.mktemp("federation")) as env:
        yield env


@pytest.fixture
def fed_log(fed_env: FederationEnv):
    """On failure, the bridge's log tail is in the captured output."""
    yield
    print("---- bridge log tail ----\n" + fed_env.bridge.tail(120))


@pytest.fixture
async def officer_on(fed_env: FederationEnv, tmp_path):
    """``await officer_on(fed_env.b, "bofficer")``: a started encrypted nio client on that server, stopped after.

    Like an eager officer it claims each chat whose new notice it reads in its agency's dispatch room."""
    pool = OfficerPool(tmp_path, PASSWORD)

    async def make(hs, localpart: str, auto_claim: bool = True) -> NioOfficer:
        return await pool.start(hs.url, hs.user_id(localpart), localpart, auto_claim)

    yield make
    await pool.stop_all()


@pytest.fixture
async def visitor(fed_env: FederationEnv):
    v = Visitor(fed_env.public_url)
    yield v
    await v.close()
