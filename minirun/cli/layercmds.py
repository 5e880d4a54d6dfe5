"""`minirun layers [IMAGE]` and `minirun which IMAGE PATH`, defined as data
(cli/light.py Command) and registered with typer by cli/usage.py."""

from __future__ import annotations

import json
import sys

from .light import EXIT_CODES_HELP, Arg, Command, Flag

LAYERS_JSON_HELP = (
    "'json'. Without IMAGE: JSON lines, one object per cached layer, {\"DiffID\", \"Key\", \"KeyedBy\" "
    "(diff_id or chain_id), \"Blob\", \"Size\" (unpacked bytes), \"Files\", \"Images\" (names), "
    "\"ImageIDs\", \"Containers\" (names)}, then one {\"Totals\": {\"Layers\", \"StoredBytes\" "
    "(every cached layer once), \"UsedBytes\" (the layers images use, once each), "
    "\"CopyPerImageBytes\" (the sum over images of their layers' sizes), \"SavedBytes\" "
    "(CopyPerImageBytes - UsedBytes), \"Ratio\" (CopyPerImageBytes / UsedBytes, null when 0), "
    "\"UnusedLayers\", \"UnusedBytes\"}}. With IMAGE: one object {\"Image\", \"Efficiency\", "
    "\"WastedBytes\", \"UserWastedPercent\" (a ratio), \"UserSize\", \"ImageSize\", \"Layers\": "
    "[{\"Index\", \"DiffID\", \"Size\", \"Added\", \"Changed\", \"Deleted\" (bytes), and with --files "
    "\"Changes\": [{\"Kind\" A/C/D, \"Path\", \"Type\", \"Size\", \"Note\"}]}], \"Waste\": [{\"Path\", "
    "\"Count\", \"WastedBytes\"}]}.")

LAYERS_DOC = """List cached layers, or look inside one image's layers.

Without IMAGE: every cached layer, its size, and which images and
containers use it. A layer shared by several images is stored once; the
totals compare that with a copy per image. A layer nothing uses is what
`minirun prune` removes.

With IMAGE: one row per layer (bottom first) with the bytes it adds (A),
changes (C: a path a lower layer has, rewritten whole even for a chmod)
and deletes (D: what its whiteouts and opaque dirs hide), then dive's
three figures.

Efficiency: the sum over paths of each path's smallest copy, divided by
the sum of all their copies (1.0: no path is stored twice, nothing is
deleted later).

Wasted bytes: every copy of each path that two or more layers write (the
surviving one included), plus the bytes of files a later layer deletes.

User wasted %: wasted bytes divided by the bytes of every layer but the
base.

--files lists each layer's changes (a tree on a terminal, one `KIND BYTES
PATH` line per change otherwise); --path keeps those under a prefix. --ci
checks the figures against limits, prints PASS/FAIL per rule and exits 1
naming the paths that waste most when one fails (dive's defaults:
efficiency at least 0.9, user wasted below 0.1, wasted bytes unchecked
unless given; "disabled" turns one off).

Example: minirun layers myapp:v2 --files --path /etc

Example: minirun layers myapp:v2 --ci --highest-wasted-bytes 20MB
"""

LAYERS_EPILOG = EXIT_CODES_HELP + " With --ci: 1 when a limit is crossed."


def _store(create: bool = False):
    from ..store import open_store
    return open_store(create=create)


def layers_command(values: dict) -> int:
    from . import formatting
    formatting.check(values["format"])
    if values["image"] is None:
        from ..errors import UsageError
        for flag in ("files", "ci", "path", "lowest_efficiency", "highest_wasted_bytes",
                     "highest_user_wasted_percent"):
            if values[flag]:
                raise UsageError(f"layers --{flag.replace('_', '-')} needs an IMAGE",
                                 "e.g. minirun layers myapp --files")
        from .usage import list_layers
        list_layers(values["format"], values["quiet"], values["no_trunc"])
        return 0
    from ..api import layerinfo
    from . import layerview
    store = _store()
    name = values["image"]
    if values["ci"]:
        _, _, result = layerinfo.analyze(store, name)
        verdicts = layerinfo.ci_rules(result, values["lowest_efficiency"], values["highest_wasted_bytes"],
                                      values["highest_user_wasted_percent"])
        if values["format"] == "json":
            print(json.dumps({"Image": name, **result.metrics_json(),
                              "Rules": [{"Rule": v.rule, "Value": v.value, "Limit": v.limit,
                                         "Failed": v.failed} for v in verdicts],
                              "Waste": [w.to_json() for w in result.waste[:10]]}))
        else:
            layerview.print_ci(verdicts, result)
        return 1 if any(v.failed for v in verdicts) else 0
    _, _, result = layerinfo.analyze(store, name)
    if values["format"] == "json":
        print(json.dumps(_image_json(name, result, values["files"], values["path"])))
    elif values["files"] or values["path"]:
        layerview.print_files(result, values["path"], sys.stdout.isatty())
    else:
        layerview.print_summary(name, result)
    return 0


