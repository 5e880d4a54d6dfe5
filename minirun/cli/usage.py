"""Where the bytes go: layers (cli/layercmds.py), which, system df."""

from __future__ import annotations

import json
import typer

from .common import EXIT_CODES_HELP, app, handled, print_table, register, store as _store
from .layercmds import LAYERS, WHICH

system_app = typer.Typer(help="Store-wide views: disk usage.", no_args_is_help=True)
app.add_typer(system_app, name="system")

DF_HELP = """Show how much disk images, containers, layers and blobs use.

TOTAL counts them; SIZE is their bytes (layers unpacked, each stored layer
once; containers: the files in their upper dirs). ACTIVE and RECLAIMABLE:

Images: ACTIVE = images a container was created from. RECLAIMABLE = bytes of
the layers only images without containers use (what `minirun rmi` of every
such image would free).

Containers: ACTIVE = running. RECLAIMABLE = bytes in the upper dirs of
containers that are not running (what `minirun rm` of them frees).

Layer cache and Blobs: ACTIVE = kept by a tagged image or a container.
RECLAIMABLE = bytes of the layers no tagged image and no container uses,
and of the blobs (configs, manifests, compressed layers) that neither the
tagged images, the images containers use, nor the kept layers need: what
`minirun prune` removes.

Example: minirun system df -v
"""


register(LAYERS)
register(WHICH)


def list_layers(format, quiet: bool, no_trunc: bool) -> None:
    """`minirun layers` without an image: every cached layer and what uses it."""
    from ..api import disk
    from . import formatting
    inv = disk.inventory_for(_store(create=False))
    uses = disk.layer_uses(inv, no_trunc)
    if quiet:
        from ..oci import short_id
        for use in uses:
            print(use.diff_id if no_trunc else short_id(use.diff_id))
        return
    totals = disk.sharing_totals(inv, uses)
    if format == "json":
        _print_layers_json(uses, totals)
    elif formatting.is_template(format):
        formatting.print_rows([_layer_json(use) for use in uses], format)
    else:
        _print_layers(uses, totals, no_trunc)


@system_app.command("df", help=DF_HELP, epilog=EXIT_CODES_HELP)
@handled()
def df(verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list each image and container.")):
    from ..api import disk
    from ..api.catalog import human_size
    result = disk.disk_usage(disk.inventory_for(_store(create=False), sizes=True))
    table = [("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE")]
    for row in result.rows:
        share = f" ({100 * row.reclaimable // row.size}%)" if row.size else ""
        table.append((row.kind, row.total, row.active, human_size(row.size),
                      human_size(row.reclaimable) + share))
    print_table(table)
    if verbose:
        _print_df_details(result)
    if result.unreadable:
        print(f"note: {len(result.unreadable)} upper dir(s) could not be read completely; "
              "run as root for exact container sizes")


def _print_layers(uses, totals, no_trunc: bool) -> None:
    from ..api.catalog import human_size
    from ..oci import short_id
    # BLOB is the id `load` and `pull` print ("dfc72d3bb26c: Already exists"); DIFF ID
    # is the one image configs and `inspect` list (RootFS.Layers).
    table = [("DIFF ID", "BLOB", "SIZE", "IMAGES", "CONTAINERS", "IMAGE NAMES", "CONTAINER NAMES")]
    for use in uses:
        blob = (use.blob if no_trunc else short_id(use.blob)) if use.blob else "-"
        table.append((use.diff_id if no_trunc else short_id(use.diff_id), blob, human_size(use.size),
                      len(use.image_ids), len(use.containers), ", ".join(use.images) or "-",
                      ", ".join(use.containers) or "-"))
    if len(table) > 1:
        print_table(table)
        print()
    ratio = f"{totals.ratio:.2f}x less than" if totals.ratio is not None else "compared with"
    print(f"Layers stored:    {human_size(totals.stored)} in {totals.layers} layer(s), each once "
          f"({human_size(totals.used)} of it used by images)")
    print(f"Copy per image:   {human_size(totals.copy_per_image)} "
          "(every image with its own copy of its layers)")
    print(f"Sharing saves:    {human_size(totals.saved)} ({ratio} a copy per image)")
    print(f"Unused:           {human_size(totals.unused)} in {totals.unused_layers} layer(s) "
          "(no image, no container: `minirun prune` removes them)")


def _layer_json(use) -> dict:
    return {"DiffID": use.diff_id, "Key": use.key, "KeyedBy": use.keyed_by, "Blob": use.blob,
            "Size": use.size, "Files": use.files, "Images": list(use.images),
            "ImageIDs": list(use.image_ids), "Containers": list(use.containers)}


def _print_layers_json(uses, totals) -> None:
    for use in uses:
        print(json.dumps(_layer_json(use)))
    ratio = round(totals.ratio, 4) if totals.ratio is not None else None
    print(json.dumps({"Totals": {"Layers": totals.layers, "StoredBytes": totals.stored,
                                 "UsedBytes": totals.used, "CopyPerImageBytes": totals.copy_per_image,
                                 "SavedBytes": totals.saved, "Ratio": ratio,
                                 "UnusedLayers": totals.unused_layers, "UnusedBytes": totals.unused}}))


def _print_df_details(result) -> None:
    from ..api.catalog import human_size
    from ..oci import short_id
    print("\nImages:")
    table = [("NAMES", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS")]
    for image in result.images:
        table.append((", ".join(image.names) or "<none>", short_id(image.image_id), human_size(image.size),
                      human_size(image.shared), human_size(image.unique), image.containers))
    print_table(table)
    print("\nContainers:")
    table = [("CONTAINER ID", "NAME", "IMAGE", "STATUS", "SIZE")]
    for c in result.containers:
        table.append((short_id(c.container_id), c.name, c.image, c.status, human_size(c.size)))
    print_table(table)
