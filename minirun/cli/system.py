"""Health checks: fsck (is the store intact?), doctor (can this machine run containers?)
and info (what is configured and in use)."""

from __future__ import annotations

import json

import typer

from .common import app, handled, store as _store

FSCK_EXIT_CODES_HELP = ("Exit codes: 0 the store is intact (layers with no file manifest, installed by an "
                        "older minirun, are listed as unchecked, not as problems), or --repair left it "
                        "intact; 1 a problem was found, or remains after --repair (or the check itself "
                        "failed); 3 not root, or the store is not a directory or is read-only.")


@app.command(epilog=FSCK_EXIT_CODES_HELP)
@handled()
def fsck(as_json: bool = typer.Option(False, "--json", help="Print one JSON object: counts, unchecked "
                                      "layers and a list of problems."),
         repair: bool = typer.Option(False, "--repair", help="Put right what is damaged in the store's "
                                     "directories and records (see README, fsck), then check again.")):
    """Check the store; with --repair, put right what is damaged.

    The store's directories and records (images.json, each container's
    config.json and state.json, each layer's meta.json and file manifest) are
    checked for damage; every cached layer's files against the file manifest
    recorded when it was installed, every blob against its digest (a layer's
    own blob also against the layer's diff_id), and images.json against both.

    Prints one line per problem (store, layer, blob or image, then the path and
    what is wrong) and a summary line. --repair first prints one line per
    repair: it rebuilds images.json from the stored manifests, configs and
    layers, removes containers whose config is damaged and marks those whose
    state is damaged exited, removes layers and blobs whose records are
    damaged (load or pull their images again), and makes the store's
    directories again. Changed layer files and blobs that fail their digest
    are named, not repaired.

    Example: sudo minirun fsck --repair
    """
    from ..api.fsck import check
    from ..linux.caps import require_root
    require_root("fsck")
    store = _store(create=False)
    repaired: list[str] = []
    if repair:
        from ..api.storecheck import repair as do_repair
        repaired = do_repair(store)
        if not as_json:
            for line in repaired:
                print(line, flush=True)
    report = check(store)
    if as_json:
        print(json.dumps(dict(report.to_json(), **({"Repaired": repaired} if repair else {})), indent=1))
    else:
        from .formatting import print_lines
        print_lines(report.lines())      # paths in a layer are the image's text
    if report.problems:
        raise typer.Exit(1)


@app.command(epilog="Exit codes: 0 every check passed or only warned; 3 a check failed (the fix is printed).")
@handled()
def doctor(as_json: bool = typer.Option(False, "--json", help="One JSON object per check.")):
    """Check that this machine can run containers, and print the fix for what fails.

    Checks root, the store's filesystem (not overlayfs, with d_type), overlayfs
    with upper and work dirs, `lowerdir+` (Linux 6.8+; else the fallback is
    used), pivot_root, cgroup version and controllers, the capability bounding
    set and rlimits.

    The kernel is asked for real, in a throw-away child process with its own
    mount namespace; nothing is left behind.

    Example: sudo minirun doctor
    """
    from ..api.doctor import FAIL, run_all
    from ..store.root import default_root
    checks = run_all(default_root())
    if as_json:
        for check in checks:
            print(json.dumps(check.to_json()))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            print(f"{check.status.upper():<5} {check.name:<{width}}  {check.detail}")
            if check.fix and check.status != "ok":
                print(f"{'':<5} {'':<{width}}  fix: {check.fix}")
    if any(c.status == FAIL for c in checks):
        raise typer.Exit(3)


@app.command(epilog="Exit codes: 0 printed; 3 the config file is invalid or the store unreadable.")
@handled()
def info(format: str = typer.Option(None, "--format", help="json, or a template such as "
                                    "'{{.Settings.root.Value}}' or '{{.Kernel.OverlayMountAPI}}'.")):
    """Show the effective configuration, the kernel features in use and store statistics.

    Each setting shows where its value came from: an environment variable, the
    config file (/etc/minirun/config.toml, or $MINIRUN_CONFIG), or the default.

    Example: sudo minirun info
    """
    from ..api.info import gather, lines
    from ..store.root import default_root
    from . import formatting
    formatting.check(format)
    doc = gather(default_root())
    if format:
        formatting.print_rows([doc], format)
        return
    for line in lines(doc):
        print(line)
