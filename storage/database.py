"""One DuckDB file: opened locked-down, migrated, with serialised writes and a cursor per read."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import psutil

from storage.errors import StorageError  # noqa: F401 - defined apart (issue 16), still importable from here
from storage.schema import LATEST_VERSION, MIGRATIONS


class DatabaseLockedError(StorageError):
    def __init__(self, path: str, detail: str):
        holder = re.search(r"PID (\d+)", detail)
        self.holder_pid = int(holder.group(1)) if holder else None
        who = f"process {holder.group(1)}" if holder else "another process"
        super().__init__(
            f"the database {path} is in use by {who}. Only one process may open it read-write: "
            "stop that process (a running `benchboard serve`?), use the server's API instead, "
            "or pass another --db-path."
        )


class DatabasePathError(StorageError):
    """The folder the database file goes in cannot be made (a part of its path is a file, a
    read-only or virtual file system): ``path`` and ``reason`` apart, for the CLI to name its flag."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot open the database {path}: {reason}")


def folder_problem(error: OSError, folder: Path) -> str:
    """Why ``folder`` could not be made, from ``mkdir``'s error, in a user's words."""
    if isinstance(error, FileExistsError | NotADirectoryError):
        # Some part of the path is a file: say which.
        for part in (folder, *folder.parents):
            if part.exists() and not part.is_dir():
                return f"{part} is a file, not a folder"
    return f"cannot create the folder {folder}: {error.strerror or error}"


# DuckDB's memory limit covers its buffer manager only (hash tables, sorts, aggregate
# states, recursive CTEs' working tables, cached table blocks); the values functions
# build, the Arrow batches and Python objects of an answer, and the benchmark workers come
# on top of it. So DuckDB gets a quarter of the machine's memory, and never more than
# 512 MiB: the result tables are small (a million results' dashboard queries use about
# 20 MB), and a query over more spills to disk (max_temp_directory_size) instead. Measured
# (perf/README.md, "sql_isolation.py"): three recursive CTEs doubling a string at once,
# with a 10 s limit, grew the process by 2.6 GB under a 16.7 GiB limit, 2.2 GB under
# 2 GiB and 1.4 GB under 1 GiB; two recursive CTEs doubling their rows grew the server by
# 1.1 GB under 1 GiB and 575 MB under 512 MiB.
MEMORY_LIMIT_FRACTION = 0.25
MEMORY_LIMIT_CAP_BYTES = 512 * 1024**2
# What DuckDB may spill to its temporary directory (its default is 90% of the free disk).
MAX_TEMP_DIRECTORY_SIZE = "4GiB"
# How much WAL DuckDB lets build up before it checkpoints it into the file (its default is 16 MiB).
# Each checkpoint rewrites the table's partial last row group, so at 16 MiB a bulk import of
# 1,000-row calls spent about a third of its time checkpointing (perf/README.md, session 4).
# Measured quietly with the last checkpoint (at close) inside the clock (perf/README.md, session
# 10): 1,000-row calls 44-46k rows/s at 16 MiB, 56k at 128 MiB; one call of 100,000 rows 64-100k
# and 73-85k; a 1-row call 3.5 ms both.
# The cost: up to 128 MiB more to replay when a crashed server's file is opened again (about 0.1 s
# per 20 MB here), and as much un-checkpointed data in DuckDB's buffer pool, which spills.
CHECKPOINT_THRESHOLD = "128MiB"


def default_memory_limit() -> str:
    """A quarter of the machine's memory, capped at 512 MiB, as DuckDB's memory_limit."""
    limit = min(int(psutil.virtual_memory().total * MEMORY_LIMIT_FRACTION), MEMORY_LIMIT_CAP_BYTES)
    return f"{limit // 1024**2}MiB"


class Database:
    """The process's single read-write connection to a benchboard DuckDB file.

    External access (files, extensions, network) is disabled and the configuration
    locked before anything else runs, so not even a query that slipped past the SQL
    guard could re-enable it.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        migrate_to: int = LATEST_VERSION,
        memory_limit: str | None = None,
        max_temp_directory_size: str = MAX_TEMP_DIRECTORY_SIZE,
        threads: int | None = None,
    ):
        self.path = str(path)
        if self.path != ":memory:":
            folder = Path(self.path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabasePathError(self.path, folder_problem(error, folder)) from None
        config = {
            "enable_external_access": False,
            # Set here, before the configuration is locked, so no query can raise them.
            "memory_limit": memory_limit or default_memory_limit(),
            "max_temp_directory_size": max_temp_directory_size,
            "checkpoint_threshold": CHECKPOINT_THRESHOLD,
        }
        if threads is not None:  # DuckDB's threads for every query on this database (default: one per core)
            config["threads"] = threads
        try:
            self._connection = duckdb.connect(self.path, config=config)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise DatabaseLockedError(self.path, str(error)) from None
            raise StorageError(f"cannot open the database {self.path}: {error}") from None
        self._connection.execute("SET lock_configuration = true")
        self._write_lock = threading.Lock()
        # Committed writes of results and their catalog so far (a write of test_runs alone
        # does not count). This process is the file's only writer, so a read derived from the
        # results (storage.dashboard's latest result per config) stays true while the count
        # stands still; it moves after the COMMIT, never before it.
        self.generation = 0
        self._migrate(migrate_to)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor: DuckDB cursors are not thread-safe, so each reader takes its own."""
        return self._connection.cursor()

    @contextmanager
    def writing(self, *, runs_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction that holds the process-wide write lock; rolled back on error.

        ``runs_only``: it writes test_runs and nothing else (a run's progress, saved after every
        config), so reads derived from the results stay true and ``generation`` stands still."""
        with self._write_lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN TRANSACTION")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            else:
                cursor.execute("COMMIT")
                if not runs_only:
                    self.generation += 1
            finally:
                cursor.close()

    def interrupt_all(self) -> None:
        self._connection.interrupt()

    @property
    def schema_version(self) -> int:
        return self._current_version(self.cursor())

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @staticmethod
    def _current_version(cursor: duckdb.DuckDBPyConnection) -> int:
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = cursor.execute("SELECT max(version) FROM schema_version").fetchone()
        return row[0] or 0

    def _migrate(self, target: int) -> None:
        with self.writing() as cursor:
            current = self._current_version(cursor)
            if current > LATEST_VERSION:
                raise StorageError(
                    f"the database {self.path} has schema v{current}, newer than this benchboard "
                    f"(v{LATEST_VERSION}); upgrade benchboard"
                )
            for version in range(current + 1, target + 1):
                for statement in MIGRATIONS[version - 1]:
                    cursor.execute(statement)
                cursor.execute("INSERT INTO schema_version VALUES (?)", [version])
