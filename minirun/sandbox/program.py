"""What the container process runs (ProcessSpec), computed from the image config
and the flags (run/plan.py RunOptions) the way `docker run` does it. Pure: no I/O."""

from __future__ import annotations

import os
from ..lib.frozen import dataclass

from ..errors import UsageError
from ..lib.names import is_hostname

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ProcessSpec:
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    hostname: str
    chroot: bool


def build(image_config, opts, container_id: str,
          host_env: dict[str, str] | None = None) -> ProcessSpec:
    """Entrypoint + Cmd, Env, WorkingDir and User from the image, overridden as docker does:
    a CMD replaces the image's Cmd; --entrypoint replaces the Entrypoint and drops the Cmd.
    An Entrypoint of [""] is no Entrypoint (what `--entrypoint ""` records in an image)."""
    if opts.entrypoint is not None:
        entrypoint: tuple[str, ...] = (opts.entrypoint,) if opts.entrypoint else ()
        cmd = opts.command
    else:
        entrypoint = () if image_config.entrypoint == ("",) else image_config.entrypoint
        cmd = opts.command or image_config.cmd
    argv = entrypoint + cmd
    if not argv:
        raise UsageError("no command specified: the image has no Entrypoint or Cmd",
                         "give one after the image, e.g. `minirun run IMAGE sh`")
    if not argv[0]:
        raise UsageError("the command to run is an empty string",
                         "give a command after the image, or fix the image's Entrypoint or Cmd")
    hostname = opts.hostname or container_id[:12]
    if not is_hostname(hostname):
        raise UsageError(f"invalid hostname {hostname!r}",
                         "use at most 64 letters, digits, '-' and '.', not starting with '-' or '.'")
    env = merge_env(image_config.env, opts.env, host_env if host_env is not None else dict(os.environ))
    defaults = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if getattr(opts, "tty", False):
        defaults["TERM"] = "xterm"                 # as docker -t, unless the image or -e says
    env = with_defaults(env, defaults)
    workdir = opts.workdir or image_config.working_dir or "/"
    if opts.workdir and not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is not an absolute path")
    cwd = os.path.normpath("/" + workdir.lstrip("/"))
    user = opts.user or image_config.user or "0"      # an empty -u means unset, as in docker
    return ProcessSpec(tuple(argv), tuple(env), cwd, user, hostname, opts.chroot)


def merge_env(image_env: tuple[str, ...], flags: tuple[str, ...], host_env: dict[str, str]) -> list[str]:
    """Image Env, then each -e: K=V sets, a bare K copies the host's value (or is skipped if unset)."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        if not key:
            from ..errors import BadImage, brief
            raise BadImage(f"the image's Env holds {brief(item)}, a variable with no name, which "
                           "no process can be given (runc refuses it too)",
                           "rebuild the image without that entry")
        merged[key] = value
    for item in flags:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable {item!r}: empty name")
        if sep:
            merged[key] = value
        elif key in host_env:
            merged[key] = host_env[key]
    return [f"{k}={v}" for k, v in merged.items()]


def with_defaults(env: list[str], defaults: dict[str, str]) -> list[str]:
    present = {item.partition("=")[0] for item in env}
    return env + [f"{k}={v}" for k, v in defaults.items() if k not in present]
