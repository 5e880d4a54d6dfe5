"""fsck: check every cached layer against what was recorded when it was made."""

from __future__ import annotations

import typer

from .common import EXIT_CODES_HELP, app, handled, store as _store
