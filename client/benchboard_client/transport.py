"""Where the server is and how to read its answers; shared by the sync and async clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchboard_client import calls
from benchboard_client.errors import (
    BenchmarkAPIError,
    InvalidServerAddress,
    ServerUnreachable,
    error_from_response,
)

DEFAULT_BASE_URL = "http://localhost:8000"
# Generous: a server that is starting its first worker process can take seconds to answer.
DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "benchboard-client/0.1"


@dataclass(frozen=True)
class ServerAddress:
    base_url: str
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    @classmethod
    def parse(cls, base_url: str, token: str | None, timeout: float) -> ServerAddress:
        given = (base_url or "").strip()
        problem = address_problem(given)
        if problem:
            raise InvalidServerAddress(f"base_url {problem}", field="base_url", reason=problem)
        if timeout is None or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return cls(given.rstrip("/"), token or None, float(timeout))

    @property
    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def socket_url(self, run_id: str) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{calls.run_socket_path(run_id)}"

    def http_options(self) -> dict:
        return {"base_url": self.base_url, "headers": self.headers, "timeout": httpx.Timeout(self.timeout)}


def address_problem(url: str) -> str | None:
    """What makes ``url`` no server address, if anything. Checked when a client is made: httpx
    would refuse some of these only at the first request (a port that is not a number), and pass
    others on to the socket (port 99999, no host), which reads as an unreachable server."""
    if not url.startswith(("http://", "https://")):
        return f"must start with http:// or https:// (e.g. {DEFAULT_BASE_URL}), not {url!r}"
    try:
        parts = urlsplit(url)
    except ValueError as error:  # "Invalid IPv6 URL": a '[' without its ']'
        return f"is not a valid URL: {url!r} ({error})"
    if not parts.hostname:
        return f"names no host: {url!r} (e.g. {DEFAULT_BASE_URL})"
    # The text after the host's last ':' ("[::1]:8000" is host ::1, port 8000).
    port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"port must be a number from 1 to 65535, not {port!r} (in {url!r})"
    try:
        httpx.URL(url)
    except httpx.InvalidURL as error:
        return f"is not a valid URL: {url!r} ({error})"
    return None


@contextmanager
def translated_errors(address: ServerAddress) -> Iterator[None]:
    """httpx's transport errors as the client's own, naming the server's address."""
    try:
        yield
    except httpx.ConnectTimeout as error:
        raise ServerUnreachable(f"cannot reach server at {address.base_url}: connection timed out") from error
    except httpx.TimeoutException as error:
        raise BenchmarkAPIError(
            f"server at {address.base_url} did not answer within {address.timeout:g}s "
            "(raise the client's timeout for slow servers)"
        ) from error
    except httpx.TransportError as error:
        reason = str(error) or type(error).__name__
        raise ServerUnreachable(f"cannot reach server at {address.base_url}: {reason}") from error


def raise_for_error(response: httpx.Response) -> None:
    """Call only after the body has been read."""
    if response.is_error:
        raise error_from_response(response.status_code, response.text, response.request.method,
                                  str(response.request.url))


def decode(response: httpx.Response) -> object:
    raise_for_error(response)
    try:
        return response.json()
    except ValueError as error:
        raise BenchmarkAPIError(
            f"{response.request.method} {response.request.url} answered {response.status_code} with "
            f"non-JSON content ({response.headers.get('content-type', 'no content type')})",
            status_code=response.status_code,
        ) from error


def destination(path: str | Path, default_name: str) -> Path:
    """The file to write: ``path`` itself, or ``default_name`` inside it when it is a folder
    (an existing one, or any path written with a trailing slash)."""
    names_folder = str(path).endswith(("/", os.sep)) or Path(path).is_dir()
    target = Path(path) / default_name if names_folder else Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def partial_file(target: Path) -> Path:
    """Downloads land here first and are renamed when complete, so a broken one leaves no half file."""
    return target.with_name(target.name + ".part")


def export_file_name(export_format: str) -> str:
    return f"benchboard-results.{export_format}"
