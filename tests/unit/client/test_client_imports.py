"""The client is installable alone: importing it loads neither torch, duckdb nor the server's packages."""

import json
import subprocess
import sys

HEAVY = ("torch", "duckdb", "engine", "storage", "webapp", "litestar", "transformers", "pandas", "pyarrow")


def test_importing_the_client_pulls_in_no_server_side_package():
    probe = ("import json, sys, client\n"
             "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                       text=True).stdout)
    assert "httpx" in loaded and "websockets" in loaded
    assert not set(HEAVY) & set(loaded)
