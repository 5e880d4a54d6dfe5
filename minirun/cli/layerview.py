"""How `minirun layers IMAGE`, `which` and `diff --stat` print: the metrics, the
per-layer file tree (a terminal) or lines (a pipe), and the copy-up table.
Every name from an image goes through formatting.visible()."""

from __future__ import annotations

from .formatting import print_table, visible


def _stat_row(cells) -> None:
    shown = [visible(cell) for cell in cells]
    print("   ".join(cell.ljust(width) for cell, width in zip(shown, (*_STAT_WIDTHS, 0))).rstrip())


def _size(n: int) -> str:
    from ..api.catalog import human_size
    return human_size(n)


def _short(layer_id: str) -> str:
    return layer_id.split(":", 1)[-1][:12]


def metrics_lines(result) -> list[str]:
    return [f"Efficiency:          {100 * result.efficiency:.4f} %",
            f"Wasted bytes:        {result.wasted_bytes} ({_size(result.wasted_bytes)})",
            f"User wasted percent: {100 * result.user_wasted:.4f} % "
            f"(of {_size(result.user_size)} in the layers above the base)"]


def print_summary(image: str, result, top: int = 10) -> None:
    """`minirun layers IMAGE`: one row per layer, the metrics, the worst paths."""
    table = [("#", "LAYER", "SIZE", "ENTRIES", "ADDED", "CHANGED", "DELETED")]
    for layer in result.layers:
        counts = {"A": 0, "C": 0, "D": 0}
        for change in layer.changes:
            counts[change.kind] += 1
        table.append((layer.index, _short(layer.layer_id), _size(layer.size), layer.files,
                      f"{counts['A']} ({_size(layer.added)})", f"{counts['C']} ({_size(layer.changed)})",
                      f"{counts['D']} ({_size(layer.deleted)})"))
    print(visible(f"Image {image}: {len(result.layers)} layer(s), bottom first"))
    print_table(table)
    print()
    for line in metrics_lines(result):
        print(line)
    print_waste(result.waste[:top], "Paths in two or more layers (the largest first):")


def print_waste(waste, title: str) -> None:
    if not waste:
        return
    print()
    print(title)
    table = [("COUNT", "TOTAL SPACE", "PATH")]
    for item in waste:
        table.append((item.count, _size(item.total), item.path))
    print_table(table)


def _matches(path: str, prefix: str | None) -> bool:
    if not prefix:
        return True
    prefix = "/" + prefix.strip("/")
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def print_files(result, prefix: str | None, tree: bool) -> None:
    """--files: per layer, what it adds (A), changes (C) and deletes (D), with bytes."""
    for layer in result.layers:
        changes = [c for c in layer.changes if _matches(c.path, prefix)]
        print(visible(f"Layer {layer.index} {_short(layer.layer_id)}  {_size(layer.size)}:  "
                      f"added {_size(layer.added)}, changed {_size(layer.changed)}, "
                      f"deleted {_size(layer.deleted)}"))
        if tree:
            _print_tree(changes)
        else:
            for c in changes:
                note = f"  ({c.note})" if c.note else ""
                print(visible(f"{c.kind} {c.size:>10} {c.path}{note}"))
        print()
    for line in metrics_lines(result):
        print(line)


def _print_tree(changes) -> None:
    """The changed paths as a tree; the dirs that only lead to them show plain."""
    root: dict = {}
    for change in changes:
        node = root
        parts = [p for p in change.path.split("/") if p]
        for part in parts[:-1]:
            node = node.setdefault(part, {}).setdefault("", {})
        leaf = node.setdefault(parts[-1] if parts else "/", {})
        leaf["."] = change

    def walk(node: dict, indent: str) -> None:
        names = sorted(name for name in node if name not in ("", "."))
        for i, name in enumerate(names):
            last = i == len(names) - 1
            child = node[name]
            change = child.get(".")
            label = name
            if change is not None:
                note = f", {change.note}" if change.note else ""
                label = f"{change.kind} {name}{'/' if change.type == 'dir' else ''}  {_size(change.size)}{note}"
            elif child.get(""):
                label = name + "/"
            print(visible(indent + ("└── " if last else "├── ") + label))
            walk(child.get("", {}), indent + ("    " if last else "│   "))
    walk(root, "")


def print_ci(verdicts, result, top: int = 10) -> None:
    for line in metrics_lines(result):
        print(line)
    print()
    for v in verdicts:
        print(f"  {'FAIL' if v.failed else 'PASS'}: {v.rule}: {v.value} (limit {v.limit})")
    failed = [v for v in verdicts if v.failed]
    print(f"Result: {'FAIL' if failed else 'PASS'} [Total:{len(verdicts)}, Passed:{len(verdicts) - len(failed)}, "
          f"Failed:{len(failed)}]")
    if failed:
        print_waste(result.waste[:top], "The paths that waste the most:")


def print_which(image: str, layers, found) -> None:
    def name(index: int) -> str:
        return f"layer {index} ({_short(layers[index].layer_id)})"
    if found.provider is None:
        if found.deleted_by is not None:
            print(visible(f"{found.path}: deleted in {image} by {name(found.deleted_by)}: {found.how}"))
        else:
            print(visible(f"{found.path}: not in {image}"))
    else:
        size = f", {_size(found.size)}" if found.type == "file" else ""
        print(visible(f"{found.path}: {found.type}{size}, from {name(found.provider)}"))
        if found.type == "dir":
            if found.opaque_from is not None:
                print(visible(f"  opaque from {name(found.opaque_from)}: the layers below it do not show in it"))
            else:
                print("  not opaque")
            print(visible("  content merged from " + ", ".join(name(i) for i in found.merges)))
    for index, kind, nbytes in found.hidden:
        if index in found.merges:
            continue                      # a lower copy of the dir whose content shows through
        size = f", {_size(nbytes)}" if kind == "file" else ""
        print(visible(f"  hidden: {kind}{size} in {name(index)}"))


def which_json(layers, found) -> dict:
    def lid(index):
        return None if index is None else {"Index": index, "DiffID": layers[index].layer_id}
    return {"Path": found.path, "Type": found.type or None, "Size": found.size, "Provider": lid(found.provider),
            "Hidden": [{**lid(i), "Type": kind, "Size": n} for i, kind, n in found.hidden],
            "DeletedBy": lid(found.deleted_by), "How": found.how or None,
            "OpaqueFrom": lid(found.opaque_from), "Merges": [lid(i) for i in found.merges]}


_STAT_WIDTHS = (9, 12, 12, 22)             # KIND, BYTES, COPIED, NOTE; then PATH


def print_upper_stat(items, totals) -> None:
    """diff --stat: one row per entry of the upper dir, printed as it comes (columns
    of fixed width: an upper dir can hold millions of entries), then the totals,
    which `items` fills in as it is read."""
    rows = 0
    for item in items:
        if item.kind == "dir":
            continue                         # a parent copied up for a child's sake
        note = "metadata only" if item.metadata_only else ""
        if item.kind == "whiteout":
            note = f"hides {item.type} of {_size(item.lower_size)}"
        elif item.kind == "opaque":
            note = "lower content hidden"
        if not rows:
            _stat_row(("KIND", "BYTES", "COPIED", "NOTE", "PATH"))
        _stat_row((item.kind, item.size if item.type != "dir" else "-",
                   item.copied if item.kind == "copied-up" else "-", note or "-", item.path))
        rows += 1
    if rows:
        print()
    t = totals
    print(f"created:    {t['Created']} file(s), {t['CreatedBytes']} bytes ({_size(t['CreatedBytes'])}); "
          f"{t['CreatedDirs']} new dir(s)")
    print(f"copied up:  {t['CopiedUp']} file(s), {t['CopiedBytes']} bytes copied ({_size(t['CopiedBytes'])}); "
          f"{t['MetadataOnly']} with only metadata changed ({_size(t['MetadataOnlyBytes'])} copied for that)")
    print(f"whiteouts:  {t['Whiteouts']} (hiding {_size(t['HiddenBytes'])} of lower files)")
    print(f"opaque:     {t['OpaqueDirs']} dir(s); {t['CopiedUpDirs']} lower dir(s) copied up as parents")
    print(f"upper dir:  {t['UpperBytes']} bytes ({_size(t['UpperBytes'])})")
