"""Fixtures for tests that talk to a real server process over loopback."""

from __future__ import annotations

import pytest

from tests.integration.server import ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerProcess:
    """One server for the whole session: its database is shared, so a test must not expect it empty,
    and must pass ``force=True`` when it needs configs measured rather than skipped as recent.
    Tests that kill, restart or reconfigure a server start their own with ``start_server``."""
    with start_server(tmp_path_factory.mktemp("server")) as process:
        yield process
