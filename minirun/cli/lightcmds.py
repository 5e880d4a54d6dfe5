"""The commands scripts call in loops, `images`, `ps`, `load` and `pull`, defined as data
(cli/spec.py) so the light path runs them without importing typer: a listing or
a load of cached layers then costs little more than starting Python.

Each *_command function takes the parsed values and returns the exit code.
"""

from __future__ import annotations

import json

from .light import EXIT_CODES_HELP, Arg, Command, Flag

FORMAT_HELP = ("json (one object per line), a template such as '{{.ID}}\\t{{.Size}}', "
               "or 'table TEMPLATE' for aligned columns with a header.")


def format_help(example: str, fields: str) -> str:
    """--format's help for a listing whose template example is example."""
    return (f"json (one object per line, docker's keys), a template such as '{example}', or "
            f"'table TEMPLATE' for aligned columns with a header. Fields: {fields}.")


def _store(create: bool = True):
    from ..store import open_store
    return open_store(create=create)


# ---------------------------------------------------------------- load



def load_command(values: dict) -> int:
    import sys
    from ..api.catalog import load
    from ..errors import UsageError
    from ..linux.caps import require_root
    require_root("load")
    quiet = values["quiet"]
    paths = list(values["paths"] or ()) + ([values["input"]] if values["input"] else [])
    if not paths:
        paths = ["-"]                       # docker's `load < FILE` and `cat FILE | load`
    if "-" in paths and sys.stdin.isatty():
        raise UsageError("load: no archive given, and stdin is a terminal",
                         "name one (minirun load busybox.tar, -i busybox.tar) or pipe it in: "
                         "minirun load < busybox.tar")
    from . import progress
    # stdout, as docker load's; off a terminal one line per layer, as it ends
    show = progress.for_output(quiet, unannounced=("Extracting", "Reading"))
    with show:
        lines = load(_store(), paths, values["tag"], show.update)
    for line in lines:
        print(line)
    return 0


LOAD = Command(
    "load",
    """Load images from archives or OCI layout directories.

    Each layer is verified and extracted once into the cache; one already there
    prints "Already exists". Every image in an archive is loaded. Reads
    docker-archive (docker save, Docker 25+'s included), OCI archives and
    layouts (podman, skopeo, buildah, containerd, BuildKit) and the dir format
    of skopeo and podman (dir:, docker-dir). With no PATH, or PATH "-", the
    archive is read from stdin, as `docker load` does. On a terminal each layer
    shows a bar: bytes of its blob read, rate and time left; elsewhere one
    line per layer as it ends.

    Example: sudo minirun load busybox.tar ./myapp-oci/; minirun load < busybox.tar
    """,
    EXIT_CODES_HELP,
    (Arg("paths", "PATH...", "docker-archive tar, OCI archive tar, OCI layout dir, dir: copy, "
                             "or - for stdin (the default)", required=False, variadic=True),),
    (Flag("input", ("--input", "-i"), "str", "Read the archive from FILE (as docker load -i)."),
     Flag("tag", ("--tag", "-t"), "str", "Name the loaded image REF."),
     Flag("quiet", ("--quiet", "-q"), "bool", "Print only the loaded image lines.")),
    load_command)


# ---------------------------------------------------------------- images



def images_command(values: dict) -> int:
    from ..api import catalog as imgs
    from . import formatting
    fmt = values["format"]
    formatting.check(fmt)
    store = _store(create=False)
    if values["tree"]:
        from ..api.disk import tree_lines_for
        formatting.print_lines(tree_lines_for(store))
        return 0
    rows = imgs.filter_rows(imgs.rows(store), values["filter_"])
    no_trunc = values["no_trunc"]
    if values["quiet"]:
        for row in rows:
            print(row.image_id if no_trunc else row.image_id[7:19])
        return 0
    if fmt == "json":
        formatting.print_rows([{"ID": row.image_id, "RepoTags": list(row.refs), "Created": row.created,
                                "Size": row.size, "Layers": row.layers, "Architecture": row.architecture,
                                "Dangling": not row.refs} for row in rows], fmt)
        return 0
    from ..oci.reference import parse
    lines = []
    for row in rows:
        for ref in [parse(r) for r in row.refs] or [None]:
            repo, tag = ("<none>", "<none>") if ref is None else \
                (ref.familiar().rsplit(":", 1)[0] if ref.tag else ref.familiar(), ref.tag or "<none>")
            lines.append({"ID": row.image_id if no_trunc else row.image_id[7:19], "Repository": repo,
                          "Tag": tag, "CreatedAt": imgs.docker_time(row.created), "CreatedSince": imgs.human_age(row.created),
                          "Size": imgs.human_size(row.size), "Layers": row.layers})
    if formatting.is_template(fmt):
        formatting.print_rows(lines, fmt)
        return 0
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "LAYERS")]
    table += [(x["Repository"], x["Tag"], x["ID"], x["CreatedSince"], x["Size"], str(x["Layers"]))
              for x in lines]
    formatting.print_table(table)
    return 0


