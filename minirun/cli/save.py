"""save: write images to docker-archive, OCI archive or OCI layout."""

from __future__ import annotations

import typer

from .common import EXIT_CODES_HELP, app, handled, store as _store
