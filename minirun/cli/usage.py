"""Where the bytes go: layers, system df."""

from __future__ import annotations

import typer

from .common import EXIT_CODES_HELP, app, handled, store as _store
