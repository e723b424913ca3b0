"""The ``surge`` entry point: start ``surge start``'s first worker early, then run the CLI.

For ``surge start`` the port is bound and the first worker process started before the command
line is even parsed (``surge.cli.spawn``): the worker imports the framework while this process
imports the CLI and parses the options. The commands themselves live in ``surge.cli.commands``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``surge`` script."""
    args = sys.argv[1:]
    if args[:1] == ["start"] and not {"--help", "-h"} & set(args):
        from surge.cli.spawn import start_early

        start_early(args[1:])
    # Step files import `steps.*` from the project root.
    sys.path.insert(0, os.getcwd())
    from surge.cli.commands import app

    app()
