"""The configuration file, /etc/minirun/config.toml (or $MINIRUN_CONFIG), and the
effective settings: an environment variable wins over the file, the file over
the built-in default. This module owns the file; nothing else reads it.

    root = "/var/lib/minirun"              # the store           (MINIRUN_ROOT)
    insecure_registries = ["127.0.0.1:5000", "registry.lan"]
                                           # plain HTTP allowed   (MINIRUN_INSECURE_REGISTRIES=a,b)
    [network]
    default = "none"                       # run's --network when not given: none, host or bridge
    bridge = "minirun0"                    # the bridge device    (MINIRUN_BRIDGE)
    subnet = "10.88.0.0/16"                # its IPv4 subnet      (MINIRUN_BRIDGE_SUBNET)

A missing file is fine; a file that is not valid TOML, or holds a key or a type
minirun does not know, is an error naming the line or key (a typo must not be
silently ignored). So is one that is not a regular file of at most 1 MiB (a
FIFO is not waited on, /dev/zero not read), or nested deeper than the TOML
parser's recursion goes. The file is read only when it exists and at most once
per process, so commands pay nothing for it otherwise.
"""

from __future__ import annotations

import os

from .errors import EnvironmentProblem, brief, shown

DEFAULT_PATH = "/etc/minirun/config.toml"
MAX_BYTES = 1 << 20

# key -> (environment variable, built-in default, type)
SETTINGS = {
    "root": ("MINIRUN_ROOT", "/var/lib/minirun", str),
    "insecure_registries": ("MINIRUN_INSECURE_REGISTRIES", [], list),
    "network.default": ("", "none", str),
    "network.bridge": ("MINIRUN_BRIDGE", "minirun0", str),
    "network.subnet": ("MINIRUN_BRIDGE_SUBNET", "10.88.0.0/16", str),
}
NETWORK_MODES = ("none", "host", "bridge")

_loaded: tuple[str, dict] | None = None


def path() -> str:
    return os.environ.get("MINIRUN_CONFIG") or DEFAULT_PATH


def get(key: str):
    """The effective value of a setting."""
    return effective(key)[0]


def effective(key: str) -> tuple[object, str]:
    """(value, where it came from): 'env NAME', the file's path, or 'default'."""
    variable, default, kind = SETTINGS[key]
    doc = file_settings()             # read (and checked) even when the environment wins
    raw = os.environ.get(variable) if variable else None
    if raw:
        value = [part.strip() for part in raw.split(",") if part.strip()] if kind is list else raw
        return value, f"env {variable}"
    if key in doc:
        return doc[key], path()
    return (list(default) if kind is list else default), "default"


def file_settings() -> dict:
    """The file's settings as flat keys ('network.subnet'); {} when there is no file."""
    global _loaded
    where = path()
    if _loaded is not None and _loaded[0] == where:
        return _loaded[1]
    try:
        data = _read(where)
    except FileNotFoundError:
        doc: dict = {}
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read the config file {shown(where)}: {exc.strerror}",
                                 "fix its permissions, or point MINIRUN_CONFIG at another file") from None
    else:
        doc = _parse(where, data)
    _loaded = (where, doc)
    return doc


def _read(where: str) -> bytes:
    """The file's bytes: a regular file (a symlink to one is fine) of at most MAX_BYTES."""
    import stat
    fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"{st.st_size} bytes"
            raise EnvironmentProblem(f"the config file {shown(where)} is {what}",
                                     f"a config file is a TOML file of at most {MAX_BYTES >> 20} MiB; "
                                     "fix it, or point MINIRUN_CONFIG at another file")
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise EnvironmentProblem(f"the config file {shown(where)} is over {MAX_BYTES >> 20} MiB")
    return data


def _parse(where: str, data: bytes) -> dict:
    import tomllib
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except ValueError as exc:       # TOMLDecodeError, UnicodeDecodeError, an int of 5000 digits
        raise EnvironmentProblem(f"config file {shown(where)} is not valid TOML: {shown(str(exc))}",
                                 "fix the file (see README, Configuration)") from None
    except RecursionError:
        raise EnvironmentProblem(f"config file {shown(where)} is nested too deeply to be minirun's",
                                 "fix the file (see README, Configuration)") from None
    flat: dict = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            if not any(name.startswith(key + ".") for name in SETTINGS):
                raise EnvironmentProblem(f"config file {shown(where)}: unknown table [{shown(key, 80)}]",
                                         f"minirun knows {', '.join(SETTINGS)}")
            for sub, inner in value.items():
                flat[f"{key}.{sub}"] = inner
        else:
            flat[key] = value
    for key, value in flat.items():
        if key not in SETTINGS:
            raise EnvironmentProblem(f"config file {shown(where)}: unknown setting {brief(key)}",
                                     f"minirun knows {', '.join(SETTINGS)}")
        kind = SETTINGS[key][2]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            wanted = "a list of strings" if kind is list else "a string"
            raise EnvironmentProblem(f"config file {shown(where)}: {key} must be {wanted}, not {brief(value)}",
                                     "fix the file (see README, Configuration)")
    if flat.get("network.default", "none") not in NETWORK_MODES:
        raise EnvironmentProblem(f"config file {shown(where)}: network.default must be one of "
                                 f"{', '.join(NETWORK_MODES)}, not {brief(flat['network.default'])}")
    if "root" in flat and not os.path.isabs(flat["root"]):
        raise EnvironmentProblem(f"config file {shown(where)}: root must be an absolute path, not {brief(flat['root'])}")
    return flat