IMAGES = Command(
    "images",
    """List images: reference, image id, created, size and layer count.

    An image whose name moved to another image (re-load, re-pull, commit,
    tag) stays as <none>:<none>: a dangling image. List only those with
    --filter dangling=true; remove them with `minirun image prune`.

    Example: minirun images --filter dangling=true
    """,
    EXIT_CODES_HELP,
    (),
    (Flag("quiet", ("--quiet", "-q"), "bool", "Only image ids."),
     Flag("all_", ("--all", "-a"), "bool", "Show all images. minirun has no intermediate images, so "
          "this is the default list, dangling (<none>) images included; kept for docker scripts."),
     Flag("filter_", ("--filter", "-f"), "list", "dangling=true|false, or reference=PATTERN (shell "
          "glob on the name, e.g. 'my*')."),
     Flag("tree", ("--tree",), "bool", "Draw images as branches of the layers they share."),
     Flag("format", ("--format",), "str", FORMAT_HELP + " Fields: ID, Repository, Tag, CreatedAt, "
          "CreatedSince, Size, Layers."),
     Flag("no_trunc", ("--no-trunc",), "bool", "Full image ids.")),
    images_command)


# ---------------------------------------------------------------- ps



def ps_command(values: dict) -> int:
    from ..api.catalog import docker_time, human_age
    from ..api.control import container_records
    from . import formatting
    fmt = values["format"]
    formatting.check(fmt)
    filters = values["filter_"]
    records = [c for c in container_records(_store(create=False))
               if values["all"] or c.state.running
               or any(f.startswith("status=") for f in filters)]
    records = filter_containers(records, filters)
    if values["quiet"]:
        for c in records:
            print(c.id[:12])
        return 0
    lines = []
    for c in records:
        config = c.config
        command = formatting.visible(" ".join(config.argv))     # escaped, then cut
        command = command if len(command) <= 20 or fmt == "json" else command[:19] + "…"
        lines.append({"ID": c.id[:12], "Image": config.image, "Command": f'"{command}"',
                      "CreatedAt": docker_time(config.created), "RunningFor": human_age(config.created),
                      "Status": status_text(c.state), "State": c.state.status, "Names": config.name,
                      "Networks": config.network, "Labels": "",
                      "Ports": ", ".join(c.state.ports) if c.state.running else "", "Mounts": "",
                      "LocalVolumes": "0", "Size": ""})
    if fmt == "json" or formatting.is_template(fmt):
        formatting.print_rows(lines, fmt)
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    table += [(x["ID"], x["Image"], x["Command"], x["RunningFor"], x["Status"], x["Ports"], x["Names"])
              for x in lines]
    formatting.print_table(table)
    return 0


PS = Command(
    "ps",
    """List containers.

    Example: minirun ps -a
    """,
    EXIT_CODES_HELP,
    (),
    (Flag("all", ("--all", "-a"), "bool", "Show all containers, not only running."),
     Flag("quiet", ("--quiet", "-q"), "bool", "Only container ids."),
     Flag("filter_", ("--filter", "-f"), "list", "status=running|exited|created, name=PATTERN (shell "
          "glob), id=PREFIX, or ancestor=IMAGE (as the run named it); several must all hold."),
     Flag("format", ("--format",), "str", format_help("{{.Names}}\\t{{.Status}}",
                                                      "ID, Image, Command, CreatedAt, RunningFor, Status, "
                                                      "State, Names, Networks, Labels, Ports, Mounts"))),
    ps_command)


