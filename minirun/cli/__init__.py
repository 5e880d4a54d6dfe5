"""The command line. One short function per verb, grouped by what they act on
(images, registry, containers, lifecycle); common.py is the only place that
prints errors and maps them to exit codes (see minirun/errors.py for the table)."""

from __future__ import annotations

from . import images, lifecycle, save, usage, registry, containers, fsck  # noqa: F401 - registers the commands
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    import os
    os.umask(0o022)   # store dirs become the container's / and its mount points: never 0700
    app()