def _image_json(name: str, result, files: bool, prefix: str | None) -> dict:
    from .layerview import _matches
    layers = []
    for layer in result.layers:
        doc = {"Index": layer.index, "DiffID": layer.layer_id, "Size": layer.size, "Added": layer.added,
               "Changed": layer.changed, "Deleted": layer.deleted}
        if files or prefix:
            doc["Changes"] = [c.to_json() for c in layer.changes if _matches(c.path, prefix)]
        layers.append(doc)
    return {"Image": name, **result.metrics_json(), "Layers": layers,
            "Waste": [w.to_json() for w in result.waste]}


LAYERS = Command(
    "layers", LAYERS_DOC, LAYERS_EPILOG,
    (Arg("image", "IMAGE", "An image: its layers' files and waste.", required=False, complete="images"),),
    (Flag("format", ("--format",), "str", LAYERS_JSON_HELP + " Without IMAGE also a template over those "
          "fields, e.g. '{{.DiffID}} {{.Size}}'."),
     Flag("quiet", ("--quiet", "-q"), "bool", "Only diff_ids (without IMAGE)."),
     Flag("no_trunc", ("--no-trunc",), "bool", "Full diff_ids and image ids (without IMAGE)."),
     Flag("files", ("--files",), "bool", "Each layer's added (A), changed (C) and deleted (D) paths "
          "with their bytes."),
     Flag("path", ("--path",), "str", "Only paths under this prefix, e.g. /etc (implies --files)."),
     Flag("ci", ("--ci",), "bool", "Check the figures against the limits below; exit 1 if one is crossed."),
     Flag("lowest_efficiency", ("--lowest-efficiency",), "str",
          "--ci fails when efficiency is below this ratio (default 0.9; 'disabled' to skip)."),
     Flag("highest_wasted_bytes", ("--highest-wasted-bytes",), "str",
          "--ci fails when wasted bytes reach this size, e.g. 20MB or 1MiB (default: not checked)."),
     Flag("highest_user_wasted_percent", ("--highest-user-wasted-percent",), "str",
          "--ci fails when wasted / the non-base layers' bytes reaches this ratio (default 0.1).")),
    layers_command)


WHICH_DOC = """Show which layer of IMAGE provides PATH, and what it hides.

Resolves PATH as overlayfs does, topmost layer first: the layer whose copy
a container sees, the copies lower layers hold that it hides, or, when
PATH is not there, the layer whose whiteout (or opaque dir, or file in the
place of a parent dir) deletes it. For a directory: whether it is opaque,
from which layer, and which layers' contents merge into it.

Example: minirun which myapp:v2 /etc/group
"""


def which_command(values: dict) -> int:
    from ..api import layerinfo
    from . import layerview
    layers, found = layerinfo.which(_store(), values["image"], values["path"])
    if values["format"] == "json":
        print(json.dumps(layerview.which_json(layers, found)))
    else:
        layerview.print_which(values["image"], layers, found)
    return 0 if found.provider is not None else 1


WHICH = Command(
    "which", WHICH_DOC, EXIT_CODES_HELP + " 1 also when PATH is not in the image (deleted or never there).",
    (Arg("image", "IMAGE", "Reference, id or id prefix.", complete="images"),
     Arg("path", "PATH", "An absolute path as a container sees it, e.g. /etc/passwd.")),
    (Flag("format", ("--format",), "str", "json: one object {Path, Type, Size, Provider, Hidden, DeletedBy, "
          "How, OpaqueFrom, Merges}, each layer as {Index, DiffID}."),),
    which_command)


def diff_stat(store, name: str, format: str | None) -> None:
    """`minirun diff --stat NAME` (the flag lives on diff, in cli/containers.py)."""
    from ..api import layerinfo
    from . import formatting, layerview
    counted = layerinfo.UpperTotals()
    items = map(counted.add, layerinfo.upper_stat(store, name))    # printed as the walk goes
    if format == "json":
        for item in items:
            print(json.dumps(item.to_json()))
        print(json.dumps({"Totals": counted.totals}))
    elif formatting.is_template(format):
        formatting.print_rows((item.to_json() for item in items), format)
    else:
        layerview.print_upper_stat(items, counted.totals)