def filter_containers(records: list, filters: list[str]) -> list:
    """`ps --filter` over api/control.py's listing, as docker spells the common ones;
    a status filter implies -a."""
    import fnmatch
    from ..errors import UsageError
    tests = {"status": lambda c, v: c.state.status == v,
             "name": lambda c, v: fnmatch.fnmatch(c.config.name, v),
             "id": lambda c, v: c.id.startswith(v),
             "ancestor": lambda c, v: c.config.image == v or c.config.image_id.startswith(
                 v if v.startswith("sha256:") else "sha256:" + v)}
    for spec in filters:
        key, eq, value = spec.partition("=")
        if key not in tests or not eq or not value:
            raise UsageError(f"unsupported filter {spec!r}",
                             "use status=running|exited|created, name=PATTERN, id=PREFIX or ancestor=IMAGE")
        records = [c for c in records if tests[key](c, value)]
    return records


def status_text(state) -> str:
    """A ContainerState as docker ps says it: "Up 3 minutes", "Exited (0) 2 minutes ago",
    "Created"."""
    from ..api.catalog import human_duration, seconds_since
    if state.status == "exited":
        code = state.exit_code
        oom = " (OOM killed)" if state.oom_killed else ""
        since = seconds_since(state.finished)
        ago = "" if since is None else f" {human_duration(since)} ago"
        return f"Exited ({'?' if code is None else code}){ago}{oom}"
    if state.status == "running":
        since = seconds_since(state.started)
        return "Up" if since is None else f"Up {human_duration(since)}"
    return state.status.capitalize()


# ---------------------------------------------------------------- pull



def pull_command(values: dict) -> int:
    from ..linux.caps import require_root
    require_root("pull")
    result = pull_with_progress(_store(), values["ref"], values["platform"], values["quiet"])
    print(result.ref)
    return 0


def pull_with_progress(store, ref: str, platform: str | None, quiet: bool = False, stream=None):
    """pull's output (on stream, default stdout): the Pulling line, per-layer progress
    (bars on a terminal), Digest and Status; returns the pull's result."""
    import sys
    from . import progress as progress_mod
    from ..oci.reference import parse
    from ..sources.registry.pull import pull
    stream = stream or sys.stdout
    parsed = parse(ref)
    show = progress_mod.for_output(quiet, stream)
    if not quiet:
        print(f"{parsed.tag or parsed.digest}: Pulling from {parsed.repository}", file=stream, flush=True)
    with show:
        result = pull(store, str(parsed), platform, show.update)
    if not quiet:
        print(f"Digest: {result.manifest_digest}", file=stream)
        word = "Image is up to date for" if result.up_to_date else "Downloaded newer image for"
        print(f"Status: {word} {result.ref}", file=stream, flush=True)
    return result


PULL = Command(
    "pull",
    """Pull an image from a registry; layers already in the cache are not downloaded.

    Credentials come from ~/.docker/config.json (see `minirun login`). Plain
    HTTP is used only for localhost and registries listed in
    MINIRUN_INSECURE_REGISTRIES (comma-separated host[:port]). A registry
    that sends under 1 KiB/s for MINIRUN_REGISTRY_TIMEOUT seconds (default 30)
    is given up; a layer download is retried and resumed 3 times.

    On a terminal each layer shows a bar: bytes, rate and time left.

    Example: sudo minirun pull 127.0.0.1:5000/library/busybox:latest
    """,
    EXIT_CODES_HELP,
    (Arg("ref", "REF", "e.g. busybox, user/app:tag, host:5000/x/y@sha256:..."),),
    (Flag("platform", ("--platform",), "str", "os/arch or os/arch/variant to pick from a multi-platform image "
          "(default: this host's)."),
     Flag("quiet", ("--quiet", "-q"), "bool", "Print only the reference.")),
    pull_command)


LIGHT = {command.name: command for command in (LOAD, IMAGES, PS, PULL)}
