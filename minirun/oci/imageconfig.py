"""Derive a new image config from an old one: what `commit` and `import` write.

Pure functions over the config JSON (the document whose digest is the image
id), so they are unit-tested without a store:

    new_config(base, diff_id, created, created_by, comment, author, changes)

`changes` are Dockerfile-style instructions, as `docker commit --change`
takes them: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
VOLUME, WORKDIR. CMD and ENTRYPOINT take the JSON form (`CMD ["app", "-v"]`)
or the shell form (`CMD app -v`, run by /bin/sh -c).
"""

from __future__ import annotations

import copy
import json
import shlex
import time

from ..errors import UsageError

INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
                "VOLUME", "WORKDIR")


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


MAX_EPOCH = 253402300799        # 9999-12-31T23:59:59Z: the last second a 4-digit year holds


def source_date_epoch() -> int | None:
    """$SOURCE_DATE_EPOCH for commit, import and export (reproducible-builds.org's
    variable): None when unset, else ASCII digits for a second from 0 to MAX_EPOCH;
    anything else is a UsageError, never a time gmtime() cannot hold."""
    import os
    from ..errors import brief
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_EPOCH)) or \
            int(value) > MAX_EPOCH:
        raise UsageError(f"SOURCE_DATE_EPOCH={brief(value)} is not a number of seconds from 0 to "
                         f"{MAX_EPOCH} (9999-12-31)", "set it to an integer such as $(date +%s), or unset it")
    return int(value)


def new_config(base: dict, diff_id: str, created: str, created_by: str, comment: str = "",
               author: str = "", changes: tuple[str, ...] = ()) -> dict:
    """`base` plus one layer on top: diff_id appended, a history entry, the changes applied."""
    doc = copy.deepcopy(base)
    doc["created"] = created
    if author:
        doc["author"] = author
    rootfs = doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs.setdefault("type", "layers")
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [diff_id]
    entry = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    doc["history"] = list(doc.get("history") or []) + [entry]
    doc["config"] = apply_changes(doc.get("config") or {}, changes)
    return doc


def apply_changes(config: dict, changes: tuple[str, ...]) -> dict:
    out = copy.deepcopy(config)
    for change in changes:
        keyword, _, arg = change.strip().partition(" ")
        keyword, arg = keyword.upper(), arg.strip()
        if keyword not in INSTRUCTIONS:
            raise UsageError(f"unsupported change {change!r}",
                             f"use one of {', '.join(INSTRUCTIONS)}, e.g. -c 'CMD [\"sh\"]'")
        if not arg:
            raise UsageError(f"change {change!r} needs an argument")
        _APPLY[keyword](out, arg)
    return out


def _command(arg: str) -> list[str]:
    if arg.startswith("["):
        try:
            value = json.loads(arg)
        except ValueError:
            raise UsageError(f"{arg!r} is not a JSON list of strings",
                             "write it as [\"cmd\", \"arg\"] or in the shell form without brackets") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{arg!r} is not a JSON list of strings")
        return value
    return ["/bin/sh", "-c", arg]


def _words(arg: str) -> list[str]:
    if arg.startswith("["):
        return _command(arg)
    try:
        return shlex.split(arg)
    except ValueError as exc:
        raise UsageError(f"cannot parse {arg!r}: {exc}") from None


def _pairs(arg: str, what: str) -> list[tuple[str, str]]:
    """ENV/LABEL: `K=V K2="v 2"`, or the old `K V` form for a single pair."""
    words = _words(arg)
    if words and "=" not in words[0]:
        key, _, value = arg.partition(" ")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise UsageError(f"{what} {arg!r}: expected KEY=VALUE")
        out.append((key, value))
    return out


def _set_env(cfg: dict, arg: str) -> None:
    env = list(cfg.get("Env") or [])
    for key, value in _pairs(arg, "ENV"):
        env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
    cfg["Env"] = env


def _set_labels(cfg: dict, arg: str) -> None:
    labels = dict(cfg.get("Labels") or {})
    labels.update(_pairs(arg, "LABEL"))
    cfg["Labels"] = labels


def _expose(cfg: dict, arg: str) -> None:
    ports = dict(cfg.get("ExposedPorts") or {})
    for word in _words(arg):
        port, _, proto = word.partition("/")
        if not port.isdigit():
            raise UsageError(f"EXPOSE {word!r}: expected PORT[/tcp|udp]")
        ports[f"{port}/{proto or 'tcp'}"] = {}
    cfg["ExposedPorts"] = ports


def _volume(cfg: dict, arg: str) -> None:
    volumes = dict(cfg.get("Volumes") or {})
    for path in _words(arg):
        volumes[path] = {}
    cfg["Volumes"] = volumes


def _onbuild(cfg: dict, arg: str) -> None:
    cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [arg]


_APPLY = {
    "CMD": lambda cfg, arg: cfg.__setitem__("Cmd", _command(arg)),
    "ENTRYPOINT": lambda cfg, arg: cfg.__setitem__("Entrypoint", _command(arg)),
    "ENV": _set_env,
    "EXPOSE": _expose,
    "LABEL": _set_labels,
    "ONBUILD": _onbuild,
    "STOPSIGNAL": lambda cfg, arg: cfg.__setitem__("StopSignal", arg),
    "USER": lambda cfg, arg: cfg.__setitem__("User", arg),
    "VOLUME": _volume,
    "WORKDIR": lambda cfg, arg: cfg.__setitem__("WorkingDir", arg),
}
