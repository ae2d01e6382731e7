"""Server settings: flags override environment variables, which override defaults."""

from __future__ import annotations

import logging
import math
import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

# Dev servers on localhost (any port) and Electron's custom app:// scheme. A page from
# file:// (Origin "null") is allowed only when a token is set: sandboxed iframes on any
# site send "null" too.
DEFAULT_CORS_ORIGIN_REGEX = r"^(https?://(localhost|127\.0\.0\.1)(:\d+)?|app://.*|file://.*)$"
TOKEN_CORS_ORIGIN_REGEX = r"^(https?://(localhost|127\.0\.0\.1)(:\d+)?|app://.*|file://.*|null)$"
ENV_PREFIX = "BENCHBOARD_"
log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """A setting out of range, or an environment variable that does not parse, named as given
    (``BENCHBOARD_PORT`` from the environment, ``port`` from Python)."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    db_path: str = "benchmarks.duckdb"
    results_dir: str = "results"
    log_dir: str = "logs"
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    # Host names the server answers to besides the bound address, localhost and 127.0.0.1
    # (a DNS-rebinding page sends its own name); "*" allows any.
    allowed_hosts: list[str] = field(default_factory=list)
    models_dir: str | None = None
    custom_benchmarks_dir: str | None = None
    # TOML/YAML files, one custom dashboard tab each (webapp.panels); read, never written.
    panels_dir: str | None = None
    sql_timeout_s: float = 5.0
    sql_row_cap: int = 10_000
    # Guarded SQL queries at once (the rest wait briefly, then 429), and DuckDB's threads for
    # the whole database (None: DuckDB's default, one per core). 1 by default: DuckDB then runs
    # each query in the thread that asks, so a guarded query runs in the SQL pool's threads,
    # at their lowest OS priority, and the status and page handlers preempt it; with DuckDB's
    # own worker threads (full priority) status p99 under heavy SQL was about twice as long
    # (interleaved A/B, perf/README.md, session 4). Raise it for big dashboards on many cores.
    sql_pool_size: int = 2
    db_threads: int | None = 1
    max_seconds: float = 10.0
    threads: int | None = None
    resume: bool = True
    prestart_workers: bool = True
    # A Ray cluster to measure on as well (issue 13): what ray.init(address=...) takes, e.g.
    # "10.0.0.5:6379" (the head's GCS) or "ray://head:10001". None: this machine only, and Ray
    # is not imported.
    ray_address: str | None = None
    secret_key: str | None = None
    # Devices of this machine measure at the same time (off: one config at a time per machine).
    parallel_devices: bool = False
    max_configs_per_run: int = 2_000
    log_max_bytes: int = 10 * 1024**2
    log_backups: int = 5

    def __post_init__(self) -> None:
        for name in _LIMITS:
            reason = setting_problem(name, getattr(self, name))
            if reason is not None:
                raise SettingsError(f"{name} {reason}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Settings from ``BENCHBOARD_*`` variables, then ``overrides`` that are not None."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for spec in fields(cls):
            variable = ENV_PREFIX + spec.name.upper()
            raw = environ.get(variable)
            if raw is not None and raw != "" and overrides.get(spec.name) is None:
                try:
                    values[spec.name] = _parse(spec.name, raw)
                except ValueError:
                    values[spec.name] = raw  # named as not a number below
                reason = setting_problem(spec.name, values[spec.name])
                if reason is not None:
                    raise SettingsError(f"{variable}={raw!r}: {reason}")
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    @property
    def results_path(self) -> Path:
        return Path(self.results_dir)

    def host_allowlist(self) -> list[str]:
        """The Host names this server answers to: the bound address, localhost, 127.0.0.1 and
        ``allowed_hosts``, without ports (any port is accepted)."""
        names = [self.host, "localhost", "127.0.0.1", *self.allowed_hosts]
        return list(dict.fromkeys(name.strip().strip("[]").lower() for name in names if name.strip()))

    def cors_origin_regex(self) -> str | None:
        """None when ``cors_origins`` lists the allowed origins explicitly."""
        if self.cors_origins:
            return None
        return TOKEN_CORS_ORIGIN_REGEX if self.token else DEFAULT_CORS_ORIGIN_REGEX

    def csrf_secret(self) -> str:
        """The configured secret, else one kept in results-dir, so forms a browser holds
        stay valid across server restarts."""
        if self.secret_key:
            return self.secret_key
        path = self.results_path / ".csrf-secret"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(secrets.token_urlsafe(32))
                path.chmod(0o600)
            return path.read_text().strip()
        except OSError as error:
            # A read-only or unusable results folder: the server still starts, with a secret of
            # this process only (forms a browser holds stop working at the next restart).
            log.warning("cannot keep the CSRF secret in %s (%s); using one for this process only, so open forms "
                        "expire when the server restarts (set BENCHBOARD_SECRET_KEY to keep one)",
                        path, error.strerror or error)
            self.secret_key = secrets.token_urlsafe(32)
            return self.secret_key


# The numeric settings' limits: (type, least allowed value, whether None is allowed). A float
# must be finite and strictly above its least value; a port is at most 65535.
_LIMITS: dict[str, tuple[type, float, bool]] = {
    "port": (int, 0, False),
    "max_seconds": (float, 0, False),  # above 0 (a budget of 0 s times one sample)
    "sql_timeout_s": (float, 0, False),  # above 0
    "sql_row_cap": (int, 1, False),
    "sql_pool_size": (int, 1, False),
    "db_threads": (int, 1, True),
    "threads": (int, 1, True),
    "max_configs_per_run": (int, 1, False),
    "log_max_bytes": (int, 0, False),
    "log_backups": (int, 0, False),
}
MAX_PORT = 65535


def setting_problem(name: str, value) -> str | None:
    """What is wrong with ``value`` for the setting ``name`` ("must be ..."), or None when it is fine
    (or the setting has no limits). The CLI's flags are checked with the same words."""
    if name not in _LIMITS:
        return None
    kind, least, optional = _LIMITS[name]
    if value is None and optional:
        return None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, not {value!r}"
        if name == "port" and not 0 <= value <= MAX_PORT:
            return f"must be between 0 and {MAX_PORT}, not {value}"
        if value < least:
            return f"must be at least {least:g}, not {value}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, not {value!r}"
    if not math.isfinite(value) or value <= least:
        return f"must be a number above {least:g} seconds, not {value:g}"
    return None


def _parse(name: str, raw: str):
    if name in ("port", "sql_row_cap", "threads", "max_configs_per_run", "log_max_bytes", "log_backups",
                "sql_pool_size", "db_threads"):
        return int(raw)
    if name in ("sql_timeout_s", "max_seconds"):
        return float(raw)
    if name in ("resume", "prestart_workers", "parallel_devices"):
        return raw.lower() not in ("0", "false", "no")
    if name in ("cors_origins", "allowed_hosts"):
        return [origin.strip() for origin in raw.split(",") if origin.strip()]
    return raw
