"""Registry commands: pull, push, login, logout."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from . import lightcmds
from .common import EXIT_CODES_HELP, app, completer, handled, register, store as _store


register(lightcmds.PULL)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def push(image: str = typer.Argument(..., autocompletion=completer("images"), help="Image to push (reference or id)."),
         dest: Optional[str] = typer.Argument(None, metavar="[REF]", help="Where to push it "
                                              "(default: the image's own reference).")):
    """Push an image to a registry: blobs it lacks, then the manifest.

    On a terminal each blob shows a bar: bytes sent, rate and time left.

    Example: sudo minirun push myapp 127.0.0.1:5000/team/myapp:v1
    """
    from . import progress as progress_mod
    from ..sources.registry.push import push as do_push
    show = progress_mod.for_output()
    with show:
        result = do_push(_store(), image, dest, show.update)
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
    _check_registry(registry)
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
    _check_registry(registry)
    if auth.remove_credentials(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")


def _check_registry(registry: str) -> None:
    """A registry as login and logout take it: host[:port] (docker.io included)."""
    from ..errors import UsageError, brief
    from ..lib.names import is_registry_host
    if not is_registry_host(registry):
        raise UsageError(f"invalid registry {brief(registry)}", "give host[:port], e.g. 127.0.0.1:5000 "
                         "or docker.io")
