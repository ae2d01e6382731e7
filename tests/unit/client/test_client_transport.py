"""Addresses, auth headers, download destinations, and what a client does with no server at all."""

import socket
import time

import pytest

from benchboard_client import (
    AsyncBenchmarkAPIClient,
    BenchmarkAPIClient,
    BenchmarkAPIError,
    InvalidServerAddress,
    ServerUnreachable,
)
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


@pytest.mark.parametrize(("url", "reason"), [
    ("localhost:8000", "must start with http:// or https:// (e.g. http://localhost:8000), not 'localhost:8000'"),
    # The address as given, not with its slashes cut ("not 'http:'").
    ("http://", "names no host: 'http://' (e.g. http://localhost:8000)"),
    ("https://:8000", "names no host: 'https://:8000' (e.g. http://localhost:8000)"),
    ("http://127.0.0.1:abc", "port must be a number from 1 to 65535, not 'abc' (in 'http://127.0.0.1:abc')"),
    # Would otherwise go to the socket and read as an unreachable server.
    ("http://127.0.0.1:99999", "port must be a number from 1 to 65535, not '99999' (in 'http://127.0.0.1:99999')"),
    ("http://127.0.0.1:0", "port must be a number from 1 to 65535, not '0' (in 'http://127.0.0.1:0')"),
    ("http://[::1]:x", "port must be a number from 1 to 65535, not 'x' (in 'http://[::1]:x')"),
    ("http://[::1", "is not a valid URL: 'http://[::1' (Invalid IPv6 URL)"),
    ("http://[zz]:80", "is not a valid URL: 'http://[zz]:80' ('zz' does not appear to be an IPv4 or IPv6 address)"),
])
@pytest.mark.parametrize("client_class", [BenchmarkAPIClient, AsyncBenchmarkAPIClient])
def test_an_address_nothing_can_be_sent_to_is_refused_by_the_constructor_saying_why(client_class, url, reason):
    # Not httpx's InvalidURL at the first request: the client's own error, a ValueError too.
    with pytest.raises(InvalidServerAddress) as refused:
        client_class(url)
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, BenchmarkAPIError)
    assert refused.value.field == "base_url" and refused.value.reason == reason
    assert str(refused.value) == f"base_url {reason}"


@pytest.mark.parametrize(("url", "base_url"), [
    ("http://[::1]:8000/", "http://[::1]:8000"), ("http://127.0.0.1:65535", "http://127.0.0.1:65535"),
    (" https://h/proxy/ ", "https://h/proxy"), ("http://user:pw@h:1", "http://user:pw@h:1"),
])
def test_a_well_formed_address_is_taken_without_its_trailing_slash(url, base_url):
    with BenchmarkAPIClient(url) as client:
        assert client.base_url == base_url


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
