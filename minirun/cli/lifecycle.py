"""Image lifecycle: inspect, commit, export, import, tag, history, prune, save."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from .lightcmds import FORMAT_HELP
from .common import EXIT_CODES_HELP, app, completer, for_each, handled, print_table, store as _store


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def inspect(names: List[str] = typer.Argument(..., metavar="CONTAINER|IMAGE...",
                                              autocompletion=completer("image_or_container")),
            type_: Optional[str] = typer.Option(None, "--type", help="container or image, when a name is both."),
            format: Optional[str] = typer.Option(None, "--format", "-f", help="json (the default: a JSON "
                                                 "array of the whole documents, as docker), or a template "
                                                 "applied to each, such as '{{.UpperDir}}' or "
                                                 "'{{.State.Status}}'.")):
    """Show containers or images as a JSON array, as docker inspect does.

    A container shows its UpperDir, WorkDir and LowerDirs; an image its
    Config, RootFS.Layers (the diff_ids) and the cached layer directories.
    A name that is neither is reported and the rest are still shown (exit 1).

    Example: minirun inspect -f '{{.UpperDir}}' t1
    """
    from ..errors import UsageError
    from . import formatting
    formatting.check(format)
    store = _store(create=False)
    if type_ not in (None, "container", "image"):
        raise UsageError(f"--type {type_!r}: expected container or image")
    docs: list[dict] = []
    try:
        for_each(names, lambda name: docs.append(_inspect_one(store, name, type_)))
    finally:
        if formatting.is_template(format):
            formatting.print_rows(docs, format)
        elif docs or len(names) > 1:
            print(json.dumps(docs, indent=2))


def _inspect_one(store, name: str, type_: str | None) -> dict:
    from ..errors import ContainerNotFound, ImageNotFound, NotFound
    from ..api.catalog import inspect as inspect_image
    from ..api.control import inspect as inspect_container
    if type_ == "image":
        return inspect_image(store, name)
    try:
        return inspect_container(store, name)
    except ContainerNotFound:
        if type_ == "container":
            raise
    try:
        return inspect_image(store, name)
    except ImageNotFound:
        raise NotFound(f"no such container or image: {name}",
                       "see `minirun ps -a` and `minirun images`") from None


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def tag(source: str = typer.Argument(..., metavar="IMAGE", autocompletion=completer("images"), help="Reference or image id."),
        target: str = typer.Argument(..., metavar="REF", help="New name, e.g. myapp:v2.")):
    """Give an image another name.

    A name that pointed at another image moves, and that image stays as
    <none>:<none> (dangling) until `minirun image prune`.

    Example: sudo minirun tag myapp myapp:stable
    """
    from ..api.catalog import tag as do_tag
    from ..linux.caps import require_root
    require_root("tag")
    do_tag(_store(), source, target)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def history(name: str = typer.Argument(..., metavar="IMAGE", autocompletion=completer("images")),
            no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten ids and commands."),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="Only image ids."),
            format: Optional[str] = typer.Option(None, "--format", help=FORMAT_HELP + " Fields: ID, "
                                                 "Created, CreatedBy, Size, Comment, EmptyLayer.")):
    """Show how an image was built, newest first.

    One row per history entry of its config, with the size of the layer that
    step added (0B for config-only steps). Only the top row has an image id;
    the others are <missing>, as in docker.

    Example: minirun history myapp:v2
    """
    from ..api.catalog import history as do_history, human_age, human_size
    from . import formatting
    formatting.check(format)
    rows = do_history(_store(create=False), name)
    if quiet:
        for row in rows:
            print(row.image_id if no_trunc or row.image_id == "<missing>" else row.image_id[7:19])
        return
    if format == "json" or formatting.is_template(format):
        formatting.print_rows([{"ID": row.image_id, "Created": row.created, "CreatedBy": row.created_by,
                                "Size": row.size, "Comment": row.comment, "EmptyLayer": row.empty_layer}
                               for row in rows], format)
        return
    table = [("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for row in rows:
        shown = row.image_id if no_trunc or row.image_id == "<missing>" else row.image_id[7:19]
        by = formatting.visible(" ".join(row.created_by.split()))     # escaped, then cut
        if not no_trunc and len(by) > 45:
            by = by[:44] + "…"
        table.append((shown, human_age(row.created) if row.created else "", by, human_size(row.size),
                      row.comment))
    print_table(table)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def commit(name: str = typer.Argument(..., metavar="CONTAINER", autocompletion=completer("containers")),
           ref: Optional[str] = typer.Argument(None, metavar="[REF]", help="Name for the new image, "
                                               "e.g. myapp:v2 (a tag that moves leaves the old image dangling)."),
           message: str = typer.Option("", "--message", "-m", help="Comment for the history entry."),
           author: str = typer.Option("", "--author", "-a", help="Author, e.g. 'Jo <jo@example.com>'."),
           change: List[str] = typer.Option([], "--change", "-c", help="Dockerfile instruction to apply: "
                                             "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, "
                                             "USER, VOLUME, WORKDIR. Repeatable.")):
    """Make a new image from a stopped container.

    The new image is its image's layers plus one new layer holding exactly
    what the container wrote (its upper dir).

    The base layers are shared, not copied. The new layer is packed
    reproducibly: the same upper dir content gives the same layer digest
    (set SOURCE_DATE_EPOCH to clamp file times and fix the creation time, and
    the image id repeats too). The new image keeps its base image's config
    (not the container's command line); change it with -c.

    A running container is refused: stop it first, so the layer is a
    consistent snapshot. The container itself is left as it was.

    Example: sudo minirun commit -m 'add greeting' -c 'CMD ["cat", "/greeting"]' t1 myapp:v2
    """
    from ..api.commit import CommitOptions, commit as do_commit
    from ..linux.caps import require_root
    require_root("commit")
    result = do_commit(_store(), name, CommitOptions(ref, message, author, tuple(change)))
    print(result.image_id)


image_app = typer.Typer(help="Manage images (image prune).", no_args_is_help=True)
app.add_typer(image_app, name="image")


def _prune(containers: bool, dry_run: bool, force: bool, layers_and_blobs: bool, what: str) -> None:
    import sys
    from ..api import prune as pr
    from ..api.catalog import human_size
    from ..linux.caps import require_root
    if not dry_run:
        require_root("prune")
    store = _store()
    ask = not dry_run and not force and sys.stdin.isatty()
    with store.locks.hold("gc"):
        todo = pr.plan(store, containers, layers_and_blobs)
        if todo.items and not dry_run and not ask:
            pr.execute(store, todo)
    if not todo.items:
        print("Nothing to remove.")
        return
    if dry_run:
        _print_plan(todo, "Would remove")
        print(f"Would reclaim {human_size(todo.reclaimed)}.")
        return
    if ask:
        # no lock while a person thinks: runs, loads and commits go on meanwhile
        counts = ", ".join(f"{len(todo.of(k))} {k}(s)"
                           for k in ("container", "image", "layer", "blob", "download") if todo.of(k))
        from . import flush_warnings
        flush_warnings()                # what was passed over, before the question
        if not typer.confirm(f"This removes {what}: {counts}. Continue?", default=False):
            raise typer.Exit(1)
        with store.locks.hold("gc"):
            # only what was shown and is still unused now (a tag or a run may have come since)
            todo = pr.agreed(todo, pr.plan(store, containers, layers_and_blobs))
            pr.execute(store, todo)
    _print_plan(todo, "Deleted")
    print(f"Total reclaimed space: {human_size(todo.reclaimed)}")


def _print_plan(todo, verb: str) -> None:
    from ..oci import short_id
    for item in todo.of("container"):
        print(f"{verb} container {item.ident[:12]} ({item.reason})")
    for chain in todo.chains:
        print(f"{verb} " + chain[0])
        for line in chain[1:]:
            print(line)
    for item in todo.of("layer"):
        print(f"{verb} layer {short_id(item.ident)} ({item.reason})")
    for item in todo.of("blob"):
        print(f"{verb} blob {item.ident} ({item.reason})")
    for item in todo.of("download"):
        print(f"{verb} partial download of blob {item.ident} ({item.reason})")


@image_app.command("prune", epilog=EXIT_CODES_HELP)
@handled()
def image_prune(force: bool = typer.Option(False, "--force", "-f", help="Do not ask (it only asks on a terminal)."),
                dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go and why; remove nothing.")):
    """Remove dangling images that no container uses.

    A dangling image is one no reference points to; the layers and blobs only
    such images used go with them.

    Example: sudo minirun image prune -f
    """
    _prune(False, dry_run, force, True, "dangling images and the layers only they use")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not ask (it only asks on a terminal)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="List what would go and why, following "
                                       "reference -> manifest -> config -> diff_ids; remove nothing."),
          containers: bool = typer.Option(False, "--containers", help="Also remove stopped containers "
                                          "(and their upper dirs).")):
    """Remove what nothing needs.

    That is dangling images, stopped containers (with --containers), and every
    layer and blob no image and no container references.

    A layer any container uses, running or stopped, is never removed, and
    neither is an image a container was made from. On a terminal it asks
    first; -f skips the question; without a terminal it never asks.

    Example: sudo minirun prune --containers --dry-run
    """
    _prune(containers, dry_run, force, True, "unused data")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def export(name: str = typer.Argument(..., metavar="CONTAINER", autocompletion=completer("containers")),
           output: Optional[str] = typer.Option(None, "--output", "-o", help="Tar file to write "
                                                "('-' or omitted: stdout, unless it is a terminal).")):
    """Write a container's whole filesystem as one flat tar.

    The tar holds what its processes see: the image's layers with the upper
    dir on top.

    It is mounted read-only in a private mount namespace, so the container is
    not touched; a running container may be caught mid-write.

    Example: sudo minirun export t1 -o t1-rootfs.tar
    """
    import sys
    from ..errors import UsageError
    from ..api.export import export as do_export
    from ..linux.caps import require_root
    require_root("export")
    store = _store()
    if output in (None, "-"):
        if sys.stdout.isatty():
            raise UsageError("refusing to write a tar to a terminal", "pass -o FILE or redirect stdout")
        do_export(store, name, sys.stdout.buffer)
        return
    from ..api.outfile import write_output
    write_output(output, lambda f: do_export(store, name, f), "export")


@app.command(name="import", epilog=EXIT_CODES_HELP)
@handled()
def import_(path: str = typer.Argument(..., metavar="FILE", help="Tar of a root filesystem (plain, gzip "
                                       "or zstd); '-' reads stdin."),
            ref: Optional[str] = typer.Argument(None, metavar="[REF]", help="Name for the new image."),
            message: str = typer.Option("", "--message", "-m", help="Comment for the history entry."),
            change: List[str] = typer.Option([], "--change", "-c", help="Dockerfile instruction for the "
                                             "config, e.g. 'CMD [\"/bin/sh\"]'. Repeatable.")):
    """Make a one-layer image from a root filesystem tar (e.g. one `minirun export` wrote).

    The tar is checked and extracted like any layer; its owners, modes and
    times are kept. The image has no Cmd unless you give one with -c.

    Example: sudo minirun import t1-rootfs.tar flat:v1 -c 'CMD ["/bin/sh"]'
    """
    from ..api.export import import_tarball
    from ..linux.caps import require_root
    require_root("import")
    print(import_tarball(_store(), path, ref, message, tuple(change)))


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def save(names: List[str] = typer.Argument(..., metavar="IMAGE...", autocompletion=completer("images"), help="Reference, image id, or "
                                           "a unique prefix of an id."),
         output: Optional[str] = typer.Option(None, "--output", "-o", help="File to write (a directory "
                                              "for oci-dir); '-' or omitted: stdout, unless it is a "
                                              "terminal."),
         format_: str = typer.Option("docker-archive", "--format", help="docker-archive (default), "
                                     "oci-archive or oci-dir.")):
    """Write images to an archive that minirun, docker, podman, skopeo and umoci read.

    Several images share one archive, and a layer they share is written once.
    The image id never changes.

    docker-archive: a tar like `docker save` writes: manifest.json,
    repositories, the config as <id>.json and each layer as an uncompressed
    <diff_id>/layer.tar. Names are kept as RepoTags.

    oci-archive: a tar of an OCI image layout: oci-layout, index.json and
    blobs/sha256/ with the manifest, the config and the compressed layers.
    index.json names each image by its tag (org.opencontainers.image.ref.name)
    and its full reference (io.containerd.image.name). podman load takes one
    image per OCI archive.

    oci-dir: the same OCI image layout as a new directory, e.g. for
    `skopeo inspect oci:DIR:TAG` or `umoci unpack --image DIR:TAG`.

    An image named by id is saved without a name. The output appears only
    when complete; nothing is left behind on failure.

    Example: minirun save myapp myotherapp -o apps.tar

    Example: minirun save --format oci-dir myapp -o myapp-oci && umoci unpack --image myapp-oci:latest bundle
    """
    import sys
    from ..api.save import destination, save as do_save
    dest = destination(output, format_, sys.stdout.isatty())
    store = _store(create=False)
    if dest is not None:
        do_save(store, names, format_, dest)
        return
    try:
        do_save(store, names, format_, sys.stdout.buffer)
    except BrokenPipeError:
        _stdout_closed()


def _stdout_closed() -> None:
    """The reader went away: say so once, and keep Python's exit-time flush quiet."""
    import os
    import sys
    from ..errors import EnvironmentProblem
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise EnvironmentProblem("stdout was closed before the archive was complete",
                             "let the reader take the whole tar, or write it to a file with -o")
