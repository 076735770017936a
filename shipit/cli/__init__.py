"""The command line: one module per command group, each parsing options and calling one service.

Heavy libraries (docker-py, boto3) are imported inside the commands that use them, so
`shipit --version` and `shipit --help` stay fast.
"""

from __future__ import annotations

# Importing a command module registers its commands on the app, in the order `--help` lists them.
# isort: off
from shipit.cli import build, push, login, release, doctor, runtime  # noqa: F401

# isort: on
from shipit.cli.app import LazyGroup, app, lazy_command, main

__all__ = ["LazyGroup", "app", "lazy_command", "main"]
