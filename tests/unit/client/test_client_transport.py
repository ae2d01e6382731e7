"""Addresses, auth headers, download destinations, and what a client does with no server at all."""

import socket
import time

import pytest

from benchboard_client import AsyncBenchmarkAPIClient, BenchmarkAPIClient, ServerUnreachable
from benchboard_client.transport import ServerAddress, destination


def closed_port() -> int:
    """A loopback port with nothing listening: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_socket_urls_follow_the_http_scheme():
    assert ServerAddress.parse("http://h:8000/", None, 5).socket_url("r1") == "ws://h:8000/api/benchmark/ws/r1"
    assert ServerAddress.parse("https://h/proxy", None, 5).socket_url("r1") == "wss://h/proxy/api/benchmark/ws/r1"


def test_a_token_is_sent_as_a_bearer_header():
    assert ServerAddress.parse("http://h", "s3cret", 5).headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in ServerAddress.parse("http://h", None, 5).headers


@pytest.mark.parametrize(("url", "timeout"), [("localhost:8000", 5), ("ftp://h", 5), ("http://h", 0)])
def test_a_bad_address_or_timeout_is_refused_when_the_client_is_made(url, timeout):
    with pytest.raises(ValueError):
        BenchmarkAPIClient(url, timeout=timeout)


def test_a_download_into_a_folder_keeps_the_servers_file_name(tmp_path):
    assert destination(tmp_path, "report.md") == tmp_path / "report.md"
    assert destination(f"{tmp_path}/new/", "report.md") == tmp_path / "new" / "report.md"
    assert destination(tmp_path / "mine.md", "report.md") == tmp_path / "mine.md"


def test_connection_refused_says_which_server_could_not_be_reached():
    url = f"http://127.0.0.1:{closed_port()}"
    with BenchmarkAPIClient(url) as client:
        with pytest.raises(ServerUnreachable, match=f"cannot reach server at {url}"):
            client.get_models()


def test_following_a_run_on_a_missing_server_fails_at_once():
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with BenchmarkAPIClient(url) as client, pytest.raises(ServerUnreachable, match="cannot reach server"):
        client.monitor_progress("r1", print)
    # "At once": no reconnect delays or polling before giving up. The policy's delays alone
    # would take 7.7 s and its polling 60 s; 30 s leaves room for a loaded CI machine.
    assert time.monotonic() - started < 30


@pytest.mark.anyio
async def test_the_async_client_reports_an_unreachable_server_the_same_way():
    url = f"http://127.0.0.1:{closed_port()}"
    async with AsyncBenchmarkAPIClient(url) as client:
        with pytest.raises(ServerUnreachable, match=f"cannot reach server at {url}"):
            await client.get_hardware()
        with pytest.raises(ServerUnreachable):
            await client.monitor_progress("r1", print)
