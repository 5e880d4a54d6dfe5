"""Image commands: load, images, rmi, bundle."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from . import lightcmds
from .common import EXIT_CODES_HELP, app, completer, handled, register, store as _store


register(lightcmds.LOAD)
register(lightcmds.IMAGES)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def rmi(names: List[str] = typer.Argument(..., metavar="IMAGE...", autocompletion=completer("images")),
        force: bool = typer.Option(False, "--force", "-f", help="Remove even if containers use it.")):
    """Remove images; layers that no other image or container uses are deleted.

    Example: sudo minirun rmi myapp
    """
    from ..api.catalog import remove
    from ..linux.caps import require_root
    require_root("rmi")
    remove(_store(), names, force, print)


BUNDLE_EXIT_CODES = ("Exit codes: 0 success; 1 no such image, or a damaged store; 2 bad usage (DIR not "
                     "empty, not a bundle); 3 environment (not root, DIR on overlayfs); 125 the overlay "
                     "could not be mounted or the copy failed.")


@app.command(epilog=BUNDLE_EXIT_CODES)
@handled()
def bundle(image: Optional[str] = typer.Argument(None, metavar="IMAGE", autocompletion=completer("images")),
           directory: Optional[str] = typer.Argument(None, metavar="DIR", help="A new path or an empty "
                                                     "directory."),
           copy: bool = typer.Option(False, "--copy", help="Copy the image's files into DIR/rootfs "
                                     "instead of mounting an overlay of the layer cache."),
           remove: Optional[str] = typer.Option(None, "--remove", metavar="DIR", help="Unmount and delete "
                                                "a bundle this command made (instead of making one).")):
    """Write an OCI runtime bundle (DIR/config.json and DIR/rootfs) from an image, for runc or crun.

    config.json runs the image's Entrypoint + Cmd as its user (resolved to
    numbers in the image's /etc/passwd), with runc's default namespaces, mounts,
    masked paths and Docker's default capabilities; edit it as you like.

    DIR/rootfs is an overlay of the image's cached layers, mounted until
    `umount DIR/rootfs` or `minirun bundle --remove DIR`; what the container
    writes lands in DIR/.minirun/upper, never in the cache. Keep the image
    tagged while it is mounted: rmi (or a prune after its tag is gone) would
    remove the layers under it. With --copy, DIR/rootfs is a plain copy: no
    mount, no tie to the store.

    Example: sudo minirun bundle busybox /tmp/b

    then: sudo runc run --bundle /tmp/b c1; sudo minirun bundle --remove /tmp/b
    """
    from ..errors import UsageError
    from ..api import bundle as api
    from ..linux.caps import require_root
    require_root("bundle")
    if remove is not None:
        if image is not None or copy:
            raise UsageError("--remove takes only the bundle's DIR", "use `minirun bundle --remove DIR`")
        api.remove(remove)
        return
    if image is None or directory is None:
        raise UsageError("bundle needs an IMAGE and a DIR", "use `minirun bundle IMAGE DIR [--copy]`")
    api.create(_store(), image, directory, copy)
    print(directory)
