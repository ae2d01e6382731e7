"""The ``benchboard`` command line: local runs, serving, inspection and the remote client."""

from webapp.cli.main import main

__all__ = ["main"]
