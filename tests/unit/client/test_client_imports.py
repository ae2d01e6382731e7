"""The client is installable alone: importing it loads neither torch, duckdb nor the server's packages,
and it is importable under its own name and the seed's, never as a generic top-level ``client``."""

import json
import subprocess
import sys

HEAVY = ("torch", "duckdb", "engine", "storage", "webapp", "litestar", "transformers", "pandas", "pyarrow")


def run_python(probe: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd)


def test_importing_the_client_pulls_in_no_server_side_package(tmp_path):
    probe = ("import json, sys, benchboard_client, benchmark_api_client\n"
             "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))")
    done = run_python(probe, tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "httpx" in loaded and "websockets" in loaded
    assert not set(HEAVY) & set(loaded)


def test_the_seeds_import_name_is_the_same_client():
    import benchboard_client
    import benchmark_api_client

    assert benchmark_api_client.BenchmarkAPIClient is benchboard_client.BenchmarkAPIClient
    assert sorted(benchmark_api_client.__all__) == sorted(benchboard_client.__all__)
    assert all(getattr(benchmark_api_client, name) is getattr(benchboard_client, name)
               for name in benchboard_client.__all__)


def test_no_top_level_client_module_is_installed(tmp_path):
    # Run outside the checkout, whose client/ folder would otherwise import as a namespace package.
    done = run_python("import client", tmp_path)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr
