"""The ``benchboard`` command line: local runs, serving, inspection and the remote client."""

try:
    from webapp.cli import interrupts

    interrupts.install()
    from webapp.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the command is still being imported: no traceback
    import sys

    exec("pass")  # see webapp.cli.main.forget_interrupt (not importable here: its import was interrupted)
    print("interrupted", file=sys.stderr)
    sys.exit(130)

__all__ = ["main"]
