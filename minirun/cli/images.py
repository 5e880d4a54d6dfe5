"""Image commands: load, images, rmi."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from .common import EXIT_CODES_HELP, app, handled, print_table, store as _store


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def load(paths: List[str] = typer.Argument(..., metavar="PATH...",
                                           help="docker-archive tar, OCI archive tar, or OCI layout dir"),
         tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Name the loaded image REF."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the loaded image lines.")):
    """Load images from archives or OCI layout directories.

    Each layer is verified and extracted once into the cache; one already there
    prints "Already exists".

    Example: sudo minirun load busybox.tar ./myapp-oci/
    """
    from ..images import load as do_load
    from ..runtime import require_root
    require_root("load")
    def report(label: str, status: str) -> None:
        if not quiet and status != "Extracting":
            print(f"{label}: {status}", flush=True)
    for line in do_load(_store(), paths, tag, report):
        print(line)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def images(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only image ids."),
           all_: bool = typer.Option(False, "--all", "-a", help="Show all images. minirun has no "
                                     "intermediate images, so this is the default list, dangling "
                                     "(<none>) images included; kept for docker scripts."),
           filter_: List[str] = typer.Option([], "--filter", "-f", help="dangling=true|false, or "
                                             "reference=PATTERN (shell glob on the name, e.g. 'my*')."),
           tree: bool = typer.Option(False, "--tree", help="Draw images as branches of the layers they share."),
           format: Optional[str] = typer.Option(None, "--format", help="'json' for JSON lines."),
           no_trunc: bool = typer.Option(False, "--no-trunc", help="Full image ids.")):
    """List images: reference, image id, created, size and layer count.

    An image whose name moved to another image (re-load, re-pull, commit,
    tag) stays as <none>:<none>: a dangling image. List only those with
    --filter dangling=true; remove them with `minirun image prune`.

    Example: minirun images --filter dangling=true
    """
    from .. import images as imgs
    from ..reference import parse
    store = _store(create=False)
    if tree:
        from ..usage import tree_lines_for
        for line in tree_lines_for(store):
            print(line)
        return
    rows = imgs.filter_rows(imgs.rows(store), filter_)
    if quiet:
        for row in rows:
            print(row.image_id if no_trunc else row.image_id[7:19])
        return
    if format == "json":
        for row in rows:
            print(json.dumps({"ID": row.image_id, "RepoTags": list(row.refs), "Created": row.created,
                              "Size": row.size, "Layers": row.layers, "Architecture": row.architecture,
                              "Dangling": not row.refs}))
        return
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "LAYERS")]
    for row in rows:
        shown_id = row.image_id if no_trunc else row.image_id[7:19]
        names = [parse(r) for r in row.refs] or [None]
        for ref in names:
            repo, tag = ("<none>", "<none>") if ref is None else \
                (ref.familiar().rsplit(":", 1)[0] if ref.tag else ref.familiar(), ref.tag or "<none>")
            table.append((repo, tag, shown_id, imgs.human_age(row.created), imgs.human_size(row.size),
                          str(row.layers)))
    print_table(table)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def rmi(names: List[str] = typer.Argument(..., metavar="IMAGE..."),
        force: bool = typer.Option(False, "--force", "-f", help="Remove even if containers use it.")):
    """Remove images; layers that no other image or container uses are deleted.

    Example: sudo minirun rmi myapp
    """
    from ..images import remove
    from ..runtime import require_root
    require_root("rmi")
    remove(_store(), names, force, print)
