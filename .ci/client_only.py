"""pytest plugin for .ci/run's client-only test run (``-p client_only``, with .ci on PYTHONPATH).

That run's venv holds benchboard-client and the test tools, nothing of the server. Its working
directory is the checkout, so engine/, storage/, webapp/ and the client/ folder would still import
from there; this plugin refuses those imports, so a client test or a conftest above it that reaches
for the server's code (or the old top-level ``client``) fails loudly instead of passing by accident.
The servers those tests talk to run from the full install (BENCHBOARD_TEST_SERVER_BIN).
"""

from __future__ import annotations

import importlib.abc
import sys

REFUSED = ("engine", "storage", "webapp", "client", "torch", "duckdb", "litestar", "transformers", "pandas")


class RefuseServerPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in REFUSED:
            raise ImportError(f"the client-only test run must not import {fullname!r}: "
                              "client tests and their conftests may use benchboard_client, httpx and pytest only")
        return None


# Installed as soon as pytest loads this plugin (-p), before it imports any conftest.
sys.meta_path.insert(0, RefuseServerPackages())
