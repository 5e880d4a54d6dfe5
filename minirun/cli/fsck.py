"""fsck: check every cached layer against what was recorded when it was made."""

from __future__ import annotations

import json

import typer

from .common import app, handled, store as _store

FSCK_EXIT_CODES_HELP = ("Exit codes: 0 the store is intact (layers with no file manifest, installed by an "
                        "older minirun, are listed as unchecked, not as problems); 1 a problem was found "
                        "(or the check itself failed); 3 not root.")


@app.command(epilog=FSCK_EXIT_CODES_HELP)
@handled()
def fsck(as_json: bool = typer.Option(False, "--json", help="Print one JSON object: counts, unchecked "
                                      "layers and a list of problems.")):
    """Check the store without changing it: every cached layer's files against the file
    manifest recorded when it was installed, every blob against its digest (a layer's
    own blob also against the layer's diff_id), and images.json against both.

    Prints one line per problem (layer, blob or image, then the path and what
    changed) and a summary line.

    Example: sudo minirun fsck
    """
    from ..fsck import check
    from ..runtime import require_root
    require_root("fsck")
    report = check(_store(create=False))
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        for line in report.lines():
            print(line)
    if report.problems:
        raise typer.Exit(1)
