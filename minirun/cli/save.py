"""save: write images to docker-archive, OCI archive or OCI layout."""

from __future__ import annotations

from typing import List, Optional

import typer

from .common import EXIT_CODES_HELP, app, completer, handled, store as _store


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def save(names: List[str] = typer.Argument(..., metavar="IMAGE...", autocompletion=completer("images"), help="Reference or image id "
                                           "(12+ hex digits)."),
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
    from ..save import destination, save as do_save
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
