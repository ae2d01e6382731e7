"""Storage's user-facing error, apart from storage.database so that catching it imports no DuckDB
(the CLI's parser and error handling, issue 16)."""

from __future__ import annotations


class StorageError(Exception):
    """A storage problem with a message meant for the user."""
