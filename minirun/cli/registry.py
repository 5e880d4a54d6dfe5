"""Registry commands: pull, push, login, logout."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .common import EXIT_CODES_HELP, app, handled, store as _store


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def pull(ref: str = typer.Argument(..., metavar="REF", help="e.g. busybox, user/app:tag, host:5000/x/y@sha256:..."),
         platform: Optional[str] = typer.Option(None, "--platform", help="os/arch[/variant] to pick from "
                                                "a multi-platform image (default: this host's)."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the reference.")):
    """Pull an image from a registry; layers already in the cache are not downloaded.

    Credentials come from ~/.docker/config.json (see `minirun login`). Plain
    HTTP is used only for localhost and registries listed in
    MINIRUN_INSECURE_REGISTRIES (comma-separated host[:port]).

    Example: sudo minirun pull 127.0.0.1:5000/library/busybox:latest
    """
    from .. import progress as progress_mod
    from ..reference import parse
    from ..runtime import require_root
    from ..sources.registry.pull import pull as do_pull
    require_root("pull")
    ref_text = str(parse(ref))
    parsed = parse(ref)
    show = progress_mod.for_output(quiet)
    if not quiet:
        print(f"{parsed.tag or parsed.digest}: Pulling from {parsed.repository}", flush=True)
    with show:
        result = do_pull(_store(), ref_text, platform, show)
    if not quiet:
        print(f"Digest: {result.manifest_digest}")
        word = "Image is up to date for" if result.up_to_date else "Downloaded newer image for"
        print(f"Status: {word} {result.ref}")
    print(result.ref)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def push(image: str = typer.Argument(..., help="Image to push (reference or id)."),
         dest: Optional[str] = typer.Argument(None, metavar="[REF]", help="Where to push it "
                                              "(default: the image's own reference).")):
    """Push an image to a registry: blobs it lacks, then the manifest.

    Example: sudo minirun push myapp 127.0.0.1:5000/team/myapp:v1
    """
    from .. import progress as progress_mod
    from ..sources.registry.push import push as do_push
    show = progress_mod.for_output()
    with show:
        result = do_push(_store(), image, dest, show)
    print(f"{result.ref}: digest: {result.digest} size: {result.size}")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def login(registry: str = typer.Argument(..., help="host[:port], or docker.io"),
          username: Optional[str] = typer.Option(None, "--username", "-u"),
          password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
          password: Optional[str] = typer.Option(None, "--password", "-p", help="Prefer --password-stdin.")):
    """Check credentials against a registry and store them in ~/.docker/config.json.

    Example: echo secret | minirun login -u me --password-stdin 127.0.0.1:5000
    """
    from ..errors import UsageError
    from ..sources.registry import auth
    from ..sources.registry.client import RegistryClient
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username or password is None:
        if not sys.stdin.isatty():
            raise UsageError("login needs --username and a password", "pass --password-stdin")
        import getpass
        username = username or input("Username: ")
        password = getpass.getpass("Password: ")
    RegistryClient(registry, creds=(username, password)).ping()
    path = auth.save_credentials(registry, username, password)
    print(f"Login Succeeded (credentials saved in {path})")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def logout(registry: str = typer.Argument(..., help="host[:port], or docker.io")):
    """Remove a registry's stored credentials.

    Example: minirun logout 127.0.0.1:5000
    """
    from ..sources.registry import auth
    if auth.remove_credentials(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")
